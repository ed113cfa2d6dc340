/**
 * Go's fmt over template values: `Sprint`, `Sprintln`, `Sprintf` and the `%v` printing the executor
 * uses for `{{ . }}`. Verbs: v (with + and #), s, q, d, t, x, X, o, O, b, c, U, e, E, f, F, g, G, T,
 * with flags, widths, precisions, `*` and `[n]` argument indexes, and Go's in-band error forms
 * (`%!d(string=x)`, `%!d(MISSING)`, `%!(EXTRA int=1)`). Not supported: `%p`, and `%b`, `%x`, `%X`
 * of floats (they print as a bad verb, `%!x(float64=1.5)`); templates reach no Formatter types.
 */
import { canBackquote, formatFloat, formatGoFloat, goQuote, goQuoteRune, type FloatFormat } from './go-strconv.ts';
import { goTypeName, isMapLike, mapGet, sortedMapKeys, stringerOf } from './go-values.ts';

interface Flags {
  plus: boolean;
  minus: boolean;
  sharp: boolean;
  space: boolean;
  zero: boolean;
  plusV: boolean;
  sharpV: boolean;
  wid?: number;
  prec?: number;
}

function clearFlags(): Flags {
  return { plus: false, minus: false, sharp: false, space: false, zero: false, plusV: false, sharpV: false };
}

function runeCount(text: string): number {
  return [...text].length;
}

/** Pads to the width in runes; zero padding only to the left (numbers place the sign themselves). */
function pad(text: string, f: Flags): string {
  if (f.wid === undefined || f.wid === 0) return text;
  const width = f.wid - runeCount(text);
  if (width <= 0) return text;
  if (f.minus) return text + ' '.repeat(width);
  return (f.zero ? '0' : ' ').repeat(width) + text;
}

class Printer {
  out = '';

  printArg(arg: unknown, verb: string, f: Flags): void {
    if (arg === null || arg === undefined) {
      if (verb === 'T' || verb === 'v') this.out += pad('<nil>', f);
      else this.badVerb(verb, arg);
      return;
    }
    if (verb === 'T') {
      this.out += this.fmtS(goTypeName(arg), f);
      return;
    }
    if (verb === 'p') {
      this.badVerb(verb, arg);
      return;
    }
    this.printValue(arg, verb, f, 0);
  }

  badVerb(verb: string, arg: unknown): void {
    this.out += `%!${verb}(`;
    if (arg === null || arg === undefined) this.out += '<nil>';
    else {
      this.out += `${goTypeName(arg)}=`;
      this.printValue(arg, 'v', clearFlags(), 0);
    }
    this.out += ')';
  }

  /** A Stringer prints through String() for the verbs fmt uses it for. */
  handleMethods(value: unknown, verb: string, f: Flags): boolean {
    if (f.sharpV || !'vsxXq'.includes(verb)) return false;
    const stringer = stringerOf(value);
    if (stringer === undefined) return false;
    const text = stringer();
    this.fmtString(typeof text === 'string' ? text : String(text), verb, f);
    return true;
  }

  printValue(value: unknown, verb: string, f: Flags, depth: number): void {
    if (value === null || value === undefined) {
      // A nil element of a list or map.
      if (f.sharpV) this.out += 'interface {}(nil)';
      else if (verb === 'v') this.out += '<nil>';
      else this.badVerb(verb, undefined);
      return;
    }
    switch (typeof value) {
      case 'boolean':
        if (verb === 't' || verb === 'v') this.out += pad(String(value), f);
        else this.badVerb(verb, value);
        return;
      case 'bigint':
        this.fmtInteger(value, verb, f);
        return;
      case 'number':
        this.fmtFloat(value, verb, f);
        return;
      case 'string':
        this.fmtString(value, verb, f);
        return;
      case 'function':
        this.out += pad('0x0', f);
        return;
      default:
        break;
    }
    if (this.handleMethods(value, verb, f)) return;
    if (value instanceof Uint8Array) {
      this.fmtBytes(value, verb, f);
      return;
    }
    if (Array.isArray(value)) {
      if (f.sharpV) {
        this.out += `${goTypeName(value)}{`;
        value.forEach((element, i) => {
          if (i > 0) this.out += ', ';
          this.printValue(element, verb, f, depth + 1);
        });
        this.out += '}';
        return;
      }
      this.out += '[';
      value.forEach((element, i) => {
        if (i > 0) this.out += ' ';
        this.printValue(element, verb, f, depth + 1);
      });
      this.out += ']';
      return;
    }
    if (isMapLike(value)) {
      this.out += f.sharpV ? `${goTypeName(value)}{` : 'map[';
      sortedMapKeys(value).forEach((key, i) => {
        if (i > 0) this.out += f.sharpV ? ', ' : ' ';
        this.printValue(key, verb, f, depth + 1);
        this.out += ':';
        this.printValue(mapGet(value, key).value, verb, f, depth + 1);
      });
      this.out += f.sharpV ? '}' : ']';
      return;
    }
    // A struct: its own fields in declaration order.
    const fields = Object.entries(value as Record<string, unknown>).filter(([, v]) => typeof v !== 'function');
    this.out += f.sharpV ? `${goTypeName(value)}{` : '{';
    fields.forEach(([name, field], i) => {
      if (i > 0) this.out += f.sharpV ? ', ' : ' ';
      if (f.plusV || f.sharpV) this.out += `${name}:`;
      this.printValue(field, verb, f, depth + 1);
    });
    this.out += '}';
  }

