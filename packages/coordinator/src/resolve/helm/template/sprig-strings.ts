/**
 * Sprig's string functions (strings.go, and the goutils/xstrings helpers it calls). Sprig puts the
 * subject last so pipelines read naturally: `"foo" | trimSuffix "o"`, `$s | indent 4`.
 */
import { randomInt } from 'node:crypto';
import { goFunc, goVariadic, type TemplateFunction } from './functions.ts';
import { sprintf } from './go-format.ts';
import { byteSlice, isGoSpace, mapRunes, replaceAll, splitString, strslice, strval, title, trimCutset, trimSpace } from './go-strings.ts';
import { compareGoStrings, newGoMap, tagGoType, utf8Length } from './go-values.ts';

/** Go panics on a bad slice; sprig lets that surface as the function's error. */
function sliceBounds(text: string, start: number, end: number): string {
  const length = utf8Length(text);
  if (start < 0 || end > length || start > end) throw new Error(`runtime error: slice bounds out of range [${start}:${end}] with length ${length}`);
  return byteSlice(text, start, end);
}

function trunc(c: bigint, s: string): string {
  const length = utf8Length(s);
  const n = Number(c);
  if (n < 0 && length + n > 0) return byteSlice(s, length + n);
  if (n >= 0 && length > n) return byteSlice(s, 0, n);
  return s;
}

function substr(startBig: bigint, endBig: bigint, s: string): string {
  const start = Number(startBig);
  const end = Number(endBig);
  const length = utf8Length(s);
  if (start < 0) return sliceBounds(s, 0, end);
  if (end < 0 || end > length) return sliceBounds(s, start, length);
  return sliceBounds(s, start, end);
}

/** goutils AbbreviateFull. */
function abbreviateFull(str: string, offsetIn: number, maxWidth: number): string {
  if (str === '') return '';
  if (maxWidth < 4) throw new Error('stringutils illegal argument: Minimum abbreviation width is 4');
  const length = utf8Length(str);
  if (length <= maxWidth) return str;
  let offset = Math.min(offsetIn, length);
  if (length - offset < maxWidth - 3) offset = length - (maxWidth - 3);
  if (offset <= 4) return `${byteSlice(str, 0, maxWidth - 3)}...`;
  if (maxWidth < 7) throw new Error('stringutils illegal argument: Minimum abbreviation width with offset is 7');
  if (offset + maxWidth - 3 < length) return `...${abbreviateFull(byteSlice(str, offset), 0, maxWidth - 3)}`;
  return `...${byteSlice(str, length - (maxWidth - 3))}`;
}

/** goutils WrapCustom. */
function wrapCustom(str: string, wrapLength: number, newLine: string, wrapLongWords: boolean): string {
  if (str === '') return '';
  const sep = newLine === '' ? '\n' : newLine;
  const width = Math.max(wrapLength, 1);
  let offset = 0;
  let out = '';
  while (str.length - offset > width) {
    if (str[offset] === ' ') {
      offset++;
      continue;
    }
    const spaceToWrapAt = str.slice(offset, width + offset + 1).lastIndexOf(' ') + offset;
    if (spaceToWrapAt >= offset) {
      out += str.slice(offset, spaceToWrapAt) + sep;
      offset = spaceToWrapAt + 1;
    } else if (wrapLongWords) {
      out += str.slice(offset, width + offset) + sep;
      offset += width;
    } else {
      const index = str.indexOf(' ', width + offset);
      if (index < 0) {
        out += str.slice(offset);
        offset = str.length;
      } else {
        out += str.slice(offset, index) + sep;
        offset = index + 1;
      }
    }
  }
  return out + str.slice(offset);
}

function isConnector(ch: string): boolean {
  return ch === '-' || ch === '_' || isGoSpace(ch);
}

