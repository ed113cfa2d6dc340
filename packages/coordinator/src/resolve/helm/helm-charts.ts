/**
 * `mirror.helm`: each chart downloaded (or read from its local path), rendered as `helm template` does,
 * and the images its manifests name collected at oc-mirror's default paths plus the chart's
 * `imagePaths`. The images become more images of the set (kind `helm`), and the chart itself one
 * more image too (role `helm-chart`): the OCI artifact from an `oci://` repository as it is, or one
 * made here from the archive. A chart that cannot be fetched or rendered fails by name; the rest go on.
 */
import { readFile } from 'node:fs/promises';
import pLimit from 'p-limit';
import {
  describeError,
  errorCode,
  formatReference,
  parseImageReference,
  throwIfAborted,
  type HelmConfig,
  type ImageReference,
  type LocalWriter,
  type Logger,
  type RegistryClient,
} from '@meshmirror/shared';
import type { FailedImage, RequestedImage, ResolvedImage } from '../image-set.ts';
import type { DocumentClient } from '../document-client.ts';
import { chartError, loadChartArchive, loadChartPath, parseYamlMap, type LoadedChart } from './chart.ts';
import { chartArtifact, chartTag } from './chart-artifact.ts';
import { deepCopy, isTable } from './chart-values.ts';
import { downloadFromIndex, downloadFromRegistry, isOciRepository, pickEntry, readIndex, type ChartArchive, type HelmIndex } from './helm-repository.ts';
import { compileImagePath, DEFAULT_IMAGE_PATHS, ImagePathError } from './image-paths.ts';
import { renderChart } from './render-chart.ts';
import { platformNames } from '../requested-images.ts';

export interface ResolveHelmOptions {
  helm: HelmConfig;
  /** Pulls charts kept in OCI registries (credentials and TLS as for images). */
  client: RegistryClient;
  /** Fetches repository indexes and chart archives over HTTP(S). */
  documents: DocumentClient;
  /** The coordinator's agent: the chart artifacts made here are stored in it. */
  agent: LocalWriter;
  logger: Logger;
  signal?: AbortSignal;
}

export interface HelmContent {
  images: RequestedImage[];
  /** Chart artifacts made here from HTTP and local charts, already resolved. */
  prepared: ResolvedImage[];
  failed: FailedImage[];
}

type ChartEntry = HelmConfig['repositories'][number]['charts'][number];

/** Charts downloaded and rendered at once. */
const PARALLEL_CHARTS = 4;

export async function resolveHelmCharts(options: ResolveHelmOptions): Promise<HelmContent> {
  const { helm, signal } = options;
  const log = options.logger.child({ component: 'coordinator:helm' });
  const limit = pLimit(PARALLEL_CHARTS);
  // Charts are worked on at once; each fills its own part, joined in configuration order at the end.
  const parts: Array<Promise<HelmContent[]>> = [];

  /** One chart's work, limited; its failure is recorded against the chart and goes no further. */
  const collect = (origin: string, label: string, work: (part: HelmContent) => Promise<void>): Promise<HelmContent> =>
    limit(async () => {
      throwIfAborted(signal);
      const part: HelmContent = { images: [], prepared: [], failed: [] };
      try {
        await work(part);
        return part;
      } catch (err) {
        if (signal?.aborted === true) throw err;
        log.error({ chart: label, origin, code: errorCode(err), err: describeError(err) }, 'chart could not be mirrored');
        return { images: [], prepared: [], failed: [{ kind: 'helm', role: 'helm-chart', source: label, origin, code: errorCode(err), reason: describeError(err) }] };
      }
    });

  helm.repositories.forEach((repository, i) => {
    const repoOrigin = `mirror.helm.repositories[${i}]`;
    if (isOciRepository(repository.url)) {
      const charts = repository.charts.map((entry, j) => {
        const origin = `${repoOrigin}.charts[${j}]`;
        const reference = `${repository.url.replace(/\/+$/, '')}/${entry.name}`;
        return collect(origin, `${reference}${entry.version === undefined ? '' : `:${entry.version}`}`, async (part) => {
          if (entry.version === undefined)
            throw chartError(`${origin}.version`, `a chart in an OCI registry needs a version (${reference} has no index to choose from)`);
          const archive = await downloadFromRegistry(options.client, reference, origin, signal, entry.version);
          await addChart(archive, entry, origin, undefined, options, part);
        });
      });
      parts.push(Promise.all(charts));
      return;
    }
    // The index is read once per repository, by whichever chart asks first.
    let index: Promise<HelmIndex> | undefined;
    const indexOf = (): Promise<HelmIndex> => (index ??= readIndex(options.documents, repository.url, repoOrigin, signal));
    const chartsOf = async (): Promise<Array<{ entry: ChartEntry; origin: string }>> => {
      if (repository.charts.length > 0) return repository.charts.map((entry, j) => ({ entry, origin: `${repoOrigin}.charts[${j}]` }));
      // No charts listed: every version of every chart the index has, except library charts (oc-mirror's rule).
      const all = [...(await indexOf()).entries.values()].flat().filter((e) => e.type !== 'library');
      return all.map((e) => ({ entry: { name: e.name, version: e.version, imagePaths: [], valuesFiles: [] }, origin: repoOrigin }));
    };
    parts.push(
      (async (): Promise<HelmContent[]> => {
        let charts: Array<{ entry: ChartEntry; origin: string }>;
        try {
          charts = await chartsOf();
        } catch (err) {
          if (signal?.aborted === true) throw err;
          log.error({ repository: repository.url, origin: repoOrigin, code: errorCode(err), err: describeError(err) }, 'Helm repository could not be read');
          return [
            {
              images: [],
              prepared: [],
              failed: [{ kind: 'helm', role: 'helm-chart', source: repository.url, origin: repoOrigin, code: errorCode(err), reason: describeError(err) }],
            },
          ];
        }
        return Promise.all(
          charts.map(({ entry, origin }) =>
            collect(origin, `${repository.name}/${entry.name}${entry.version === undefined ? '' : `:${entry.version}`}`, async (part) => {
              const idx = await indexOf();
              const picked = pickEntry(idx, entry.name, entry.version, origin);
              const archive = await downloadFromIndex(options.documents, idx, picked, origin, signal);
              await addChart(archive, entry, origin, `${repository.name}/${picked.name}`, options, part);
            }),
          ),
        );
      })(),
    );
  });

  helm.local.forEach((entry, i) => {
    const origin = `mirror.helm.local[${i}]`;
    const chart = collect(origin, entry.path, async (part) => {
      const { chart: loaded, archive } = await loadChartPath(entry.path, signal);
      await addRendered(loaded, archive, entry, origin, `charts/${loaded.metadata.name}`, options, part);
    });
    parts.push(chart.then((part) => [part]));
  });

  const all = (await Promise.all(parts)).flat();
  return { images: all.flatMap((p) => p.images), prepared: all.flatMap((p) => p.prepared), failed: all.flatMap((p) => p.failed) };
}

