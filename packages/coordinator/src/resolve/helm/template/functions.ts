/**
 * What a template function is here: its Go signature (the executor checks and converts arguments
 * against it as Go's reflection does, so `indent .Values.n "x"` with a float64 fails as in Helm)
 * and the JavaScript that runs it. A function reports Go's error result by throwing.
 */
import type { GoTime } from './go-time.ts';
import type { GoMap } from './go-values.ts';

/**
 * Go parameter types the template functions use. `reflect` is text/template's reflect.Value
 * parameter: the function sees "no value" (`undefined`) apart from nil (`null`).
 */
export type GoType = 'any' | 'reflect' | 'string' | 'int' | 'uint32' | 'float64' | 'bool' | 'map' | 'slice' | 'time';

interface GoTypeValues {
  any: unknown;
  reflect: unknown;
  string: string;
  int: bigint;
  uint32: bigint;
  float64: number;
  bool: boolean;
  map: GoMap | null;
  slice: unknown[] | null;
  time: GoTime;
}

export type GoValueOf<T extends GoType> = GoTypeValues[T];
type ArgsOf<P extends readonly GoType[]> = { -readonly [K in keyof P]: GoValueOf<P[K]> };

/** Go's name of a parameter type, for argument errors. */
export const GO_TYPE_NAMES: Record<GoType, string> = {
  any: 'interface {}',
  reflect: 'reflect.Value',
  string: 'string',
  int: 'int',
  uint32: 'uint32',
  float64: 'float64',
  bool: 'bool',
  map: 'map[string]interface {}',
  slice: '[]interface {}',
  time: 'time.Time',
};

/**
 * How deep template executions may nest (`template`, `include` and `tpl` together). Go allows
 * 100000 nested `{{template}}` calls and Helm 1000 nested `include`s of one name; a JavaScript
 * stack holds about 500 levels, so nesting stops here, well before. Charts nest a few levels.
 */
export const MAX_TEMPLATE_DEPTH = 300;

/** A set of parsed templates with the functions its templates call: what `include` and `tpl` work on. */
export interface TemplateScope {
  /** Runs a named template of this scope with `data` as dot; throws TemplateError. */
  executeTemplate(name: string, data: unknown, depth: number): string;
  /**
   * For `tpl`: parses `text` as template `name` into a copy of this scope (the `define`s it holds
   * stay in the copy, as with Helm's clone) and returns what runs it there. Throws TemplateError.
   */
  parseInCopy(name: string, text: string): (data: unknown, depth: number) => string;
  /** How many `include`s of each name are under way, shared with the clones (Helm's recursion guard). */
  readonly includeDepths: Map<string, number>;
}

/** Where a function is called from. */
export interface CallContext {
  /** The executing template's name (Go's `s.tmpl.Name()`): a file, or a `define`d name. */
  readonly templateName: string;
  /** How deep template executions are nested at this call. */
  readonly depth: number;
  readonly scope: TemplateScope;
}

export interface TemplateFunction {
  /** Go parameter types in order; with `variadic`, the last one repeats (Go's `...T`). */
  readonly params: readonly GoType[];
  readonly variadic: boolean;
  /** `and`, `or`: evaluated lazily by the executor, not called. */
  readonly shortCircuit?: 'and' | 'or';
  readonly call: (args: unknown[], context: CallContext) => unknown;
}

export type FunctionMap = ReadonlyMap<string, TemplateFunction>;

/** A function with a fixed Go signature. */
export function goFunc<const P extends readonly GoType[]>(params: P, call: (...args: ArgsOf<P>) => unknown): TemplateFunction {
  return { params, variadic: false, call: (args) => call(...(args as ArgsOf<P>)) };
}

/** A function whose last parameter is Go's `...rest`. */
export function goVariadic<const P extends readonly GoType[], R extends GoType>(
  params: P,
  rest: R,
  call: (...args: [...ArgsOf<P>, ...Array<GoValueOf<R>>]) => unknown,
): TemplateFunction {
  return { params: [...params, rest], variadic: true, call: (args) => call(...(args as [...ArgsOf<P>, ...Array<GoValueOf<R>>])) };
}

/** A fixed-signature function that needs to know where it is called from (`include`, `tpl`). */
export function goFuncInContext<const P extends readonly GoType[]>(params: P, call: (context: CallContext, ...args: ArgsOf<P>) => unknown): TemplateFunction {
  return { params, variadic: false, call: (args, context) => call(context, ...(args as ArgsOf<P>)) };
}
