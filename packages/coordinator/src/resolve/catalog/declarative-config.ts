/**
 * The file-based catalog (FBC) of an operator catalog image: the objects under its `/configs`
 * folder, parsed, checked and grouped by package (operator-registry's `declcfg` and `model`).
 *
 * Objects are kept exactly as they were read: the zod schemas below only check the fields
 * meshmirror relies on, and the checked value is the original object (no defaults, no transforms,
 * key order untouched). So unknown fields and the original field order survive a re-publish, and a
 * filtered catalog differs from the original only where the filter changed something.
 */
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { formatConfigPath, MeshmirrorError } from '@meshmirror/shared';

export const SCHEMA_PACKAGE = 'olm.package';
export const SCHEMA_CHANNEL = 'olm.channel';
export const SCHEMA_BUNDLE = 'olm.bundle';
/** The bundle property that names the bundle's package and version. */
export const PROPERTY_PACKAGE = 'olm.package';

const name = z.string().min(1);

// `.loose()` everywhere: these schemas check, they never reshape. See the file comment.
const packageSchema = z
  .object({
    schema: z.literal(SCHEMA_PACKAGE),
    name,
    defaultChannel: z.string().optional(),
    icon: z.unknown().optional(),
    description: z.string().optional(),
  })
  .loose();

const channelEntrySchema = z
  .object({
    name,
    replaces: z.string().optional(),
    skips: z.array(name).optional(),
    skipRange: z.string().optional(),
  })
  .loose();

const channelSchema = z
  .object({
    schema: z.literal(SCHEMA_CHANNEL),
    name,
    package: name,
    entries: z.array(channelEntrySchema),
  })
  .loose();

const bundleSchema = z
  .object({
    schema: z.literal(SCHEMA_BUNDLE),
    name,
    package: name,
    // opm renders an empty image for a bundle whose content is inline (`olm.bundle.object`);
    // such a bundle has no image to mirror, which the filter knows.
    image: z.string(),
    properties: z.array(z.object({ type: name, value: z.unknown() }).loose()).optional(),
    relatedImages: z.array(z.object({ name: z.string().optional(), image: z.string() }).loose()).optional(),
  })
  .loose();

/** Any other schema (`olm.deprecations`, …): opaque, but it belongs to the package it names. */
const otherSchema = z.object({ schema: name, package: z.string().optional() }).loose();

const packagePropertyValueSchema = z.object({ packageName: name, version: name }).loose();

export type PackageObject = z.infer<typeof packageSchema>;
export type ChannelObject = z.infer<typeof channelSchema>;
export type ChannelEntryObject = z.infer<typeof channelEntrySchema>;
export type BundleObject = z.infer<typeof bundleSchema>;
export type OtherObject = z.infer<typeof otherSchema>;

/** One object of a catalog file, by kind; `object` is the object as read. */
export type CatalogObject =
  | { kind: 'package'; object: PackageObject }
  | { kind: 'channel'; object: ChannelObject }
  | { kind: 'bundle'; object: BundleObject }
  | { kind: 'other'; object: OtherObject };

export interface CatalogChannel {
  name: string;
  package: string;
  /** The upgrade graph, in the order the catalog lists it. */
  entries: ChannelEntryObject[];
  object: ChannelObject;
}

export interface CatalogBundle {
  name: string;
  package: string;
  /** The bundle image; empty for a bundle whose content is inline in the catalog. */
  image: string;
  /** The version from the bundle's `olm.package` property. */
  version: string;
  /** The bundle's related images with an image; a missing name is `''`. */
  relatedImages: Array<{ name: string; image: string }>;
  object: BundleObject;
}

export interface CatalogPackage {
  name: string;
  defaultChannel?: string;
  channels: Map<string, CatalogChannel>;
  bundles: Map<string, CatalogBundle>;
  /** Objects of other schemas that name this package, in the order read. */
  others: OtherObject[];
  packageObject: PackageObject;
}

export interface DeclarativeConfig {
  packages: Map<string, CatalogPackage>;
  /** Objects of other schemas that name no package; opm keeps them, and so does the filter. */
  others: OtherObject[];
}

/**
 * The objects of one catalog file. A `.json` file is a stream of JSON objects (concatenated, as
 * `opm render` writes them; a file holding one object is a stream of one); a `.yaml`/`.yml` file
 * is a multi-document YAML stream. Throws `MM_MANIFEST_INVALID` naming the file and the object.
 */
