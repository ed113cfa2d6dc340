/**
 * Go's text/template executor (exec.go) over the values of go-values.ts. What Helm users rely on
 * comes from here: a missing map key is "no value" (printed `<no value>`, which Helm then removes)
 * unless the engine is strict, while a field of a nil value is Go's famous error
 * `nil pointer evaluating interface {}.b`; arguments are checked against each function's Go
 * signature; `and`/`or` short-circuit; every error names the file, line and action.
 *
 * Methods: when a field of an object is a JavaScript function (an own property, or a capitalized
 * method of the object's class), it is called bound to the object with the command's arguments
 * and the pipeline's value appended last, as Go calls methods: `.Files.Get "a.txt"`,
 * `.Capabilities.APIVersions.Has "apps/v1"`. Its arguments are passed as evaluated (nil as null);
 * a thrown error becomes `error calling Get: <message>`.
 */
import { isEmptyTree, lineAndColumn, nodeString } from './ast.ts';
import type {
  ArgNode,
  BranchNode,
  ChainNode,
  CommandNode,
  FieldNode,
  IdentifierNode,
  ListNode,
  Node,
  NumberNode,
  PipeNode,
  TemplateNode,
  Tree,
  VariableNode,
} from './ast.ts';
import { GO_TYPE_NAMES, MAX_TEMPLATE_DEPTH, type CallContext, type GoType, type TemplateFunction, type TemplateScope } from './functions.ts';
import { formatValue } from './go-format.ts';
import { goQuote } from './go-strconv.ts';
import { GoTime } from './go-time.ts';
import { findMethod, findStructField, goTypeName, isGoMap, isMapLike, isStructLike, isTrue, mapGet, sortedMapKeys } from './go-values.ts';
import { TemplateError } from './template-error.ts';

/** The set a template runs in: its templates, functions and missing-key option. */
export interface ExecutionScope extends TemplateScope {
  lookupTemplate(name: string): Tree | undefined;
  lookupFunction(name: string): TemplateFunction | undefined;
  /** Helm's `--strict` (Go's `missingkey=error`): a missing map key is an error, not "no value". */
  readonly strict: boolean;
}

/** Go's missingVal: the command has no value piped into it. */
const MISSING: unique symbol = Symbol('missing');

type Signal = 'break' | 'continue' | undefined;

interface Variable {
  name: string;
  value: unknown;
}

function canBeNil(type: GoType): boolean {
  return type === 'any' || type === 'reflect' || type === 'map' || type === 'slice';
}

