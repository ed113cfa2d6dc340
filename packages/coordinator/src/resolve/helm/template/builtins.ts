/**
 * text/template's own functions (funcs.go): and, or, not, len, index, slice, print, printf,
 * println, html, js, urlquery, call, and the comparisons eq, ne, lt, le, gt, ge with Go's type
 * rules (an int and a float64 are "incompatible types for comparison"; nil equals only nil).
 */
import { goFunc, goVariadic, type FunctionMap, type TemplateFunction } from './functions.ts';
import { formatValue, sprint, sprintf, sprintln } from './go-format.ts';
import { isPrintRune } from './go-strconv.ts';
import { compareGoStrings, goKindName, goTypeName, isMapLike, isTrue, mapGet, tagGoType, utf8Length } from './go-values.ts';

type BasicKind = 'bool' | 'int' | 'float' | 'string' | 'invalid';

function basicKind(value: unknown): BasicKind {
  switch (typeof value) {
    case 'boolean':
      return 'bool';
    case 'bigint':
      return 'int';
    case 'number':
      return 'float';
    case 'string':
      return 'string';
    default:
      return 'invalid';
  }
}

/** Go's indirectInterface: a nil interface is no value. */
function concrete(value: unknown): unknown {
  return value ?? undefined;
}

function comparable(value: unknown): boolean {
  return !(Array.isArray(value) || value instanceof Uint8Array || isMapLike(value) || typeof value === 'function');
}

/** eq: arg1 == arg2 || arg1 == arg3 || … */
export function goEq(arg1: unknown, ...rest: unknown[]): boolean {
  const a = concrete(arg1);
  if (rest.length === 0) throw new Error('missing argument for comparison');
  const k1 = basicKind(a);
  for (const arg of rest) {
    const b = concrete(arg);
    const k2 = basicKind(b);
    let truth = false;
    if (k1 !== k2) {
      if (a !== undefined && b !== undefined) throw new Error(`incompatible types for comparison: ${goTypeName(a)} and ${goTypeName(b)}`);
    } else if (k1 !== 'invalid') truth = a === b;
    else {
      const kindA = goKindName(a);
      const kindB = goKindName(b);
      if (kindA !== kindB && kindA !== 'invalid' && kindB !== 'invalid') {
        throw new Error(`non-comparable types ${formatValue(a)}: ${goTypeName(a)}, ${goTypeName(b)}: ${formatValue(b)}`);
      }
      if (a === undefined || b === undefined) truth = a === b;
      else {
        if (!comparable(b)) throw new Error(`non-comparable type ${formatValue(b)}: ${goTypeName(b)}`);
        truth = a === b;
      }
    }
    if (truth) return true;
  }
  return false;
}

export function goLt(arg1: unknown, arg2: unknown): boolean {
  const a = concrete(arg1);
  const b = concrete(arg2);
  const k1 = basicKind(a);
  const k2 = basicKind(b);
  if (k1 === 'invalid' || k2 === 'invalid') throw new Error('invalid type for comparison');
  if (k1 !== k2) throw new Error(`incompatible types for comparison: ${goTypeName(a)} and ${goTypeName(b)}`);
  if (k1 === 'bool') throw new Error('invalid type for comparison');
  if (k1 === 'string') return compareGoStrings(a as string, b as string) < 0;
  return (a as number | bigint) < (b as number | bigint);
}

function goLe(a: unknown, b: unknown): boolean {
  return goLt(a, b) || goEq(a, b);
}

/** Go's indexArg: an int index within [0, cap]. */
function indexArg(index: unknown, cap: number): number {
  const value = concrete(index);
  if (value === undefined) throw new Error('cannot index slice/array with nil');
  if (typeof value !== 'bigint') throw new Error(`cannot index slice/array with type ${goTypeName(value)}`);
  if (value < 0n || value > BigInt(cap)) throw new Error(`index out of range: ${value}`);
  return Number(value);
}

export function goIndex(item: unknown, ...indexes: unknown[]): unknown {
  let current = concrete(item);
  if (current === undefined) throw new Error('index of untyped nil');
  for (const index of indexes) {
    if (current === null || current === undefined) throw new Error('index of nil pointer');
    if (typeof current === 'string') {
      const bytes = Buffer.from(current, 'utf8');
      const x = indexArg(index, bytes.length);
      if (x === bytes.length) throw new Error('reflect: string index out of range');
      current = BigInt(bytes[x]!);
    } else if (Array.isArray(current) || current instanceof Uint8Array) {
      const x = indexArg(index, current.length);
      if (x === current.length) throw new Error('reflect: slice index out of range');
      const element: unknown = current[x];
      current = current instanceof Uint8Array ? BigInt(element as number) : (element ?? null);
    } else if (isMapLike(current)) {
      const key = concrete(index);
      if (key === undefined) throw new Error('value is nil; should be of type string');
      if (typeof key !== 'string' && !(current instanceof Map)) throw new Error(`value has type ${goTypeName(key)}; should be string`);
      const { found, value } = mapGet(current, key);
      current = found ? (value ?? null) : goTypeName(current) === 'map[string]string' ? '' : null;
    } else throw new Error(`can't index item of type ${goTypeName(current)}`);
  }
  return current;
}

