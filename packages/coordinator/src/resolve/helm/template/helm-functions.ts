/**
 * Helm's own template functions (helm/pkg/engine/funcs.go and engine.go) on top of sprig's:
 * `include`, `tpl`, `required`, `fail`, the YAML/JSON/TOML converters and `lookup`.
 *
 * - `include` runs a named template and returns its text; Helm stops a name nested more than
 *   1000 deep (`rendering template has a nested reference name: …`). Here the same error comes
 *   at MAX_TEMPLATE_DEPTH, the nesting a JavaScript stack allows.
 * - `tpl` parses its text in a copy of the current set, named after the calling template (Helm
 *   names it "gotpl"), so `define`s in the text stay there; errors carry the text and Go's chain.
 * - `lookup` answers an empty map, as `helm template` does without a cluster.
 * - `toToml`, `mustToToml` and `fromToml` fail when called: meshmirror has no TOML encoder, and a
 *   chart's images never come out of TOML.
 */
import { goFunc, goFuncInContext, MAX_TEMPLATE_DEPTH, type FunctionMap, type TemplateFunction } from './functions.ts';
import { jsonKindName, marshalJson, unmarshalJson } from './go-json.ts';
import { goQuote } from './go-strconv.ts';
import { isGoMap, newGoMap, type GoMap } from './go-values.ts';
import { marshalYaml, marshalYamlPretty, unmarshalYaml } from './go-yaml.ts';
import { SPRIG_FUNCTIONS } from './sprig.ts';
import { TemplateError } from './template-error.ts';

/** Helm's recursionMaxNums. */
export const MAX_INCLUDE_DEPTH = 1000;

function trimNewline(text: string): string {
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}

function asMap(value: unknown, decodeError: (kind: string) => string): GoMap {
  if (value === null || value === undefined) return newGoMap();
  if (isGoMap(value)) return value;
  const map = newGoMap();
  map['Error'] = decodeError(jsonKindName(value));
  return map;
}

/** fromYaml/fromJson: a map, with the error under "Error" (Helm tolerates errors in templates). */
function decodeToMap(text: string, decode: (text: string) => unknown, wrap: (message: string) => string): GoMap {
  try {
    return asMap(decode(text), (kind) => wrap(`json: cannot unmarshal ${kind} into Go value of type map[string]interface {}`));
  } catch (err) {
    const map = newGoMap();
    map['Error'] = err instanceof Error ? err.message : String(err);
    return map;
  }
}

function decodeToList(text: string, decode: (text: string) => unknown, wrap: (message: string) => string): unknown[] {
  try {
    const value = decode(text);
    if (value === null || value === undefined) return [];
    if (Array.isArray(value)) return value;
    return [wrap(`json: cannot unmarshal ${jsonKindName(value)} into Go value of type []interface {}`)];
  } catch (err) {
    return [err instanceof Error ? err.message : String(err)];
  }
}

const yamlDecodeError = (message: string): string => `error unmarshaling JSON: while decoding JSON: ${message}`;

function notSupported(name: string): TemplateFunction {
  return goFunc(['any'], () => {
    throw new Error(`${name} is not supported by meshmirror's chart renderer`);
  });
}

const include = goFuncInContext(['string', 'any'], (context, name, data) => {
  const depths = context.scope.includeDepths;
  const current = depths.get(name);
  if ((current !== undefined && current > MAX_INCLUDE_DEPTH) || context.depth + 1 >= MAX_TEMPLATE_DEPTH) {
    throw new Error(`rendering template has a nested reference name: ${name}: unable to execute template`);
  }
  depths.set(name, (current ?? 0) + 1);
  try {
    return context.scope.executeTemplate(name, data, context.depth + 1);
  } finally {
    depths.set(name, depths.get(name)! - 1);
  }
});

const tpl = goFuncInContext(['string', 'any'], (context, text, data) => {
  let run: (data: unknown, depth: number) => string;
  try {
    run = context.scope.parseInCopy(context.templateName, text);
  } catch (err) {
    if (err instanceof TemplateError) throw new Error(`cannot parse template ${goQuote(text)}: ${err.goMessage}`, { cause: err });
    throw err;
  }
  try {
    return run(data, context.depth + 1).replaceAll('<no value>', '');
  } catch (err) {
    if (err instanceof TemplateError) throw new Error(`error during tpl function execution for ${goQuote(text)}: ${err.goMessage}`, { cause: err });
    throw err;
  }
});

const HELM_EXTRA_FUNCTIONS: ReadonlyArray<[string, TemplateFunction]> = [
  ['include', include],
  ['tpl', tpl],
  [
    'required',
    goFunc(['string', 'any'], (message, value) => {
      if (value === null || value === '') throw new Error(message);
      return value;
    }),
  ],
  [
    'fail',
    goFunc(['string'], (message) => {
      throw new Error(message);
    }),
  ],
  [
    'toYaml',
    goFunc(['any'], (value) => {
      try {
        return trimNewline(marshalYaml(value));
      } catch {
        // Helm swallows marshalling errors inside a template.
        return '';
      }
    }),
  ],
  ['mustToYaml', goFunc(['any'], (value) => trimNewline(marshalYaml(value)))],
  [
    'toYamlPretty',
    goFunc(['any'], (value) => {
      try {
        return trimNewline(marshalYamlPretty(value));
      } catch {
        return '';
      }
    }),
  ],
  ['fromYaml', goFunc(['string'], (text) => decodeToMap(text, unmarshalYaml, yamlDecodeError))],
  ['fromYamlArray', goFunc(['string'], (text) => decodeToList(text, unmarshalYaml, yamlDecodeError))],
  [
    'toJson',
    goFunc(['any'], (value) => {
      try {
        return marshalJson(value);
      } catch {
        return '';
      }
    }),
  ],
  ['mustToJson', goFunc(['any'], (value) => marshalJson(value))],
  ['fromJson', goFunc(['string'], (text) => decodeToMap(text, unmarshalJson, (message) => message))],
  ['fromJsonArray', goFunc(['string'], (text) => decodeToList(text, unmarshalJson, (message) => message))],
  ['toToml', notSupported('toToml')],
  ['mustToToml', notSupported('mustToToml')],
  ['fromToml', notSupported('fromToml')],
  ['lookup', goFunc(['string', 'string', 'string', 'string'], () => newGoMap())],
];

/** Every function a Helm chart's templates can call besides text/template's builtins. */
export const HELM_FUNCTIONS: FunctionMap = new Map<string, TemplateFunction>([...SPRIG_FUNCTIONS, ...HELM_EXTRA_FUNCTIONS]);
