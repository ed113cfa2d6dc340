/**
 * Sprig's conversions and arithmetic (numeric.go, with spf13/cast's conversions). Integer math
 * returns int64 and wraps as Go does; `addf`/`subf`/`mulf`/`divf` compute in exact decimals (as
 * shopspring/decimal does, so `addf 0.1 0.2` is 0.3) before returning a float64.
 */
import { goFunc, goVariadic, type TemplateFunction } from './functions.ts';
import { sprint } from './go-format.ts';
import { parseGoFloat, parseGoInt } from './go-strconv.ts';
import { tagGoType, toInt64 } from './go-values.ts';

const INT64_MIN = -(1n << 63n);

/** Go's int64(f): truncation; out of range (and NaN) gives the minimum, as on amd64. */
function floatToInt(f: number): bigint {
  if (!Number.isFinite(f) || f >= 2 ** 63 || f < -(2 ** 63)) return INT64_MIN;
  return BigInt(Math.trunc(f));
}

/** cast's trimDecimal: "12.50" parses as an int 12. */
function trimDecimal(text: string): string {
  if (!text.includes('.')) return text;
  const match = /^([-+]?\d*)(\.\d*)?$/.exec(text);
  if (match === null) return text;
  const whole = match[1]!;
  return whole === '' ? '0' : whole === '-' || whole === '+' ? `${whole}0` : whole;
}

/** cast.ToInt64 (errors give 0). */
export function toInt(value: unknown): bigint {
  switch (typeof value) {
    case 'bigint':
      return value;
    case 'number':
      return floatToInt(value);
    case 'boolean':
      return value ? 1n : 0n;
    case 'string':
      return value === '' ? 0n : (parseGoInt(trimDecimal(value)) ?? 0n);
    default:
      return 0n;
  }
}

/** cast.ToFloat64 (errors give 0). */
export function toFloat(value: unknown): number {
  switch (typeof value) {
    case 'bigint':
      return Number(value);
    case 'number':
      return value;
    case 'boolean':
      return value ? 1 : 0;
    case 'string':
      return value === '' ? 0 : (parseGoFloat(value) ?? 0);
    default:
      return 0;
  }
}

function divide(a: bigint, b: bigint): bigint {
  if (b === 0n) throw new Error('runtime error: integer divide by zero');
  return toInt64(a / b);
}

/** An exact decimal coefficient × 10^exp, for sprig's float math. */
interface Decimal {
  coef: bigint;
  exp: number;
}

/** decimal.NewFromFloat: the float's shortest decimal form, exactly. */
function decimalOf(f: number): Decimal {
  if (!Number.isFinite(f)) throw new Error(`Cannot create a Decimal from ${f}`);
  const [mantissa, exponent] = f.toExponential().split('e') as [string, string];
  const [whole, frac = ''] = mantissa.split('.') as [string, string?];
  return { coef: BigInt(whole + frac), exp: Number(exponent) - frac.length };
}

function align(a: Decimal, b: Decimal): [bigint, bigint, number] {
  const exp = Math.min(a.exp, b.exp);
  return [a.coef * 10n ** BigInt(a.exp - exp), b.coef * 10n ** BigInt(b.exp - exp), exp];
}

function decimalToFloat(d: Decimal): number {
  return Number(`${d.coef}e${d.exp}`);
}

/** decimal.DivRound(d2, 16): 16 decimal places, half away from zero. */
function decimalDivide(a: Decimal, b: Decimal): Decimal {
  if (b.coef === 0n) throw new Error('decimal division by zero');
  const precision = 16;
  // a / b = (a.coef / b.coef) × 10^(a.exp - b.exp); scale so the quotient has `precision` places.
  const shift = precision + a.exp - b.exp;
  let num = a.coef;
  let den = b.coef;
  if (shift >= 0) num *= 10n ** BigInt(shift);
  else den *= 10n ** BigInt(-shift);
  let q = num / den;
  const r = num % den;
  const abs = (x: bigint): bigint => (x < 0n ? -x : x);
  if (2n * abs(r) >= abs(den)) q += num < 0n !== den < 0n ? -1n : 1n;
  return { coef: q, exp: -precision };
}

function decimalOp(first: unknown, rest: unknown[], op: (a: Decimal, b: Decimal) => Decimal): number {
  let acc = decimalOf(toFloat(first));
  for (const x of rest) acc = op(acc, decimalOf(toFloat(x)));
  return decimalToFloat(acc);
}

const decimalAdd = (a: Decimal, b: Decimal): Decimal => {
  const [x, y, exp] = align(a, b);
  return { coef: x + y, exp };
};
const decimalSub = (a: Decimal, b: Decimal): Decimal => {
  const [x, y, exp] = align(a, b);
  return { coef: x - y, exp };
};
const decimalMul = (a: Decimal, b: Decimal): Decimal => ({ coef: a.coef * b.coef, exp: a.exp + b.exp });

/** Sprig's untilStep: ints from start towards stop. */
export function untilStep(start: bigint, stop: bigint, step: bigint): bigint[] {
  const out: bigint[] = [];
  if (stop < start) {
    if (step >= 0n) return out;
    for (let i = start; i > stop; i += step) out.push(i);
    return out;
  }
  if (step <= 0n) return out;
  for (let i = start; i < stop; i += step) out.push(i);
  return out;
}

