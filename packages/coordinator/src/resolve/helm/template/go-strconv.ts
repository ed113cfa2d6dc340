/**
 * The parts of Go's strconv that templates reach: float formatting (`FormatFloat`, which decides
 * `1e+06` against `100000`), quoting (`Quote`, `QuoteRune`), and number/string literal parsing
 * (`ParseInt` with base 0, `ParseFloat`, `Unquote`).
 */

interface DecimalDigits {
  /** Significant digits without trailing zeros ("" for zero). */
  digits: string;
  /** Position of the decimal point relative to the first digit: value = 0.digits × 10^dp. */
  dp: number;
}

/** Shortest digits that read back as the same float64: the same choice Go and JavaScript make. */
function shortestDigits(abs: number): DecimalDigits {
  if (abs === 0) return { digits: '', dp: 0 };
  const [mantissa, exponent] = abs.toExponential().split('e') as [string, string];
  const digits = mantissa.replace('.', '').replace(/0+$/, '');
  return { digits, dp: Number(exponent) + 1 };
}

/** The float's exact decimal value (every float64 has a finite one), for Go's correctly rounded precisions. */
function exactDigits(abs: number): DecimalDigits {
  if (abs === 0) return { digits: '', dp: 0 };
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, abs);
  const bits = view.getBigUint64(0);
  const exponentBits = Number((bits >> 52n) & 0x7ffn);
  let mantissa = bits & 0xfffffffffffffn;
  let exponent: number;
  if (exponentBits === 0) exponent = -1074;
  else {
    mantissa |= 1n << 52n;
    exponent = exponentBits - 1075;
  }
  let text: string;
  let dp: number;
  if (exponent >= 0) {
    text = (mantissa << BigInt(exponent)).toString();
    dp = text.length;
  } else {
    // mantissa / 2^k = mantissa * 5^k / 10^k
    text = (mantissa * 5n ** BigInt(-exponent)).toString();
    dp = text.length + exponent;
  }
  const digits = text.replace(/0+$/, '');
  return { digits, dp };
}

/** Rounds to `nd` significant digits the way Go's decimal.Round does: half to even on an exact tie. */
function roundDigits(d: DecimalDigits, nd: number): DecimalDigits {
  if (nd < 0) return { digits: '', dp: 0 };
  if (nd >= d.digits.length) return d;
  const next = d.digits.charCodeAt(nd) - 48;
  let up: boolean;
  if (next === 5 && nd + 1 === d.digits.length) up = nd > 0 && (d.digits.charCodeAt(nd - 1) - 48) % 2 === 1;
  else up = next >= 5;
  let kept = d.digits.slice(0, nd);
  let dp = d.dp;
  if (up) {
    let i = kept.length - 1;
    while (i >= 0 && kept[i] === '9') i--;
    if (i < 0) {
      kept = '1';
      dp++;
    } else kept = kept.slice(0, i) + String.fromCharCode(kept.charCodeAt(i) + 1);
  }
  return { digits: kept.replace(/0+$/, ''), dp };
}

function fmtE(neg: boolean, d: DecimalDigits, prec: number, letter: string): string {
  let out = neg ? '-' : '';
  out += d.digits.length > 0 ? d.digits[0] : '0';
  if (prec > 0) {
    out += '.';
    const more = d.digits.slice(1, prec + 1);
    out += more + '0'.repeat(prec - more.length);
  }
  let exp = d.digits.length === 0 ? 0 : d.dp - 1;
  const sign = exp < 0 ? '-' : '+';
  exp = Math.abs(exp);
  return `${out}${letter}${sign}${exp < 10 ? `0${exp}` : String(exp)}`;
}

function fmtF(neg: boolean, d: DecimalDigits, prec: number): string {
  let out = neg ? '-' : '';
  if (d.dp > 0) {
    const whole = d.digits.slice(0, d.dp);
    out += whole + '0'.repeat(d.dp - whole.length);
  } else out += '0';
  if (prec > 0) {
    out += '.';
    for (let i = 1; i <= prec; i++) {
      const j = d.dp + i - 1;
      out += j >= 0 && j < d.digits.length ? d.digits[j] : '0';
    }
  }
  return out;
}

