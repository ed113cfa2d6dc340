/**
 * Go's text/template parser (text/template/parse/parse.go): one text becomes its main tree plus a
 * tree per `define`/`block`. Functions are checked here, as Go checks them, so an unknown function
 * fails the parse with its file and line instead of rendering less. Complex number literals are
 * rejected (Go accepts them; no chart uses them).
 */
import type { ActionNode, ArgNode, BranchNode, CommandNode, ListNode, Node, NumberNode, PipeNode, SourceText, TemplateNode, Tree, VariableNode } from './ast.ts';
import { isEmptyTree, lineAndColumn } from './ast.ts';
import { goUnquote, parseGoFloat, parseGoInt, parseGoUint, unquoteChar } from './go-strconv.ts';
import { isKeyword, lex, type Token, type TokenKind } from './lexer.ts';
import { TemplateError } from './template-error.ts';

/** A `{{end}}` or `{{else}}` returned by itemList to its caller. */
interface Terminator {
  type: 'end' | 'else';
  pos: number;
}

type ParsedItem = Node | Terminator;

function isTerminator(item: ParsedItem): item is Terminator {
  return item.type === 'end' || item.type === 'else';
}

class Parser {
  readonly #tokens: Token[];
  #index = 0;
  /** The furthest token read: Go reports parse errors at its line. */
  #furthest = 0;
  readonly #source: SourceText;
  readonly #hasFunction: (name: string) => boolean;
  readonly trees = new Map<string, Tree>();
  #vars: string[] = ['$'];
  #rangeDepth = 0;

  constructor(source: SourceText, hasFunction: (name: string) => boolean) {
    this.#source = source;
    this.#hasFunction = hasFunction;
    this.#tokens = lex(source.text);
  }

