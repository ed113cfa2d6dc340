/**
 * Go's fmt and strconv as templates reach them; expectations are what Go prints.
 */
import { describe, expect, it } from 'vitest';
import { sprint, sprintf, sprintln } from './go-format.ts';
import { formatFloat } from './go-strconv.ts';

describe('sprintf', () => {
  it.each<[string, unknown[], string]>([
    ['%d', [42n], '42'],
    ['%5d|%-5d|%05d', [42n, 42n, -42n], '   42|42   |-0042'],
    ['%x %X %o %O %b', [255n, 255n, 8n, 8n, 5n], 'ff FF 10 0o10 101'],
    ['%#x %#o', [255n, 8n], '0xff 010'],
    ['%+d|% d', [5n, 5n], '+5| 5'],
    ['%c %U %q', [65n, 0x1f600n, 97n], "A U+1F600 'a'"],
    ['%f', [3.14159], '3.141590'],
    ['%.2f', [2.675], '2.67'],
    ['%.0f %.0f %.0f', [0.5, 1.5, 2.5], '0 2 2'],
    ['%e', [1234.5678], '1.234568e+03'],
    ['%g %g %g', [0.000012345, 100000, 1e6], '1.2345e-05 100000 1e+06'],
    ['%.3g', [1234.5678], '1.23e+03'],
    ['%8.3f|%-8.3f|%08.3f', [3.14159, 3.14159, -3.14159], '   3.142|3.142   |-003.142'],
    ['%v %v %v %v', [1e21, Number.NaN, Infinity, -Infinity], '1e+21 NaN +Inf -Inf'],
    ['%s|%10s|%-10s|%.2s', ['go', 'go', 'go', 'golang'], 'go|        go|go        |go'],
    ['%q', ['a"b\n'], '"a\\"b\\n"'],
    ['%q', ['é\u00a0'], '"é\\u00a0"'],
    ['%x|% x|%#q', ['hi', 'hi', 'abc'], '6869|68 69|`abc`'],
    ['%d', ['x'], '%!d(string=x)'],
    ['%d', [1.5], '%!d(float64=1.5)'],
    ['%s', [1n], '%!s(int=1)'],
    ['%s', [null], '%!s(<nil>)'],
    ['%v', [null], '<nil>'],
    ['%d', [], '%!d(MISSING)'],
    ['%d', [1n, 2n], '1%!(EXTRA int=2)'],
    ['%', [], '%!(NOVERB)'],
    ['100%%', [], '100%'],
    ['%z', [1n], '%!z(int=1)'],
    ['%[2]d %[1]d', [1n, 2n], '2 1'],
    ['%*d|%-*d|', [5n, 42n, 3n, 7n], '   42|7  |'],
    ['%v', [[1n, 'a', null]], '[1 a <nil>]'],
    ['%q', [['a', 'b']], '["a" "b"]'],
    ['%d', [[1n, 2n]], '[1 2]'],
    ['%v', [{ b: 2, a: [true] }], 'map[a:[true] b:2]'],
    ['%#v', [{ a: 'x' }], 'map[string]interface {}{"a":"x"}'],
    ['%T %T %T %T %T', [1n, 1.5, 's', null, [1]], 'int float64 string <nil> []interface {}'],
  ])('Sprintf(%s)', (format, args, expected) => {
    expect(sprintf(format, args)).toBe(expected);
  });
});

describe('sprint and sprintln', () => {
  it('Sprint adds spaces between operands when neither is a string', () => {
    expect(sprint(['a', 1n, 2n, 'b', 3.5, true])).toBe('a1 2b3.5 true');
  });

  it('Sprintln always adds spaces and a newline', () => {
    expect(sprintln(['a', 'b', 1n])).toBe('a b 1\n');
  });
});

describe('formatFloat', () => {
  it.each<[number, 'e' | 'f' | 'g', number, string]>([
    [1234.5678, 'e', 2, '1.23e+03'],
    [0.1, 'f', 20, '0.10000000000000000555'],
    [1e-7, 'g', -1, '1e-07'],
    [123456, 'g', -1, '123456'],
    [1234567, 'g', -1, '1.234567e+06'],
    [-0, 'g', -1, '-0'],
    [0, 'e', 3, '0.000e+00'],
  ])('FormatFloat(%d, %s, %d)', (value, format, prec, expected) => {
    expect(formatFloat(value, format, prec)).toBe(expected);
  });
});
