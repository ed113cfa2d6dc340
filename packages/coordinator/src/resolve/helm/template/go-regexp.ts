/**
 * Go's regexp (RE2 syntax) on JavaScript's engine: patterns are translated (`(?P<n>…)`, leading
 * `(?i)`/`(?s)`/`(?m)` flags, `\A`, `\z`, `\Q…\E`, POSIX classes `[[:alpha:]]`, Go's ASCII `\s`
 * and `.` that excludes only `\n`), and Go's rules for empty matches in FindAll, ReplaceAll and
 * Split, and for `$1`/`${name}` expansion, are kept. Both are leftmost-first, so matches agree.
 * Not supported (they fail as a compile error): `(?U)`, flags after the start of the pattern.
 */

const POSIX_CLASSES: Record<string, string> = {
  alnum: '0-9A-Za-z',
  alpha: 'A-Za-z',
  ascii: '\\x00-\\x7F',
  blank: '\\t ',
  cntrl: '\\x00-\\x1F\\x7F',
  digit: '0-9',
  graph: '!-~',
  lower: 'a-z',
  print: ' -~',
  punct: '!-\\/:-@[-`{-~',
  space: '\\t\\n\\v\\f\\r ',
  upper: 'A-Z',
  word: '0-9A-Za-z_',
  xdigit: '0-9A-Fa-f',
};

const GO_SPACE = '\\t\\n\\f\\r ';

function escapeLiteral(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}

export class GoRegexpError extends Error {
  constructor(pattern: string, reason: string) {
    super(`error parsing regexp: ${reason}: \`${pattern}\``);
    this.name = 'GoRegexpError';
  }
}

/** Translates RE2 syntax to a JavaScript pattern and flags. */
function translate(pattern: string): { source: string; flags: string } {
  let flags = '';
  let rest = pattern;
  const leading = /^\(\?([imsU]+)\)/.exec(rest);
  if (leading !== null) {
    if (leading[1]!.includes('U')) throw new GoRegexpError(pattern, 'ungreedy flag (?U) is not supported');
    flags = [...new Set(leading[1])].join('');
    rest = rest.slice(leading[0].length);
  }
  const dotAll = flags.includes('s');
  let out = '';
  let unicode = false;
  let inClass = false;
  for (let i = 0; i < rest.length; i++) {
    const c = rest[i]!;
    if (c === '\\') {
      const next = rest[i + 1];
      if (next === undefined) throw new GoRegexpError(pattern, 'trailing backslash at end of expression');
      i++;
      if (next === 'Q') {
        const end = rest.indexOf('\\E', i + 1);
        const literal = end < 0 ? rest.slice(i + 1) : rest.slice(i + 1, end);
        out += escapeLiteral(literal);
        i = end < 0 ? rest.length : end + 1;
      } else if (next === 'A' && !inClass) out += '(?<![\\s\\S])';
      else if (next === 'z' && !inClass) out += '(?![\\s\\S])';
      else if (next === 's') out += inClass ? GO_SPACE : `[${GO_SPACE}]`;
      else if (next === 'S') {
        if (inClass) throw new GoRegexpError(pattern, 'negated \\S inside a class is not supported');
        out += `[^${GO_SPACE}]`;
      } else if (next === 'p' || next === 'P') {
        unicode = true;
        if (rest[i + 1] === '{') {
          const end = rest.indexOf('}', i);
          out += `\\${next}${rest.slice(i + 1, end + 1)}`;
          i = end;
        } else {
          out += `\\${next}{${rest[i + 1]}}`;
          i++;
        }
      } else if (/[1-9]/.test(next)) throw new GoRegexpError(pattern, `invalid escape sequence: \`\\${next}\``);
      else if (next === 'C') throw new GoRegexpError(pattern, 'invalid escape sequence: `\\C`');
      else out += `\\${next}`;
      continue;
    }
    if (inClass) {
      if (c === '[' && rest[i + 1] === ':') {
        const end = rest.indexOf(':]', i + 2);
        const name = end < 0 ? '' : rest.slice(i + 2, end);
        const negated = name.startsWith('^');
        const cls = POSIX_CLASSES[negated ? name.slice(1) : name];
        if (cls === undefined) throw new GoRegexpError(pattern, `invalid character class range: \`[:${name}:]\``);
        if (negated) throw new GoRegexpError(pattern, 'negated POSIX classes are not supported');
        out += cls;
        i = end + 1;
        continue;
      }
      if (c === ']') inClass = false;
      out += c === '[' ? '\\[' : c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      if (rest[i + 1] === '^') {
        out += '^';
        i++;
      }
      // A ']' first in a class is a literal in RE2.
      if (rest[i + 1] === ']') {
        out += '\\]';
        i++;
      }
      continue;
    }
    if (c === '(' && rest.startsWith('(?P<', i)) {
      out += '(?<';
      i += 3;
      continue;
    }
    if (c === '(' && rest[i + 1] === '?' && /^\(\?[imsU-]+\)/.test(rest.slice(i)))
      throw new GoRegexpError(pattern, 'flags after the start of a pattern are not supported');
    if (c === '.') {
      out += dotAll ? '[\\s\\S]' : '[^\\n]';
      continue;
    }
    out += c;
  }
  const jsFlags = flags.replace('s', '') + (unicode ? 'u' : '');
  return { source: out, flags: jsFlags };
}