  fail(message: string): never {
    const token = this.#tokens[Math.min(this.#furthest, this.#tokens.length - 1)]!;
    const { line } = lineAndColumn(this.#source.text, token.pos);
    throw new TemplateError(`${this.#source.name}:${line}: ${message}`, { template: this.#source.name, line, reason: message });
  }

  next(): Token {
    const token = this.#tokens[Math.min(this.#index, this.#tokens.length - 1)]!;
    this.#index++;
    this.#furthest = Math.max(this.#furthest, this.#index - 1);
    if (token.kind === 'error') this.fail(token.value);
    return token;
  }

  backup(count = 1): void {
    this.#index -= count;
  }

  peek(): Token {
    const token = this.next();
    this.backup();
    return token;
  }

  nextNonSpace(): Token {
    let token = this.next();
    while (token.kind === 'space') token = this.next();
    return token;
  }

  peekNonSpace(): Token {
    const token = this.nextNonSpace();
    this.backup();
    return token;
  }

  expect(kind: TokenKind, context: string): Token {
    const token = this.nextNonSpace();
    if (token.kind !== kind) this.unexpected(token, context);
    return token;
  }

  unexpected(token: Token, context: string): never {
    this.fail(`unexpected ${describeToken(token)} in ${context}`);
  }

  parse(name: string): void {
    const root = this.list(this.peek().pos);
    while (this.peek().kind !== 'eof') {
      if (this.peek().kind === 'leftDelim') {
        const start = this.#index;
        this.next();
        if (this.nextNonSpace().kind === 'define') {
          this.parseDefinition();
          continue;
        }
        this.#index = start;
      }
      const item = this.textOrAction();
      if (isTerminator(item)) this.fail(`unexpected {{${item.type}}}`);
      root.nodes.push(item);
    }
    this.add({ name, root, source: this.#source });
  }

  /** A tree of this text; two non-empty trees of one name in one text are an error. */
  add(tree: Tree): void {
    const existing = this.trees.get(tree.name);
    if (existing === undefined || isEmptyTree(existing.root)) {
      this.trees.set(tree.name, tree);
      return;
    }
    if (!isEmptyTree(tree.root)) this.fail(`template: multiple definition of template ${JSON.stringify(tree.name)}`);
  }

  list(pos: number): ListNode {
    return { type: 'list', pos, source: this.#source, nodes: [] };
  }

  withVars<T>(vars: string[], body: () => T): T {
    const saved = this.#vars;
    const savedRange = this.#rangeDepth;
    this.#vars = vars;
    this.#rangeDepth = 0;
    try {
      return body();
    } finally {
      this.#vars = saved;
      this.#rangeDepth = savedRange;
    }
  }

  parseDefinition(): void {
    const context = 'define clause';
    const token = this.nextNonSpace();
    if (token.kind !== 'string' && token.kind !== 'rawString') this.unexpected(token, context);
    const name = this.unquote(token.value);
    this.expect('rightDelim', context);
    this.withVars(['$'], () => {
      const [root, end] = this.itemList();
      if (end.type !== 'end') this.fail(`unexpected {{${end.type}}} in ${context}`);
      this.add({ name, root, source: this.#source });
    });
  }

  /** textOrAction* up to `{{end}}` or `{{else}}`, which is returned separately. */
  itemList(): [ListNode, Terminator] {
    const list = this.list(this.peekNonSpace().pos);
    while (this.peekNonSpace().kind !== 'eof') {
      const item = this.textOrAction();
      if (isTerminator(item)) return [list, item];
      list.nodes.push(item);
    }
    this.fail('unexpected EOF');
  }

  textOrAction(): ParsedItem {
    const token = this.nextNonSpace();
    if (token.kind === 'text') return { type: 'text', pos: token.pos, source: this.#source, text: token.value };
    if (token.kind === 'leftDelim') return this.action();
    this.unexpected(token, 'input');
  }

  action(): ParsedItem {
    const token = this.nextNonSpace();
    switch (token.kind) {
      case 'block':
        return this.blockControl();
      case 'break':
      case 'continue': {
        const after = this.nextNonSpace();
        if (after.kind !== 'rightDelim') this.unexpected(after, `{{${token.kind}}}`);
        if (this.#rangeDepth === 0) this.fail(`{{${token.kind}}} outside {{range}}`);
        return { type: token.kind, pos: token.pos, source: this.#source };
      }
      case 'else':
        return this.elseControl();
      case 'end':
        this.expect('rightDelim', 'end');
        return { type: 'end', pos: token.pos };
      case 'if':
      case 'range':
      case 'with':
        return this.branchControl(token.kind);
      case 'template':
        return this.templateControl();
      default:
        break;
    }
    this.backup();
    const start = this.peek();
    // Variables declared here persist until the enclosing {{end}}.
    const action: ActionNode = { type: 'action', pos: start.pos, source: this.#source, pipe: this.pipeline('command', 'rightDelim') };
    return action;
  }

  elseControl(): Terminator {
    const peek = this.peekNonSpace();
    // {{else if}} and {{else with}}: leave the keyword for parseControl to nest.
    if (peek.kind === 'if' || peek.kind === 'with') return { type: 'else', pos: peek.pos };
    const token = this.expect('rightDelim', 'else');
    return { type: 'else', pos: token.pos };
  }

  branchControl(kind: 'if' | 'range' | 'with'): BranchNode {
    const saved = this.#vars.length;
    try {
      const pipe = this.pipeline(kind, 'rightDelim');
      if (kind === 'range') this.#rangeDepth++;
      const [list, first] = this.itemList();
      let next = first;
      if (kind === 'range') this.#rangeDepth--;
      let elseList: ListNode | undefined;
      if (next.type === 'else') {
        const following = this.peek();
        if ((kind === 'if' && following.kind === 'if') || (kind === 'with' && following.kind === 'with')) {
          // {{if a}}_{{else if b}}_{{end}} is {{if a}}_{{else}}{{if b}}_{{end}}{{end}}.
          this.next();
          elseList = this.list(next.pos);
          elseList.nodes.push(this.branchControl(kind));
        } else {
          [elseList, next] = this.itemList();
          if (next.type !== 'end') this.fail(`expected end; found {{${next.type}}}`);
        }
      }
      return { type: kind, pos: pipe.pos, source: this.#source, pipe, list, elseList };
    } finally {
      this.#vars.length = saved;
    }
  }

  blockControl(): TemplateNode {
    const context = 'block clause';
    const token = this.nextNonSpace();
    const name = this.templateName(token, context);
    const pipe = this.pipeline(context, 'rightDelim');
    this.withVars(['$'], () => {
      const [root, end] = this.itemList();
      if (end.type !== 'end') this.fail(`unexpected {{${end.type}}} in ${context}`);
      this.add({ name, root, source: this.#source });
    });
    return { type: 'template', pos: token.pos, source: this.#source, name, pipe };
  }

  templateControl(): TemplateNode {
    const context = 'template clause';
    const token = this.nextNonSpace();
    const name = this.templateName(token, context);
    let pipe: PipeNode | undefined;
    if (this.nextNonSpace().kind !== 'rightDelim') {
      this.backup();
      pipe = this.pipeline(context, 'rightDelim');
    }
    return { type: 'template', pos: token.pos, source: this.#source, name, pipe };
  }

  templateName(token: Token, context: string): string {
    if (token.kind !== 'string' && token.kind !== 'rawString') this.unexpected(token, context);
    return this.unquote(token.value);
  }

  unquote(literal: string): string {
    const text = goUnquote(literal);
    if (text === undefined) this.fail('invalid syntax');
    return text;
  }

  pipeline(context: string, end: 'rightDelim' | 'rightParen'): PipeNode {
    const first = this.peekNonSpace();
    const decl: VariableNode[] = [];
    let isAssign = false;
    for (;;) {
      const v = this.peekNonSpace();
      if (v.kind !== 'variable') break;
      this.nextNonSpace();
      const variableIndex = this.#index - 1;
      const next = this.peekNonSpace();
      if (next.kind === 'assign' || next.kind === 'declare') {
        isAssign = next.kind === 'assign';
        this.nextNonSpace();
        decl.push(this.variableNode(v.pos, v.value));
        this.#vars.push(v.value);
        break;
      }
      if (next.kind === 'char' && next.value === ',') {
        this.nextNonSpace();
        decl.push(this.variableNode(v.pos, v.value));
        this.#vars.push(v.value);
        if (context === 'range' && decl.length < 2) {
          const kind = this.peekNonSpace().kind;
          if (kind === 'variable' || kind === 'rightDelim' || kind === 'rightParen') continue;
          this.fail('range can only initialize variables');
        }
        this.fail(`too many declarations in ${context}`);
      }
      // Not a declaration: `$x` is the pipeline's first argument.
      this.#index = variableIndex;
      break;
    }
    const pipe: PipeNode = { type: 'pipe', pos: first.pos, source: this.#source, isAssign, decl, cmds: [] };
    for (;;) {
      const token = this.nextNonSpace();
      if (token.kind === end) {
        this.checkPipeline(pipe, context);
        return pipe;
      }
      switch (token.kind) {
        case 'bool':
        case 'charConstant':
        case 'complex':
        case 'dot':
        case 'field':
        case 'identifier':
        case 'number':
        case 'nil':
        case 'rawString':
        case 'string':
        case 'variable':
        case 'leftParen':
          this.backup();
          pipe.cmds.push(this.command());
          break;
        default:
          this.unexpected(token, context);
      }
    }
  }

  checkPipeline(pipe: PipeNode, context: string): void {
    if (pipe.cmds.length === 0) this.fail(`missing value for ${context}`);
    // Only the first command of a pipeline can start with a non-executable operand.
    pipe.cmds.slice(1).forEach((cmd, i) => {
      const kind = cmd.args[0]!.type;
      if (kind === 'bool' || kind === 'dot' || kind === 'nil' || kind === 'number' || kind === 'string') this.fail(`non executable command in pipeline stage ${i + 2}`);
    });
  }

  command(): CommandNode {
    const cmd: CommandNode = { type: 'command', pos: this.peekNonSpace().pos, source: this.#source, args: [] };
    for (;;) {
      this.peekNonSpace();
      const operand = this.operand();
      if (operand !== undefined) cmd.args.push(operand);
      const token = this.next();
      if (token.kind === 'space') continue;
      if (token.kind === 'rightDelim' || token.kind === 'rightParen') this.backup();
      else if (token.kind !== 'pipe') this.unexpected(token, 'operand');
      break;
    }
    if (cmd.args.length === 0) this.fail('empty command');
    return cmd;
  }

  /** A term followed by `.Field`s. */
  operand(): ArgNode | undefined {
    const node = this.term();
    if (node === undefined) return undefined;
    if (this.peek().kind !== 'field') return node;
    const chainPos = this.peek().pos;
    const fields: string[] = [];
    while (this.peek().kind === 'field') fields.push(this.next().value.slice(1));
    switch (node.type) {
      case 'field':
        return { type: 'field', pos: chainPos, source: this.#source, ident: [...node.ident, ...fields] };
      case 'variable':
        return { type: 'variable', pos: chainPos, source: this.#source, ident: [...node.ident, ...fields] };
      case 'bool':
      case 'string':
      case 'number':
      case 'nil':
      case 'dot':
        this.fail(
          `unexpected . after term ${JSON.stringify(node.type === 'string' ? node.quoted : node.type === 'number' ? node.text : node.type === 'bool' ? String(node.value) : node.type === 'nil' ? 'nil' : '.')}`,
        );
      default:
        return { type: 'chain', pos: chainPos, source: this.#source, node, fields };
    }
  }

  term(): ArgNode | undefined {
    const token = this.nextNonSpace();
    switch (token.kind) {
      case 'identifier':
        if (!this.#hasFunction(token.value)) this.fail(`function ${JSON.stringify(token.value)} not defined`);
        return { type: 'identifier', pos: token.pos, source: this.#source, ident: token.value };
      case 'dot':
        return { type: 'dot', pos: token.pos, source: this.#source };
      case 'nil':
        return { type: 'nil', pos: token.pos, source: this.#source };
      case 'variable':
        return this.useVar(token.pos, token.value);
      case 'field':
        return { type: 'field', pos: token.pos, source: this.#source, ident: [token.value.slice(1)] };
      case 'bool':
        return { type: 'bool', pos: token.pos, source: this.#source, value: token.value === 'true' };
      case 'charConstant':
      case 'complex':
      case 'number':
        return this.number(token);
      case 'leftParen':
        return this.pipeline('parenthesized pipeline', 'rightParen');
      case 'string':
      case 'rawString':
        return { type: 'string', pos: token.pos, source: this.#source, quoted: token.value, text: this.unquote(token.value) };
      default:
        this.backup();
        return undefined;
    }
  }

  variableNode(pos: number, name: string): VariableNode {
    return { type: 'variable', pos, source: this.#source, ident: name.split('.') };
  }

  useVar(pos: number, name: string): VariableNode {
    const node = this.variableNode(pos, name);
    if (!this.#vars.includes(node.ident[0]!)) this.fail(`undefined variable ${JSON.stringify(node.ident[0])}`);
    return node;
  }

  /** Go's newNumber: which of int, uint and float the literal can be. */
  number(token: Token): NumberNode {
    const base = { type: 'number' as const, pos: token.pos, source: this.#source, text: token.value };
    if (token.kind === 'charConstant') {
      const rune = unquoteChar(token.value);
      if (rune === undefined) this.fail(`malformed character constant: ${token.value}`);
      return { ...base, int: BigInt(rune), isUint: true, float: rune };
    }
    if (token.kind === 'complex' || token.value.endsWith('i')) this.fail(`complex number ${token.value} is not supported`);
    const text = token.value;
    const unsigned = parseGoUint(text);
    let int = parseGoInt(text);
    let isUint = unsigned !== undefined || int === 0n;
    let float: number | undefined;
    if (int !== undefined) float = Number(int);
    else if (unsigned !== undefined) float = Number(unsigned);
    else {
      const parsed = parseGoFloat(text);
      if (parsed !== undefined) {
        // Parsed as a float but looks like an integer: too large for one.
        if (!/[.eEpP]/.test(text)) this.fail(`integer overflow: ${JSON.stringify(text)}`);
        float = parsed;
        if (Number.isInteger(parsed) && Math.abs(parsed) < 2 ** 63) int = BigInt(parsed);
        if (Number.isInteger(parsed) && parsed >= 0 && parsed < 2 ** 64) isUint = true;
      }
    }
    if (int === undefined && !isUint && float === undefined) this.fail(`illegal number syntax: ${JSON.stringify(text)}`);
    return { ...base, int, isUint, float };
  }
}

function describeToken(token: Token): string {
  if (token.kind === 'eof') return 'EOF';
  if (token.kind === 'error') return token.value;
  if (isKeyword(token.kind)) return `<${token.value}>`;
  if ([...token.value].length > 10) return `${JSON.stringify([...token.value].slice(0, 10).join(''))}...`;
  return JSON.stringify(token.value);
}

/**
 * Parses one template text (`name` is also its ParseName, the file errors cite) into its trees: the
 * main one under `name`, and one per `define` and `block`. Throws TemplateError naming file and line.
 */
export function parseTemplate(name: string, text: string, hasFunction: (name: string) => boolean): Map<string, Tree> {
  const parser = new Parser({ name, text }, hasFunction);
  parser.parse(name);
  return parser.trees;
}
