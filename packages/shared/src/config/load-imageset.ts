/**
 * Reads an ImageSetConfiguration file: YAML to data, data checked by `ImageSetConfigSchema`, and
 * every problem reported on one line as `file:line:col: field.path: what is wrong`. The other YAML
 * formats meshmirror reads (DeleteImageSetConfiguration, DeleteImageList) go the same way.
 */
import { readFile, stat } from 'node:fs/promises';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { ConfigError, fileErrorReason, MeshmirrorError } from '../errors.ts';
import { DeleteImageSetConfigSchema, describeConfigValue, formatConfigPath, ImageSetConfigSchema, type DeleteImageSetConfig, type ImageSetConfig } from './imageset.ts';

/** Problems listed in a `ConfigError` message; the rest are counted. All are in `data.problems`. */
const MAX_PROBLEM_LINES = 5;

export interface LoadImageSetOptions {
  signal?: AbortSignal;
}

/** One problem found in a configuration file. */
export interface ConfigProblem {
  /** Field path, e.g. `mirror.additionalImages[3].name`; empty for the document itself. */
  path: string;
  /** 1-based line and column of the field in the file. */
  line: number;
  col: number;
  message: string;
}

/**
 * Reads and checks an ImageSetConfiguration file. An unreadable file throws
 * `MeshmirrorError('MM_CONFIG_UNREADABLE')`; bad YAML or a bad field throws a `ConfigError`.
 */
export async function loadImageSetConfig(file: string, options: LoadImageSetOptions = {}): Promise<ImageSetConfig> {
  return parseImageSetConfig(await readConfigFile(file, options), file);
}

/** Reads and checks a DeleteImageSetConfiguration file; errors as `loadImageSetConfig`'s. */
export async function loadDeleteImageSetConfig(file: string, options: LoadImageSetOptions = {}): Promise<DeleteImageSetConfig> {
  return parseConfigText(await readConfigFile(file, options), file, DeleteImageSetConfigSchema);
}

/** A configuration file's text; `MM_CONFIG_UNREADABLE` naming the file when it cannot be read. */
export async function readConfigFile(file: string, options: LoadImageSetOptions = {}): Promise<string> {
  let text: string;
  try {
    // A FIFO or device would block the read (or never end); only a regular file is a configuration.
    const info = await stat(file);
    if (!info.isFile() && !info.isDirectory()) {
      throw new MeshmirrorError('MM_CONFIG_UNREADABLE', `${file}: cannot read: not a regular file`, { data: { file } });
    }
    text = await readFile(file, { encoding: 'utf8', ...(options.signal === undefined ? {} : { signal: options.signal }) });
  } catch (err) {
    if (options.signal?.aborted === true) throw err;
    if (err instanceof MeshmirrorError) throw err;
    throw new MeshmirrorError('MM_CONFIG_UNREADABLE', `${file}: cannot read: ${fileErrorReason(err)}`, {
      cause: err,
      data: { file },
    });
  }
  return text;
}

/** Checks ImageSetConfiguration text; `file` names it in messages. */
export function parseImageSetConfig(text: string, file: string): ImageSetConfig {
  return parseConfigText(text, file, ImageSetConfigSchema);
}

/**
 * Checks YAML text against one of the configuration schemas: bad YAML or a bad field throws a
 * `ConfigError` whose lines read `file:line:col: field.path: what is wrong`.
 */