export function parseCatalogFile(text: string, file: string): CatalogObject[] {
  // A byte order mark is legal in a YAML stream but a syntax error to JSON.parse.
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  const lower = file.toLowerCase();
  let values: unknown[];
  if (lower.endsWith('.json')) values = parseJsonStream(body, file);
  else if (lower.endsWith('.yaml') || lower.endsWith('.yml')) values = parseYamlStream(body, file);
  else throw invalid(`${file}: not a catalog file (expected .json, .yaml or .yml)`, file);
  return values.map((value, index) => checkObject(value, file, index));
}

/**
 * All catalog files merged into packages. A package may be spread over several files (its
 * channels in one, its bundles in another); every object must belong to a package that has an
 * `olm.package` object somewhere. Checks what opm checks and the filter relies on: no duplicate
 * package, channel or bundle; every channel entry is a bundle of the package; every bundle has a
 * version.
 */
export function buildDeclarativeConfig(files: Array<{ path: string; text: string }>): DeclarativeConfig {
  const packageObjects = new Map<string, { object: PackageObject; at: string }>();
  const channels: Array<{ object: ChannelObject; at: string }> = [];
  const bundles: Array<{ object: BundleObject; at: string }> = [];
  const others: Array<{ object: OtherObject; at: string }> = [];

  for (const file of files) {
    parseCatalogFile(file.text, file.path).forEach((item, index) => {
      const at = describeObject(file.path, index, item.object);
      switch (item.kind) {
        case 'package': {
          const earlier = packageObjects.get(item.object.name);
          if (earlier !== undefined) throw invalid(`package "${item.object.name}" is defined twice: ${earlier.at} and ${at}`, file.path);
          packageObjects.set(item.object.name, { object: item.object, at });
          break;
        }
        case 'channel':
          channels.push({ object: item.object, at });
          break;
        case 'bundle':
          bundles.push({ object: item.object, at });
          break;
        case 'other':
          others.push({ object: item.object, at });
          break;
      }
    });
  }

  const config: DeclarativeConfig = { packages: new Map(), others: [] };
  for (const [packageName, { object }] of packageObjects) {
    const pkg: CatalogPackage = { name: packageName, channels: new Map(), bundles: new Map(), others: [], packageObject: object };
    if (object.defaultChannel !== undefined && object.defaultChannel !== '') pkg.defaultChannel = object.defaultChannel;
    config.packages.set(packageName, pkg);
  }
  const owner = (packageName: string, at: string): CatalogPackage => {
    const pkg = config.packages.get(packageName);
    if (pkg === undefined) throw invalid(`${at} belongs to package "${packageName}", which has no ${SCHEMA_PACKAGE} object`, at);
    return pkg;
  };

  // Where each bundle and channel came from, for messages about duplicates.
  const seenAt = new Map<string, string>();
  for (const { object, at } of bundles) {
    const pkg = owner(object.package, at);
    const key = `bundle\0${object.package}\0${object.name}`;
    const earlier = seenAt.get(key);
    if (earlier !== undefined) throw invalid(`bundle "${object.name}" of package "${object.package}" is defined twice: ${earlier} and ${at}`, at);
    seenAt.set(key, at);
    pkg.bundles.set(object.name, toCatalogBundle(object, at));
  }
  for (const { object, at } of channels) {
    const pkg = owner(object.package, at);
    const key = `channel\0${object.package}\0${object.name}`;
    const earlier = seenAt.get(key);
    if (earlier !== undefined) throw invalid(`channel "${object.name}" of package "${object.package}" is defined twice: ${earlier} and ${at}`, at);
    seenAt.set(key, at);
    const entryNames = new Set<string>();
    for (const entry of object.entries) {
      if (entryNames.has(entry.name)) throw invalid(`${at}: entry "${entry.name}" is listed twice`, at);
      entryNames.add(entry.name);
      // A `replaces` or `skips` may name a bundle that is not in the catalog (the chain just ends
      // there), but an entry itself must be a bundle: it is what a cluster would install.
      if (!pkg.bundles.has(entry.name)) throw invalid(`${at}: entry "${entry.name}" is not a bundle of package "${pkg.name}"`, at);
    }
    pkg.channels.set(object.name, { name: object.name, package: object.package, entries: object.entries, object });
  }
  for (const { object, at } of others) {
    if (object.package === undefined || object.package === '') config.others.push(object);
    else owner(object.package, at).others.push(object);
  }
  return config;
}