const isUpper = (ch: string): boolean => /^\p{Lu}$/u.test(ch);
const isNumber = (ch: string): boolean => /^\p{N}$/u.test(ch);
const isPunct = (ch: string): boolean => /^\p{P}$/u.test(ch);
/** xstrings isAlphabet: a letter that is not a CJK ideograph. */
function isAlphabet(ch: string): boolean {
  if (!/^\p{L}$/u.test(ch)) return false;
  const cp = ch.codePointAt(0)!;
  if (cp < 0x3400) return true;
  return !((cp >= 0x4e00 && cp <= 0x9fcc) || (cp >= 0x3400 && cp <= 0x4d85) || (cp >= 0x20000 && cp <= 0x2fa1f));
}

type WordType = 'invalid' | 'number' | 'upperCase' | 'alphabet' | 'connector' | 'punct' | 'other';

/** xstrings nextWord: the next run of one kind of character. */
function nextWord(chars: string[], at: number): { type: WordType; end: number } {
  if (at >= chars.length) return { type: 'invalid', end: at };
  const r = chars[at]!;
  let i = at + 1;
  const run = (keep: (ch: string) => boolean): number => {
    while (i < chars.length && keep(chars[i]!)) i++;
    return i;
  };
  if (isConnector(r)) return { type: 'connector', end: run(isConnector) };
  if (isPunct(r)) return { type: 'punct', end: run(isPunct) };
  if (isUpper(r)) {
    if (i >= chars.length) return { type: 'upperCase', end: i };
    const next = chars[i]!;
    if (isUpper(next)) {
      run(isUpper);
      // "HTTPStatus" splits into "HTTP" and "Status": the last upper case letter starts the next word.
      if (i < chars.length && isAlphabet(chars[i]!)) i--;
    } else if (isAlphabet(next)) run((ch) => isAlphabet(ch) && !isUpper(ch));
    return { type: 'upperCase', end: i };
  }
  if (isAlphabet(r)) return { type: 'alphabet', end: run((ch) => isAlphabet(ch) && !isUpper(ch)) };
  if (isNumber(r)) return { type: 'number', end: run(isNumber) };
  return { type: 'other', end: run((ch) => !(isConnector(ch) || isAlphabet(ch) || isNumber(ch) || isPunct(ch))) };
}

/** xstrings camelCaseToLowerCase: snakecase and kebabcase. */
function camelCaseToLowerCase(str: string, connector: string): string {
  if (str === '') return '';
  const chars = [...str];
  let out = '';
  const toLower = (type: WordType, from: number, to: number): void => {
    const word = chars.slice(from, to);
    if (type !== 'upperCase' && type !== 'connector') {
      out += word.join('');
      return;
    }
    for (const ch of word) out += isConnector(ch) ? connector : isUpper(ch) ? mapRunes(ch, false) : ch;
  };
  let start = 0;
  let { type, end } = nextWord(chars, start);
  while (end < chars.length) {
    if (type !== 'connector') toLower(type, start, end);
    const prev = type;
    const lastStart = start;
    const lastEnd = end;
    start = end;
    ({ type, end } = nextWord(chars, start));
    if (prev === 'number') {
      while (type === 'alphabet' || type === 'number') {
        toLower(type, start, end);
        start = end;
        ({ type, end } = nextWord(chars, start));
      }
      if (type !== 'invalid' && type !== 'punct' && type !== 'connector') out += connector;
    } else if (prev === 'connector') toLower(prev, lastStart, lastEnd);
    else if (prev !== 'punct') {
      if (type !== 'number') {
        if (type !== 'connector' && type !== 'punct') out += connector;
        continue;
      }
      if (end >= chars.length) continue;
      const numberStart = start;
      const numberEnd = end;
      start = end;
      ({ type, end } = nextWord(chars, start));
      // A number followed by other letters belongs to the previous word ("Bld4Floor" → "bld4_floor").
      if (type !== 'alphabet') {
        toLower('number', numberStart, numberEnd);
        if (type !== 'connector' && type !== 'punct') out += connector;
        continue;
      }
      out += connector;
      toLower('number', numberStart, numberEnd);
      while (type === 'alphabet' || type === 'number') {
        toLower(type, start, end);
        start = end;
        ({ type, end } = nextWord(chars, start));
      }
      if (type !== 'invalid' && type !== 'connector' && type !== 'punct') out += connector;
    }
  }
  toLower(type, start, end);
  return out;
}