export function parseConfigText<S extends z.ZodType>(text: string, file: string, schema: S): z.output<S> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text.replace(/^\uFEFF/, ''), { lineCounter, prettyErrors: false, uniqueKeys: true });
  const yamlError = doc.errors[0];
  if (yamlError !== undefined) {
    const { line, col } = lineCounter.linePos(yamlError.pos[0]);
    const message = yamlError.code === 'MULTIPLE_DOCS' ? 'the file holds more than one YAML document' : firstLine(yamlError.message);
    throw new ConfigError(`${file}:${line}:${col}: invalid YAML: ${message}`, {
      file,
      data: { line, col, yamlCode: yamlError.code },
    });
  }
  if (doc.contents === null) throw new ConfigError(`${file}: the file is empty`, { file });

  const locations = new Map<string, number>();
  const data = yamlToData(doc.contents, { doc, locations, file, lineCounter, aliasesOpen: new Set(), aliasedNodes: 0 }, [], 'typed');
  const result = schema.safeParse(data, { error: defaultIssueMessage });
  if (result.success) return result.data;

  const problems = result.error.issues.flatMap((issue) => issueProblems(issue, locations, lineCounter)).sort((a, b) => a.line - b.line || a.col - b.col);
  const lines = problems.slice(0, MAX_PROBLEM_LINES).map((p) => `${file}:${p.line}:${p.col}: ${p.path === '' ? '' : `${p.path}: `}${p.message}`);
  if (problems.length > MAX_PROBLEM_LINES) lines.push(`${file}: ... and ${problems.length - MAX_PROBLEM_LINES} more problems`);
  const first = problems[0];
  throw new ConfigError(lines.join('\n'), {
    file,
    ...(first === undefined || first.path === '' ? {} : { path: first.path }),
    data: { problems },
  });
}

function firstLine(text: string): string {
  return (text.split('\n')[0] ?? '').trim();
}

// ---- YAML to data ----

/**
 * Fields that oc-mirror types as strings. YAML 1.2 reads `minVersion: 4.10` as the float 4.1 and
 * `targetTag: 1.0` as 1; in these fields we keep the text as written, as the user meant it.
 * Keep in step with the string fields of imageset.ts.
 */
const TEXT_FIELDS = new Set([
  'apiVersion',
  'kind',
  'name',
  'type',
  'minVersion',
  'maxVersion',
  'minBundle',
  'defaultChannel',
  'version',
  'release',
  'catalog',
  'targetCatalog',
  'targetTag',
  'targetName',
  'targetRepo',
  'targetCatalogSourceTemplate',
  'releaseImageRepo',
  'releaseComponentRepo',
  'architectures',
  'url',
  'path',
  'imagePaths',
  'valuesFiles',
  'imageURL',
  'key',
  'operator',
]);

interface WalkContext {
  doc: Document.Parsed;
  /** Offset in the text of each field path's key (or list item), for line:col in messages. */
  locations: Map<string, number>;
  file: string;
  lineCounter: LineCounter;
  /** Anchored nodes being expanded through an alias right now: one seen again is a cycle. */
  aliasesOpen: Set<unknown>;
  /** Nodes visited through aliases so far: an alias bomb ("billion laughs") stops at the limit. */
  aliasedNodes: number;
}

/** Far more than any real configuration repeats through aliases; a few KiB of aliases can ask for billions. */
const MAX_ALIASED_NODES = 100_000;

function aliasError(ctx: WalkContext, node: unknown, problem: string): ConfigError {
  const range = node !== null && typeof node === 'object' && 'range' in node ? (node.range as [number, number, number] | undefined) : undefined;
  const { line, col } = ctx.lineCounter.linePos(range?.[0] ?? 0);
  return new ConfigError(`${ctx.file}:${line}:${col}: invalid YAML: ${problem}`, { file: ctx.file, data: { line, col } });
}

/**
 * `typed`: scalars as YAML resolves them; `text`: non-string scalars as their source text;
 * `text-values`: a mapping whose values are all text (`matchLabels`).
 */
type ScalarMode = 'typed' | 'text' | 'text-values';

