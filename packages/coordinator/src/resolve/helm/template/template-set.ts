/**
 * A set of parsed templates sharing one namespace, Go's `*template.Template` with its associated
 * templates: each parsed text adds its main template and its `define`s; a later definition of a
 * name replaces an earlier one, except that an empty one never replaces (Go's `associate`).
 */
import type { Tree } from './ast.ts';
import { BUILTIN_FUNCTIONS } from './builtins.ts';
import { executeTree, isEmptyTemplate, type ExecutionScope } from './execute.ts';
import type { FunctionMap, TemplateFunction } from './functions.ts';
import { goQuote } from './go-strconv.ts';
import { HELM_FUNCTIONS } from './helm-functions.ts';
import { parseTemplate } from './parser.ts';
import { TemplateError } from './template-error.ts';

export interface TemplateSetOptions {
  /** Helm's `--strict` (Go's `missingkey=error`): a missing map key fails instead of printing nothing. */
  strict?: boolean;
  /**
   * Functions besides text/template's builtins (which they may replace, as Helm's sprig `slice`
   * does). Default: Helm's and sprig's. `new Map()` gives plain text/template.
   */
  functions?: FunctionMap;
}

/** Helm's root template, which Go names in "no template associated with" errors. */
const ROOT_NAME = 'gotpl';

/**
 * Parsed templates and the functions they call, Helm's and sprig's by default:
 * `parse(name, text)` adds a file, `execute(name, data)` runs one, `has(name)` asks for one.
 */
export class TemplateSet implements ExecutionScope {
  readonly strict: boolean;
  readonly includeDepths: Map<string, number>;
  readonly #functions: FunctionMap;
  readonly #templates: Map<string, Tree>;

  /** `copyOf` is for `tpl`'s copies: the same functions, options and include counter, and its templates. */
  constructor(options: TemplateSetOptions = {}, copyOf?: TemplateSet) {
    if (copyOf !== undefined) {
      this.strict = copyOf.strict;
      this.#functions = copyOf.#functions;
      this.#templates = new Map(copyOf.#templates);
      this.includeDepths = copyOf.includeDepths;
      return;
    }
    this.strict = options.strict ?? false;
    this.#functions = options.functions ?? HELM_FUNCTIONS;
    this.#templates = new Map();
    this.includeDepths = new Map();
  }

  #hasFunction = (name: string): boolean => this.#functions.has(name) || BUILTIN_FUNCTIONS.has(name);

  /** Parses `text` as the template `name` (also the file its errors cite). Throws TemplateError. */
  parse(name: string, text: string): void {
    for (const tree of this.#parseTrees(name, text).values()) this.#associate(tree);
  }

  #parseTrees(name: string, text: string): Map<string, Tree> {
    return parseTemplate(name, text, this.#hasFunction);
  }

  #associate(tree: Tree): void {
    if (this.#templates.has(tree.name) && isEmptyTemplate(tree)) return;
    this.#templates.set(tree.name, tree);
  }

  has(name: string): boolean {
    return this.#templates.has(name);
  }

  /** Every template name: parsed files and `define`d names. */
  names(): string[] {
    return [...this.#templates.keys()];
  }

  /** Runs template `name` with `data` as `$` and dot. Throws TemplateError. */
  execute(name: string, data: unknown): string {
    const tree = this.#templates.get(name);
    if (tree === undefined) {
      const reason = `no template ${goQuote(name)} associated with template ${goQuote(ROOT_NAME)}`;
      throw new TemplateError(reason, { template: name, line: 0, reason });
    }
    try {
      return executeTree(this, tree, data, 0);
    } catch (err) {
      // Stack exhaustion (only templates far past MAX_TEMPLATE_DEPTH's budget of frames get here).
      if (err instanceof RangeError && err.message.includes('call stack')) {
        const reason = 'templates nest too deeply for the JavaScript stack';
        throw new TemplateError(`${name}: ${reason}`, { template: tree.source.name, line: 0, reason, cause: err });
      }
      throw err;
    }
  }

  // ExecutionScope, for the executor and `include`/`tpl`.

  lookupTemplate(name: string): Tree | undefined {
    return this.#templates.get(name);
  }

  lookupFunction(name: string): TemplateFunction | undefined {
    return this.#functions.get(name) ?? BUILTIN_FUNCTIONS.get(name);
  }

  executeTemplate(name: string, data: unknown, depth: number): string {
    const tree = this.#templates.get(name);
    if (tree === undefined) throw new Error(`template: no template ${goQuote(name)} associated with template ${goQuote(ROOT_NAME)}`);
    return executeTree(this, tree, data, depth);
  }

  parseInCopy(name: string, text: string): (data: unknown, depth: number) => string {
    const copy = new TemplateSet({}, this);
    const trees = copy.#parseTrees(name, text);
    for (const tree of trees.values()) copy.#associate(tree);
    // The text's own tree runs even when it is empty and the copy kept an older one of its name.
    const main = trees.get(name)!;
    return (data, depth) => executeTree(copy, main, data, depth);
  }
}
