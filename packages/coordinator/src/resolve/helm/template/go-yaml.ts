/**
 * YAML the way Helm's `toYaml` writes it and `fromYaml` reads it. Helm uses sigs.k8s.io/yaml: a
 * value is marshalled to JSON, read back by go-yaml v2 (integers stay integers, other numbers become
 * floats) and written by go-yaml v2's emitter. This file reproduces that emitter: map keys in
 * go-yaml's natural order (`a2` before `a10`), sequences not indented under their key, two-space
 * indentation, plain scalars where YAML 1.1 would read them back as the same string (so `"yes"`,
 * `"1.0"`, `"2024-01-01"` and `"1:20"` are quoted), single quotes where a plain scalar cannot
 * be written, double quotes for special characters, `|-`-style literals for multi-line strings, and
 * long plain and quoted strings folded after column 80 (YAML reads them back unchanged).
 *
 * `toYamlPretty` (go-yaml v3 with indent 2) is approximated by the same emitter with indented
 * sequences and no folding.
 */
import { parseAllDocuments } from 'yaml';
import { jsonNumber, marshalJson } from './go-json.ts';
import { formatGoFloat, parseGoFloat, parseGoInt, parseGoUint } from './go-strconv.ts';
import { isMapLike, mapGet, sortedMapKeys } from './go-values.ts';

const BEST_WIDTH = 80;

/** A value as go-yaml v2 holds it after reading JSON: numbers are ints (as text) or floats. */
type YamlValue = null | boolean | string | { int: string } | { float: number } | YamlValue[] | Map<string, YamlValue>;

/** A JSON number read back by go-yaml: an int when its JSON text is an integer that fits 64 bits. */
function fromJsonNumber(value: number): YamlValue {
  const text = jsonNumber(value);
  if (/^-?\d+$/.test(text) && (parseGoInt(text) !== undefined || parseGoUint(text) !== undefined)) return { int: text };
  return { float: Number(text) };
}

/**
 * What JSONToYAML's go-yaml pass holds for a Go value after json.Marshal: the value's JSON shape,
 * built directly so that int64 values keep all their digits.
 */
function toJsonYamlValue(value: unknown, depth = 0): YamlValue {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case 'boolean':
    case 'string':
      return value;
    case 'number':
      return fromJsonNumber(value);
    case 'bigint':
      return { int: value.toString() };
    default:
      break;
  }
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (Array.isArray(value)) return value.map((item) => toJsonYamlValue(item, depth + 1));
  if (isMapLike(value)) return new Map(sortedMapKeys(value).map((key) => [String(key), toJsonYamlValue(mapGet(value, key).value, depth + 1)]));
  const toJson = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJson === 'function') return toJsonYamlValue((toJson as () => unknown).call(value), depth + 1);
  // A struct: marshalJson has already checked what it can encode; its JSON text is the shape.
  return fromParsedJson(JSON.parse(marshalJson(value)) as unknown);
}

function fromParsedJson(value: unknown): YamlValue {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return value;
  if (typeof value === 'number') return fromJsonNumber(value);
  if (Array.isArray(value)) return value.map(fromParsedJson);
  return new Map(Object.entries(value as Record<string, unknown>).map(([key, item]) => [key, fromParsedJson(item)]));
}

const LETTER = /^\p{L}$/u;
const DIGIT = /^\p{Nd}$/u;

/** go-yaml's keyList.Less for string keys: letters after other characters, digit runs by value. */
function keyLess(a: string, b: string): boolean {
  const ar = [...a];
  const br = [...b];
  for (let i = 0; i < ar.length && i < br.length; i++) {
    if (ar[i] === br[i]) continue;
    const al = LETTER.test(ar[i]!);
    const bl = LETTER.test(br[i]!);
    if (al && bl) return ar[i]!.codePointAt(0)! < br[i]!.codePointAt(0)!;
    if (al || bl) return bl;
    let an = 0;
    let bn = 0;
    if (ar[i] === '0' || br[i] === '0') {
      for (let j = i - 1; j >= 0 && DIGIT.test(ar[j]!); j--) {
        if (ar[j] !== '0') {
          an = 1;
          bn = 1;
          break;
        }
      }
    }
    let ai = i;
    let bi = i;
    for (; ai < ar.length && DIGIT.test(ar[ai]!); ai++) an = an * 10 + Number(ar[ai]);
    for (; bi < br.length && DIGIT.test(br[bi]!); bi++) bn = bn * 10 + Number(br[bi]);
    if (an !== bn) return an < bn;
    if (ai !== bi) return ai < bi;
    return ar[i]!.codePointAt(0)! < br[i]!.codePointAt(0)!;
  }
  return ar.length < br.length;
}