export type FloatFormat = 'e' | 'E' | 'f' | 'F' | 'g' | 'G';

/** Go's `strconv.FormatFloat(f, format, prec, 64)`; `prec < 0` asks for the shortest exact form. */
export function formatFloat(f: number, format: FloatFormat, prec: number): string {
  if (Number.isNaN(f)) return 'NaN';
  if (f === Infinity) return '+Inf';
  if (f === -Infinity) return '-Inf';
  const neg = f < 0 || Object.is(f, -0);
  const abs = Math.abs(f);
  const shortest = prec < 0;
  let digs: DecimalDigits;
  const lower = format.toLowerCase();
  if (shortest) {
    digs = shortestDigits(abs);
    if (lower === 'e') prec = Math.max(digs.digits.length - 1, 0);
    else if (lower === 'f') prec = Math.max(digs.digits.length - digs.dp, 0);
    else prec = digs.digits.length;
  } else {
    const exact = exactDigits(abs);
    if (lower === 'e') digs = roundDigits(exact, prec + 1);
    else if (lower === 'f') digs = roundDigits(exact, exact.dp + prec);
    else {
      if (prec === 0) prec = 1;
      digs = roundDigits(exact, prec);
    }
  }
  if (lower === 'e') return fmtE(neg, digs, prec, format === 'E' ? 'E' : 'e');
  if (lower === 'f') return fmtF(neg, digs, prec);
  let eprec = prec;
  if (eprec > digs.digits.length && digs.digits.length >= digs.dp) eprec = digs.digits.length;
  // %e is used if the exponent from the conversion is less than -4 or greater than or equal to the
  // precision; for the shortest form Go decides with precision 6 (so 1e+06 but 100000).
  if (shortest) eprec = 6;
  const exp = digs.dp - 1;
  if (exp < -4 || exp >= eprec) {
    if (prec > digs.digits.length) prec = digs.digits.length;
    return fmtE(neg, digs, prec - 1, format === 'G' ? 'E' : 'e');
  }
  if (prec > digs.dp) prec = digs.digits.length;
  return fmtF(neg, digs, Math.max(prec - digs.dp, 0));
}

/** Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`). */
export function formatGoFloat(f: number): string {
  return formatFloat(f, 'g', -1);
}

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

/** Go's unicode.IsPrint. */
export function isPrintRune(codePoint: number): boolean {
  if (codePoint < 0x20 || codePoint === 0x7f) return false;
  if (codePoint < 0x7f) return true;
  return PRINTABLE.test(String.fromCodePoint(codePoint));
}

function hex(value: number, width: number): string {
  return value.toString(16).padStart(width, '0');
}

function escapeRune(codePoint: number, quote: string, asciiOnly: boolean): string {
  const ch = String.fromCodePoint(codePoint);
  if (ch === quote || ch === '\\') return `\\${ch}`;
  if (asciiOnly ? codePoint < 0x80 && isPrintRune(codePoint) : isPrintRune(codePoint)) return ch;
  switch (codePoint) {
    case 0x07:
      return '\\a';
    case 0x08:
      return '\\b';
    case 0x0c:
      return '\\f';
    case 0x0a:
      return '\\n';
    case 0x0d:
      return '\\r';
    case 0x09:
      return '\\t';
    case 0x0b:
      return '\\v';
    default:
      break;
  }
  if (codePoint < 0x20 || codePoint === 0x7f) return `\\x${hex(codePoint, 2)}`;
  // A lone surrogate is what Go would see as invalid UTF-8 decoded to U+FFFD.
  if (codePoint >= 0xd800 && codePoint <= 0xdfff) return '\\ufffd';
  if (codePoint < 0x10000) return `\\u${hex(codePoint, 4)}`;
  return `\\U${hex(codePoint, 8)}`;
}

/** Go's `strconv.Quote` (or `QuoteToASCII` with `asciiOnly`). */
export function goQuote(text: string, asciiOnly = false): string {
  let out = '"';
  for (const ch of text) out += escapeRune(ch.codePointAt(0)!, '"', asciiOnly);
  return `${out}"`;
}

