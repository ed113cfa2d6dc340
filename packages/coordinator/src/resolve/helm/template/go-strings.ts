/**
 * Go string operations sprig builds on, where Go and JavaScript differ: Go strings are UTF-8 bytes
 * (so `trunc`, `substr` and `len` count bytes), `strings.Title` and `TrimSpace` have their own
 * definitions of words and spaces, and sprig's `strval` formats with `%v`.
 */
import { formatValue } from './go-format.ts';
import { goTypeName, stringerOf, tagGoType } from './go-values.ts';

/** Go's unicode.IsSpace. */
export function isGoSpace(ch: string): boolean {
  return /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/.test(ch);
}

export function trimSpace(text: string): string {
  return text.replace(
    /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g,
    '',
  );
}

/** Go's strings.Trim: runes of `cutset` removed from both ends. */
export function trimCutset(text: string, cutset: string): string {
  const cut = new Set(cutset);
  const chars = [...text];
  let start = 0;
  let end = chars.length;
  while (start < end && cut.has(chars[start]!)) start++;
  while (end > start && cut.has(chars[end - 1]!)) end--;
  return chars.slice(start, end).join('');
}

/** Go's unicode.ToUpper/ToLower rune by rune (no `ß` → `SS`). */
export function mapRunes(text: string, upper: boolean): string {
  let out = '';
  for (const ch of text) {
    const mapped = upper ? ch.toUpperCase() : ch.toLowerCase();
    out += [...mapped].length === 1 ? mapped : ch;
  }
  return out;
}

function isTitleSeparator(ch: string): boolean {
  if (ch.codePointAt(0)! <= 0x7f) return !/[0-9a-zA-Z_]/.test(ch);
  if (/^[\p{L}\p{Nd}]$/u.test(ch)) return false;
  return isGoSpace(ch);
}

/** Go's strings.Title: the first letter of each word upper case, nothing else changed. */
export function title(text: string): string {
  let prev = ' ';
  let out = '';
  for (const ch of text) {
    out += isTitleSeparator(prev) ? mapRunes(ch, true) : ch;
    prev = ch;
  }
  return out;
}

/** A byte range of a string, as Go's s[start:end] (a cut rune decodes as U+FFFD). */
export function byteSlice(text: string, start: number, end?: number): string {
  if (/^[\x00-\x7f]*$/.test(text)) return text.slice(start, end);
  return Buffer.from(text, 'utf8').subarray(start, end).toString('utf8');
}

/** Go's strings.Split (all parts; an empty separator splits into runes). */
export function splitString(text: string, sep: string, n = -1): string[] {
  if (n === 0) return [];
  if (sep === '') {
    const runes = [...text];
    if (n < 0 || n >= runes.length) return runes;
    return [...runes.slice(0, n - 1), runes.slice(n - 1).join('')];
  }
  const parts = text.split(sep);
  if (n < 0 || n >= parts.length) return parts;
  return [...parts.slice(0, n - 1), parts.slice(n - 1).join(sep)];
}

/** Go's strings.Replace(src, old, new, -1); an empty `old` goes between every rune. */
export function replaceAll(src: string, old: string, replacement: string): string {
  if (old !== '') return src.split(old).join(replacement);
  return replacement + [...src].map((ch) => ch + replacement).join('');
}

/** Sprig's strval: strings as they are, bytes as text, Stringers through String(), else `%v`. */
export function strval(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  if (value instanceof Error) return value.message;
  const stringer = stringerOf(value);
  if (stringer !== undefined) return String(stringer());
  return formatValue(value ?? null);
}

/** Sprig's strslice: a list as strings (nil elements dropped), anything else as a one-string list. */
export function strslice(value: unknown): string[] {
  if (Array.isArray(value)) {
    if (goTypeName(value) === '[]string') return value as string[];
    return tagGoType(value.filter((item) => item !== null && item !== undefined).map(strval), '[]string');
  }
  if (value instanceof Uint8Array)
    return tagGoType(
      [...value].map((b) => strval(BigInt(b))),
      '[]string',
    );
  if (value === null || value === undefined) return tagGoType([], '[]string');
  return tagGoType([strval(value)], '[]string');
}
