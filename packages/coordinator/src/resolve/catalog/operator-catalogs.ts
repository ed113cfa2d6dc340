/**
 * `mirror.operators`: each catalog image is read (its file-based catalog, from the folder its
 * `operators.operatorframework.io.index.configs.v1` label names), filtered to the selected
 * packages, channels and versions with oc-mirror's semantics, and published again as a new image:
 * the original layers plus one layer that replaces the configs folder with the filtered catalog.
 * The selected bundles and their related images become images to mirror.
 *
 * A problem in one package (missing from the catalog, a channel that is not there, a range that
 * selects nothing) is reported naming the package and channel; the other packages go ahead.
 */
import {
  describeError,
  errorCode,
  formatReference,
  manifestReference,
  MeshmirrorError,
  parseImageReference,
  parseManifest,
  sha256Digest,
  throwIfAborted,
  type LocalAgent,
  type Descriptor,
  type Digest,
  type ImageManifest,
  type ImageReference,
  type Logger,
  type OperatorCatalogConfig,
  type RegistryClient,
  type RepositoryLocation,
} from '@meshmirror/shared';
import type { FailedImage, RequestedImage, ResolvedImage, ResolvedManifest } from '../image-set.ts';
import type { LayerSource } from '../layer-source.ts';
import { appendLayer } from '../append-layer.ts';
import { buildDeclarativeConfig, type DeclarativeConfig } from './declarative-config.ts';
import { filterCatalog, renderPackageFiles } from './filter-catalog.ts';
import { buildConfigsLayer, readConfigsFromLayers } from './catalog-layers.ts';
import { isLayoutCatalog, openLayoutCatalog, type LayoutCatalog } from './layout-catalog.ts';

export const CONFIGS_LABEL = 'operators.operatorframework.io.index.configs.v1';
/** opm's cache of the original catalog would not match the filtered one; opm rebuilds it at start. */
const CACHE_DIR_FLAG = /^--cache-dir=(.+)$/;

export interface ResolveCatalogsOptions {
  operators: OperatorCatalogConfig[];
  architectures: string[];
  client: RegistryClient;
  agent: LocalAgent;
  layers: LayerSource;
  /** A catalog named by tag stays at the digest first seen in this run. */
  pin: { get(source: string): Promise<Digest | undefined>; put(source: string, digest: Digest): Promise<void> };
  logger: Logger;
  signal?: AbortSignal;
}

export interface ResolvedCatalogs {
  /** Bundle images and related images, by digest as the catalog names them. */
  images: RequestedImage[];
  /** The filtered catalog images, made here. */
  prepared: ResolvedImage[];
  failed: FailedImage[];
}

export async function resolveOperatorCatalogs(options: ResolveCatalogsOptions): Promise<ResolvedCatalogs> {
  const out: ResolvedCatalogs = { images: [], prepared: [], failed: [] };
  const log = options.logger.child({ component: 'coordinator:catalogs' });
  for (const [i, operator] of options.operators.entries()) {
    throwIfAborted(options.signal);
    const origin = `mirror.operators[${i}]`;
    try {
      await resolveCatalog(operator, origin, options, out);
    } catch (err) {
      if (options.signal?.aborted === true) throw err;
      log.warn({ catalog: operator.catalog, code: errorCode(err), err: describeError(err) }, 'catalog could not be resolved');
      out.failed.push({ kind: 'operator', source: operator.catalog, origin, code: errorCode(err), reason: describeError(err) });
    }
  }
  return out;
}

/** A file-based catalog image, opened: its manifests (the platforms kept), its config and its declarative config. */
export interface OpenedCatalog {
  ref: ImageReference;
  /** Where the catalog's manifests and configs are read: the registry, or the catalog's OCI layout. */
  client: RegistryClient;
  /** Set for a catalog in a local OCI layout: what the filtered catalog keeps is imported from it. */
  layout?: LayoutCatalog;
  source: string;
  where: string;
  location: RepositoryLocation;
  parsedTop: ReturnType<typeof parseManifest>;
  children: Array<{ descriptor?: Descriptor; manifest: ImageManifest; mediaType: string }>;
  firstConfig: Record<string, unknown>;
  configsDir: string;
  declarative: DeclarativeConfig;
}

/**
 * Reads a catalog image's `/configs` (the folder its label names) from the first platform kept,
 * layers through `layers`; `pin` keeps a tag at the digest first seen.
 */
