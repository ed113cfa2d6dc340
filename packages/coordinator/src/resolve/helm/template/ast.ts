/**
 * The parse tree of text/template/parse (node.go): the node kinds, and their `String()` forms,
 * which Go prints in execution errors (`at <.Values.a.b>`).
 */
import { goQuote } from './go-strconv.ts';

/** The text a node came from, for error locations. */
export interface SourceText {
  /** Go's ParseName: the file the text was parsed from (a `define` keeps its file's name). */
  readonly name: string;
  readonly text: string;
}

interface NodeBase {
  /** Offset in `source.text`. */
  readonly pos: number;
  readonly source: SourceText;
}

export interface ListNode extends NodeBase {
  readonly type: 'list';
  readonly nodes: Node[];
}
export interface TextNode extends NodeBase {
  readonly type: 'text';
  readonly text: string;
}
export interface ActionNode extends NodeBase {
  readonly type: 'action';
  readonly pipe: PipeNode;
}
export interface PipeNode extends NodeBase {
  readonly type: 'pipe';
  readonly isAssign: boolean;
  readonly decl: VariableNode[];
  readonly cmds: CommandNode[];
}
export interface CommandNode extends NodeBase {
  readonly type: 'command';
  readonly args: ArgNode[];
}
export interface IdentifierNode extends NodeBase {
  readonly type: 'identifier';
  readonly ident: string;
}
/** `$x.Field1.Field2`: ident[0] is the variable. */
export interface VariableNode extends NodeBase {
  readonly type: 'variable';
  readonly ident: string[];
}
export interface DotNode extends NodeBase {
  readonly type: 'dot';
}
export interface NilNode extends NodeBase {
  readonly type: 'nil';
}
/** `.Field1.Field2`. */
export interface FieldNode extends NodeBase {
  readonly type: 'field';
  readonly ident: string[];
}
/** `(pipeline).Field1.Field2`, or a field chain on any other term. */
export interface ChainNode extends NodeBase {
  readonly type: 'chain';
  readonly node: ArgNode;
  readonly fields: string[];
}
export interface BoolNode extends NodeBase {
  readonly type: 'bool';
  readonly value: boolean;
}
export interface NumberNode extends NodeBase {
  readonly type: 'number';
  readonly text: string;
  /** Set when the literal is an int64 (also for `1.0`, which is integral). */
  readonly int: bigint | undefined;
  readonly isUint: boolean;
  readonly float: number | undefined;
}
export interface StringNode extends NodeBase {
  readonly type: 'string';
  /** The literal as written, quotes included. */
  readonly quoted: string;
  readonly text: string;
}
export interface BreakNode extends NodeBase {
  readonly type: 'break';
}
export interface ContinueNode extends NodeBase {
  readonly type: 'continue';
}
export interface BranchNode extends NodeBase {
  readonly type: 'if' | 'range' | 'with';
  readonly pipe: PipeNode;
  readonly list: ListNode;
  readonly elseList: ListNode | undefined;
}
export interface TemplateNode extends NodeBase {
  readonly type: 'template';
  readonly name: string;
  readonly pipe: PipeNode | undefined;
}

/** What a command's words can be. */
export type ArgNode = IdentifierNode | VariableNode | DotNode | NilNode | FieldNode | ChainNode | BoolNode | NumberNode | StringNode | PipeNode;
export type Node = ListNode | TextNode | ActionNode | BreakNode | ContinueNode | BranchNode | TemplateNode | PipeNode | CommandNode | ArgNode;

/** A parsed template: `define`d or a file's main text. */
export interface Tree {
  readonly name: string;
  readonly root: ListNode;
  readonly source: SourceText;
}

/** Go's parse.IsEmptyTree: only whitespace text (and comments). */
export function isEmptyTree(node: Node): boolean {
  switch (node.type) {
    case 'list':
      return node.nodes.every(isEmptyTree);
    case 'text':
      return node.text.trim() === '';
    default:
      return false;
  }
}

/** Go's `node.String()`. */
export function nodeString(node: Node): string {
  switch (node.type) {
    case 'list':
      return node.nodes.map(nodeString).join('');
    case 'text':
      return node.text;
    case 'action':
      return `{{${nodeString(node.pipe)}}}`;
    case 'pipe': {
      let out = '';
      if (node.decl.length > 0) out += `${node.decl.map(nodeString).join(', ')}${node.isAssign ? ' = ' : ' := '}`;
      return out + node.cmds.map(nodeString).join(' | ');
    }
    case 'command':
      return node.args.map((arg) => (arg.type === 'pipe' ? `(${nodeString(arg)})` : nodeString(arg))).join(' ');
    case 'identifier':
      return node.ident;
    case 'variable':
      return node.ident.join('.');
    case 'dot':
      return '.';
    case 'nil':
      return 'nil';
    case 'field':
      return node.ident.map((ident) => `.${ident}`).join('');
    case 'chain': {
      const head = node.node.type === 'pipe' ? `(${nodeString(node.node)})` : nodeString(node.node);
      return head + node.fields.map((field) => `.${field}`).join('');
    }
    case 'bool':
      return String(node.value);
    case 'number':
      return node.text;
    case 'string':
      return node.quoted;
    case 'break':
      return '{{break}}';
    case 'continue':
      return '{{continue}}';
    case 'if':
    case 'range':
    case 'with': {
      const elsePart = node.elseList === undefined ? '' : `{{else}}${nodeString(node.elseList)}`;
      return `{{${node.type} ${nodeString(node.pipe)}}}${nodeString(node.list)}${elsePart}{{end}}`;
    }
    case 'template':
      return node.pipe === undefined ? `{{template ${goQuote(node.name)}}}` : `{{template ${goQuote(node.name)} ${nodeString(node.pipe)}}}`;
  }
}

/** Line (1-based) and Go's byte column of an offset in a text. */
export function lineAndColumn(text: string, pos: number): { line: number; column: number } {
  const before = text.slice(0, pos);
  const lastNewline = before.lastIndexOf('\n');
  let line = 1;
  for (let i = before.indexOf('\n'); i >= 0; i = before.indexOf('\n', i + 1)) line++;
  return { line, column: Buffer.byteLength(before.slice(lastNewline + 1), 'utf8') };
}
