/**
 * Sprig's string functions; expectations from sprig's and xstrings' documentation and Go's rules.
 */
import { describe, expect, it } from 'vitest';
import { TemplateError } from './template-error.ts';
import { TemplateSet } from './template-set.ts';

function render(text: string, data: unknown = {}): string {
  const set = new TemplateSet();
  set.parse('t', text);
  return set.execute('t', data);
}

describe('sprig strings', () => {
  it.each([
    ['trunc', '{{ trunc 5 "hello world" }}|{{ trunc -5 "hello world" }}|{{ trunc 20 "short" }}|{{ trunc -20 "short" }}', 'hello|world|short|short'],
    ['trunc and trimSuffix, as in fullname helpers', '{{ "release-name-that-is-long" | trunc 13 | trimSuffix "-" }}', 'release-name'],
    ['trunc counts bytes', '{{ trunc 2 "héllo" }}', 'h\ufffd'],
    ['abbrev', '{{ abbrev 5 "hello world" }}|{{ abbrev 3 "hello" }}', 'he...|hello'],
    ['abbrevboth', '{{ abbrevboth 5 10 "1234 5678 9123" }}', '...5678...'],
    ['upper, lower', '{{ upper "aBc" }} {{ lower "aBc" }}', 'ABC abc'],
    ['title uppercases after separators other than _', '{{ title "hello world-wide_web x.y" }}', 'Hello World-Wide_web X.Y'],
    ['untitle', '{{ untitle "Hello World" }}', 'hello world'],
    ['substr', '{{ substr 1 4 "hello" }}|{{ substr -1 3 "hello" }}|{{ substr 2 -1 "hello" }}|{{ substr 0 10 "abc" }}', 'ell|hel|llo|abc'],
    ['repeat', '{{ repeat 3 "ab" }}', 'ababab'],
    [
      'trim, trimAll, trimPrefix, trimSuffix',
      '[{{ trim "  x \\n" }}] {{ trimAll "$" "$5.00$" }} {{ trimPrefix "-" "-x-" }} {{ trimSuffix "-" "app-" }}',
      '[x] 5.00 x- app',
    ],
    ['nospace and initials', '{{ nospace "a b\\tc" }} {{ initials "First Try" }}', 'abc FT'],
    [
      'contains, hasPrefix, hasSuffix take the subject last',
      '{{ contains "cat" "catch" }} {{ hasPrefix "cat" "catch" }} {{ hasSuffix "ch" "catch" }}',
      'true true true',
    ],
    ['quote drops nils and quotes the rest', '{{ quote "a" 1 nil "b\\"" }}', '"a" "1" "b\\""'],
    ['quote of a missing value is empty', '[{{ .missing | quote }}]', '[]'],
    ['squote', '{{ squote "a" 1 }}', "'a' '1'"],
    ['cat', '{{ cat "hello" 1 nil "x" }}', 'hello 1 x'],
    ['indent and nindent', '{{ indent 2 "a\\nb" }}|{{ nindent 2 "a" }}', '  a\n  b|\n  a'],
    ['replace', '{{ "a b c" | replace " " "-" }}', 'a-b-c'],
    ['plural', '{{ plural "one" "many" 1 }} {{ plural "one" "many" 2 }}', 'one many'],
    ['toString prints floats as Go does', '{{ toString 1.5 }} {{ toString .big }} {{ toString (list 1 2) }}', '1.5 1e+06 [1 2]'],
    ['toStrings', '{{ toStrings (list 1 "a" nil) }} {{ typeOf (toStrings (list 1)) }}', '[1 a] []string'],
    ['join', '{{ join "," (list "a" 1 nil) }} {{ join "-" "x" }}', 'a,1 x'],
    ['sortAlpha sorts by bytes', '{{ sortAlpha (list "b" "A" "a") }}', '[A a b]'],
    ['split makes _0, _1, ... keys', '{{ split "$" "foo$bar$baz" }} {{ (split "." "a.b")._1 }}', 'map[_0:foo _1:bar _2:baz] b'],
    ['splitList keeps empty parts', '{{ splitList "," "a,b,,c" }}', '[a b  c]'],
    ['splitn', '{{ splitn "$" 2 "foo$bar$baz" }}', 'map[_0:foo _1:bar$baz]'],
    ['wrap', '{{ wrap 10 "Lorem ipsum dolor sit amet" }}', 'Lorem\nipsum\ndolor sit\namet'],
    ['wrapWith', '{{ wrapWith 5 "\\t" "Hello World" }}', 'Hello\tWorld'],
    ['b64enc and b64dec', '{{ b64enc "hello" }} {{ b64dec "aGVsbG8=" }} {{ b64dec "!!!" }}', 'aGVsbG8= hello illegal base64 data at input byte 0'],
    ['b32enc and b32dec', '{{ b32enc "hello" }} {{ b32dec "NBSWY3DP" }}', 'NBSWY3DP hello'],
    [
      'hashes',
      '{{ sha256sum "hello" }} {{ sha1sum "hello" }} {{ adler32sum "hello" }}',
      '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d 103547413',
    ],
  ])('%s', (_name, text, expected) => {
    expect(render(text, { big: 1000000 })).toBe(expected);
  });

  it.each([
    ['FirstName', 'first_name'],
    ['HTTPServer', 'http_server'],
    ['NoHTTPS', 'no_https'],
    ['GO_PATH', 'go_path'],
    ['GO PATH', 'go_path'],
    ['GO-PATH', 'go_path'],
    ['http2xx', 'http_2xx'],
    ['HTTP20xOK', 'http_20x_ok'],
    ['Duration2m3s', 'duration_2m3s'],
    ['Bld4Floor3rd', 'bld4_floor_3rd'],
  ])('snakecase %s', (input, expected) => {
    expect(render(`{{ snakecase "${input}" }} {{ kebabcase "${input}" }}`)).toBe(`${expected} ${expected.replaceAll('_', '-')}`);
  });

  it.each([
    ['some_words', 'SomeWords'],
    ['http_server', 'HttpServer'],
    ['no_https', 'NoHttps'],
    ['_complex__case_', '_Complex_Case_'],
    ['some words', 'SomeWords'],
    ['GOLANG_IS_GREAT', 'GolangIsGreat'],
  ])('camelcase %s', (input, expected) => {
    expect(render(`{{ camelcase "${input}" }}`)).toBe(expected);
  });

  it('random strings have the asked length and alphabet', () => {
    expect(render('{{ randAlphaNum 12 }}')).toMatch(/^[A-Za-z0-9]{12}$/);
    expect(render('{{ randAlpha 5 }}{{ randNumeric 5 }}')).toMatch(/^[A-Za-z]{5}[0-9]{5}$/);
    expect(render('{{ randAscii 40 }}')).toMatch(/^[ -~]{40}$/);
  });

  it('a substring out of range is an error, as a Go slice panic is', () => {
    expect(() => render('{{ substr 4 2 "hello" }}')).toThrow(TemplateError);
    expect(() => render('{{ repeat -1 "x" }}')).toThrow('error calling repeat: strings: negative Repeat count');
  });
});