export async function openCatalog(
  catalog: string,
  options: Pick<ResolveCatalogsOptions, 'client' | 'layers' | 'architectures' | 'signal'> & { pin?: ResolveCatalogsOptions['pin'] },
): Promise<OpenedCatalog> {
  const { signal } = options;
  const abortable = signal === undefined ? {} : { signal };
  const layout = isLayoutCatalog(catalog) ? await openLayoutCatalog(catalog, signal) : undefined;
  const client = layout?.client ?? options.client;
  const layers = layout?.layers ?? options.layers;
  const ref = layout?.ref ?? parseImageReference(catalog);
  const source = formatReference(ref);
  const where = `catalog ${layout === undefined ? source : catalog}`;
  const location = { registry: ref.registry, repository: ref.repository };
  // A layout is read as it is now; a registry's tag stays at the digest first seen in this run.
  const pinned = ref.digest === undefined && layout === undefined ? await options.pin?.get(source) : undefined;
  const top = await client.getManifest(location, pinned ?? manifestReference(ref), abortable);
  if (ref.digest === undefined && pinned === undefined && layout === undefined) await options.pin?.put(source, top.digest);
  const parsedTop = parseManifest(top.bytes, top.mediaType, where);

  // The platforms to publish; the catalog content is the same in each, so it is read from the first.
  const children: Array<{ descriptor?: Descriptor; manifest: ImageManifest; mediaType: string }> = [];
  if (parsedTop.kind === 'image') {
    children.push({ manifest: parsedTop.manifest, mediaType: parsedTop.mediaType });
  } else {
    for (const child of parsedTop.index.manifests) {
      const arch = child.platform?.architecture;
      if (arch === undefined || arch === 'unknown') continue;
      if (!options.architectures.includes('multi') && !options.architectures.includes(arch)) continue;
      const fetched = await client.getManifest(location, child.digest, abortable);
      const parsed = parseManifest(fetched.bytes, fetched.mediaType, `${where} (${arch})`);
      if (parsed.kind !== 'image') throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where} (${arch}): nested index is not supported`);
      children.push({ descriptor: child, manifest: parsed.manifest, mediaType: parsed.mediaType });
    }
    if (children.length === 0) throw new MeshmirrorError('MM_NOT_FOUND', `${where}: no platform matches architectures ${options.architectures.join(',')}`);
  }

  const first = children[0]!;
  const firstConfig = await readConfig(client, location, first.manifest, abortable);
  const configsDir = labelsOf(firstConfig)[CONFIGS_LABEL];
  if (configsDir === undefined || configsDir === '') {
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: not a file-based catalog (its config has no ${CONFIGS_LABEL} label)`);
  }
  const files = await readConfigsFromLayers(
    first.manifest.layers.map((layer) => ({ digest: layer.digest, open: () => layers.open(location, { digest: layer.digest, size: layer.size }, abortable) })),
    configsDir,
    abortable,
  );
  const declarative = buildDeclarativeConfig(files.map((f) => ({ path: `${configsDir}/${f.path}`, text: f.text })));
  return { ref, client, ...(layout === undefined ? {} : { layout }), source, where, location, parsedTop, children, firstConfig, configsDir, declarative };
}