function toCatalogBundle(object: BundleObject, at: string): CatalogBundle {
  const property = (object.properties ?? []).find((p) => p.type === PROPERTY_PACKAGE);
  if (property === undefined) throw invalid(`${at} has no ${PROPERTY_PACKAGE} property, so it has no version`, at);
  const value = packagePropertyValueSchema.safeParse(property.value);
  if (!value.success) throw invalid(`${at}: its ${PROPERTY_PACKAGE} property: ${formatIssues(value.error)}`, at);
  return {
    name: object.name,
    package: object.package,
    image: object.image,
    version: value.data.version,
    relatedImages: (object.relatedImages ?? []).filter((related) => related.image !== '').map((related) => ({ name: related.name ?? '', image: related.image })),
    object,
  };
}

function checkObject(value: unknown, file: string, index: number): CatalogObject {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalid(`${file}: object ${index + 1}: expected an object, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`, file);
  }
  const schema = (value as { schema?: unknown }).schema;
  const check = <T>(zodSchema: z.ZodType<T>): T => {
    const result = zodSchema.safeParse(value);
    if (!result.success) throw invalid(`${describeObject(file, index, value)}: ${formatIssues(result.error)}`, file);
    // The original object, not `result.data`: see the file comment.
    return value as T;
  };
  switch (schema) {
    case SCHEMA_PACKAGE:
      return { kind: 'package', object: check(packageSchema) };
    case SCHEMA_CHANNEL:
      return { kind: 'channel', object: check(channelSchema) };
    case SCHEMA_BUNDLE:
      return { kind: 'bundle', object: check(bundleSchema) };
    default:
      if (typeof schema !== 'string' || schema === '') throw invalid(`${describeObject(file, index, value)}: no "schema" field`, file);
      return { kind: 'other', object: check(otherSchema) };
  }
}

/** `a/catalog.json object 3 (olm.bundle "foo.v1.2.0")`: 1-based, as people count objects in a file. */
function describeObject(file: string, index: number, value: object): string {
  const { schema, name: objectName } = value as { schema?: unknown; name?: unknown };
  const label = [typeof schema === 'string' ? schema : undefined, typeof objectName === 'string' ? `"${objectName}"` : undefined]
    .filter((part) => part !== undefined)
    .join(' ');
  return `${file} object ${index + 1}${label === '' ? '' : ` (${label})`}`;
}

function formatIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => (issue.path.length === 0 ? issue.message : `${formatConfigPath(issue.path)}: ${issue.message}`))
    .join('; ');
}

function invalid(message: string, file: string): MeshmirrorError {
  return new MeshmirrorError('MM_MANIFEST_INVALID', message, { data: { file } });
}

/**
 * Splits a stream of concatenated JSON values. Each value's extent is found by counting brackets
 * outside strings, then the slice goes to JSON.parse, which does the real checking; this keeps
 * parsing at native speed on catalog files of many megabytes.
 */
function parseJsonStream(text: string, file: string): unknown[] {
  const values: unknown[] = [];
  let i = 0;
  for (;;) {
    while (i < text.length && isJsonWhitespace(text.charCodeAt(i))) i++;
    if (i >= text.length) return values;
    const start = i;
    const first = text[i];
    if (first !== '{') {
      const what = first === '[' ? 'an array (a catalog file is a stream of objects, not an array)' : `"${text.slice(i, i + 20)}"`;
      throw invalid(`${file}:${lineOf(text, start)}: object ${values.length + 1}: expected a JSON object, found ${what}`, file);
    }
    let depth = 0;
    let inString = false;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (inString) {
        if (c === 0x5c)
          i++; // backslash: the next character is escaped, whatever it is
        else if (c === 0x22) inString = false;
      } else if (c === 0x22) {
        inString = true;
      } else if (c === 0x7b || c === 0x5b) {
        depth++;
      } else if ((c === 0x7d || c === 0x5d) && --depth === 0) {
        i++;
        break;
      }
    }
    if (depth !== 0) throw invalid(`${file}:${lineOf(text, start)}: object ${values.length + 1} is not closed before the end of the file`, file);
    try {
      values.push(JSON.parse(text.slice(start, i)));
    } catch (err) {
      throw invalid(`${file}:${lineOf(text, start)}: object ${values.length + 1} is not valid JSON: ${(err as Error).message}`, file);
    }
  }
}

function isJsonWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

function parseYamlStream(text: string, file: string): unknown[] {
  const values: unknown[] = [];
  for (const document of parseAllDocuments(text)) {
    const error = document.errors[0];
    if (error !== undefined) throw invalid(`${file}: document ${values.length + 1} is not valid YAML: ${error.message}`, file);
    // A `---` with nothing after it (or a trailing one) is an empty document, not an object.
    const value: unknown = document.toJS();
    if (value !== null && value !== undefined) values.push(value);
  }
  return values;
}
