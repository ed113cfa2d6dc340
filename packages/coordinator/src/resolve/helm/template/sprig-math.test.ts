/**
 * Sprig's conversions and math: int64 results, cast's lenient conversions, decimal float math.
 */
import { describe, expect, it } from 'vitest';
import { TemplateSet } from './template-set.ts';

function render(text: string, data: unknown = {}): string {
  const set = new TemplateSet();
  set.parse('t', text);
  return set.execute('t', data);
}

describe('sprig math', () => {
  it.each([
    ['add, sub, mul', '{{ add 1 2 3 }} {{ sub 5 3 }} {{ mul 2 3 4 }} {{ add1 5 }}', '6 2 24 6'],
    ['add truncates float64 values', '{{ add 1 .f }}', '2'],
    ['div and mod truncate toward zero', '{{ div 7 2 }} {{ div -7 2 }} {{ mod 7 3 }} {{ mod -7 3 }}', '3 -3 1 -1'],
    ['max and min', '{{ max 1 5 3 }} {{ min 4 2 }} {{ biggest 1 9 }}', '5 2 9'],
    ['float math is exact in decimals', '{{ addf 0.1 0.2 }} {{ subf 1.5 0.5 }} {{ mulf 1.1 3 }} {{ divf 10 3 }} {{ add1f 1.5 }}', '0.3 1 3.3 3.3333333333333335 2.5'],
    ['maxf, minf, floor, ceil', '{{ maxf 1 2.5 }} {{ minf 1 2.5 }} {{ floor 1.7 }} {{ ceil 1.2 }}', '2.5 1 1 2'],
    ['round', '{{ round 3.14159 2 }} {{ round 2.5 0 }} {{ round -2.5 0 }} {{ round 1.34 1 0.3 }}', '3.14 3 -3 1.4'],
    [
      'int and int64 convert leniently',
      '{{ int "42" }} {{ int "12.7" }} {{ int .g }} {{ int64 true }} {{ int "0x1F" }} {{ int "x" }} {{ int nil }}',
      '42 12 3 1 31 0 0',
    ],
    ['float64', '{{ float64 "3.5" }} {{ float64 2 }} {{ typeOf (float64 2) }}', '3.5 2 float64'],
    ['atoi', '{{ atoi "12" }} {{ atoi "x" }} {{ atoi "1.5" }}', '12 0 0'],
    ['toDecimal reads octal', '{{ toDecimal "0777" }} {{ toDecimal 755 }}', '511 493'],
    ['int64 wraps around', '{{ add 9223372036854775807 1 }}', '-9223372036854775808'],
  ])('%s', (_name, text, expected) => {
    expect(render(text, { f: 1.5, g: 3.9 })).toBe(expected);
  });

  it('dividing by zero is an error', () => {
    expect(() => render('{{ div 1 0 }}')).toThrow('error calling div: runtime error: integer divide by zero');
    expect(() => render('{{ mod 1 0 }}')).toThrow('error calling mod: runtime error: integer divide by zero');
  });
});