async function resolveCatalog(operator: OperatorCatalogConfig, origin: string, options: ResolveCatalogsOptions, out: ResolvedCatalogs): Promise<void> {
  const { signal } = options;
  const abortable = signal === undefined ? {} : { signal };
  // The catalog entry's own platforms pick which of the catalog image's platforms are published.
  const architectures =
    operator.platforms !== undefined && operator.platforms.length > 0 ? [...new Set(operator.platforms.map((p) => p.architecture))] : options.architectures;
  const { ref, client, layout, source, where, location, parsedTop, children, firstConfig, configsDir, declarative } = await openCatalog(operator.catalog, {
    ...options,
    architectures,
  });
  const filtered = filterCatalog(declarative, operator, where, { includeDependencies: operator.includeDependencies });
  const neededBy = new Map(filtered.dependencies.map((d) => [d.bundle, d]));
  for (const d of filtered.dependencies) {
    options.logger.info({ catalog: source, bundle: d.bundle, neededBy: d.neededBy, requirement: d.requirement }, 'operator dependency added');
  }

  for (const problem of filtered.problems) {
    const packageIndex = operator.packages.findIndex((p) => p.name === problem.package);
    const at = packageIndex === -1 ? origin : `${origin}.packages[${packageIndex}]`;
    const channelIndex =
      packageIndex === -1 || problem.channel === undefined ? -1 : operator.packages[packageIndex]!.channels.findIndex((c) => c.name === problem.channel);
    out.failed.push({
      kind: 'operator',
      source: [
        source,
        `package ${problem.package}`,
        ...(problem.channel === undefined ? [] : [`channel ${problem.channel}`]),
        ...(problem.bundle === undefined ? [] : [`bundle ${problem.bundle}`]),
      ].join(' '),
      origin: channelIndex === -1 ? at : `${at}.channels[${channelIndex}]`,
      code: 'MM_NOT_FOUND',
      reason: problem.message,
    });
  }

  for (const related of filtered.relatedImages) {
    let relatedRef: ImageReference;
    try {
      relatedRef = parseImageReference(related.image);
    } catch (err) {
      out.failed.push({
        kind: 'operator',
        source: related.image,
        origin: `${origin} (package ${related.package}, bundle ${related.bundle})`,
        code: errorCode(err),
        reason: `bundle ${related.bundle} of package ${related.package} names an invalid image: ${describeError(err)}`,
      });
      continue;
    }
    out.images.push({
      kind: 'operator',
      source: formatReference(relatedRef),
      ref: relatedRef,
      origin: `${origin} (package ${related.package}, bundle ${related.bundle}${related.name === '' ? '' : `, ${related.name}`}${dependencyNote(neededBy.get(related.bundle))})`,
    });
  }

  // The filtered catalog: every platform's layers plus one layer that replaces the configs folder.
  const cacheDir = cacheDirOf(firstConfig);
  const layer = await buildConfigsLayer(renderPackageFiles(filtered.config), configsDir, cacheDir === undefined ? {} : { remove: [cacheDir] });
  await options.agent.putBlob(layer.digest, layer.bytes, abortable);
  const manifests: ResolvedManifest[] = [];
  const blobs = new Map<Digest, number>([[layer.digest, layer.size]]);
  const newChildren: Descriptor[] = [];
  for (const child of children) {
    const config = child === children[0] ? firstConfig : await readConfig(client, location, child.manifest, abortable);
    const rebuilt = rebuildImage(child.manifest, child.mediaType, config, layer);
    await options.agent.putBlob(rebuilt.config.digest, rebuilt.configBytes, abortable);
    manifests.push({ digest: rebuilt.digest, mediaType: child.mediaType, bytes: rebuilt.bytes });
    for (const l of child.manifest.layers) blobs.set(l.digest, l.size);
    blobs.set(rebuilt.config.digest, rebuilt.configBytes.byteLength);
    if (child.descriptor !== undefined) newChildren.push({ ...child.descriptor, digest: rebuilt.digest, size: rebuilt.bytes.byteLength });
  }
  // A catalog from a layout has no registry to fetch its original layers from: they are imported now.
  if (layout !== undefined) {
    const original = children.flatMap((c) => c.manifest.layers.map((l) => ({ digest: l.digest, size: l.size })));
    await layout.importBlobs(options.agent, [...new Map(original.map((b) => [b.digest, b])).values()], signal);
  }
  let descriptor: Descriptor;
  if (parsedTop.kind === 'index') {
    const index = { ...parsedTop.index, manifests: newChildren };
    const bytes = new TextEncoder().encode(JSON.stringify(index));
    descriptor = { mediaType: parsedTop.mediaType, digest: sha256Digest(bytes), size: bytes.byteLength };
    manifests.unshift({ digest: descriptor.digest, mediaType: parsedTop.mediaType, bytes });
  } else {
    const only = manifests[0]!;
    descriptor = { mediaType: only.mediaType, digest: only.digest, size: only.bytes.byteLength };
  }

  out.prepared.push({
    kind: 'operator',
    role: 'catalog',
    source,
    ref,
    origin,
    targetRepo: operator.targetCatalog ?? ref.repository,
    ...(operator.targetTag !== undefined ? { targetTag: operator.targetTag } : ref.tag !== undefined ? { targetTag: ref.tag } : {}),
    descriptor,
    manifests,
    blobs: [...blobs].map(([digest, size]) => ({ digest, size })),
    platforms: children.map((c) => c.descriptor?.platform?.architecture ?? '').filter((a) => a !== ''),
    skippedPlatforms: [],
  });
}

async function readConfig(
  client: RegistryClient,
  location: RepositoryLocation,
  manifest: ImageManifest,
  abortable: { signal?: AbortSignal },
): Promise<Record<string, unknown>> {
  const bytes = await client.getBlob(location, manifest.config.digest, abortable);
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
}

/** Why a dependency bundle is in the set, for its images' origin: `; dependency of app.v1.0.0: package db-operator >=2.0.0`. */
function dependencyNote(d: { neededBy: string; requirement: string } | undefined): string {
  return d === undefined ? '' : `; dependency of ${d.neededBy}: ${d.requirement}`;
}

function labelsOf(config: Record<string, unknown>): Record<string, string> {
  const inner = config['config'] as { Labels?: Record<string, string> | null } | undefined;
  return inner?.Labels ?? {};
}

/**
 * The image with the configs layer on top. opm's pre-built cache describes the original catalog,
 * so the layer also deletes it (a whiteout) and the command loses `--cache-enforce-integrity`:
 * `opm serve` then builds the cache from the filtered configs when it starts.
 */
function rebuildImage(manifest: ImageManifest, mediaType: string, config: Record<string, unknown>, layer: { digest: Digest; diffId: Digest; size: number }) {
  return appendLayer({ manifest, mediaType, config }, layer, {
    createdBy: 'meshmirror: filtered catalog',
    patch: (inner) =>
      Array.isArray(inner['Cmd']) ? { ...inner, Cmd: (inner['Cmd'] as string[]).filter((arg) => !arg.startsWith('--cache-enforce-integrity')) } : inner,
  });
}

/** The cache folder an opm command line names (`--cache-dir=/tmp/cache`), if any. */
export function cacheDirOf(config: Record<string, unknown>): string | undefined {
  const inner = (config['config'] ?? {}) as Record<string, unknown>;
  const args = [...(Array.isArray(inner['Entrypoint']) ? (inner['Entrypoint'] as string[]) : []), ...(Array.isArray(inner['Cmd']) ? (inner['Cmd'] as string[]) : [])];
  for (const arg of args) {
    const match = CACHE_DIR_FLAG.exec(arg);
    if (match?.[1] !== undefined) return match[1];
  }
  return undefined;
}