/** Go's `strconv.QuoteRune`. */
export function goQuoteRune(codePoint: number, asciiOnly = false): string {
  const valid = codePoint >= 0 && codePoint <= 0x10ffff && !(codePoint >= 0xd800 && codePoint <= 0xdfff);
  return `'${escapeRune(valid ? codePoint : 0xfffd, "'", asciiOnly)}'`;
}

/** Go's `strconv.CanBackquote`. */
export function canBackquote(text: string): boolean {
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (ch === '`' || cp === 0xfeff) return false;
    if (cp < 0x20 && ch !== '\t') return false;
    if (cp === 0x7f) return false;
  }
  return true;
}

/** Go's underscoreOK: underscores only between digits, or after a base prefix. */
function underscoreOK(text: string): boolean {
  let saw = '^';
  let s = text;
  if (s.startsWith('-') || s.startsWith('+')) s = s.slice(1);
  let i = 0;
  let hexDigits = false;
  if (s.length >= 2 && s[0] === '0' && /[bBoOxX]/.test(s[1]!)) {
    i = 2;
    saw = '0';
    hexDigits = s[1] === 'x' || s[1] === 'X';
  }
  for (; i < s.length; i++) {
    const c = s[i]!;
    if ((c >= '0' && c <= '9') || (hexDigits && /[a-fA-F]/.test(c))) {
      saw = '0';
      continue;
    }
    if (c === '_') {
      if (saw !== '0') return false;
      saw = '_';
      continue;
    }
    if (saw === '_') return false;
    saw = '!';
  }
  return saw !== '_';
}

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

function parseMagnitude(text: string, base: number): bigint | undefined {
  if (base === 0) {
    if (/^0[xX]/.test(text)) return parseMagnitude(text.slice(2), 16);
    if (/^0[bB]/.test(text)) return parseMagnitude(text.slice(2), 2);
    if (/^0[oO]/.test(text)) return parseMagnitude(text.slice(2), 8);
    if (text.length > 1 && text[0] === '0') return parseMagnitude(text.slice(1), 8);
    return parseMagnitude(text, 10);
  }
  const digits = text.replaceAll('_', '');
  if (digits === '') return undefined;
  const valid = base === 16 ? /^[0-9a-fA-F]+$/ : base === 10 ? /^[0-9]+$/ : base === 8 ? /^[0-7]+$/ : /^[01]+$/;
  if (!valid.test(digits)) return undefined;
  const prefix = base === 16 ? '0x' : base === 8 ? '0o' : base === 2 ? '0b' : '';
  return BigInt(prefix + digits);
}

/** Go's `strconv.ParseInt(text, base, 64)`; undefined on a syntax or range error. */
export function parseGoInt(text: string, base = 0): bigint | undefined {
  if (base === 0 && text.includes('_') && !underscoreOK(text)) return undefined;
  if (base !== 0 && text.includes('_')) return undefined;
  let s = text;
  let neg = false;
  if (s.startsWith('+') || s.startsWith('-')) {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  const magnitude = parseMagnitude(s, base);
  if (magnitude === undefined) return undefined;
  const value = neg ? -magnitude : magnitude;
  return value < INT64_MIN || value > INT64_MAX ? undefined : value;
}

/** Go's `strconv.ParseUint(text, 0, 64)`. */
export function parseGoUint(text: string): bigint | undefined {
  if (text.startsWith('+') || text.startsWith('-')) return undefined;
  if (text.includes('_') && !underscoreOK(text)) return undefined;
  const magnitude = parseMagnitude(text, 0);
  return magnitude === undefined || magnitude > UINT64_MAX ? undefined : magnitude;
}

/** Go's `strconv.ParseFloat(text, 64)` for decimal and hexadecimal literals; undefined on a syntax error. */
export function parseGoFloat(text: string): number | undefined {
  if (text.includes('_') && !underscoreOK(text)) return undefined;
  const s = text.replaceAll('_', '');
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return Number(s);
  const hexFloat = /^([+-]?)0[xX]([0-9a-fA-F]*)\.?([0-9a-fA-F]*)[pP]([+-]?\d+)$/.exec(s);
  if (hexFloat !== null && (hexFloat[2] !== '' || hexFloat[3] !== '')) {
    const whole = hexFloat[2]!;
    const frac = hexFloat[3]!;
    const mantissa = Number.parseInt(whole + frac || '0', 16);
    const value = mantissa * 2 ** (Number(hexFloat[4]) - 4 * frac.length);
    return hexFloat[1] === '-' ? -value : value;
  }
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(s);
  if (special !== null) {
    if (special[2]!.toLowerCase() === 'nan') return Number.NaN;
    return special[1] === '-' ? -Infinity : Infinity;
  }
  return undefined;
}

function encodeRune(bytes: number[], codePoint: number): void {
  for (const b of Buffer.from(String.fromCodePoint(codePoint), 'utf8')) bytes.push(b);
}

const SIMPLE_ESCAPES: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92 };

