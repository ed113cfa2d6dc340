/**
 * Go's text/template lexer (text/template/parse/lex.go, Go 1.22+), as a function that returns the
 * whole token list. Inside actions, newlines are spaces; `{{- ` and ` -}}` trim all adjacent
 * spaces, tabs and newlines; a comment must start right after `{{` (or `{{- `) and end right before
 * `}}` (or ` -}}`). An error becomes the last token, as Go's lexer stops at its first error.
 */

export type TokenKind =
  | 'error'
  | 'bool'
  | 'char'
  | 'charConstant'
  | 'complex'
  | 'assign'
  | 'declare'
  | 'eof'
  | 'field'
  | 'identifier'
  | 'leftDelim'
  | 'leftParen'
  | 'number'
  | 'pipe'
  | 'rawString'
  | 'rightDelim'
  | 'rightParen'
  | 'space'
  | 'string'
  | 'text'
  | 'variable'
  // Keywords.
  | 'block'
  | 'break'
  | 'continue'
  | 'dot'
  | 'define'
  | 'else'
  | 'end'
  | 'if'
  | 'nil'
  | 'range'
  | 'template'
  | 'with';

export interface Token {
  kind: TokenKind;
  /** Offset of the token in the template text. */
  pos: number;
  value: string;
}

const KEYWORDS = new Map<string, TokenKind>([
  ['.', 'dot'],
  ['block', 'block'],
  ['break', 'break'],
  ['continue', 'continue'],
  ['define', 'define'],
  ['else', 'else'],
  ['end', 'end'],
  ['if', 'if'],
  ['range', 'range'],
  ['nil', 'nil'],
  ['template', 'template'],
  ['with', 'with'],
]);

export function isKeyword(kind: TokenKind): boolean {
  return ['block', 'break', 'continue', 'dot', 'define', 'else', 'end', 'if', 'nil', 'range', 'template', 'with'].includes(kind);
}

const LEFT_DELIM = '{{';
const RIGHT_DELIM = '}}';
const LEFT_COMMENT = '/*';
const RIGHT_COMMENT = '*/';
/** The marker plus the space next to it. */
const TRIM_MARKER_LEN = 2;

function isSpace(ch: string | undefined): boolean {
  return ch === ' ' || ch === '\t' || ch === '\r' || ch === '\n';
}

function isAlphaNumeric(ch: string | undefined): boolean {
  return ch !== undefined && (ch === '_' || /^[\p{L}\p{Nd}]$/u.test(ch));
}

function hasLeftTrimMarker(text: string, at: number): boolean {
  return text[at] === '-' && isSpace(text[at + 1]);
}

function hasRightTrimMarker(text: string, at: number): boolean {
  return isSpace(text[at]) && text[at + 1] === '-';
}

function printableRune(ch: string): boolean {
  const cp = ch.codePointAt(0)!;
  return cp >= 0x20 && cp < 0x7f;
}