function isHexInt(text: string): boolean {
  return text.length > 2 && text[0] === '0' && (text[1] === 'x' || text[1] === 'X') && !/[pP]/.test(text);
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const CHAIN_LINK = ': error calling ';
const ELIDED = /^\.\.\. (\d+) more nested calls \.\.\.$/;

/**
 * Go's error for a failure ten includes deep repeats each level's location; a runaway recursion
 * would make it hundreds of kilobytes. Past ten levels, the middle levels are counted, not shown.
 */
function elideChain(message: string): string {
  const parts = message.split(CHAIN_LINK);
  if (parts.length <= 11) return message;
  let hidden = 0;
  const kept: string[] = [];
  parts.forEach((part, i) => {
    const already = ELIDED.exec(part);
    if (already !== null) hidden += Number(already[1]);
    else if (i < 5 || i >= parts.length - 5) kept.push(part);
    else hidden++;
  });
  return [...kept.slice(0, 5), `... ${hidden} more nested calls ...`, ...kept.slice(5)].join(CHAIN_LINK);
}

class State {
  readonly #scope: ExecutionScope;
  readonly #tree: Tree;
  readonly #vars: Variable[];
  readonly #depth: number;
  readonly #out: string[];
  #node: Node | undefined;

  constructor(scope: ExecutionScope, tree: Tree, data: unknown, depth: number, out: string[]) {
    this.#scope = scope;
    this.#tree = tree;
    this.#vars = [{ name: '$', value: data }];
    this.#depth = depth;
    this.#out = out;
  }

  at(node: Node): void {
    this.#node = node;
  }

  /** Go's ErrorContext of a node, as errors start: `file:line:col: executing "name" at <context>`. */
  #where(node: Node): { prefix: string; line: number; column: number } {
    const { line, column } = lineAndColumn(node.source.text, node.pos);
    let context = nodeString(node);
    if ([...context].length > 20) context = `${[...context].slice(0, 20).join('')}...`;
    return { prefix: `${node.source.name}:${line}:${column}: executing ${goQuote(this.#tree.name)} at <${context}>`, line, column };
  }

  /** Go's state.errorf. */
  fail(message: string): never {
    const node = this.#node;
    if (node === undefined) throw new TemplateError(`${this.#tree.name}: ${message}`, { template: this.#tree.source.name, line: 0, reason: message });
    const { prefix, line, column } = this.#where(node);
    throw new TemplateError(`${prefix}: ${message}`, { template: node.source.name, line, column, reason: message });
  }

  /** A function's error, as `error calling <name>: ...`; an error of a nested template keeps its location. */
  failCall(name: string, err: unknown): never {
    if (err instanceof TemplateError && this.#node !== undefined) {
      const { prefix } = this.#where(this.#node);
      throw new TemplateError(elideChain(`${prefix}: error calling ${name}: ${err.goMessage}`), {
        template: err.template,
        line: err.line,
        ...(err.column === undefined ? {} : { column: err.column }),
        reason: err.reason,
        cause: err,
      });
    }
    this.fail(`error calling ${name}: ${errorMessage(err)}`);
  }

  // Variables.

  varValue(name: string): unknown {
    for (let i = this.#vars.length - 1; i >= 0; i--) if (this.#vars[i]!.name === name) return this.#vars[i]!.value;
    this.fail(`undefined variable: ${name}`);
  }

  setVar(name: string, value: unknown): void {
    for (let i = this.#vars.length - 1; i >= 0; i--) {
      if (this.#vars[i]!.name === name) {
        this.#vars[i]!.value = value;
        return;
      }
    }
    this.fail(`undefined variable: ${name}`);
  }

  setTopVar(n: number, value: unknown): void {
    this.#vars[this.#vars.length - n]!.value = value;
  }

  // Walking.

  walk(dot: unknown, node: Node): Signal {
    this.at(node);
    switch (node.type) {
      case 'action': {
        const value = this.evalPipeline(dot, node.pipe);
        if (node.pipe.decl.length === 0) this.printValue(node, value);
        return undefined;
      }
      case 'break':
      case 'continue':
        return node.type;
      case 'if':
      case 'with':
        return this.walkIfOrWith(dot, node);
      case 'list':
        for (const child of node.nodes) {
          const signal = this.walk(dot, child);
          if (signal !== undefined) return signal;
        }
        return undefined;
      case 'range':
        return this.walkRange(dot, node);
      case 'template':
        this.walkTemplate(dot, node);
        return undefined;
      case 'text':
        this.#out.push(node.text);
        return undefined;
      default:
        this.fail(`unknown node: ${nodeString(node)}`);
    }
  }

  walkIfOrWith(dot: unknown, node: BranchNode): Signal {
    const mark = this.#vars.length;
    try {
      const value = this.evalPipeline(dot, node.pipe);
      if (isTrue(value)) return this.walk(node.type === 'with' ? value : dot, node.list);
      if (node.elseList !== undefined) return this.walk(dot, node.elseList);
      return undefined;
    } finally {
      this.#vars.length = mark;
    }
  }

  walkRange(dot: unknown, node: BranchNode): Signal {
    this.at(node);
    const outer = this.#vars.length;
    try {
      const value = this.evalPipeline(dot, node.pipe);
      const mark = this.#vars.length;
      const decl = node.pipe.decl;
      const oneIteration = (index: unknown, elem: unknown): boolean => {
        if (decl.length > 0) {
          if (node.pipe.isAssign) this.setVar(decl[0]!.ident[0]!, decl.length > 1 ? index : elem);
          else this.setTopVar(1, elem);
        }
        if (decl.length > 1) {
          if (node.pipe.isAssign) this.setVar(decl[1]!.ident[0]!, elem);
          else this.setTopVar(2, index);
        }
        try {
          return this.walk(elem, node.list) === 'break';
        } finally {
          this.#vars.length = mark;
        }
      };
      if (Array.isArray(value) || value instanceof Uint8Array) {
        if (value.length > 0) {
          for (let i = 0; i < value.length; i++) {
            const raw: unknown = value[i];
            const elem = value instanceof Uint8Array ? BigInt(raw as number) : (raw ?? null);
            if (oneIteration(BigInt(i), elem)) break;
          }
          return undefined;
        }
      } else if (isMapLike(value)) {
        const keys = sortedMapKeys(value);
        if (keys.length > 0) {
          for (const key of keys) if (oneIteration(key, mapGet(value, key).value ?? null)) break;
          return undefined;
        }
      } else if (typeof value === 'bigint') {
        // Go 1.22: range over an integer.
        if (decl.length > 1) this.fail(`can't use ${formatValue(value)} to iterate over more than one variable`);
        if (value > 0n) {
          for (let i = 0n; i < value; i++) if (oneIteration(undefined, i)) break;
          return undefined;
        }
      } else if (value !== undefined && value !== null) {
        this.fail(`range can't iterate over ${formatValue(value)}`);
      }
      if (node.elseList !== undefined) {
        // Go's walkRange swallows a {{break}} from its else branch but not a {{continue}}.
        const signal = this.walk(dot, node.elseList);
        return signal === 'continue' ? signal : undefined;
      }
      return undefined;
    } finally {
      this.#vars.length = outer;
    }
  }

  walkTemplate(dot: unknown, node: TemplateNode): void {
    this.at(node);
    const tree = this.#scope.lookupTemplate(node.name);
    if (tree === undefined) this.fail(`template ${goQuote(node.name)} not defined`);
    if (this.#depth >= MAX_TEMPLATE_DEPTH) this.fail(`exceeded maximum template depth (${MAX_TEMPLATE_DEPTH})`);
    // Variables declared by the pipeline persist.
    const newDot = this.evalPipeline(dot, node.pipe);
    // No dynamic scoping: the template sees only `$`, its dot.
    new State(this.#scope, tree, newDot, this.#depth + 1, this.#out).walk(newDot, tree.root);
  }

  printValue(node: Node, value: unknown): void {
    this.at(node);
    if (value === undefined || value === null) this.#out.push('<no value>');
    else if (typeof value === 'function') this.fail(`can't print ${nodeString(node)} of type func`);
    else this.#out.push(formatValue(value));
  }

  // Evaluation.

  evalPipeline(dot: unknown, pipe: PipeNode | undefined): unknown {
    if (pipe === undefined) return undefined;
    this.at(pipe);
    let value: unknown = MISSING;
    for (const cmd of pipe.cmds) {
      value = this.evalCommand(dot, cmd, value);
      // A nil interface{} result is "no value" once it leaves the command (Go digs into interfaces here).
      if (value === null) value = undefined;
    }
    for (const variable of pipe.decl) {
      if (pipe.isAssign) this.setVar(variable.ident[0]!, value);
      else this.#vars.push({ name: variable.ident[0]!, value });
    }
    return value;
  }

  notAFunction(first: Node, args: readonly ArgNode[], final: unknown): void {
    if (args.length > 0 || final !== MISSING) this.fail(`can't give argument to non-function ${nodeString(first)}`);
  }

  evalCommand(dot: unknown, cmd: CommandNode, final: unknown): unknown {
    const first = cmd.args[0]!;
    const args = cmd.args.slice(1);
    switch (first.type) {
      case 'field':
        return this.evalFieldNode(dot, first, args, final);
      case 'chain':
        return this.evalChainNode(dot, first, args, final);
      case 'identifier':
        return this.evalFunction(dot, first, cmd, args, final);
      case 'pipe':
        // A parenthesized pipeline takes no arguments.
        this.notAFunction(first, args, final);
        return this.evalPipeline(dot, first);
      case 'variable':
        return this.evalVariableNode(dot, first, args, final);
      default:
        break;
    }
    this.at(first);
    this.notAFunction(first, args, final);
    switch (first.type) {
      case 'bool':
        return first.value;
      case 'dot':
        return dot;
      case 'nil':
        this.fail('nil is not a command');
      case 'number':
        return this.idealConstant(first);
      case 'string':
        return first.text;
    }
  }

  /** A number literal where the type is not known: `1` is an int, `1.0` and `1e3` are float64. */
  idealConstant(node: NumberNode): unknown {
    this.at(node);
    if (node.float !== undefined && !isHexInt(node.text) && !node.text.startsWith("'") && /[.eEpP]/.test(node.text)) return node.float;
    if (node.int !== undefined) return node.int;
    if (node.isUint) this.fail(`${node.text} overflows int`);
    return undefined;
  }

  evalFieldNode(dot: unknown, field: FieldNode, args: readonly ArgNode[], final: unknown): unknown {
    this.at(field);
    return this.evalFieldChain(dot, dot, field, field.ident, args, final);
  }

  evalChainNode(dot: unknown, chain: ChainNode, args: readonly ArgNode[], final: unknown): unknown {
    this.at(chain);
    if (chain.node.type === 'nil') this.fail(`indirection through explicit nil in ${nodeString(chain)}`);
    const receiver = this.evalArg(dot, undefined, chain.node);
    return this.evalFieldChain(dot, receiver, chain, chain.fields, args, final);
  }

  evalVariableNode(dot: unknown, variable: VariableNode, args: readonly ArgNode[], final: unknown): unknown {
    this.at(variable);
    const value = this.varValue(variable.ident[0]!);
    if (variable.ident.length === 1) {
      this.notAFunction(variable, args, final);
      return value;
    }
    return this.evalFieldChain(dot, value, variable, variable.ident.slice(1), args, final);
  }

  /** `.X.Y.Z` on `receiver`; only the last field gets the arguments (when it is a method). */
  evalFieldChain(dot: unknown, receiver: unknown, node: Node, ident: readonly string[], args: readonly ArgNode[], final: unknown): unknown {
    let current = receiver;
    // Whether `current` came out of a map[string]interface{}: Go then names its type `interface {}`.
    let boxed = false;
    for (let i = 0; i < ident.length; i++) {
      const last = i === ident.length - 1;
      const next = this.evalField(dot, ident[i]!, node, last ? args : [], last ? final : MISSING, current, boxed);
      boxed = isGoMap(current) && goTypeName(current) === 'map[string]interface {}';
      current = next;
    }
    return current;
  }

  evalField(dot: unknown, fieldName: string, node: Node, args: readonly ArgNode[], final: unknown, receiver: unknown, boxed: boolean): unknown {
    if (receiver === undefined) {
      if (this.#scope.strict) this.fail(`nil data; no entry for key ${goQuote(fieldName)}`);
      return undefined;
    }
    // Calling a method on a nil interface can't work; the missing-key option does not apply here.
    if (receiver === null) this.fail(`nil pointer evaluating interface {}.${fieldName}`);
    const method = findMethod(receiver, fieldName);
    if (method !== undefined) return this.evalMethodCall(dot, receiver, method, node, fieldName, args, final);
    const hasArgs = args.length > 0 || final !== MISSING;
    if (isMapLike(receiver)) {
      if (hasArgs) this.fail(`${fieldName} is not a method but has arguments`);
      const { found, value } = mapGet(receiver, fieldName);
      if (found) return value ?? null;
      if (this.#scope.strict) this.fail(`map has no entry for key ${goQuote(fieldName)}`);
      // The zero value of the map's element type: nil for interface{}, "" for map[string]string.
      return goTypeName(receiver) === 'map[string]string' ? '' : null;
    }
    if (isStructLike(receiver)) {
      const { found, value } = findStructField(receiver, fieldName);
      if (found) {
        if (hasArgs) this.fail(`${fieldName} has arguments but cannot be invoked as function`);
        return value ?? null;
      }
    }
    this.fail(`can't evaluate field ${fieldName} in type ${boxed ? 'interface {}' : goTypeName(receiver)}`);
  }

  evalFunction(dot: unknown, node: IdentifierNode, cmd: Node, args: readonly ArgNode[], final: unknown): unknown {
    this.at(node);
    const fn = this.#scope.lookupFunction(node.ident);
    if (fn === undefined) this.fail(`${goQuote(node.ident)} is not a defined function`);
    return this.evalCall(dot, fn, cmd, node.ident, args, final);
  }

  evalCall(dot: unknown, fn: TemplateFunction, node: Node, name: string, args: readonly ArgNode[], final: unknown): unknown {
    const params = fn.params;
    const numIn = args.length + (final === MISSING ? 0 : 1);
    let numFixed = args.length;
    if (fn.variadic) {
      numFixed = params.length - 1;
      if (numIn < numFixed) this.fail(`wrong number of args for ${name}: want at least ${numFixed} got ${args.length}`);
    } else if (numIn !== params.length) this.fail(`wrong number of args for ${name}: want ${params.length} got ${numIn}`);

    if (fn.shortCircuit !== undefined) {
      // and/or return the first argument that decides the result, evaluating no further.
      let value: unknown;
      for (const arg of args) {
        value = this.evalArg(dot, 'reflect', arg);
        if (isTrue(value) === (fn.shortCircuit === 'or')) return value;
      }
      if (final !== MISSING) value = this.validateType(final, 'reflect');
      return value;
    }

    const argv: unknown[] = [];
    let i = 0;
    for (; i < numFixed && i < args.length; i++) argv.push(this.evalArg(dot, params[i], args[i]!));
    if (fn.variadic) {
      const elemType = params[params.length - 1]!;
      for (; i < args.length; i++) argv.push(this.evalArg(dot, elemType, args[i]!));
    }
    if (final !== MISSING) {
      let type = params[params.length - 1]!;
      if (fn.variadic && numIn - 1 < numFixed) type = params[numIn - 1]!;
      argv.push(this.validateType(final, type));
    }
    const context: CallContext = { templateName: this.#tree.name, depth: this.#depth, scope: this.#scope };
    let result: unknown;
    try {
      result = fn.call(argv, context);
    } catch (err) {
      this.at(node);
      this.failCall(name, err);
    }
    return result ?? null;
  }

  evalMethodCall(dot: unknown, receiver: object, method: (...args: unknown[]) => unknown, node: Node, name: string, args: readonly ArgNode[], final: unknown): unknown {
    const argv = args.map((arg) => this.evalArg(dot, 'any', arg));
    if (final !== MISSING) argv.push(final ?? null);
    let result: unknown;
    try {
      result = method.apply(receiver, argv);
    } catch (err) {
      this.at(node);
      this.failCall(name, err);
    }
    return result ?? null;
  }

  /** Go's validateType: is the value assignable to the parameter? (`undefined` type: anything.) */
  validateType(value: unknown, type: GoType | undefined): unknown {
    if (value === undefined) {
      if (type === undefined) return undefined;
      if (canBeNil(type)) return type === 'reflect' ? undefined : null;
      this.fail(`invalid value; expected ${GO_TYPE_NAMES[type]}`);
    }
    if (type === undefined || type === 'any' || type === 'reflect') return value;
    let ok: boolean;
    switch (type) {
      case 'string':
        ok = typeof value === 'string';
        break;
      case 'int':
        ok = typeof value === 'bigint';
        break;
      case 'uint32':
        ok = false;
        break;
      case 'float64':
        ok = typeof value === 'number';
        break;
      case 'bool':
        ok = typeof value === 'boolean';
        break;
      case 'map':
        ok = isGoMap(value) && goTypeName(value) === 'map[string]interface {}';
        break;
      case 'slice':
        ok = Array.isArray(value) && goTypeName(value) === '[]interface {}';
        break;
      case 'time':
        ok = value instanceof GoTime;
        break;
    }
    if (!ok) this.fail(`wrong type for value; expected ${GO_TYPE_NAMES[type]}; got ${value === null ? 'interface {}' : goTypeName(value)}`);
    return value;
  }

  evalArg(dot: unknown, type: GoType | undefined, node: ArgNode): unknown {
    this.at(node);
    switch (node.type) {
      case 'dot':
        return this.validateType(dot, type);
      case 'nil':
        if (type !== undefined && canBeNil(type)) return type === 'reflect' ? undefined : null;
        this.fail(`cannot assign nil to ${type === undefined ? 'interface {}' : GO_TYPE_NAMES[type]}`);
      case 'field':
        return this.validateType(this.evalFieldNode(dot, node, [], MISSING), type);
      case 'variable':
        return this.validateType(this.evalVariableNode(dot, node, [], MISSING), type);
      case 'pipe':
        return this.validateType(this.evalPipeline(dot, node), type);
      case 'identifier':
        return this.validateType(this.evalFunction(dot, node, node, [], MISSING), type);
      case 'chain':
        return this.validateType(this.evalChainNode(dot, node, [], MISSING), type);
      default:
        break;
    }
    switch (type) {
      case 'bool':
        if (node.type === 'bool') return node.value;
        this.fail(`expected bool; found ${nodeString(node)}`);
      case 'float64':
        if (node.type === 'number' && node.float !== undefined) return node.float;
        this.fail(`expected float; found ${nodeString(node)}`);
      case 'int':
        if (node.type === 'number' && node.int !== undefined) return node.int;
        this.fail(`expected integer; found ${nodeString(node)}`);
      case 'uint32':
        if (node.type === 'number' && node.isUint && node.int !== undefined) return node.int;
        this.fail(`expected unsigned integer; found ${nodeString(node)}`);
      case 'string':
        if (node.type === 'string') return node.text;
        this.fail(`expected string; found ${nodeString(node)}`);
      case 'any':
      case 'reflect':
      case undefined:
        return this.evalEmptyInterface(node);
      default:
        this.fail(`can't handle ${nodeString(node)} for arg of type ${GO_TYPE_NAMES[type]}`);
    }
  }

  evalEmptyInterface(node: ArgNode): unknown {
    switch (node.type) {
      case 'bool':
        return node.value;
      case 'number':
        return this.idealConstant(node);
      case 'string':
        return node.text;
      default:
        this.fail(`can't handle assignment of ${nodeString(node)} to empty interface argument`);
    }
  }

  run(root: ListNode): void {
    this.walk(this.#vars[0]!.value, root);
  }
}

/** Executes `tree` with `data` as `$` and dot; throws TemplateError. */
export function executeTree(scope: ExecutionScope, tree: Tree, data: unknown, depth: number): string {
  if (depth > MAX_TEMPLATE_DEPTH) {
    throw new TemplateError(`${tree.name}: exceeded maximum template depth (${MAX_TEMPLATE_DEPTH})`, {
      template: tree.source.name,
      line: 0,
      reason: `exceeded maximum template depth (${MAX_TEMPLATE_DEPTH})`,
    });
  }
  const out: string[] = [];
  new State(scope, tree, data ?? undefined, depth, out).run(tree.root);
  return out.join('');
}

/** Whether a tree would add nothing if it replaced another of its name (Go keeps the old one then). */
export function isEmptyTemplate(tree: Tree): boolean {
  return isEmptyTree(tree.root);
}
