/**
 * text/template's builtin functions, with the results and error texts of Go's funcs.go.
 */
import { describe, expect, it } from 'vitest';
import { TemplateError } from './template-error.ts';
import { TemplateSet, type TemplateSetOptions } from './template-set.ts';

function render(text: string, data: unknown = {}, options?: TemplateSetOptions): string {
  const set = new TemplateSet(options);
  set.parse('t', text);
  return set.execute('t', data);
}

function reason(text: string, data: unknown = {}, options?: TemplateSetOptions): string {
  try {
    render(text, data, options);
  } catch (err) {
    if (err instanceof TemplateError) return err.reason;
    throw err;
  }
  throw new Error(`expected ${JSON.stringify(text)} to fail`);
}

/** A method that returns a function: the only way a function value reaches a template here (a function-valued field is called as a method). */
class Calculator {
  Adder(): (a: unknown, b: unknown) => unknown {
    return (a, b) => (a as bigint) + (b as bigint);
  }
}

const DATA = { l: ['a', 'b'], m: { a: { b: 'deep' }, k: 'v' }, s: 'héllo', f: 1.5, n: 2, calc: new Calculator() };
/** Plain text/template, without Helm's functions (which replace `slice`). */
const PLAIN = { functions: new Map() };

describe('builtins', () => {
  it.each([
    ['and returns the first false argument', '{{ and 1 0 "x" }}', '0'],
    ['and returns the last argument when all are true', '{{ and 1 2 }}', '2'],
    ['or returns the first true argument', '{{ or 0 "" "x" "y" }}', 'x'],
    ['or stops before an argument that would fail', '{{ or true .a.b.c }}', 'true'],
    ['and stops before a failing function', '{{ and false (fail "boom") }}', 'false'],
    ['not', '{{ not 0 }} {{ not "x" }}', 'true false'],
    ['len counts bytes of a string', '{{ len .s }} {{ len .l }} {{ len .m }}', '6 2 2'],
    ['index into lists, maps and strings', '{{ index .l 1 }} {{ index .m "a" "b" }} {{ index "abc" 1 }}', 'b deep 98'],
    ['index of a missing key is no value', '{{ index .m "zz" }}', '<no value>'],
    ['print puts spaces between non-strings only', '{{ print "a" 1 2 "b" nil }}', 'a1 2b<nil>'],
    ['println separates and ends the line', '{{ println "a" 1 }}', 'a 1\n'],
    ['printf', '{{ printf "%d|%5.2f|%-4s|%q|%x|%t|%v" 42 3.14159 "ab" "q" 255 true .m.a }}', '42| 3.14|ab  |"q"|ff|true|map[b:deep]'],
    ['html', `{{ html "<a href=\\"x\\">&'</a>" }}`, '&lt;a href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt;'],
    ['js', `{{ js "it's <b>\\"x\\"</b>=1" }}`, `it\\'s \\u003Cb\\u003E\\"x\\"\\u003C/b\\u003E\\u003D1`],
    ['urlquery', '{{ urlquery "a b&c=d/é" }}', 'a+b%26c%3Dd%2F%C3%A9'],
    ['call', '{{ call .calc.Adder 1 2 }}', '3'],
    ['eq with several values', '{{ eq "b" "a" "b" "c" }} {{ eq "z" "a" "b" }}', 'true false'],
    ['eq of a missing value', '{{ eq .missing "a" }} {{ eq .missing nil }}', 'false true'],
    ['ne, lt, le, gt, ge', '{{ ne 1 2 }} {{ lt "a" "b" }} {{ le 2 2 }} {{ gt 1.5 1.0 }} {{ ge 1 2 }}', 'true true true true false'],
  ])('%s', (_name, text, expected) => {
    expect(render(text, DATA)).toBe(expected);
  });

  it.each([
    ['len of a number', '{{ len 3 }}', 'error calling len: len of type int'],
    ['len of a missing value', '{{ len .missing }}', 'error calling len: len of nil pointer'],
    ['index past the end', '{{ index .l 5 }}', 'error calling index: index out of range: 5'],
    ['index at the length', '{{ index .l 2 }}', 'error calling index: reflect: slice index out of range'],
    ['index of a map with an int', '{{ index .m 1 }}', 'error calling index: value has type int; should be string'],
    ['index of nothing', '{{ index .missing "a" }}', 'error calling index: index of untyped nil'],
    ['index with a float64', '{{ index .l .f }}', 'error calling index: cannot index slice/array with type float64'],
    ['lt of booleans', '{{ lt true false }}', 'error calling lt: invalid type for comparison'],
    ['lt of a missing value', '{{ lt .missing 1 }}', 'error calling lt: invalid type for comparison'],
    ['eq of two lists', '{{ eq .l .l }}', 'error calling eq: non-comparable type [a b]: []interface {}'],
    ['eq of a string and a list', '{{ eq "a" .l }}', 'error calling eq: incompatible types for comparison: string and []interface {}'],
    ['eq with one argument', '{{ eq 1 }}', 'error calling eq: missing argument for comparison'],
  ])('%s', (_name, text, expected) => {
    expect(reason(text, DATA)).toBe(expected);
  });

  it("slice is text/template's own without Helm, sprig's with it", () => {
    expect(render('{{ slice "abcd" 1 3 }} {{ slice .l 1 }}', DATA, PLAIN)).toBe('bc [b]');
    expect(reason('{{ slice "abcd" 1 }}', DATA)).toBe('error calling slice: list should be type of slice or array but string');
  });
});