function sortKeys(keys: string[]): string[] {
  return keys.sort((a, b) => (keyLess(a, b) ? -1 : keyLess(b, a) ? 1 : 0));
}

const RESOLVE_MAP = new Set([
  'y',
  'Y',
  'yes',
  'Yes',
  'YES',
  'true',
  'True',
  'TRUE',
  'on',
  'On',
  'ON',
  'n',
  'N',
  'no',
  'No',
  'NO',
  'false',
  'False',
  'FALSE',
  'off',
  'Off',
  'OFF',
  '',
  '~',
  'null',
  'Null',
  'NULL',
  '.nan',
  '.NaN',
  '.NAN',
  '.inf',
  '.Inf',
  '.INF',
  '+.inf',
  '+.Inf',
  '+.INF',
  '-.inf',
  '-.Inf',
  '-.INF',
]);
const YAML_STYLE_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;
const BASE60_FLOAT = /^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$/;
const TIMESTAMPS = [
  /^\d{4}-\d{1,2}-\d{1,2}$/,
  /^\d{4}-\d{1,2}-\d{1,2}[Tt]\d{1,2}:\d{1,2}:\d{1,2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/,
  /^\d{4}-\d{1,2}-\d{1,2} \d{1,2}:\d{1,2}:\d{1,2}(\.\d+)?$/,
];

/** Whether go-yaml v2 would read the plain scalar back as something other than this string. */
function resolvesToNonString(s: string): boolean {
  if (RESOLVE_MAP.has(s)) return true;
  const hint = s[0]!;
  if (hint === '.') return parseGoFloat(s) !== undefined;
  if (!/[-+0-9]/.test(hint)) return false;
  if (TIMESTAMPS.some((re) => re.test(s))) return true;
  const plain = s.replaceAll('_', '');
  if (parseGoInt(plain) !== undefined || parseGoUint(plain) !== undefined) return true;
  if (YAML_STYLE_FLOAT.test(plain) && parseGoFloat(plain) !== undefined) return true;
  if (/^-?0b[01]+$/.test(plain)) return true;
  return false;
}

function isPrintable(cp: number): boolean {
  return cp === 0x0a || (cp >= 0x20 && cp <= 0x7e) || (cp >= 0xa0 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd && cp !== 0xfeff);
}

function isBreak(ch: string | undefined): boolean {
  return ch === '\n' || ch === '\r' || ch === '\u0085' || ch === '\u2028' || ch === '\u2029';
}

function isBlank(ch: string | undefined): boolean {
  return ch === ' ' || ch === '\t';
}

interface ScalarAnalysis {
  multiline: boolean;
  blockPlainAllowed: boolean;
  singleQuotedAllowed: boolean;
  blockAllowed: boolean;
}

/** libyaml's yaml_emitter_analyze_scalar, for block context. */
function analyzeScalar(value: string): ScalarAnalysis {
  const chars = [...value];
  if (chars.length === 0) return { multiline: false, blockPlainAllowed: true, singleQuotedAllowed: true, blockAllowed: false };
  let blockIndicators = value.startsWith('---') || value.startsWith('...');
  let lineBreaks = false;
  let specialCharacters = false;
  let leadingSpace = false;
  let leadingBreak = false;
  let trailingSpace = false;
  let trailingBreak = false;
  let breakSpace = false;
  let spaceBreak = false;
  let precededByWhitespace = true;
  let previousSpace = false;
  let previousBreak = false;
  chars.forEach((ch, i) => {
    const followedByWhitespace = i + 1 >= chars.length || isBlank(chars[i + 1]);
    if (i === 0) {
      if ('#,[]{}&*!|>\'"%@`'.includes(ch)) blockIndicators = true;
      else if ((ch === '?' || ch === ':' || ch === '-') && followedByWhitespace) blockIndicators = true;
    } else if (ch === ':' && followedByWhitespace) blockIndicators = true;
    else if (ch === '#' && precededByWhitespace) blockIndicators = true;
    if (!isPrintable(ch.codePointAt(0)!)) specialCharacters = true;
    if (ch === ' ') {
      if (i === 0) leadingSpace = true;
      if (i === chars.length - 1) trailingSpace = true;
      if (previousBreak) breakSpace = true;
      previousSpace = true;
      previousBreak = false;
    } else if (isBreak(ch)) {
      lineBreaks = true;
      if (i === 0) leadingBreak = true;
      if (i === chars.length - 1) trailingBreak = true;
      if (previousSpace) spaceBreak = true;
      previousSpace = false;
      previousBreak = true;
    } else {
      previousSpace = false;
      previousBreak = false;
    }
    precededByWhitespace = isBlank(ch) || isBreak(ch);
  });
  let blockPlainAllowed = true;
  let singleQuotedAllowed = true;
  let blockAllowed = true;
  if (leadingSpace || leadingBreak || trailingSpace || trailingBreak) blockPlainAllowed = false;
  if (trailingSpace) blockAllowed = false;
  if (breakSpace) {
    blockPlainAllowed = false;
    singleQuotedAllowed = false;
  }
  if (spaceBreak || specialCharacters) {
    blockPlainAllowed = false;
    singleQuotedAllowed = false;
    blockAllowed = false;
  }
  if (lineBreaks) blockPlainAllowed = false;
  if (blockIndicators) blockPlainAllowed = false;
  return { multiline: lineBreaks, blockPlainAllowed, singleQuotedAllowed, blockAllowed };
}

type Style = 'plain' | 'single' | 'double' | 'literal';

function stringStyle(s: string, simpleKey: boolean): Style {
  const canUsePlain = !resolvesToNonString(s) && !BASE60_FLOAT.test(s);
  let style: Style = s.includes('\n') ? 'literal' : canUsePlain ? 'plain' : 'double';
  const analysis = analyzeScalar(s);
  if (simpleKey && analysis.multiline) style = 'double';
  if (style === 'plain' && !analysis.blockPlainAllowed) style = 'single';
  if (style === 'single' && !analysis.singleQuotedAllowed) style = 'double';
  if (style === 'literal' && (!analysis.blockAllowed || simpleKey)) style = 'double';
  return style;
}

const DOUBLE_ESCAPES: Record<number, string> = {
  0: '0',
  7: 'a',
  8: 'b',
  9: 't',
  10: 'n',
  11: 'v',
  12: 'f',
  13: 'r',
  0x1b: 'e',
  0x22: '"',
  0x5c: '\\',
  0x85: 'N',
  0xa0: '_',
  0x2028: 'L',
  0x2029: 'P',
};

/** A go-yaml v2 emitter's output state (libyaml's column, whitespace and indention flags). */
class Emitter {
  out = '';
  column = 0;
  whitespace = true;
  indention = true;
  readonly #fold: boolean;
  readonly #indentSequences: boolean;

  constructor(fold: boolean, indentSequences: boolean) {
    this.#fold = fold;
    this.#indentSequences = indentSequences;
  }

  put(text: string): void {
    this.out += text;
    this.column += [...text].length;
  }

  putBreak(): void {
    this.out += '\n';
    this.column = 0;
  }

  writeIndent(indent: number): void {
    const target = Math.max(indent, 0);
    if (!this.indention || this.column > target || (this.column === target && !this.whitespace)) this.putBreak();
    while (this.column < target) this.put(' ');
    this.whitespace = true;
    this.indention = true;
  }

  writeIndicator(text: string, needWhitespace: boolean, isWhitespace: boolean, isIndention: boolean): void {
    if (needWhitespace && !this.whitespace) this.put(' ');
    this.put(text);
    this.whitespace = isWhitespace;
    this.indention = this.indention && isIndention;
  }

  emitNode(value: YamlValue, indent: number, mappingContext: boolean): void {
    if (value instanceof Map) {
      if (value.size === 0) {
        this.writeIndicator('{', true, true, false);
        this.writeIndicator('}', false, false, false);
        return;
      }
      const inner = indent < 0 ? 0 : indent + 2;
      for (const key of sortKeys([...value.keys()])) {
        this.writeIndent(inner);
        this.emitScalar(key, inner, true);
        this.writeIndicator(':', false, false, false);
        this.emitNode(value.get(key)!, inner, true);
      }
      return;
    }
    if (Array.isArray(value)) {
      if (value.length === 0) {
        this.writeIndicator('[', true, true, false);
        this.writeIndicator(']', false, false, false);
        return;
      }
      const indentless = mappingContext && !this.indention && !this.#indentSequences;
      const inner = indent < 0 ? 0 : indentless ? indent : indent + 2;
      for (const item of value) {
        this.writeIndent(inner);
        this.writeIndicator('-', true, false, true);
        this.emitNode(item, inner, false);
      }
      return;
    }
    this.emitScalar(value, indent, false);
  }

  emitScalar(value: Exclude<YamlValue, YamlValue[] | Map<string, YamlValue>>, indent: number, simpleKey: boolean): void {
    // A scalar's continuation lines are indented one level deeper than its node.
    const scalarIndent = indent < 0 ? 2 : indent + 2;
    if (value === null) return this.writePlain('null', scalarIndent, false);
    if (typeof value === 'boolean') return this.writePlain(String(value), scalarIndent, false);
    if (typeof value === 'object' && 'int' in value) return this.writePlain(value.int, scalarIndent, false);
    if (typeof value === 'object') {
      const f = value.float;
      const text = Number.isNaN(f) ? '.nan' : f === Infinity ? '.inf' : f === -Infinity ? '-.inf' : formatGoFloat(f);
      return this.writePlain(text, scalarIndent, false);
    }
    const allowBreaks = this.#fold && !simpleKey;
    switch (stringStyle(value, simpleKey)) {
      case 'plain':
        return this.writePlain(value, scalarIndent, allowBreaks);
      case 'single':
        return this.writeSingle(value, scalarIndent, allowBreaks);
      case 'double':
        return this.writeDouble(value, scalarIndent, allowBreaks);
      case 'literal':
        return this.writeLiteral(value, scalarIndent);
    }
  }

  writePlain(value: string, indent: number, allowBreaks: boolean): void {
    if (!this.whitespace) this.put(' ');
    const chars = [...value];
    let spaces = false;
    chars.forEach((ch, i) => {
      if (ch === ' ') {
        if (allowBreaks && !spaces && this.column > BEST_WIDTH && chars[i + 1] !== ' ') this.writeIndent(indent);
        else this.put(ch);
        spaces = true;
      } else {
        this.put(ch);
        this.indention = false;
        spaces = false;
      }
    });
    this.whitespace = false;
    this.indention = false;
  }

  writeSingle(value: string, indent: number, allowBreaks: boolean): void {
    this.writeIndicator("'", true, false, false);
    const chars = [...value];
    let spaces = false;
    let breaks = false;
    chars.forEach((ch, i) => {
      if (ch === ' ') {
        if (allowBreaks && !spaces && this.column > BEST_WIDTH && i > 0 && i < chars.length - 1 && chars[i + 1] !== ' ') this.writeIndent(indent);
        else this.put(ch);
        spaces = true;
      } else if (isBreak(ch)) {
        if (!breaks && ch === '\n') this.putBreak();
        if (ch === '\n') this.putBreak();
        else {
          this.put(ch);
          this.column = 0;
        }
        this.indention = true;
        breaks = true;
      } else {
        if (breaks) this.writeIndent(indent);
        this.put(ch === "'" ? "''" : ch);
        this.indention = false;
        spaces = false;
        breaks = false;
      }
    });
    this.writeIndicator("'", false, false, false);
    this.whitespace = false;
    this.indention = false;
  }

  writeDouble(value: string, indent: number, allowBreaks: boolean): void {
    this.writeIndicator('"', true, false, false);
    const chars = [...value];
    let spaces = false;
    chars.forEach((ch, i) => {
      const cp = ch.codePointAt(0)!;
      if (!isPrintable(cp) || cp === 0xfeff || isBreak(ch) || ch === '"' || ch === '\\') {
        const simple = DOUBLE_ESCAPES[cp];
        if (simple !== undefined) this.put(`\\${simple}`);
        else if (cp <= 0xff) this.put(`\\x${cp.toString(16).toUpperCase().padStart(2, '0')}`);
        else if (cp <= 0xffff) this.put(`\\u${cp.toString(16).toUpperCase().padStart(4, '0')}`);
        else this.put(`\\U${cp.toString(16).toUpperCase().padStart(8, '0')}`);
        spaces = false;
      } else if (ch === ' ') {
        if (allowBreaks && !spaces && this.column > BEST_WIDTH && i > 0 && i < chars.length - 1) {
          this.writeIndent(indent);
          if (chars[i + 1] === ' ') this.put('\\');
        } else this.put(ch);
        spaces = true;
      } else {
        this.put(ch);
        spaces = false;
      }
    });
    this.writeIndicator('"', false, false, false);
    this.whitespace = false;
    this.indention = false;
  }

  writeLiteral(value: string, indent: number): void {
    this.writeIndicator('|', true, false, false);
    if (value.startsWith(' ') || isBreak(value[0])) this.writeIndicator(String(2), false, false, false);
    const chars = [...value];
    const last = chars[chars.length - 1];
    let chomp = '';
    if (!isBreak(last)) chomp = '-';
    else if (chars.length === 1 || isBreak(chars[chars.length - 2])) chomp = '+';
    if (chomp !== '') this.writeIndicator(chomp, false, false, false);
    this.putBreak();
    this.indention = true;
    this.whitespace = true;
    let breaks = true;
    for (const ch of chars) {
      if (isBreak(ch)) {
        if (ch === '\n') this.putBreak();
        else {
          this.put(ch);
          this.column = 0;
        }
        this.indention = true;
        breaks = true;
      } else {
        if (breaks) this.writeIndent(indent);
        this.put(ch);
        this.indention = false;
        breaks = false;
      }
    }
  }
}

function emitDocument(value: YamlValue, fold: boolean, indentSequences: boolean): string {
  const emitter = new Emitter(fold, indentSequences);
  emitter.emitNode(value, -1, false);
  // Document end: finish the last line.
  emitter.writeIndent(-1);
  return emitter.out;
}

/** sigs.k8s.io/yaml's Marshal (with its trailing newline); throws JsonMarshalError like Go. */
export function marshalYaml(value: unknown): string {
  // Marshalling first fails where Go's json.Marshal fails (NaN, functions).
  marshalJson(value);
  return emitDocument(toJsonYamlValue(value), true, false);
}

/** An approximation of go-yaml v3's encoder with indent 2, for `toYamlPretty`. */
export function marshalYamlPretty(value: unknown): string {
  const toYamlValue = (v: unknown): YamlValue => {
    if (v === null || v === undefined) return null;
    if (typeof v === 'bigint') return { int: v.toString() };
    if (typeof v === 'number') return Number.isInteger(v) && Math.abs(v) < 2 ** 63 ? { int: String(v) } : { float: v };
    if (typeof v === 'boolean' || typeof v === 'string') return v;
    if (Array.isArray(v)) return v.map(toYamlValue);
    if (isMapLike(v)) return new Map(sortedMapKeys(v).map((key) => [String(key), toYamlValue(mapGet(v, key).value)]));
    return toJsonYamlValue(v);
  };
  return emitDocument(toYamlValue(value), false, true);
}

/**
 * sigs.k8s.io/yaml's Unmarshal into interface{}: the first document, read as YAML 1.1 the way
 * go-yaml v2 reads it (`yes` is true, `0755` is octal, timestamps and `1:20` stay strings), then
 * converted as JSON (numbers become float64, keys strings). Throws with a Go-shaped message.
 */
export function unmarshalYaml(text: string): unknown {
  const docs = parseAllDocuments(text, {
    version: '1.1',
    schema: 'yaml-1.1',
    merge: true,
    uniqueKeys: false,
    // go-yaml v2 leaves timestamps and sexagesimal numbers (`1:20`) as strings.
    customTags: (tags) =>
      tags.filter((tag) =>
        typeof tag === 'string' ? !['timestamp', 'intTime', 'floatTime'].includes(tag) : tag.tag !== 'tag:yaml.org,2002:timestamp' && tag.format !== 'TIME',
      ),
  });
  const doc = Array.isArray(docs) ? docs[0] : undefined;
  if (doc === undefined) return null;
  const error = doc.errors[0];
  if (error !== undefined) {
    const line = error.linePos?.[0].line;
    throw new Error(`error converting YAML to JSON: yaml: ${line === undefined ? '' : `line ${line}: `}${error.message.split('\n')[0]}`);
  }
  return toJsonShape(doc.toJS({ maxAliasCount: -1 }));
}

/** What YAMLToJSON makes of a YAML value: string keys, float64 numbers, no other types. */
function toJsonShape(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string') return value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  if (Array.isArray(value)) return value.map(toJsonShape);
  if (value instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of value) out[typeof key === 'number' ? formatGoFloat(key) : String(key)] = toJsonShape(item);
    return out;
  }
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) out[key] = toJsonShape(item);
  return out;
}