/** xstrings ToPascalCase (sprig's camelcase): words joined, each capitalized. */
function toPascalCase(str: string): string {
  const chars = [...str];
  if (chars.length === 0) return '';
  let out = '';
  let i = 0;
  let r0 = '';
  let firstRuneUpper = false;
  for (; i < chars.length;) {
    r0 = chars[i++]!;
    if (!isConnector(r0)) {
      firstRuneUpper = isUpper(r0);
      r0 = mapRunes(r0, true);
      break;
    }
    out += r0;
  }
  if (i >= chars.length) return out + (isConnector(r0) ? '' : r0);
  while (i < chars.length) {
    const r1 = r0;
    r0 = chars[i++]!;
    if (isConnector(r0) && isConnector(r1)) {
      out += r1;
      continue;
    }
    if (isConnector(r1)) {
      firstRuneUpper = isUpper(r0);
      r0 = mapRunes(r0, true);
    } else {
      if (firstRuneUpper) {
        if (isUpper(r0)) r0 = mapRunes(r0, false);
        else firstRuneUpper = false;
      }
      out += r1;
    }
  }
  return out + r0;
}

const ALPHA = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const NUMERIC = '0123456789';

function randomFrom(count: bigint, alphabet: string): string {
  if (count < 0n) return '';
  let out = '';
  for (let i = 0n; i < count; i++) out += alphabet[randomInt(alphabet.length)]!;
  return out;
}

function uncapitalize(str: string): string {
  let next = true;
  let out = '';
  for (const ch of str) {
    if (isGoSpace(ch)) {
      next = true;
      out += ch;
    } else if (next) {
      out += mapRunes(ch, false);
      next = false;
    } else out += ch;
  }
  return out;
}

function splitMap(parts: string[]): Record<string, unknown> {
  const map = newGoMap();
  parts.forEach((part, i) => {
    map[`_${i}`] = part;
  });
  return tagGoType(map, 'map[string]string');
}

function indent(spaces: bigint, text: string): string {
  const pad = ' '.repeat(Math.max(Number(spaces), 0));
  return pad + text.replaceAll('\n', `\n${pad}`);
}