  fmtS(text: string, f: Flags): string {
    let s = text;
    if (f.prec !== undefined) s = [...s].slice(0, f.prec).join('');
    return pad(s, f);
  }

  fmtString(text: string, verb: string, f: Flags): void {
    switch (verb) {
      case 'v':
        this.out += f.sharpV ? this.fmtQ(text, f) : this.fmtS(text, f);
        return;
      case 's':
        this.out += this.fmtS(text, f);
        return;
      case 'q':
        this.out += this.fmtQ(text, f);
        return;
      case 'x':
      case 'X':
        this.out += this.fmtHexBytes(Buffer.from(text, 'utf8'), verb, f);
        return;
      default:
        this.badVerb(verb, text);
    }
  }

  fmtBytes(bytes: Uint8Array, verb: string, f: Flags): void {
    switch (verb) {
      case 's':
      case 'q':
        this.fmtString(Buffer.from(bytes).toString('utf8'), verb, f);
        return;
      case 'x':
      case 'X':
        this.out += this.fmtHexBytes(bytes, verb, f);
        return;
      case 'v':
      case 'd':
        if (f.sharpV) {
          this.out += `[]byte{${[...bytes].map((b) => `0x${b.toString(16)}`).join(', ')}}`;
          return;
        }
        this.out += '[';
        bytes.forEach((b, i) => {
          if (i > 0) this.out += ' ';
          this.fmtInteger(BigInt(b), verb, f);
        });
        this.out += ']';
        return;
      default:
        this.printValue(
          [...bytes].map((b) => BigInt(b)),
          verb,
          f,
          1,
        );
    }
  }

  fmtQ(text: string, f: Flags): string {
    let s = text;
    if (f.prec !== undefined) s = [...s].slice(0, f.prec).join('');
    if (f.sharp && canBackquote(s)) return pad(`\`${s}\``, f);
    return pad(goQuote(s, f.plus), f);
  }

  fmtHexBytes(bytes: Uint8Array, verb: string, f: Flags): string {
    const digits = verb === 'X' ? '0123456789ABCDEF' : '0123456789abcdef';
    let length = bytes.length;
    if (f.prec !== undefined && f.prec < length) length = f.prec;
    if (length === 0) return f.wid !== undefined ? ' '.repeat(f.wid) : '';
    let out = f.sharp ? `0${verb}` : '';
    for (let i = 0; i < length; i++) {
      if (f.space && i > 0) out += f.sharp ? ` 0${verb}` : ' ';
      out += digits[bytes[i]! >> 4]! + digits[bytes[i]! & 15]!;
    }
    const width = f.wid ?? 0;
    const padding = ' '.repeat(Math.max(width - out.length, 0));
    return f.minus ? out + padding : padding + out;
  }

  fmtInteger(value: bigint, verb: string, f: Flags): void {
    switch (verb) {
      case 'v':
      case 'd':
        this.out += formatInteger(value, 10, verb, f, '0123456789abcdefx');
        return;
      case 'b':
        this.out += formatInteger(value, 2, verb, f, '0123456789abcdefx');
        return;
      case 'o':
      case 'O':
        this.out += formatInteger(value, 8, verb, f, '0123456789abcdefx');
        return;
      case 'x':
        this.out += formatInteger(value, 16, verb, f, '0123456789abcdefx');
        return;
      case 'X':
        this.out += formatInteger(value, 16, verb, f, '0123456789ABCDEFX');
        return;
      case 'c':
        this.out += pad(validRune(value) ? String.fromCodePoint(Number(value)) : '\ufffd', f);
        return;
      case 'q':
        this.out += pad(goQuoteRune(validRune(value) ? Number(value) : 0xfffd, f.plus), f);
        return;
      case 'U': {
        let text = `U+${(value < 0n ? -value : value).toString(16).toUpperCase().padStart(4, '0')}`;
        if (f.sharp && validRune(value)) text += ` '${String.fromCodePoint(Number(value))}'`;
        this.out += pad(text, f);
        return;
      }
      default:
        this.badVerb(verb, value);
    }
  }

