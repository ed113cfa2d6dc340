/**
 * Sprig's defaults, reflection and semver; semver follows Masterminds/semver v3, not npm.
 */
import { describe, expect, it } from 'vitest';
import { TemplateSet } from './template-set.ts';

function render(text: string, data: unknown = {}): string {
  const set = new TemplateSet();
  set.parse('t', text);
  return set.execute('t', data);
}

const DATA = { zero: 0, empty: '', list: [], map: {}, f: false, name: 'x', n: 1.5 };

describe('sprig defaults and reflection', () => {
  it.each([
    [
      'default on missing and empty values',
      '{{ default "d" .missing }} {{ default "d" .zero }} {{ default "d" .empty }} {{ default "d" .f }} {{ default "d" .list }}',
      'd d d d d',
    ],
    ['default keeps a set value', '{{ .name | default "d" }} {{ default 5 .n }}', 'x 1.5'],
    ['empty', '{{ empty .zero }} {{ empty .map }} {{ empty .name }} {{ empty .missing }}', 'true true false true'],
    ['coalesce', '{{ coalesce .missing .empty "c" "d" }} {{ coalesce .zero }}', 'c <no value>'],
    ['all and any', '{{ all 1 "a" }} {{ all 1 "" }} {{ any 0 "" "x" }} {{ any 0 }}', 'true false true false'],
    ['ternary', '{{ ternary "yes" "no" true }} {{ true | ternary "yes" "no" }} {{ ternary "yes" "no" false }}', 'yes yes no'],
    [
      'typeOf',
      '{{ typeOf 1 }} {{ typeOf .n }} {{ typeOf .name }} {{ typeOf .list }} {{ typeOf .map }} {{ typeOf .missing }} {{ typeOf (splitList "," "a") }}',
      'int float64 string []interface {} map[string]interface {} <nil> []string',
    ],
    ['kindOf and kindIs', '{{ kindOf .list }} {{ kindOf .map }} {{ kindOf .missing }} {{ kindIs "float64" .n }} {{ kindIs "int" .n }}', 'slice map invalid true false'],
    ['typeIs and typeIsLike', '{{ typeIs "string" .name }} {{ typeIsLike "string" .name }} {{ typeIsLike "semver.Version" (semver "1.0.0") }}', 'true true true'],
    ['deepEqual compares Go types', '{{ deepEqual (list 1 2) (list 1 2) }} {{ deepEqual 1 1.0 }} {{ deepEqual (dict "a" 1) (dict "a" 1) }}', 'true false true'],
  ])('%s', (_name, text, expected) => {
    expect(render(text, DATA)).toBe(expected);
  });
});

describe('semver', () => {
  it.each([
    ['>=1.21.0-0', 'v1.29.3-eks-adc7111', true],
    ['>=1.21.0', 'v1.29.3-eks-adc7111', false],
    ['>=1.21-0', '1.29.3', true],
    ['>= 1.19.0-0 < 1.22.0-0', '1.20.0', true],
    ['^1.2', '1.9.0', true],
    ['^1.2', '2.0.0', false],
    ['^0.2.3', '0.2.9', true],
    ['^0.2.3', '0.3.0', false],
    ['~1.2', '1.2.9', true],
    ['~1.2', '1.3.0', false],
    ['~1.2.3', '1.2.2', false],
    ['1.2.x', '1.2.7', true],
    ['1.2.x', '1.3.0', false],
    ['> 1.0, < 2', '1.5.0', true],
    // Masterminds reads ">1" as "above every 1.x".
    ['> 1, < 2', '1.5.0', false],
    ['>= 1.2, < 3.0.0 || >= 4.2.3', '4.5.0', true],
    ['>= 1.2, < 3.0.0 || >= 4.2.3', '3.5.0', false],
    ['1.2 - 1.4.5', '1.4.5', true],
    ['1.2 - 1.4.5', '1.4.6', false],
    ['!=1.2.3', '1.2.3', false],
    ['*', '1.0.0', true],
    ['<1.20', 'v1.19.16', true],
  ])('semverCompare %s %s', (constraint, version, expected) => {
    expect(render(`{{ semverCompare "${constraint}" "${version}" }}`)).toBe(String(expected));
  });

  it('semver gives a version with Go methods', () => {
    expect(
      render('{{ $v := semver "v1.2.3-beta.1+build" }}{{ $v.Major }} {{ $v.Minor }} {{ $v.Patch }} {{ $v.Prerelease }} {{ $v.Metadata }} {{ $v }} {{ semver "1.2" }}'),
    ).toBe('1 2 3 beta.1 build 1.2.3-beta.1+build 1.2.0');
  });

  it('a bad constraint or version is an error', () => {
    expect(() => render('{{ semverCompare "bad" "1.0.0" }}')).toThrow('error calling semverCompare: improper constraint: "bad"');
    expect(() => render('{{ semverCompare ">1" "x" }}')).toThrow('error calling semverCompare: invalid semantic version');
  });
});
