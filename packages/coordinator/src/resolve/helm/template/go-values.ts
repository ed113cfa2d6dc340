/**
 * How Go values look in JavaScript here, and the few reflect-level questions templates ask of them.
 *
 * | Go                          | JavaScript                                              |
 * | --------------------------- | ------------------------------------------------------- |
 * | float64 (every number from values YAML/JSON) | `number`                               |
 * | int, int64, uint8 … (template literals, `len`, sprig math) | `bigint` (kept to 64 bits) |
 * | string, bool                | `string`, `boolean`                                     |
 * | nil interface value         | `null` (also `undefined` inside data)                   |
 * | "no value" (invalid reflect.Value) | `undefined`, only between executor steps         |
 * | []interface{}               | `Array` (other element types: `tagGoType(list, '[]string')`) |
 * | map[string]interface{}      | plain or null-prototype object, or a `Map`              |
 * | []byte                      | `Uint8Array`                                            |
 * | struct / pointer with methods | class instance; its methods are template methods     |
 *
 * Integers are `bigint` and floats are `number` because the two print differently (`1e+06` against
 * `1000000`) and compare as different types (`eq 1 1.0` is an error in Go). Go's many integer types
 * (int, int64, uint8) collapse into `bigint` with type name `int`: a template that passes sprig's
 * int64 result where an `int` is required renders here but fails in Go (Go is stricter, never looser).
 */

/** map[string]interface{} as templates see it. */
export type GoMap = Record<string, unknown>;

/** A struct's or named type's Go type name (`time.Time`), set on a class's prototype. */
export const GO_TYPE_NAME = Symbol.for('meshmirror.goTypeName');
/** A class's reflect kind (`struct`, `ptr`, `map`, `slice`); class instances default to `ptr`. */
export const GO_KIND = Symbol.for('meshmirror.goKind');

const typeTags = new WeakMap<object, string>();

/** Records the Go type of a list or map a function returns (`[]string` from `splitList`), for `typeOf` and `deepEqual`. */
export function tagGoType<T extends object>(value: T, goType: string): T {
  typeTags.set(value, goType);
  return value;
}

export function newGoMap(): GoMap {
  return Object.create(null) as GoMap;
}

/** A plain object: a Go map[string]interface{} (keys are own properties only). */
export function isGoMap(value: unknown): value is GoMap {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Any Go map: a plain object or a JavaScript `Map` (a named map type with methods can extend `Map`). */
export function isMapLike(value: unknown): value is GoMap | Map<unknown, unknown> {
  return isGoMap(value) || value instanceof Map;
}

export function isList(value: unknown): value is unknown[] {
  return Array.isArray(value);
}

/** A class instance that is neither a list, a map nor bytes: Go's struct or pointer to struct. */
export function isStructLike(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !isMapLike(value) && !(value instanceof Uint8Array);
}

/** The map's keys, sorted as Go's fmt and range sort them. */
export function sortedMapKeys(map: GoMap | Map<unknown, unknown>): unknown[] {
  const keys: unknown[] = map instanceof Map ? [...map.keys()] : Object.keys(map);
  return keys.sort(compareMapKeys);
}

export function mapGet(map: GoMap | Map<unknown, unknown>, key: unknown): { found: boolean; value: unknown } {
  if (map instanceof Map) return map.has(key) ? { found: true, value: map.get(key) } : { found: false, value: undefined };
  if (typeof key === 'string' && Object.hasOwn(map, key)) return { found: true, value: map[key] };
  return { found: false, value: undefined };
}

export function mapSize(map: GoMap | Map<unknown, unknown>): number {
  return map instanceof Map ? map.size : Object.keys(map).length;
}

/** Go's string order: byte order of UTF-8, which is code point order. */
export function compareGoStrings(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x < y ? -1 : 1;
    if (x > 0xffff) i++;
  }
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
}

function compareMapKeys(a: unknown, b: unknown): number {
  if (typeof a === 'string' && typeof b === 'string') return compareGoStrings(a, b);
  if ((typeof a === 'number' || typeof a === 'bigint') && (typeof b === 'number' || typeof b === 'bigint')) return a < b ? -1 : a > b ? 1 : 0;
  return compareGoStrings(String(a), String(b));
}

/** Length in bytes of the UTF-8 encoding, Go's `len` of a string. */
export function utf8Length(text: string): number {
  return /^[\x00-\x7f]*$/.test(text) ? text.length : Buffer.byteLength(text, 'utf8');
}

export function toInt64(value: bigint): bigint {
  return BigInt.asIntN(64, value);
}

function classTag(value: object, symbol: symbol): string | undefined {
  const tag: unknown = (value as Record<symbol, unknown>)[symbol];
  return typeof tag === 'string' ? tag : undefined;
}

/** The Go type (and kind) of a JavaScript primitive; undefined for objects. */
function primitiveGoType(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
      return 'string';
    case 'boolean':
      return 'bool';
    case 'number':
      return 'float64';
    case 'bigint':
      return 'int';
    case 'function':
      return 'func';
    default:
      return undefined;
  }
}