function yamlToData(node: unknown, ctx: WalkContext, path: Array<string | number>, mode: ScalarMode): unknown {
  if (ctx.aliasesOpen.size > 0 && ++ctx.aliasedNodes > MAX_ALIASED_NODES) {
    throw aliasError(ctx, node, `aliases expand to more than ${MAX_ALIASED_NODES} values (an alias bomb?)`);
  }
  if (isAlias(node)) {
    const target = node.resolve(ctx.doc);
    if (ctx.aliasesOpen.has(target)) throw aliasError(ctx, node, `alias *${node.source} refers to a value that contains it`);
    ctx.aliasesOpen.add(target);
    try {
      return yamlToData(target, ctx, path, mode);
    } finally {
      ctx.aliasesOpen.delete(target);
    }
  }
  if (isScalar(node)) {
    // Text modes keep a number or boolean as written; the core schema parses no other non-string scalar.
    const value = node.value;
    if (mode !== 'typed' && (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')) return node.source ?? String(value);
    return node.value;
  }
  if (isSeq(node)) {
    return node.items.map((item, index) => {
      const itemPath = [...path, index];
      recordLocation(ctx, itemPath, item);
      return yamlToData(item, ctx, itemPath, mode === 'text-values' ? 'typed' : mode);
    });
  }
  if (isMap(node)) {
    const out: Record<string, unknown> = {};
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      const fieldPath = [...path, key];
      recordLocation(ctx, fieldPath, pair.key);
      const value = pair.value;
      // As in oc-mirror (Go), an empty value (`additionalImages:`) is the same as leaving the field out.
      if (value === null || (isScalar(value) && value.value === null)) continue;
      let converted: unknown;
      if (key === 'values' && isMap(value)) {
        // Helm values go to the chart as they are.
        converted = value.toJS(ctx.doc);
      } else {
        const childMode: ScalarMode =
          mode === 'text-values' ? 'text' : key === 'matchLabels' ? 'text-values' : TEXT_FIELDS.has(key) || key === 'values' ? 'text' : 'typed';
        converted = yamlToData(value, ctx, fieldPath, childMode);
      }
      // defineProperty: a `__proto__` key must stay a field (and be reported as unknown), not a prototype.
      Object.defineProperty(out, key, { value: converted, enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  return node ?? null;
}

function recordLocation(ctx: WalkContext, path: Array<string | number>, node: unknown): void {
  const range = node !== null && typeof node === 'object' && 'range' in node ? (node.range as [number, number, number] | undefined) : undefined;
  if (range !== undefined) ctx.locations.set(formatConfigPath(path), range[0]);
}

// ---- issues to problems ----

function issueProblems(issue: z.core.$ZodIssue, locations: Map<string, number>, lineCounter: LineCounter): ConfigProblem[] {
  const problem = (path: PropertyKey[], message: string): ConfigProblem => {
    const { line, col } = locate(path, locations, lineCounter);
    return { path: formatConfigPath(path), line, col, message };
  };
  if (issue.code === 'unrecognized_keys') {
    // imageset.ts's strictObject writes one message line per unknown key.
    const messages = issue.message.split('\n');
    return issue.keys.map((key, i) => problem([...issue.path, key], messages[i] ?? `unknown field "${key}"`));
  }
  return [problem(issue.path, issue.message)];
}

function locate(path: PropertyKey[], locations: Map<string, number>, lineCounter: LineCounter): { line: number; col: number } {
  for (let length = path.length; length > 0; length--) {
    const offset = locations.get(formatConfigPath(path.slice(0, length)));
    if (offset !== undefined) return lineCounter.linePos(offset);
  }
  return { line: 1, col: 1 };
}

const EXPECTED_NOUNS: Record<string, string> = {
  string: 'text',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
  record: 'a mapping',
  undefined: 'nothing',
};

/** Messages for issues whose schema has no message of its own. */
function defaultIssueMessage(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type': {
      const expected = EXPECTED_NOUNS[issue.expected] ?? issue.expected;
      if (issue.input === undefined) return `required field is missing (expected ${expected})`;
      return `expected ${expected}, got ${describeConfigValue(issue.input)}`;
    }
    case 'invalid_value': {
      const options = issue.values.map((v) => JSON.stringify(v));
      const expected = options.length === 1 ? options[0] : `one of ${options.join(', ')}`;
      return `expected ${expected}, got ${describeConfigValue(issue.input)}`;
    }
    case 'too_small':
      if (issue.origin === 'string' || issue.origin === 'array') return 'must not be empty';
      return `must be ${issue.inclusive === true ? 'at least' : 'more than'} ${String(issue.minimum)}, got ${describeConfigValue(issue.input)}`;
    case 'too_big':
      return `must be ${issue.inclusive === true ? 'at most' : 'less than'} ${String(issue.maximum)}, got ${describeConfigValue(issue.input)}`;
    default:
      return undefined;
  }
}