/** text/template's slice (Helm replaces it with sprig's, which does not slice strings). */
export function goSlice(item: unknown, ...indexes: unknown[]): unknown {
  const value = concrete(item);
  if (value === undefined) throw new Error('slice of untyped nil');
  if (indexes.length > 3) throw new Error(`too many slice indexes: ${indexes.length}`);
  let length: number;
  if (typeof value === 'string') {
    if (indexes.length === 3) throw new Error('cannot 3-index slice a string');
    length = utf8Length(value);
  } else if (Array.isArray(value)) length = value.length;
  else throw new Error(`can't slice item of type ${goTypeName(value)}`);
  const idx = [0, length];
  indexes.forEach((index, i) => {
    idx[i] = indexArg(index, length);
  });
  if (idx[0]! > idx[1]!) throw new Error(`invalid slice index: ${idx[0]} > ${idx[1]}`);
  if (indexes.length === 3 && idx[1]! > idx[2]!) throw new Error(`invalid slice index: ${idx[1]} > ${idx[2]}`);
  if (typeof value === 'string') return Buffer.from(value, 'utf8').subarray(idx[0], idx[1]).toString('utf8');
  return tagGoType(value.slice(idx[0], idx[1]), goTypeName(value));
}

export function goLen(item: unknown): bigint {
  if (item === null) throw new Error('len of nil pointer');
  if (item === undefined) throw new Error('reflect: call of reflect.Value.Type on zero Value');
  if (typeof item === 'string') return BigInt(utf8Length(item));
  if (Array.isArray(item) || item instanceof Uint8Array) return BigInt(item.length);
  if (isMapLike(item)) return BigInt(item instanceof Map ? item.size : Object.keys(item).length);
  throw new Error(`len of type ${goTypeName(item)}`);
}

/** Go's evalArgs: one string as it is, anything else as fmt.Sprint prints it. */
function argsText(args: unknown[]): string {
  if (args.length === 1 && typeof args[0] === 'string') return args[0];
  return sprint(args.map((arg) => arg ?? '<no value>'));
}

export function htmlEscape(text: string): string {
  return text.replace(/["'&<>\0]/g, (c) => ({ '"': '&#34;', "'": '&#39;', '&': '&amp;', '<': '&lt;', '>': '&gt;', '\0': '\uFFFD' })[c]!);
}

export function jsEscape(text: string): string {
  let out = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    switch (ch) {
      case '\\':
        out += '\\\\';
        continue;
      case "'":
        out += "\\'";
        continue;
      case '"':
        out += '\\"';
        continue;
      case '<':
        out += '\\u003C';
        continue;
      case '>':
        out += '\\u003E';
        continue;
      case '&':
        out += '\\u0026';
        continue;
      case '=':
        out += '\\u003D';
        continue;
      default:
        break;
    }
    if (cp < 0x20) out += `\\u00${cp.toString(16).toUpperCase().padStart(2, '0')}`;
    else if (cp < 0x80 || isPrintRune(cp)) out += ch;
    else out += `\\u${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  }
  return out;
}

/** Go's url.QueryEscape. */
export function queryEscape(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~]/.test(c)) out += c;
    else if (c === ' ') out += '+';
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const and: TemplateFunction = { params: ['reflect', 'reflect'], variadic: true, shortCircuit: 'and', call: () => undefined };
const or: TemplateFunction = { params: ['reflect', 'reflect'], variadic: true, shortCircuit: 'or', call: () => undefined };

/** text/template's builtin function map. */
export const BUILTIN_FUNCTIONS: FunctionMap = new Map<string, TemplateFunction>([
  ['and', and],
  ['or', or],
  ['not', goFunc(['reflect'], (value) => !isTrue(value))],
  [
    'call',
    goVariadic(['reflect'], 'reflect', (fn, ...args) => {
      if (fn === null || fn === undefined) throw new Error('call of nil');
      if (typeof fn !== 'function') throw new Error(`non-function of type ${goTypeName(fn)}`);
      return (fn as (...a: unknown[]) => unknown)(...args.map((arg) => arg ?? null));
    }),
  ],
  ['html', goVariadic([], 'any', (...args) => htmlEscape(argsText(args)))],
  ['js', goVariadic([], 'any', (...args) => jsEscape(argsText(args)))],
  ['urlquery', goVariadic([], 'any', (...args) => queryEscape(argsText(args)))],
  ['index', goVariadic(['reflect'], 'reflect', goIndex)],
  ['slice', goVariadic(['reflect'], 'reflect', goSlice)],
  ['len', goFunc(['reflect'], goLen)],
  ['print', goVariadic([], 'any', (...args) => sprint(args))],
  ['printf', goVariadic(['string'], 'any', (format, ...args) => sprintf(format, args))],
  ['println', goVariadic([], 'any', (...args) => sprintln(args))],
  ['eq', goVariadic(['reflect'], 'reflect', goEq)],
  ['ne', goFunc(['reflect', 'reflect'], (a, b) => !goEq(a, b))],
  ['lt', goFunc(['reflect', 'reflect'], goLt)],
  ['le', goFunc(['reflect', 'reflect'], goLe)],
  ['gt', goFunc(['reflect', 'reflect'], (a, b) => !goLe(a, b))],
  ['ge', goFunc(['reflect', 'reflect'], (a, b) => !goLt(a, b))],
]);