/**
 * A downloaded chart: its images, and the chart itself (as it is when it came from an OCI
 * registry, or as an artifact made here into `targetRepo`).
 */
async function addChart(
  archive: ChartArchive,
  entry: ChartEntry,
  origin: string,
  targetRepo: string | undefined,
  options: ResolveHelmOptions,
  out: HelmContent,
): Promise<void> {
  const chart = await loadChartArchive(archive.bytes, `chart ${archive.name} ${archive.version} (${archive.from})`, options.signal);
  if (archive.ociRef !== undefined) {
    const ref: ImageReference = { registry: archive.ociRef.registry, repository: archive.ociRef.repository, tag: chartTag(chart.metadata.version) };
    out.images.push(...(await imagesOf(chart, entry, origin, options)));
    out.images.push({ kind: 'helm', role: 'helm-chart', source: formatReference(ref), ref, origin });
    return;
  }
  await addRendered(chart, archive.bytes, entry, origin, targetRepo ?? `charts/${chart.metadata.name}`, options, out);
}

async function addRendered(
  chart: LoadedChart,
  archive: Uint8Array,
  entry: ChartEntry,
  origin: string,
  targetRepo: string,
  options: ResolveHelmOptions,
  out: HelmContent,
): Promise<void> {
  const images = await imagesOf(chart, entry, origin, options);
  const artifact = await chartArtifact({
    metadata: chart.metadata,
    archive,
    targetRepo,
    origin,
    agent: options.agent,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  out.images.push(...images);
  out.prepared.push(artifact);
}

/** The images the rendered chart names, each once, in the order found. */
async function imagesOf(chart: LoadedChart, entry: ChartEntry, origin: string, options: ResolveHelmOptions): Promise<RequestedImage[]> {
  const where = `chart ${chart.metadata.name} ${chart.metadata.version} (${origin})`;
  const paths = [...DEFAULT_IMAGE_PATHS, ...entry.imagePaths].map((expression, k) => {
    try {
      return compileImagePath(expression);
    } catch (err) {
      if (err instanceof ImagePathError) throw chartError(`${origin}.imagePaths[${k - DEFAULT_IMAGE_PATHS.length}]`, err.message, err);
      throw err;
    }
  });
  const values = await userValues(entry, origin);
  const documents = renderChart(chart, values, where);
  const log = options.logger.child({ component: 'coordinator:helm' });
  const seen = new Set<string>();
  const images: RequestedImage[] = [];
  for (const { template, document } of documents) {
    for (const found of paths.flatMap((evaluate) => evaluate(document))) {
      if (typeof found !== 'string' || found.trim() === '' || seen.has(found)) continue;
      seen.add(found);
      let ref: ImageReference;
      try {
        ref = parseImageReference(found);
      } catch (err) {
        // oc-mirror skips what does not parse as a reference; saying so is the least we owe.
        log.warn({ chart: where, template, value: found, err: describeError(err) }, 'not an image reference; skipped');
        continue;
      }
      images.push({
        kind: 'helm',
        source: formatReference(ref),
        ref,
        origin,
        ...(entry.platforms !== undefined && entry.platforms.length > 0 ? { platformFilter: platformNames(entry.platforms) } : {}),
      });
    }
  }
  log.info({ chart: `${chart.metadata.name}-${chart.metadata.version}`, origin, documents: documents.length, images: images.length }, 'chart rendered');
  return images;
}

/** `valuesFiles` in order, then `values`, merged over each other as `helm template -f … --set …` does. */
async function userValues(entry: ChartEntry, origin: string): Promise<Record<string, unknown>> {
  let merged: Record<string, unknown> = {};
  for (const [k, file] of entry.valuesFiles.entries()) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw chartError(`${origin}.valuesFiles[${k}]`, `cannot read ${file}: ${(err as Error).message}`, err);
    }
    merged = mergeValues(merged, parseYamlMap(text, `${origin}.valuesFiles[${k}] (${file})`));
  }
  if (entry.values !== undefined) merged = mergeValues(merged, deepCopy(entry.values) as Record<string, unknown>);
  return merged;
}

function mergeValues(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const existing = out[key];
    out[key] = isTable(existing) && isTable(value) ? mergeValues(existing, value) : value;
  }
  return out;
}