/** Go's `%T` of a value. */
export function goTypeName(value: unknown): string {
  if (value === null || value === undefined) return '<nil>';
  const primitive = primitiveGoType(value);
  if (primitive !== undefined) return primitive;
  const tagged = typeTags.get(value);
  if (tagged !== undefined) return tagged;
  if (value instanceof Uint8Array) return '[]uint8';
  if (Array.isArray(value)) return '[]interface {}';
  if (isGoMap(value)) return 'map[string]interface {}';
  const named = classTag(value, GO_TYPE_NAME);
  if (named !== undefined) return named;
  if (value instanceof Map && value.constructor === Map) return 'map[string]interface {}';
  const ctor: unknown = (value as { constructor?: unknown }).constructor;
  return typeof ctor === 'function' && ctor.name !== '' ? ctor.name : 'struct {}';
}

/** Go's reflect Kind name, as sprig's `kindOf` prints it. */
export function goKindName(value: unknown): string {
  if (value === null || value === undefined) return 'invalid';
  const primitive = primitiveGoType(value);
  if (primitive !== undefined) return primitive;
  if (Array.isArray(value) || value instanceof Uint8Array) return 'slice';
  if (isMapLike(value)) return 'map';
  return classTag(value, GO_KIND) ?? 'ptr';
}

/** Go's `template.IsTrue`: false, 0, nil and empty strings, lists and maps are false. */
export function isTrue(value: unknown): boolean {
  if (value === null || value === undefined) return false;
  switch (typeof value) {
    case 'boolean':
      return value;
    case 'string':
      return value.length > 0;
    case 'number':
      return value !== 0;
    case 'bigint':
      return value !== 0n;
    default:
      break;
  }
  if (Array.isArray(value) || value instanceof Uint8Array) return value.length > 0;
  if (isMapLike(value)) return mapSize(value) > 0;
  return true;
}

/** Sprig's `empty`: the zero value of its type (structs never are). Differs from isTrue only in name. */
export function isEmptyValue(value: unknown): boolean {
  return !isTrue(value);
}

/** Go's reflect.DeepEqual over template values: types must match (int 1 is not float64 1). */
export function goDeepEqual(a: unknown, b: unknown): boolean {
  const aNil = a === null || a === undefined;
  const bNil = b === null || b === undefined;
  if (aNil || bNil) return aNil && bNil;
  if (a === b) return true;
  if (goTypeName(a) !== goTypeName(b)) return false;
  if (typeof a !== 'object' || typeof b !== 'object') return false;
  if (a instanceof Uint8Array && b instanceof Uint8Array) return Buffer.from(a).equals(Buffer.from(b));
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => goDeepEqual(x, b[i]));
  if (isMapLike(a) && isMapLike(b)) {
    const keys = sortedMapKeys(a);
    if (keys.length !== mapSize(b)) return false;
    return keys.every((key) => {
      const other = mapGet(b, key);
      return other.found && goDeepEqual(mapGet(a, key).value, other.value);
    });
  }
  const aKeys = Object.keys(a);
  const bKeys = Object.keys(b);
  return aKeys.length === bKeys.length && aKeys.every((key) => goDeepEqual((a as GoMap)[key], (b as GoMap)[key]));
}

function isExported(name: string): boolean {
  return /^\p{Lu}/u.test(name);
}

const BUILTIN_PROTOTYPES = new Set<unknown>([Object.prototype, Array.prototype, Map.prototype, Function.prototype, Uint8Array.prototype, null]);

/**
 * The method a template may call as `.Name` on `receiver`, Go's MethodByName: a function-valued own
 * property, or a method of the object's class. Methods of JavaScript's own prototypes (`join`,
 * `get`, `toString`) are never template methods, as Go's builtin types have none.
 */
export function findMethod(receiver: unknown, name: string): ((...args: unknown[]) => unknown) | undefined {
  if (typeof receiver !== 'object' || receiver === null || name === 'constructor') return undefined;
  if (Object.hasOwn(receiver, name)) {
    const own: unknown = (receiver as GoMap)[name];
    return typeof own === 'function' ? (own as (...args: unknown[]) => unknown) : undefined;
  }
  // Go templates reach only exported (capitalized) methods and fields of a struct.
  if (isGoMap(receiver) || !isExported(name)) return undefined;
  for (let proto: unknown = Object.getPrototypeOf(receiver); !BUILTIN_PROTOTYPES.has(proto); proto = Object.getPrototypeOf(proto)) {
    const descriptor = Object.getOwnPropertyDescriptor(proto, name);
    if (descriptor !== undefined) return typeof descriptor.value === 'function' ? (descriptor.value as (...args: unknown[]) => unknown) : undefined;
  }
  return undefined;
}

/** A struct field: an own property or a getter of the object's class (not a method). */
export function findStructField(receiver: object, name: string): { found: boolean; value: unknown } {
  if (!isExported(name)) return { found: false, value: undefined };
  if (Object.hasOwn(receiver, name)) return { found: true, value: (receiver as GoMap)[name] };
  for (let proto: unknown = Object.getPrototypeOf(receiver); !BUILTIN_PROTOTYPES.has(proto); proto = Object.getPrototypeOf(proto)) {
    const descriptor = Object.getOwnPropertyDescriptor(proto, name);
    if (descriptor?.get !== undefined) return { found: true, value: (receiver as GoMap)[name] };
    if (descriptor !== undefined) return { found: false, value: undefined };
  }
  return { found: false, value: undefined };
}

/** The `String()` method fmt calls on a Stringer, if the value has one. */
export function stringerOf(value: unknown): (() => unknown) | undefined {
  const method = findMethod(value, 'String');
  return method === undefined ? undefined : () => method.call(value);
}
