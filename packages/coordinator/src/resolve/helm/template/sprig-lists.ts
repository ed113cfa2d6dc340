/**
 * Sprig's list functions (list.go). Each works on any Go slice and returns a new []interface{}
 * (the argument is never changed); the `must` forms report the same errors the plain forms raise.
 */
import { goFunc, goVariadic, type TemplateFunction } from './functions.ts';
import { toInt } from './sprig-math.ts';
import { goDeepEqual, goKindName, isEmptyValue } from './go-values.ts';

/** reflect.TypeOf(nil).Kind() panics in Go; sprig's list functions let that surface. */
const NIL_DEREFERENCE = 'runtime error: invalid memory address or nil pointer dereference';

/** The elements of a Go slice, or the error sprig gives for anything else. */
function elements(list: unknown, what: string, after = ''): unknown[] {
  if (list === null || list === undefined) throw new Error(NIL_DEREFERENCE);
  if (Array.isArray(list)) return list.map((item: unknown) => item ?? null);
  if (list instanceof Uint8Array) return [...list].map((b) => BigInt(b));
  throw new Error(`${what} ${goKindName(list)}${after}`);
}

function listFunction(name: string, what: string, body: (items: unknown[]) => unknown): Array<[string, TemplateFunction]> {
  const fn = goFunc(['any'], (list) => body(elements(list, what)));
  return [
    [name, fn],
    [`must${name[0]!.toUpperCase()}${name.slice(1)}`, fn],
  ];
}

function inList(haystack: unknown[], needle: unknown): boolean {
  return haystack.some((item) => goDeepEqual(needle, item));
}

function sliceList(list: unknown, ...indices: unknown[]): unknown {
  if (list === null || list === undefined) throw new Error(NIL_DEREFERENCE);
  if (!Array.isArray(list)) throw new Error(`list should be type of slice or array but ${goKindName(list)}`);
  if (list.length === 0) return null;
  const start = indices.length > 0 ? Number(toInt(indices[0])) : 0;
  const end = indices.length < 2 ? list.length : Number(toInt(indices[1]));
  if (start < 0 || end > list.length || start > end) throw new Error('reflect: slice index out of range');
  return list.slice(start, end).map((item: unknown) => item ?? null);
}

function chunk(size: bigint, list: unknown): unknown[][] {
  const items = elements(list, 'Cannot chunk type');
  const n = Number(size);
  const count = Math.floor((items.length - 1) / n) + 1;
  const out: unknown[][] = [];
  for (let i = 0; i < count; i++) out.push(items.slice(i * n, i * n + n));
  return out;
}

export const SPRIG_LIST_FUNCTIONS: ReadonlyArray<[string, TemplateFunction]> = [
  ['list', goVariadic([], 'any', (...items) => items)],
  ['tuple', goVariadic([], 'any', (...items) => items)],
  ...(['append', 'push'] as const).flatMap((name): Array<[string, TemplateFunction]> => {
    const fn = goFunc(['any', 'any'], (list, v) => [...elements(list, 'Cannot push on type'), v]);
    return [
      [name, fn],
      [`must${name[0]!.toUpperCase()}${name.slice(1)}`, fn],
    ];
  }),
  ['prepend', goFunc(['any', 'any'], (list, v) => [v, ...elements(list, 'Cannot prepend on type')])],
  ['mustPrepend', goFunc(['any', 'any'], (list, v) => [v, ...elements(list, 'Cannot prepend on type')])],
  ...listFunction('first', 'Cannot find first on type', (items) => (items.length === 0 ? null : items[0])),
  ...listFunction('last', 'Cannot find last on type', (items) => (items.length === 0 ? null : items[items.length - 1])),
  ...listFunction('rest', 'Cannot find rest on type', (items) => (items.length === 0 ? [] : items.slice(1))),
  ...listFunction('initial', 'Cannot find initial on type', (items) => (items.length === 0 ? [] : items.slice(0, -1))),
  ...listFunction('reverse', 'Cannot find reverse on type', (items) => [...items].reverse()),
  ...listFunction('uniq', 'Cannot find uniq on type', (items) => items.filter((item, i) => !inList(items.slice(0, i), item))),
  ...listFunction('compact', 'Cannot compact on type', (items) => items.filter((item) => !isEmptyValue(item))),
  ['without', goVariadic(['any'], 'any', (list, ...omit) => elements(list, 'Cannot find without on type').filter((item) => !inList(omit, item)))],
  ['mustWithout', goVariadic(['any'], 'any', (list, ...omit) => elements(list, 'Cannot find without on type').filter((item) => !inList(omit, item)))],
  ['has', goFunc(['any', 'any'], (needle, haystack) => haystack !== null && inList(elements(haystack, 'Cannot find has on type'), needle))],
  ['mustHas', goFunc(['any', 'any'], (needle, haystack) => haystack !== null && inList(elements(haystack, 'Cannot find has on type'), needle))],
  ['slice', goVariadic(['any'], 'any', sliceList)],
  ['mustSlice', goVariadic(['any'], 'any', sliceList)],
  [
    'concat',
    goVariadic([], 'any', (...lists) => {
      const out: unknown[] = [];
      for (const list of lists) out.push(...elements(list, 'Cannot concat type', ' as list'));
      return out;
    }),
  ],
  ['chunk', goFunc(['int', 'any'], chunk)],
  ['mustChunk', goFunc(['int', 'any'], chunk)],
];