function seq(...params: bigint[]): string {
  let list: bigint[];
  switch (params.length) {
    case 1: {
      const end = params[0]!;
      const increment = end < 1n ? -1n : 1n;
      list = untilStep(1n, end + increment, increment);
      break;
    }
    case 2: {
      const [start, end] = params as [bigint, bigint];
      const step = end < start ? -1n : 1n;
      list = untilStep(start, end + step, step);
      break;
    }
    case 3: {
      const [start, step, end] = params as [bigint, bigint, bigint];
      let increment = 1n;
      if (end < start) {
        increment = -1n;
        if (step > 0n) return '';
      }
      list = untilStep(start, end + increment, step);
      break;
    }
    default:
      return '';
  }
  return list.join(' ');
}

/** math.Modf's fractional part (sign of the argument). */
function frac(x: number): number {
  return x - Math.trunc(x);
}

export const SPRIG_MATH_FUNCTIONS: ReadonlyArray<[string, TemplateFunction]> = [
  [
    'atoi',
    goFunc(['string'], (s) => {
      if (!/^[+-]?\d+$/.test(s)) return 0n;
      const value = BigInt(s);
      // strconv.Atoi returns the nearest int with its range error; sprig keeps the value.
      return value > (1n << 63n) - 1n ? (1n << 63n) - 1n : value < INT64_MIN ? INT64_MIN : value;
    }),
  ],
  ['int64', goFunc(['any'], toInt)],
  ['int', goFunc(['any'], toInt)],
  ['float64', goFunc(['any'], toFloat)],
  ['toDecimal', goFunc(['any'], (v) => parseGoInt(sprint([v]), 8) ?? 0n)],
  ['seq', goVariadic([], 'int', seq)],
  ['until', goFunc(['int'], (count) => tagGoType(untilStep(0n, count, count < 0n ? -1n : 1n), '[]int'))],
  ['untilStep', goFunc(['int', 'int', 'int'], (start, stop, step) => tagGoType(untilStep(start, stop, step), '[]int'))],
  ['add1', goFunc(['any'], (i) => toInt64(toInt(i) + 1n))],
  ['add', goVariadic([], 'any', (...values) => values.reduce<bigint>((sum, v) => toInt64(sum + toInt(v)), 0n))],
  ['sub', goFunc(['any', 'any'], (a, b) => toInt64(toInt(a) - toInt(b)))],
  ['div', goFunc(['any', 'any'], (a, b) => divide(toInt(a), toInt(b)))],
  [
    'mod',
    goFunc(['any', 'any'], (a, b) => {
      const d = toInt(b);
      if (d === 0n) throw new Error('runtime error: integer divide by zero');
      return toInt(a) % d;
    }),
  ],
  ['mul', goVariadic(['any'], 'any', (a, ...rest) => rest.reduce<bigint>((product, v) => toInt64(product * toInt(v)), toInt(a)))],
  [
    'randInt',
    goFunc(['int', 'int'], (min, max) => {
      if (max <= min) throw new Error('invalid argument to Intn');
      return min + BigInt(Math.floor(Math.random() * Number(max - min)));
    }),
  ],
  ['add1f', goFunc(['any'], (i) => decimalOp(i, [1n], decimalAdd))],
  ['addf', goVariadic([], 'any', (...values) => decimalOp(0, values, decimalAdd))],
  ['subf', goVariadic(['any'], 'any', (a, ...rest) => decimalOp(a, rest, decimalSub))],
  ['divf', goVariadic(['any'], 'any', (a, ...rest) => decimalOp(a, rest, decimalDivide))],
  ['mulf', goVariadic(['any'], 'any', (a, ...rest) => decimalOp(a, rest, decimalMul))],
  ['biggest', goVariadic(['any'], 'any', (a, ...rest) => rest.map(toInt).reduce((m, v) => (v > m ? v : m), toInt(a)))],
  ['max', goVariadic(['any'], 'any', (a, ...rest) => rest.map(toInt).reduce((m, v) => (v > m ? v : m), toInt(a)))],
  ['min', goVariadic(['any'], 'any', (a, ...rest) => rest.map(toInt).reduce((m, v) => (v < m ? v : m), toInt(a)))],
  ['maxf', goVariadic(['any'], 'any', (a, ...rest) => rest.map(toFloat).reduce((m, v) => Math.max(m, v), toFloat(a)))],
  ['minf', goVariadic(['any'], 'any', (a, ...rest) => rest.map(toFloat).reduce((m, v) => Math.min(m, v), toFloat(a)))],
  ['ceil', goFunc(['any'], (a) => Math.ceil(toFloat(a)))],
  ['floor', goFunc(['any'], (a) => Math.floor(toFloat(a)))],
  [
    'round',
    goVariadic(['any', 'int'], 'float64', (a, places, ...roundOn) => {
      const pow = 10 ** Number(places);
      const digit = pow * toFloat(a);
      return (frac(digit) >= (roundOn[0] ?? 0.5) ? Math.ceil(digit) : Math.floor(digit)) / pow;
    }),
  ],
];
