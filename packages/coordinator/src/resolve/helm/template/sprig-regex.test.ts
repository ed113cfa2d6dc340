/**
 * Sprig's regex functions with Go's RE2 syntax and Go's treatment of empty matches.
 */
import { describe, expect, it } from 'vitest';
import { TemplateSet } from './template-set.ts';

function render(text: string): string {
  const set = new TemplateSet();
  set.parse('t', text);
  return set.execute('t', {});
}

describe('sprig regex', () => {
  it.each([
    ['regexMatch', '{{ regexMatch "^[a-z]+$" "abc" }} {{ regexMatch "^[a-z]+$" "ab1" }}', 'true false'],
    ['a bad pattern makes regexMatch false', '{{ regexMatch "(" "x" }}', 'false'],
    [
      'regexFind and regexFindAll',
      '{{ regexFind "[0-9]+" "a12b34" }} {{ regexFindAll "[0-9]+" "a12b34c56" 2 }} {{ regexFindAll "[0-9]+" "a1b2" -1 }}',
      '12 [12 34] [1 2]',
    ],
    ['empty matches as Go finds them', '{{ regexFindAll "a*" "baaac" -1 }}', '[ aaa ]'],
    ['$1 and ${1} in replacements', '{{ regexReplaceAll "a(x*)b" "-ab-axxb-" "${1}W" }} {{ regexReplaceAll "a(x*)b" "-ab-axxb-" "$1W" }}', '-W-xxW- ---'],
    ['replacing empty matches', '{{ regexReplaceAll "a*" "baaac" "X" }}', 'XbXcX'],
    ['named groups', '{{ regexReplaceAll "(?P<first>\\\\w+) (?P<last>\\\\w+)" "John Smith" "${last}, ${first}" }}', 'Smith, John'],
    ['literal replacement', '{{ regexReplaceAllLiteral "a(x*)b" "-ab-axxb-" "${1}" }}', '-${1}-${1}-'],
    ['regexSplit', '{{ regexSplit "z+" "pizza" -1 }} {{ regexSplit "a" "banana" 2 }} {{ regexSplit "" "abc" -1 }}', '[pi a] [b nana] [a b c]'],
    ['a leading (?i)', '{{ regexMatch "(?i)^ABC$" "abc" }}', 'true'],
    ["Go's \\s is ASCII only", '{{ regexMatch "^\\\\s$" "\u00a0" }} {{ regexMatch "^\\\\s$" " " }}', 'false true'],
    ['. does not match a newline but matches a carriage return', '{{ regexMatch "^a.b$" "a\\rb" }} {{ regexMatch "^a.b$" "a\\nb" }}', 'true false'],
    ['POSIX classes', '{{ regexFindAll "[[:digit:]]+" "a1b22" -1 }}', '[1 22]'],
    ['regexQuoteMeta', '{{ regexQuoteMeta "1.2.3" }}', '1\\.2\\.3'],
  ])('%s', (_name, text, expected) => {
    expect(render(text)).toBe(expected);
  });

  it('a bad pattern is an error elsewhere', () => {
    expect(() => render('{{ regexFind "(" "x" }}')).toThrow(/error calling regexFind: regexp: Compile\(`\(`\): error parsing regexp/);
    expect(() => render('{{ mustRegexMatch "(" "x" }}')).toThrow(/error calling mustRegexMatch: error parsing regexp/);
  });
});
