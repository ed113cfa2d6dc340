/**
 * Go's encoding/json over template values, for `toJson` and friends and for `toYaml` (which
 * marshals to JSON first, as sigs.k8s.io/yaml does): map keys sorted, `<`, `>`, `&` escaped as
 * `\u003c` unless HTML escaping is off, `[]byte` as base64, NaN and infinities rejected.
 * Decoding (`fromJson`) gives float64 numbers, as Go decodes into interface{}; its error texts
 * follow Go's shape but are not always word for word.
 */
import { findStructField, goTypeName, isMapLike, mapGet, sortedMapKeys } from './go-values.ts';

export class JsonMarshalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JsonMarshalError';
  }
}

export interface JsonOptions {
  /** Go's default; `toRawJson` turns it off. */
  escapeHtml?: boolean;
  /** MarshalIndent's indent (`toPrettyJson` uses two spaces). */
  indent?: string;
}

/** A float64 as encoding/json writes it: like JavaScript, exponents below 1e-6 and from 1e21. */
export function jsonNumber(value: number): string {
  if (!Number.isFinite(value)) throw new JsonMarshalError(`json: unsupported value: ${Number.isNaN(value) ? 'NaN' : value > 0 ? '+Inf' : '-Inf'}`);
  return Object.is(value, -0) ? '-0' : String(value);
}

export function jsonString(text: string, escapeHtml = true): string {
  let out = '"';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    switch (ch) {
      case '"':
        out += '\\"';
        continue;
      case '\\':
        out += '\\\\';
        continue;
      case '\b':
        out += '\\b';
        continue;
      case '\f':
        out += '\\f';
        continue;
      case '\n':
        out += '\\n';
        continue;
      case '\r':
        out += '\\r';
        continue;
      case '\t':
        out += '\\t';
        continue;
      default:
        break;
    }
    if (cp < 0x20 || (escapeHtml && (ch === '<' || ch === '>' || ch === '&'))) out += `\\u00${cp.toString(16).padStart(2, '0')}`;
    else if (cp === 0x2028 || cp === 0x2029) out += `\\u${cp.toString(16)}`;
    else if (cp >= 0xd800 && cp <= 0xdfff) out += '\\ufffd';
    else out += ch;
  }
  return `${out}"`;
}

function hasToJson(value: object): value is { toJSON(): unknown } {
  return typeof (value as { toJSON?: unknown }).toJSON === 'function';
}

/** Go's json.Marshal (or MarshalIndent); throws JsonMarshalError for what Go cannot encode. */
export function marshalJson(value: unknown, options: JsonOptions = {}): string {
  const escapeHtml = options.escapeHtml ?? true;
  const indent = options.indent;
  const encode = (v: unknown, depth: number): string => {
    if (v === null || v === undefined) return 'null';
    switch (typeof v) {
      case 'boolean':
        return v ? 'true' : 'false';
      case 'number':
        return jsonNumber(v);
      case 'bigint':
        return v.toString();
      case 'string':
        return jsonString(v, escapeHtml);
      case 'function':
        throw new JsonMarshalError('json: unsupported type: func()');
      default:
        break;
    }
    if (depth > 1000) throw new JsonMarshalError(`json: unsupported value: encountered a cycle via ${goTypeName(v)}`);
    if (v instanceof Uint8Array) return jsonString(Buffer.from(v).toString('base64'));
    const open = (items: string[], left: string, right: string): string => {
      if (items.length === 0) return left + right;
      if (indent === undefined) return left + items.join(',') + right;
      const pad = `\n${indent.repeat(depth + 1)}`;
      return `${left}${pad}${items.join(`,${pad}`)}\n${indent.repeat(depth)}${right}`;
    };
    const colon = indent === undefined ? ':' : ': ';
    if (Array.isArray(v))
      return open(
        v.map((item) => encode(item, depth + 1)),
        '[',
        ']',
      );
    if (isMapLike(v)) {
      const keys = sortedMapKeys(v).map((key) => (typeof key === 'string' ? key : String(key)));
      return open(
        keys.map((key) => jsonString(key, escapeHtml) + colon + encode(mapGet(v, key).value, depth + 1)),
        '{',
        '}',
      );
    }
    if (hasToJson(v)) return encode(v.toJSON(), depth);
    // A struct: its exported fields, in declaration order.
    const fields = Object.keys(v).filter((name) => findStructField(v, name).found);
    return open(
      fields.map((name) => jsonString(name, escapeHtml) + colon + encode((v as Record<string, unknown>)[name], depth + 1)),
      '{',
      '}',
    );
  };
  return encode(value, 0);
}

/** Go's json.Unmarshal into interface{}: objects become maps, numbers float64. */
export function unmarshalJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new Error(goJsonSyntaxMessage(text, err));
  }
}

function goJsonSyntaxMessage(text: string, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (text.trim() === '' || /end of (JSON )?input/i.test(message)) return 'unexpected end of JSON input';
  const at = /position (\d+)/.exec(message);
  const position = at === null ? text.search(/\S/) : Number(at[1]);
  const ch = text[position] ?? '';
  return `invalid character '${ch}' looking for beginning of value`;
}

/** What Go says when JSON of the wrong shape is decoded into `target` (a map or a list). */
export function jsonKindName(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (value !== null && typeof value === 'object') return 'object';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'number') return 'number';
  if (typeof value === 'boolean') return 'bool';
  return 'null';
}