/** Go's `%#U`: `U+003D '='`. */
function describeRune(ch: string | undefined): string {
  if (ch === undefined) return 'U+FFFFFFFF';
  const cp = ch.codePointAt(0)!;
  const code = `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  return /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u.test(ch) ? `${code} '${ch}'` : code;
}

class Lexer {
  readonly tokens: Token[] = [];
  pos = 0;
  start = 0;
  parenDepth = 0;
  readonly input: string;

  constructor(input: string) {
    this.input = input;
  }

  emit(kind: TokenKind): void {
    this.tokens.push({ kind, pos: this.start, value: this.input.slice(this.start, this.pos) });
    this.start = this.pos;
  }

  /** Stops lexing: the error is the last token. */
  fail(message: string): false {
    this.tokens.push({ kind: 'error', pos: this.start, value: message });
    return false;
  }

  peekChar(): string | undefined {
    const cp = this.input.codePointAt(this.pos);
    return cp === undefined ? undefined : String.fromCodePoint(cp);
  }

  nextChar(): string | undefined {
    const ch = this.peekChar();
    if (ch !== undefined) this.pos += ch.length;
    return ch;
  }

  atRightDelim(): { delim: boolean; trim: boolean } {
    if (hasRightTrimMarker(this.input, this.pos) && this.input.startsWith(RIGHT_DELIM, this.pos + TRIM_MARKER_LEN)) return { delim: true, trim: true };
    if (this.input.startsWith(RIGHT_DELIM, this.pos)) return { delim: true, trim: false };
    return { delim: false, trim: false };
  }

  atTerminator(): boolean {
    const ch = this.peekChar();
    if (ch === undefined || isSpace(ch)) return true;
    if ('.,|:)('.includes(ch)) return true;
    return this.input.startsWith(RIGHT_DELIM, this.pos);
  }

  run(): Token[] {
    for (;;) {
      if (!this.lexText()) return this.tokens;
    }
  }

  /** Text up to the next action; false at the end of input (after emitting EOF) or on error. */
  lexText(): boolean {
    const x = this.input.indexOf(LEFT_DELIM, this.pos);
    if (x < 0) {
      this.pos = this.input.length;
      if (this.pos > this.start) this.emit('text');
      this.emit('eof');
      return false;
    }
    if (x > this.pos) {
      this.pos = x;
      let trimLength = 0;
      if (hasLeftTrimMarker(this.input, x + LEFT_DELIM.length)) {
        const text = this.input.slice(this.start, x);
        trimLength = text.length - text.replace(/[ \t\r\n]+$/, '').length;
      }
      this.pos -= trimLength;
      if (this.pos > this.start) this.emit('text');
      this.pos += trimLength;
      this.start = this.pos;
    }
    return this.lexLeftDelim();
  }

  lexLeftDelim(): boolean {
    this.pos += LEFT_DELIM.length;
    const trim = hasLeftTrimMarker(this.input, this.pos);
    const afterMarker = trim ? TRIM_MARKER_LEN : 0;
    if (this.input.startsWith(LEFT_COMMENT, this.pos + afterMarker)) {
      this.pos += afterMarker;
      this.start = this.pos;
      return this.lexComment();
    }
    this.emit('leftDelim');
    this.pos += afterMarker;
    this.start = this.pos;
    this.parenDepth = 0;
    return this.lexInsideAction();
  }

  lexComment(): boolean {
    this.pos += LEFT_COMMENT.length;
    const x = this.input.indexOf(RIGHT_COMMENT, this.pos);
    if (x < 0) return this.fail('unclosed comment');
    this.pos = x + RIGHT_COMMENT.length;
    const { delim, trim } = this.atRightDelim();
    if (!delim) return this.fail('comment ends before closing delimiter');
    if (trim) this.pos += TRIM_MARKER_LEN;
    this.pos += RIGHT_DELIM.length;
    if (trim) this.skipLeadingSpace();
    this.start = this.pos;
    return true;
  }

  skipLeadingSpace(): void {
    while (isSpace(this.input[this.pos])) this.pos++;
  }

  lexRightDelim(trim: boolean): boolean {
    if (trim) {
      this.pos += TRIM_MARKER_LEN;
      this.start = this.pos;
    }
    this.pos += RIGHT_DELIM.length;
    this.emit('rightDelim');
    if (trim) {
      this.skipLeadingSpace();
      this.start = this.pos;
    }
    return true;
  }

  lexInsideAction(): boolean {
    for (;;) {
      const { delim, trim } = this.atRightDelim();
      if (delim) {
        if (this.parenDepth === 0) return this.lexRightDelim(trim);
        return this.fail('unclosed left paren');
      }
      const ch = this.nextChar();
      let ok = true;
      if (ch === undefined) return this.fail('unclosed action');
      else if (isSpace(ch)) {
        this.pos -= ch.length;
        this.lexSpace();
      } else if (ch === '=') this.emit('assign');
      else if (ch === ':') {
        if (this.nextChar() !== '=') return this.fail('expected :=');
        this.emit('declare');
      } else if (ch === '|') this.emit('pipe');
      else if (ch === '"') ok = this.lexQuote();
      else if (ch === '`') ok = this.lexRawQuote();
      else if (ch === '$') ok = this.lexVariable();
      else if (ch === "'") ok = this.lexChar();
      else if (ch === '.' && this.pos < this.input.length && !(this.input[this.pos]! >= '0' && this.input[this.pos]! <= '9')) ok = this.lexFieldOrVariable('field');
      else if (ch === '.' || ch === '+' || ch === '-' || (ch >= '0' && ch <= '9')) {
        this.pos -= ch.length;
        ok = this.lexNumber();
      } else if (isAlphaNumeric(ch)) {
        this.pos -= ch.length;
        ok = this.lexIdentifier();
      } else if (ch === '(') {
        this.parenDepth++;
        this.emit('leftParen');
      } else if (ch === ')') {
        this.parenDepth--;
        if (this.parenDepth < 0) return this.fail('unexpected right paren');
        this.emit('rightParen');
      } else if (printableRune(ch)) this.emit('char');
      else return this.fail(`unrecognized character in action: ${describeRune(ch)}`);
      if (!ok) return false;
    }
  }

  /** A run of spaces; a single space that begins ` -}}` belongs to the delimiter. */
  lexSpace(): void {
    let numSpaces = 0;
    while (isSpace(this.input[this.pos])) {
      this.pos++;
      numSpaces++;
    }
    if (hasRightTrimMarker(this.input, this.pos - 1) && this.input.startsWith(RIGHT_DELIM, this.pos - 1 + TRIM_MARKER_LEN)) {
      this.pos--;
      if (numSpaces === 1) return;
    }
    this.emit('space');
  }

  lexIdentifier(): boolean {
    while (isAlphaNumeric(this.peekChar())) this.nextChar();
    if (!this.atTerminator()) return this.fail(`bad character ${describeRune(this.peekChar())}`);
    const word = this.input.slice(this.start, this.pos);
    const keyword = KEYWORDS.get(word);
    if (keyword !== undefined) this.emit(keyword);
    else if (word.startsWith('.')) this.emit('field');
    else if (word === 'true' || word === 'false') this.emit('bool');
    else this.emit('identifier');
    return true;
  }

  lexVariable(): boolean {
    if (this.atTerminator()) {
      this.emit('variable');
      return true;
    }
    return this.lexFieldOrVariable('variable');
  }

  /** `.Field` or `$name`, the `.` or `$` already read. */
  lexFieldOrVariable(kind: 'field' | 'variable'): boolean {
    if (this.atTerminator()) {
      this.emit(kind === 'variable' ? 'variable' : 'dot');
      return true;
    }
    while (isAlphaNumeric(this.peekChar())) this.nextChar();
    if (!this.atTerminator()) return this.fail(`bad character ${describeRune(this.peekChar())}`);
    this.emit(kind);
    return true;
  }

  lexChar(): boolean {
    for (;;) {
      const ch = this.nextChar();
      if (ch === '\\') {
        const next = this.nextChar();
        if (next !== undefined && next !== '\n') continue;
        return this.fail('unterminated character constant');
      }
      if (ch === undefined || ch === '\n') return this.fail('unterminated character constant');
      if (ch === "'") break;
    }
    this.emit('charConstant');
    return true;
  }

  lexQuote(): boolean {
    for (;;) {
      const ch = this.nextChar();
      if (ch === '\\') {
        const next = this.nextChar();
        if (next !== undefined && next !== '\n') continue;
        return this.fail('unterminated quoted string');
      }
      if (ch === undefined || ch === '\n') return this.fail('unterminated quoted string');
      if (ch === '"') break;
    }
    this.emit('string');
    return true;
  }

  lexRawQuote(): boolean {
    const close = this.input.indexOf('`', this.pos);
    if (close < 0) return this.fail('unterminated raw quoted string');
    this.pos = close + 1;
    this.emit('rawString');
    return true;
  }

  accept(valid: string): boolean {
    const ch = this.input[this.pos];
    if (ch !== undefined && valid.includes(ch)) {
      this.pos++;
      return true;
    }
    return false;
  }

  acceptRun(valid: string): void {
    while (this.accept(valid));
  }

  /** Go's scanNumber: lenient; strconv rejects what is wrong later. */
  scanNumber(): boolean {
    this.accept('+-');
    let digits = '0123456789_';
    if (this.accept('0')) {
      if (this.accept('xX')) digits = '0123456789abcdefABCDEF_';
      else if (this.accept('oO')) digits = '01234567_';
      else if (this.accept('bB')) digits = '01_';
    }
    this.acceptRun(digits);
    if (this.accept('.')) this.acceptRun(digits);
    if (digits.length === 11 && this.accept('eE')) {
      this.accept('+-');
      this.acceptRun('0123456789_');
    }
    if (digits.length === 23 && this.accept('pP')) {
      this.accept('+-');
      this.acceptRun('0123456789_');
    }
    this.accept('i');
    if (isAlphaNumeric(this.peekChar())) {
      this.nextChar();
      return false;
    }
    return true;
  }

  lexNumber(): boolean {
    if (!this.scanNumber()) return this.fail(`bad number syntax: ${JSON.stringify(this.input.slice(this.start, this.pos))}`);
    const sign = this.input[this.pos];
    if (sign === '+' || sign === '-') {
      // Complex: 1+2i. No spaces, must end in 'i'.
      if (!this.scanNumber() || this.input[this.pos - 1] !== 'i') return this.fail(`bad number syntax: ${JSON.stringify(this.input.slice(this.start, this.pos))}`);
      this.emit('complex');
      return true;
    }
    this.emit('number');
    return true;
  }
}

/** Lexes a whole template; the last token is `eof` or `error`. */
export function lex(input: string): Token[] {
  return new Lexer(input).run();
}