/** A compiled Go regexp. */
export class GoRegexp {
  readonly #re: RegExp;

  constructor(pattern: string) {
    const { source, flags } = translate(pattern);
    try {
      this.#re = new RegExp(source, `${flags}g`);
    } catch (err) {
      throw new GoRegexpError(pattern, err instanceof Error ? err.message.replace(/^Invalid regular expression: /, '') : String(err));
    }
  }

  /** The match at or after `pos`, with the whole input as context (as Go's doExecute). */
  #exec(text: string, pos: number): RegExpExecArray | null {
    this.#re.lastIndex = pos;
    return this.#re.exec(text);
  }

  matchString(text: string): boolean {
    return this.#exec(text, 0) !== null;
  }

  findString(text: string): string {
    return this.#exec(text, 0)?.[0] ?? '';
  }

  /** Go's allMatches: successive non-overlapping matches; an empty match right after a match is skipped. */
  findAll(text: string, n: number): RegExpExecArray[] {
    const limit = n < 0 ? text.length + 1 : n;
    const out: RegExpExecArray[] = [];
    let pos = 0;
    let prevMatchEnd = -1;
    while (out.length < limit && pos <= text.length) {
      const m = this.#exec(text, pos);
      if (m === null) break;
      const start = m.index;
      const end = start + m[0].length;
      let accept = true;
      if (end === pos) {
        if (start === prevMatchEnd) accept = false;
        const width = pos < text.length ? String.fromCodePoint(text.codePointAt(pos)!).length : 1;
        pos += width;
      } else pos = end;
      prevMatchEnd = end;
      if (accept) out.push(m);
    }
    return out;
  }

  findAllString(text: string, n: number): string[] {
    return this.findAll(text, n).map((m) => m[0]);
  }

  /** Go's replaceAll: no replacement for an empty match right after a match. */
  replaceAll(text: string, replace: (match: RegExpExecArray) => string): string {
    let out = '';
    let lastMatchEnd = 0;
    let searchPos = 0;
    while (searchPos <= text.length) {
      const m = this.#exec(text, searchPos);
      if (m === null) break;
      const start = m.index;
      const end = start + m[0].length;
      out += text.slice(lastMatchEnd, start);
      if (end > lastMatchEnd || start === 0) out += replace(m);
      lastMatchEnd = end;
      const width = searchPos < text.length ? String.fromCodePoint(text.codePointAt(searchPos)!).length : 1;
      if (searchPos + width > end) searchPos += width;
      else if (searchPos + 1 > end) searchPos++;
      else searchPos = end;
    }
    return out + text.slice(lastMatchEnd);
  }

  /** ReplaceAllString: `$1`, `${1}`, `$name`, `${name}` expanded as Go expands them. */
  replaceAllString(text: string, template: string): string {
    return this.replaceAll(text, (m) => expand(template, m));
  }

  replaceAllLiteralString(text: string, replacement: string): string {
    return this.replaceAll(text, () => replacement);
  }

  split(text: string, n: number): string[] {
    if (n === 0) return [];
    if (this.#re.source !== '(?:)' && text === '') return [''];
    const matches = this.findAll(text, n);
    const out: string[] = [];
    let beg = 0;
    let end = 0;
    for (const m of matches) {
      if (n > 0 && out.length === n - 1) break;
      end = m.index;
      if (m.index + m[0].length !== 0) out.push(text.slice(beg, end));
      beg = m.index + m[0].length;
    }
    if (end !== text.length) out.push(text.slice(beg));
    return out;
  }
}

/** Go's Regexp.expand. */
function expand(template: string, m: RegExpExecArray): string {
  let out = '';
  let rest = template;
  for (;;) {
    const dollar = rest.indexOf('$');
    if (dollar < 0) break;
    out += rest.slice(0, dollar);
    rest = rest.slice(dollar + 1);
    if (rest.startsWith('$')) {
      out += '$';
      rest = rest.slice(1);
      continue;
    }
    const ref = /^(?:\{([\p{L}\p{Nd}_]+)\}|([\p{L}\p{Nd}_]+))/u.exec(rest);
    if (ref === null) {
      out += '$';
      continue;
    }
    rest = rest.slice(ref[0].length);
    const name = ref[1] ?? ref[2]!;
    let num = /^\d+$/.test(name) && !(name.length > 1 && name.startsWith('0')) ? Number(name) : -1;
    if (num >= 1e8) num = -1;
    const value = num >= 0 ? m[num] : m.groups?.[name];
    out += value ?? '';
  }
  return out + rest;
}

/** Go's regexp.QuoteMeta. */
export function quoteMeta(text: string): string {
  return text.replace(/[\\.+*?()|[\]{}^$]/g, '\\$&');
}