  fmtFloat(value: number, verb: string, f: Flags): void {
    let format: FloatFormat;
    let prec: number;
    switch (verb) {
      case 'v':
        format = 'g';
        prec = -1;
        break;
      case 'g':
      case 'G':
        format = verb;
        prec = -1;
        break;
      case 'e':
      case 'E':
      case 'f':
      case 'F':
        format = verb === 'F' ? 'f' : verb;
        prec = 6;
        break;
      default:
        this.badVerb(verb, value);
        return;
    }
    if (f.prec !== undefined) prec = f.prec;
    let num = prec < 0 && format === 'g' ? formatGoFloat(value) : formatFloat(value, format, prec);
    if (!num.startsWith('-') && !num.startsWith('+')) num = `+${num}`;
    if (f.space && num.startsWith('+') && !f.plus) num = ` ${num.slice(1)}`;
    if (num[1] === 'I' || num[1] === 'N') {
      if (num[1] === 'N' && !f.space && !f.plus) num = num.slice(1);
      this.out += pad(num, { ...f, zero: false });
      return;
    }
    if (f.sharp) num = sharpFloat(num, format, prec);
    if (f.plus || !num.startsWith('+')) {
      if (f.zero && f.wid !== undefined && f.wid > num.length) {
        this.out += num[0]! + '0'.repeat(f.wid - num.length) + num.slice(1);
        return;
      }
      this.out += pad(num, f);
      return;
    }
    this.out += pad(num.slice(1), f);
  }
}

/** `%#g` and friends keep the decimal point and, for %g, trailing zeros up to the precision. */
function sharpFloat(num: string, format: FloatFormat, prec: number): string {
  const expAt = num.search(/[eE]/);
  let mantissa = expAt < 0 ? num : num.slice(0, expAt);
  const tail = expAt < 0 ? '' : num.slice(expAt);
  if (!mantissa.includes('.')) mantissa += '.';
  if (format === 'g' || format === 'G') {
    const digits = mantissa.replace(/[^0-9]/g, '').replace(/^0+/, '');
    const want = prec < 0 ? 6 : prec === 0 ? 1 : prec;
    if (digits.length < want) mantissa += '0'.repeat(want - Math.max(digits.length, 1));
  }
  return mantissa + tail;
}

function validRune(value: bigint): boolean {
  return value >= 0n && value <= 0x10ffffn && !(value >= 0xd800n && value <= 0xdfffn);
}

function formatInteger(value: bigint, base: number, verb: string, f: Flags, digits: string): string {
  const negative = value < 0n;
  const magnitude = negative ? -value : value;
  let prec = 0;
  if (f.prec !== undefined) {
    prec = f.prec;
    // Precision of 0 and value of 0 means "print nothing" but padding.
    if (prec === 0 && magnitude === 0n) return f.wid !== undefined ? ' '.repeat(f.wid) : '';
  } else if (f.zero && !f.minus && f.wid !== undefined) {
    prec = f.wid;
    if (negative || f.plus || f.space) prec--;
  }
  let body = magnitude.toString(base);
  if (digits[10] === 'A') body = body.toUpperCase();
  if (body.length < prec) body = '0'.repeat(prec - body.length) + body;
  if (f.sharp) {
    if (base === 2) body = `0b${body}`;
    else if (base === 8 && !body.startsWith('0')) body = `0${body}`;
    else if (base === 16) body = `0${digits[16]}${body}`;
  }
  if (verb === 'O') body = `0o${body}`;
  if (negative) body = `-${body}`;
  else if (f.plus) body = `+${body}`;
  else if (f.space) body = ` ${body}`;
  return pad(body, { ...f, zero: false });
}

/** Reads a decimal number at `i`: [value, next index, present]. */
function parseNum(format: string, i: number): [number, number, boolean] {
  let num = 0;
  let j = i;
  while (j < format.length && format[j]! >= '0' && format[j]! <= '9') {
    // Go gives up on absurd widths rather than overflowing.
    if (num > 1e6) return [0, format.length, false];
    num = num * 10 + (format.charCodeAt(j) - 48);
    j++;
  }
  return [num, j, j > i];
}