/**
 * Go's `strconv.Unquote` for the literals a template can hold: "…" (escapes decoded; `\x` and
 * octal escapes are raw bytes, decoded as UTF-8 at the end), `…` (raw, carriage returns removed)
 * and '…' (one rune, returned as its code point by `unquoteChar`). Undefined on a syntax error.
 */
export function goUnquote(literal: string): string | undefined {
  if (literal.length < 2) return undefined;
  const quote = literal[0];
  if (quote !== literal[literal.length - 1]) return undefined;
  const body = literal.slice(1, -1);
  if (quote === '`') return body.includes('`') ? undefined : body.replaceAll('\r', '');
  if (quote !== '"') return undefined;
  const bytes: number[] = [];
  let i = 0;
  while (i < body.length) {
    const cp = body.codePointAt(i)!;
    const ch = String.fromCodePoint(cp);
    if (ch === '"' || ch === '\n') return undefined;
    if (ch !== '\\') {
      encodeRune(bytes, cp);
      i += ch.length;
      continue;
    }
    const decoded = decodeEscape(body, i + 1, '"');
    if (decoded === undefined) return undefined;
    if (decoded.byte !== undefined) bytes.push(decoded.byte);
    else encodeRune(bytes, decoded.rune!);
    i = decoded.next;
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** The code point of a Go character literal like 'a', '\n' or '\u00e9'; undefined when malformed. */
export function unquoteChar(literal: string): number | undefined {
  if (literal.length < 3 || literal[0] !== "'" || literal[literal.length - 1] !== "'") return undefined;
  const body = literal.slice(1, -1);
  const cp = body.codePointAt(0)!;
  const ch = String.fromCodePoint(cp);
  if (ch !== '\\') return ch.length === body.length && ch !== "'" && ch !== '\n' ? cp : undefined;
  const decoded = decodeEscape(body, 1, "'");
  if (decoded === undefined || decoded.next !== body.length) return undefined;
  return decoded.byte ?? decoded.rune;
}

function decodeEscape(body: string, at: number, quote: string): { byte?: number; rune?: number; next: number } | undefined {
  const c = body[at];
  if (c === undefined) return undefined;
  const simple = SIMPLE_ESCAPES[c];
  if (simple !== undefined) return { rune: simple, next: at + 1 };
  if (c === quote) return { rune: c.charCodeAt(0), next: at + 1 };
  if (c === 'x' || c === 'u' || c === 'U') {
    const width = c === 'x' ? 2 : c === 'u' ? 4 : 8;
    const digits = body.slice(at + 1, at + 1 + width);
    if (!new RegExp(`^[0-9a-fA-F]{${width}}$`).test(digits)) return undefined;
    const value = Number.parseInt(digits, 16);
    if (c === 'x') return { byte: value, next: at + 1 + width };
    if (value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff)) return undefined;
    return { rune: value, next: at + 1 + width };
  }
  if (c >= '0' && c <= '7') {
    const digits = body.slice(at, at + 3);
    if (!/^[0-7]{3}$/.test(digits)) return undefined;
    const value = Number.parseInt(digits, 8);
    return value > 255 ? undefined : { byte: value, next: at + 3 };
  }
  return undefined;
}
