/**
 * From a configuration to the list of images to mirror: release payloads and their components
 * (from the update graph), the graph data image, operator catalogs filtered down to the selected
 * packages with their bundles and related images, Helm charts and the images they name, and the
 * additional images; minus blocked images. Images made here (filtered catalogs, the graph image,
 * chart artifacts) come back already resolved, their new blobs stored in the coordinator's agent;
 * everything else is resolved like any image.
 *
 * A part that fails (a channel the graph cannot give, a payload that cannot be read, a package that
 * is not in its catalog) becomes a failed entry naming it; every other part still goes ahead.
 */
import type { Readable } from 'node:stream';
import { Agent as HttpAgent, interceptors, request } from 'undici';
import {
  describeError,
  errorCode,
  MeshmirrorError,
  throwIfAborted,
  type LocalAgent,
  type ImageSetConfig,
  type Logger,
  type RegistryClient,
  type RetryPolicy,
} from '@meshmirror/shared';
import type { FailedImage, RequestedImage, ResolvedImage } from './image-set.ts';
import type { LayerSource } from './layer-source.ts';
import { requestedImages } from './requested-images.ts';
import { buildGraphImage, DEFAULT_GRAPH_BASE_IMAGE, DEFAULT_GRAPH_DATA_URL } from './release/graph-image.ts';
import type { ReleaseInfo } from './release/release-payload.ts';
import { resolveReleases } from './release/releases.ts';
import { UpdateGraphClient } from './release/update-graph.ts';
import { resolveOperatorCatalogs } from './catalog/operator-catalogs.ts';
import { DocumentClient } from './document-client.ts';
import type { RunJournal, RunRecord } from '../run/run-journal.ts';

export interface OpenShiftSources {
  /** Update graph base URL (`--update-url`, else `UPDATE_URL_OVERRIDE`, else the OCP/OKD service). */
  updateUrl?: string;
  /** Where the graph-data tarball comes from (`--graph-data-url`). */
  graphDataUrl?: string;
  /** The image the graph data is layered on (`--graph-base-image`). */
  graphBaseImage?: string;
  /** Verify TLS of the update service and graph data download (`--src-tls-verify`). */
  tlsVerify: boolean;
  /** The release signature store (`OCP_SIGNATURE_URL`), ending in `/`. */
  signatureUrl?: string;
  /** Armored OpenPGP public keys release signatures must be made with (`OCP_SIGNATURE_VERIFICATION_PK`'s file). */
  signatureKeys?: string;
  retry?: RetryPolicy;
}

export interface CollectImageSetOptions {
  config: ImageSetConfig;
  client: RegistryClient;
  /** The coordinator's agent: reads payload and catalog layers, stores what resolution makes. */
  agent: LocalAgent;
  layers: LayerSource;
  sources: OpenShiftSources;
  journal: RunJournal;
  run: RunRecord;
  parallelImages: number;
  logger: Logger;
  signal?: AbortSignal;
}

export interface ImageSetContent {
  /** Images to resolve (release payloads and components, bundles, related images, additional images). */
  requested: RequestedImage[];
  /** Images made during resolution, already resolved: filtered catalogs, the graph image. */
  prepared: ResolvedImage[];
  blocked: Array<{ source: string; blockedBy: string }>;
  failed: FailedImage[];
}