export const SPRIG_STRING_FUNCTIONS: ReadonlyArray<[string, TemplateFunction]> = [
  ['hello', goFunc([], () => 'Hello!')],
  ['abbrev', goFunc(['int', 'string'], (width, s) => (width < 4n ? s : abbreviateFull(s, 0, Number(width))))],
  [
    'abbrevboth',
    goFunc(['int', 'int', 'string'], (left, right, s) => {
      if (right < 4n || (left > 0n && right < 7n)) return s;
      return abbreviateFull(s, Number(left), Number(right));
    }),
  ],
  ['trunc', goFunc(['int', 'string'], trunc)],
  ['trim', goFunc(['string'], trimSpace)],
  ['upper', goFunc(['string'], (s) => mapRunes(s, true))],
  ['lower', goFunc(['string'], (s) => mapRunes(s, false))],
  ['title', goFunc(['string'], title)],
  ['untitle', goFunc(['string'], uncapitalize)],
  ['substr', goFunc(['int', 'int', 'string'], substr)],
  [
    'repeat',
    goFunc(['int', 'string'], (count, str) => {
      if (count < 0n) throw new Error('strings: negative Repeat count');
      return str.repeat(Number(count));
    }),
  ],
  ['trimall', goFunc(['string', 'string'], (cutset, s) => trimCutset(s, cutset))],
  ['trimAll', goFunc(['string', 'string'], (cutset, s) => trimCutset(s, cutset))],
  ['trimSuffix', goFunc(['string', 'string'], (suffix, s) => (suffix !== '' && s.endsWith(suffix) ? s.slice(0, s.length - suffix.length) : s))],
  ['trimPrefix', goFunc(['string', 'string'], (prefix, s) => (s.startsWith(prefix) ? s.slice(prefix.length) : s))],
  ['nospace', goFunc(['string'], (s) => [...s].filter((ch) => !isGoSpace(ch)).join(''))],
  [
    'initials',
    goFunc(['string'], (s) => {
      let out = '';
      let gap = true;
      for (const ch of s) {
        if (isGoSpace(ch)) gap = true;
        else if (gap) {
          out += ch;
          gap = false;
        }
      }
      return out;
    }),
  ],
  ['randAlphaNum', goFunc(['int'], (n) => randomFrom(n, ALPHA + NUMERIC))],
  ['randAlpha', goFunc(['int'], (n) => randomFrom(n, ALPHA))],
  ['randAscii', goFunc(['int'], (n) => randomFrom(n, Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('')))],
  ['randNumeric', goFunc(['int'], (n) => randomFrom(n, NUMERIC))],
  [
    'swapcase',
    goFunc(['string'], (s) =>
      [...s].map((ch) => (isUpper(ch) || /^\p{Lt}$/u.test(ch) ? mapRunes(ch, false) : /^\p{Ll}$/u.test(ch) ? mapRunes(ch, true) : ch)).join(''),
    ),
  ],
  [
    'shuffle',
    goFunc(['string'], (s) => {
      const chars = [...s];
      for (let i = chars.length - 1; i > 0; i--) {
        const j = randomInt(i + 1);
        [chars[i], chars[j]] = [chars[j]!, chars[i]!];
      }
      return chars.join('');
    }),
  ],
  ['snakecase', goFunc(['string'], (s) => camelCaseToLowerCase(s, '_'))],
  ['camelcase', goFunc(['string'], toPascalCase)],
  ['kebabcase', goFunc(['string'], (s) => camelCaseToLowerCase(s, '-'))],
  ['wrap', goFunc(['int', 'string'], (width, s) => wrapCustom(s, Number(width), '', false))],
  ['wrapWith', goFunc(['int', 'string', 'string'], (width, sep, s) => wrapCustom(s, Number(width), sep, true))],
  ['contains', goFunc(['string', 'string'], (sub, s) => s.includes(sub))],
  ['hasPrefix', goFunc(['string', 'string'], (prefix, s) => s.startsWith(prefix))],
  ['hasSuffix', goFunc(['string', 'string'], (suffix, s) => s.endsWith(suffix))],
  [
    'quote',
    goVariadic([], 'any', (...values) =>
      values
        .filter((v) => v !== null)
        .map((v) => sprintf('%q', [strval(v)]))
        .join(' '),
    ),
  ],
  [
    'squote',
    goVariadic([], 'any', (...values) =>
      values
        .filter((v) => v !== null)
        .map((v) => sprintf("'%v'", [v]))
        .join(' '),
    ),
  ],
  [
    'cat',
    goVariadic([], 'any', (...values) => {
      const kept = values.filter((v) => v !== null);
      return sprintf(kept.map(() => '%v').join(' '), kept);
    }),
  ],
  ['indent', goFunc(['int', 'string'], indent)],
  ['nindent', goFunc(['int', 'string'], (spaces, text) => `\n${indent(spaces, text)}`)],
  ['replace', goFunc(['string', 'string', 'string'], (old, replacement, src) => replaceAll(src, old, replacement))],
  ['plural', goFunc(['string', 'string', 'int'], (one, many, count) => (count === 1n ? one : many))],
  ['toString', goFunc(['any'], strval)],
  ['toStrings', goFunc(['any'], strslice)],
  ['join', goFunc(['string', 'any'], (sep, list) => strslice(list).join(sep))],
  [
    'sortAlpha',
    goFunc(['any'], (list) => {
      if (Array.isArray(list) || list instanceof Uint8Array) return tagGoType([...strslice(list)].sort(compareGoStrings), '[]string');
      return tagGoType([strval(list)], '[]string');
    }),
  ],
  ['split', goFunc(['string', 'string'], (sep, orig) => splitMap(splitString(orig, sep)))],
  ['splitList', goFunc(['string', 'string'], (sep, orig) => tagGoType(splitString(orig, sep), '[]string'))],
  ['splitn', goFunc(['string', 'int', 'string'], (sep, n, orig) => splitMap(splitString(orig, sep, Number(n))))],
];
