/**
 * Where chart archives come from: an HTTP chart repository (its `index.yaml`, then the archive its
 * entry links to) or an OCI registry (`oci://host/path`, the chart being `host/path/<name>:<version>`
 * with Helm's chart layer), as `helm pull` gets them.
 */
import { rsort, valid } from 'semver';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { MeshmirrorError, parseImageReference, type ImageReference, type RegistryClient } from '@meshmirror/shared';
import type { DocumentClient } from '../document-client.ts';

export const HELM_CONFIG_MEDIA_TYPE = 'application/vnd.cncf.helm.config.v1+json';
export const HELM_CHART_LAYER_MEDIA_TYPE = 'application/vnd.cncf.helm.chart.content.v1.tar+gzip';

/** Real indexes run to a few MiB (bitnami's was ~15 MiB before it was trimmed); charts to a few hundred KiB. */
const MAX_INDEX_BYTES = 64 * 1024 * 1024;
const MAX_CHART_ARCHIVE_BYTES = 20 * 1024 * 1024;

const indexSchema = z.looseObject({
  entries: z
    .record(
      z.string(),
      z.array(
        z.looseObject({
          name: z.string().min(1),
          version: z.union([z.string().min(1), z.number()]).transform(String),
          urls: z.array(z.string().min(1)).default([]),
          type: z.string().optional(),
        }),
      ),
    )
    .default({}),
});

export interface IndexEntry {
  name: string;
  version: string;
  urls: string[];
  type?: string | undefined;
}

export interface HelmIndex {
  /** Where the index was read (relative chart URLs resolve against it). */
  url: URL;
  entries: Map<string, IndexEntry[]>;
}

/** A chart archive as downloaded, with where it came from. */
export interface ChartArchive {
  name: string;
  version: string;
  bytes: Uint8Array;
  /** The URL or `oci://` reference it was downloaded from. */
  from: string;
  /** Set for a chart from an OCI registry: the artifact itself is mirrored, as it is. */
  ociRef?: ImageReference;
}

export function isOciRepository(url: string): boolean {
  return url.startsWith('oci://');
}

/** `url/index.yaml` (a url that already ends in `index.yaml` is used as it is), parsed. */
export async function readIndex(documents: DocumentClient, repositoryUrl: string, label: string, signal?: AbortSignal): Promise<HelmIndex> {
  const url = repositoryUrl.endsWith('/index.yaml') ? repositoryUrl : `${repositoryUrl.replace(/\/+$/, '')}/index.yaml`;
  const document = await documents.get(url, {
    label,
    what: 'a Helm repository index',
    accept: 'application/x-yaml, text/yaml, */*',
    maxBytes: MAX_INDEX_BYTES,
    ...(signal === undefined ? {} : { signal }),
  });
  let parsed: unknown;
  try {
    parsed = parseYaml(document.bytes.toString('utf8'));
  } catch (err) {
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `${label}: ${url} is not YAML: ${(err as Error).message}`, { cause: err });
  }
  const checked = indexSchema.safeParse(parsed);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `${label}: ${url} is not a Helm repository index: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim());
  }
  return { url: document.url, entries: new Map(Object.entries(checked.data.entries)) };
}

/** The entry for `name` at `version`, or Helm's choice without one: the highest stable version. */
export function pickEntry(index: HelmIndex, name: string, version: string | undefined, label: string): IndexEntry {
  const entries = index.entries.get(name) ?? [];
  if (entries.length === 0) throw new MeshmirrorError('MM_NOT_FOUND', `${label}: chart ${name} is not in ${index.url.href}`);
  if (version !== undefined) {
    const wanted = valid(version) ?? version;
    const found = entries.find((e) => e.version === version || valid(e.version) === wanted);
    if (found === undefined) {
      const known = entries.slice(0, 5).map((e) => e.version);
      throw new MeshmirrorError(
        'MM_NOT_FOUND',
        `${label}: chart ${name} has no version ${version} in ${index.url.href} (it has ${known.join(', ')}${entries.length > 5 ? ', …' : ''})`,
      );
    }
    return found;
  }
  const stable = entries.filter((e) => valid(e.version) !== null && !e.version.includes('-'));
  const [newest] = rsort(stable.map((e) => e.version));
  return (newest === undefined ? undefined : stable.find((e) => e.version === newest)) ?? entries[0]!;
}

export async function downloadFromIndex(documents: DocumentClient, index: HelmIndex, entry: IndexEntry, label: string, signal?: AbortSignal): Promise<ChartArchive> {
  const [first] = entry.urls;
  if (first === undefined) throw new MeshmirrorError('MM_MANIFEST_INVALID', `${label}: chart ${entry.name} ${entry.version} has no download URL in ${index.url.href}`);
  if (isOciRepository(first)) {
    throw new MeshmirrorError('MM_USAGE', `${label}: ${entry.name} ${entry.version} is in an OCI registry (${first}); list it under a repository whose url is oci://`);
  }
  const url = new URL(first, index.url);
  const document = await documents.get(url, {
    label,
    what: 'a chart archive',
    accept: 'application/gzip, application/octet-stream, */*',
    maxBytes: MAX_CHART_ARCHIVE_BYTES,
    ...(signal === undefined ? {} : { signal }),
  });
  return { name: entry.name, version: entry.version, bytes: document.bytes, from: url.href };
}

/**
 * A chart in an OCI registry: `oci://host/path/name` at `version` (Helm turns `+` into `_` in tags).
 * `client` is the run's registry client (credentials and TLS as for images).
 */
export async function downloadFromRegistry(client: RegistryClient, reference: string, label: string, signal?: AbortSignal, version?: string): Promise<ChartArchive> {
  let ref: ImageReference;
  try {
    ref = parseImageReference(`${reference.slice('oci://'.length)}${version === undefined ? '' : `:${version.replaceAll('+', '_')}`}`);
  } catch (err) {
    throw new MeshmirrorError('MM_REFERENCE_INVALID', `${label}: ${reference} is not a chart reference: ${(err as Error).message}`, { cause: err });
  }
  const location = { registry: ref.registry, repository: ref.repository };
  const abortable = signal === undefined ? {} : { signal };
  const manifest = await client.getManifest(location, ref.digest ?? ref.tag ?? 'latest', abortable);
  const body = JSON.parse(Buffer.from(manifest.bytes).toString('utf8')) as { config?: { mediaType?: string }; layers?: Array<{ mediaType?: string; digest?: string }> };
  const layer = body.layers?.find((l) => l.mediaType === HELM_CHART_LAYER_MEDIA_TYPE);
  if (body.config?.mediaType !== HELM_CONFIG_MEDIA_TYPE || layer?.digest === undefined) {
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `${label}: ${reference} is not a Helm chart (config ${body.config?.mediaType ?? 'missing'})`);
  }
  const bytes = await client.getBlob(location, layer.digest as `sha256:${string}`, { ...abortable, maxBytes: MAX_CHART_ARCHIVE_BYTES });
  const name = ref.repository.split('/').at(-1) ?? ref.repository;
  return { name, version: version ?? ref.tag ?? '', bytes, from: reference, ociRef: { ...ref, digest: manifest.digest } };
}