/** Go's `fmt.Sprintf`. */
export function sprintf(format: string, args: readonly unknown[]): string {
  const p = new Printer();
  let argNum = 0;
  let reordered = false;
  let i = 0;
  const end = format.length;
  const argNumber = (at: number): { at: number; found: boolean; ok: boolean } => {
    if (at >= end || format[at] !== '[') return { at, found: false, ok: true };
    reordered = true;
    const close = format.indexOf(']', at + 1);
    if (close < 0) return { at, found: false, ok: false };
    const [index, next, present] = parseNum(format, at + 1);
    if (!present || next !== close || index < 1 || index > args.length) return { at: close + 1, found: true, ok: false };
    argNum = index - 1;
    return { at: close + 1, found: true, ok: true };
  };
  const intFromArg = (): number | undefined => {
    const arg = args[argNum];
    if (argNum < args.length) argNum++;
    if (typeof arg === 'bigint' && arg <= 1000000n && arg >= -1000000n) return Number(arg);
    return undefined;
  };
  while (i < end) {
    let goodArgNum = true;
    const last = i;
    while (i < end && format[i] !== '%') i++;
    if (i > last) p.out += format.slice(last, i);
    if (i >= end) break;
    i++;
    const f = clearFlags();
    flags: for (; i < end; i++) {
      switch (format[i]) {
        case '#':
          f.sharp = true;
          break;
        case '0':
          f.zero = !f.minus;
          break;
        case '+':
          f.plus = true;
          break;
        case '-':
          f.minus = true;
          f.zero = false;
          break;
        case ' ':
          f.space = true;
          break;
        default:
          break flags;
      }
    }
    let index = argNumber(i);
    i = index.at;
    if (!index.ok) goodArgNum = false;
    let afterIndex = index.found;
    if (i < end && format[i] === '*') {
      i++;
      const wid = intFromArg();
      if (wid === undefined) p.out += '%!(BADWIDTH)';
      else {
        f.wid = Math.abs(wid);
        if (wid < 0) {
          f.minus = true;
          f.zero = false;
        }
      }
      afterIndex = false;
    } else {
      const [wid, next, present] = parseNum(format, i);
      i = next;
      if (present) {
        f.wid = wid;
        if (afterIndex) goodArgNum = false;
      }
    }
    if (i + 1 < end && format[i] === '.') {
      i++;
      if (afterIndex) goodArgNum = false;
      index = argNumber(i);
      i = index.at;
      if (!index.ok) goodArgNum = false;
      afterIndex = index.found;
      if (i < end && format[i] === '*') {
        i++;
        const prec = intFromArg();
        if (prec === undefined) p.out += '%!(BADPREC)';
        else if (prec >= 0) f.prec = prec;
        afterIndex = false;
      } else {
        const [prec, next] = parseNum(format, i);
        i = next;
        f.prec = prec;
      }
    }
    if (!afterIndex) {
      index = argNumber(i);
      i = index.at;
      if (!index.ok) goodArgNum = false;
    }
    if (i >= end) {
      p.out += '%!(NOVERB)';
      break;
    }
    const verb = String.fromCodePoint(format.codePointAt(i)!);
    i += verb.length;
    if (verb === '%') {
      p.out += '%';
      continue;
    }
    if (!goodArgNum) {
      p.out += `%!${verb}(BADINDEX)`;
      continue;
    }
    if (argNum >= args.length) {
      p.out += `%!${verb}(MISSING)`;
      continue;
    }
    if (verb === 'v') {
      f.sharpV = f.sharp;
      f.sharp = false;
      f.plusV = f.plus;
      f.plus = false;
    }
    p.printArg(args[argNum], verb, f);
    argNum++;
  }
  if (!reordered && argNum < args.length) {
    p.out += '%!(EXTRA ';
    args.slice(argNum).forEach((arg, k) => {
      if (k > 0) p.out += ', ';
      if (arg === null || arg === undefined) p.out += '<nil>';
      else {
        p.out += `${goTypeName(arg)}=`;
        p.printArg(arg, 'v', clearFlags());
      }
    });
    p.out += ')';
  }
  return p.out;
}

/** Go's `fmt.Sprint`: spaces between operands when neither side is a string. */
export function sprint(args: readonly unknown[]): string {
  const p = new Printer();
  let prevString = false;
  args.forEach((arg, i) => {
    const isString = typeof arg === 'string';
    if (i > 0 && !isString && !prevString) p.out += ' ';
    p.printArg(arg, 'v', clearFlags());
    prevString = isString;
  });
  return p.out;
}

/** Go's `fmt.Sprintln`: always a space between operands, and a newline. */
export function sprintln(args: readonly unknown[]): string {
  const p = new Printer();
  args.forEach((arg, i) => {
    if (i > 0) p.out += ' ';
    p.printArg(arg, 'v', clearFlags());
  });
  return `${p.out}\n`;
}

/** `%v` of one value, as `{{ . }}` prints it. */
export function formatValue(value: unknown): string {
  if (typeof value === 'string') return value;
  return sprint([value]);
}