export async function collectImageSet(options: CollectImageSetOptions): Promise<ImageSetContent> {
  const { config, signal, logger } = options;
  const log = logger.child({ component: 'coordinator:image-set' });
  const abortable = signal === undefined ? {} : { signal };
  const platform = config.mirror.platform;
  const found: RequestedImage[] = [];
  const prepared: ResolvedImage[] = [];
  const failed: FailedImage[] = [];

  if (platform !== undefined && (platform.channels.length > 0 || platform.release !== undefined)) {
    const graph = new UpdateGraphClient({
      ...(options.sources.updateUrl === undefined ? {} : { baseUrl: options.sources.updateUrl }),
      tlsVerify: options.sources.tlsVerify,
      ...(options.sources.retry === undefined ? {} : { retry: options.sources.retry }),
      // The graph as first answered stays the graph of this run: a resumed run selects the same releases.
      cache: {
        get: (key) => options.journal.runCached(options.run, `graph/${key}`),
        put: (key, body) => options.journal.putRunCached(options.run, `graph/${key}`, body),
      },
      logger,
    });
    try {
      const result = await resolveReleases({
        platform,
        graph,
        client: options.client,
        layers: options.layers,
        cache: {
          get: async (digest) => {
            const text = await options.journal.derived(`release-info/${digest}`);
            return text === undefined ? undefined : (JSON.parse(text) as ReleaseInfo);
          },
          put: (info) => options.journal.putDerived(`release-info/${info.digest}`, JSON.stringify(info)),
        },
        parallel: options.parallelImages,
        logger,
        ...abortable,
      });
      found.push(...result.images);
      failed.push(...result.failed);
    } finally {
      await graph.close();
    }
  }

  if (platform?.graph === true) {
    try {
      prepared.push(
        await buildGraphImage({
          download: (s) => downloadGraphData(options.sources.graphDataUrl ?? DEFAULT_GRAPH_DATA_URL, options.sources.tlsVerify, s),
          baseImage: options.sources.graphBaseImage ?? DEFAULT_GRAPH_BASE_IMAGE,
          architecture: platform.architectures.find((a) => a !== 'multi') ?? 'amd64',
          client: options.client,
          agent: options.agent,
          ...abortable,
        }),
      );
    } catch (err) {
      if (signal?.aborted === true) throw err;
      log.warn({ code: errorCode(err), err: describeError(err) }, 'graph image could not be built');
      failed.push({ kind: 'release', source: 'graph image', origin: 'mirror.platform.graph', code: errorCode(err), reason: describeError(err) });
    }
  }

  throwIfAborted(signal);
  const catalogs = await resolveOperatorCatalogs({
    operators: config.mirror.operators,
    architectures: platform?.architectures ?? ['amd64'],
    client: options.client,
    agent: options.agent,
    layers: options.layers,
    pin: {
      get: (source) => options.journal.pinnedDigest(options.run, source),
      put: (source, digest) => options.journal.pin(options.run, source, digest),
    },
    logger,
    ...abortable,
  });
  found.push(...catalogs.images);
  prepared.push(...catalogs.prepared);
  failed.push(...catalogs.failed);

  const helm = config.mirror.helm;
  if (helm !== undefined && (helm.repositories.length > 0 || helm.local.length > 0)) {
    const documents = new DocumentClient({
      tlsVerify: options.sources.tlsVerify,
      ...(options.sources.retry === undefined ? {} : { retry: options.sources.retry }),
      tlsAdvice: {
        untrusted: 'trust its CA (NODE_EXTRA_CA_CERTS) or turn TLS verification off for sources (--src-tls-verify=false)',
        notTls: 'use an http:// repository URL',
      },
      logger: log,
    });
    try {
      // The chart renderer takes a quarter of a second to load: only runs with charts pay for it.
      const { resolveHelmCharts } = await import('./helm/helm-charts.ts');
      const charts = await resolveHelmCharts({ helm, client: options.client, documents, agent: options.agent, logger, ...abortable });
      found.push(...charts.images);
      prepared.push(...charts.prepared);
      failed.push(...charts.failed);
    } finally {
      await documents.close();
    }
  }

  const { images: requested, blocked } = requestedImages(config, found);
  return { requested, prepared, blocked, failed };
}

/** Streams the graph-data tarball (redirects followed: the real one is served from a CDN). */
async function downloadGraphData(url: string, tlsVerify: boolean, signal: AbortSignal | undefined): Promise<{ body: Readable; url: string }> {
  const agent = new HttpAgent({ connect: { rejectUnauthorized: tlsVerify, timeout: 30_000 }, headersTimeout: 60_000, bodyTimeout: 60_000 });
  const dispatcher = agent.compose(interceptors.redirect({ maxRedirections: 5 }));
  try {
    const response = await request(url, { method: 'GET', dispatcher, ...(signal === undefined ? {} : { signal }) });
    if (response.statusCode !== 200) {
      await response.body.dump();
      throw new MeshmirrorError('MM_REGISTRY', `GET ${url}: HTTP ${response.statusCode} (graph data)`, { data: { status: response.statusCode } });
    }
    response.body.once('close', () => void agent.close());
    return { body: response.body, url };
  } catch (err) {
    await agent.close();
    if (err instanceof MeshmirrorError) throw err;
    throw new MeshmirrorError('MM_NETWORK', `GET ${url} (graph data): ${(err as Error).message}`, { cause: err });
  }
}
