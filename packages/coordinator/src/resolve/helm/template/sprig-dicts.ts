/**
 * Sprig's dictionary functions (dict.go). As in Go, `set`, `unset`, `merge` and `mergeOverwrite`
 * change their first argument and return it; `merge` follows mergo's rules (a key is filled when
 * missing or empty in the destination; maps merge recursively). `keys` and `values` come out in
 * sorted key order, where Go's are in random map order.
 */
import { goFunc, goVariadic, type TemplateFunction } from './functions.ts';
import { strval } from './go-strings.ts';
import { goTypeName, isEmptyValue, isGoMap, newGoMap, sortedMapKeys, tagGoType, type GoMap } from './go-values.ts';

function has(map: GoMap | null, key: string): boolean {
  return map !== null && Object.hasOwn(map, key);
}

/** mergo's deepMerge of two map[string]interface{} (the only maps sprig passes it). */
function deepMerge(dst: GoMap, src: GoMap, overwrite: boolean): void {
  for (const key of Object.keys(src)) {
    const s = src[key] ?? null;
    const present = Object.hasOwn(dst, key);
    const d = present ? (dst[key] ?? null) : undefined;
    if (s === null) {
      if (overwrite) dst[key] = null;
      continue;
    }
    if (isGoMap(s) && isGoMap(d)) {
      deepMerge(d, s, overwrite);
      if (!isEmptyValue(d)) continue;
    } else if (Array.isArray(s) && present && !isEmptyValue(d) && !overwrite) continue;
    if (overwrite || !present || isEmptyValue(d)) dst[key] = s;
  }
}

function merge(dst: GoMap | null, sources: Array<GoMap | null>, overwrite: boolean): GoMap {
  // mergo makes a nil destination map before merging into it.
  const target = dst ?? newGoMap();
  for (const src of sources) if (src !== null) deepMerge(target, src, overwrite);
  return target;
}

/** copystructure.Copy over template values: maps and lists copied deeply, the rest shared. */
export function deepCopy(value: unknown): unknown {
  if (Array.isArray(value)) return tagGoType(value.map(deepCopy), goTypeName(value));
  if (value instanceof Uint8Array) return new Uint8Array(value);
  if (isGoMap(value)) {
    const out = newGoMap();
    for (const key of Object.keys(value)) out[key] = deepCopy(value[key]);
    return tagGoType(out, goTypeName(value));
  }
  return value;
}

function dig(...args: unknown[]): unknown {
  if (args.length < 3) throw new Error('dig needs at least three arguments');
  let dict = args[args.length - 1];
  const fallback = args[args.length - 2];
  const keys = args.slice(0, -2).map((key) => {
    if (typeof key !== 'string') throw new Error(`interface conversion: interface {} is ${goTypeName(key)}, not string`);
    return key;
  });
  for (const [i, key] of keys.entries()) {
    if (!isGoMap(dict) || goTypeName(dict) !== 'map[string]interface {}') {
      throw new Error(`interface conversion: interface {} is ${goTypeName(dict)}, not map[string]interface {}`);
    }
    if (!Object.hasOwn(dict, key)) return fallback;
    if (i === keys.length - 1) return dict[key] ?? null;
    dict = dict[key];
  }
  return fallback;
}

export const SPRIG_DICT_FUNCTIONS: ReadonlyArray<[string, TemplateFunction]> = [
  [
    'dict',
    goVariadic([], 'any', (...pairs) => {
      const out = newGoMap();
      for (let i = 0; i < pairs.length; i += 2) out[strval(pairs[i])] = i + 1 < pairs.length ? pairs[i + 1] : '';
      return out;
    }),
  ],
  ['get', goFunc(['map', 'string'], (d, key) => (has(d, key) ? (d![key] ?? null) : ''))],
  [
    'set',
    goFunc(['map', 'string', 'any'], (d, key, value) => {
      if (d === null) throw new Error('assignment to entry in nil map');
      d[key] = value;
      return d;
    }),
  ],
  [
    'unset',
    goFunc(['map', 'string'], (d, key) => {
      if (d !== null) delete d[key];
      return d;
    }),
  ],
  ['hasKey', goFunc(['map', 'string'], has)],
  ['pluck', goVariadic(['string'], 'map', (key, ...dicts) => dicts.filter((d) => has(d, key)).map((d) => d![key] ?? null))],
  [
    'keys',
    goVariadic([], 'map', (...dicts) =>
      tagGoType(
        dicts.flatMap((d) => (d === null ? [] : (sortedMapKeys(d) as string[]))),
        '[]string',
      ),
    ),
  ],
  [
    'pick',
    goVariadic(['map'], 'string', (d, ...keys) => {
      const out = newGoMap();
      for (const key of keys) if (has(d, key)) out[key] = d![key];
      return out;
    }),
  ],
  [
    'omit',
    goVariadic(['map'], 'string', (d, ...keys) => {
      const out = newGoMap();
      if (d !== null) for (const key of Object.keys(d)) if (!keys.includes(key)) out[key] = d[key];
      return out;
    }),
  ],
  [
    'merge',
    goVariadic(['map'], 'map', (dst, ...sources) => {
      return merge(dst, sources, false);
    }),
  ],
  ['mustMerge', goVariadic(['map'], 'map', (dst, ...sources) => merge(dst, sources, false))],
  [
    'mergeOverwrite',
    goVariadic(['map'], 'map', (dst, ...sources) => {
      return merge(dst, sources, true);
    }),
  ],
  ['mustMergeOverwrite', goVariadic(['map'], 'map', (dst, ...sources) => merge(dst, sources, true))],
  ['values', goFunc(['map'], (d) => (d === null ? [] : (sortedMapKeys(d) as string[]).map((key) => d[key] ?? null)))],
  ['deepCopy', goFunc(['any'], deepCopy)],
  ['mustDeepCopy', goFunc(['any'], deepCopy)],
  ['dig', goVariadic([], 'any', dig)],
];
