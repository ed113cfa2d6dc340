/**
 * Image sources: where a run's images come from, resolved to their manifests and blobs. The
 * registries (mirror to disk, mirror to mirror) resolve the configuration against the update graph,
 * the catalogs and the source registries; an archive (disk to mirror) reads what a mirror run
 * resolved. Downstream, a run sees only `ResolvedImage`s and the images that failed.
 */
import pLimit from 'p-limit';
import { describeError, errorCode, throwIfAborted, type ImageSetConfig, type LocalAgent, type Logger, type RegistryClient } from '@meshmirror/shared';
import type { FailedImage, RequestedImage, ResolvedImage } from '../resolve/image-set.ts';
import { collectImageSet, type OpenShiftSources } from '../resolve/image-set-content.ts';
import type { LayerSource } from '../resolve/layer-source.ts';
import { resolveImage } from '../resolve/resolve-image.ts';
import type { ProgressReporter } from '../report/progress.ts';
import type { RunJournal, RunRecord } from './run-journal.ts';
import type { RunContext } from './run-skeleton.ts';

export interface SourcedImages {
  /** How many images the configuration asks for (resolved or not). */
  requested: number;
  /** Left out by `blockedImages`, with the entry that blocked each. */
  blocked: Array<{ source: string; blockedBy: string }>;
  images: ResolvedImage[];
  /** Images (and parts of the image set) that could not be had, each with why. */
  failed: FailedImage[];
}

export interface ImageSource {
  images(run: Pick<RunContext, 'journal' | 'run'>): Promise<SourcedImages>;
}

export interface RegistrySourceOptions {
  config: ImageSetConfig;
  client: RegistryClient;
  /** The coordinator's agent: stores what resolution makes (filtered catalogs, the graph image). */
  agent: LocalAgent;
  layers: LayerSource;
  sources: OpenShiftSources;
  parallelImages: number;
  logger: Logger;
  progress?: ProgressReporter;
  signal?: AbortSignal;
}

/**
 * The source registries: the configuration's releases, operators and additional images, each tag
 * pinned in the journal to the digest it first resolved to, so a resumed run completes the same set.
 */
export function registrySource(options: RegistrySourceOptions): ImageSource {
  return {
    images: async ({ journal, run }) => {
      options.progress?.update({ phase: 'resolving' });
      const content = await collectImageSet({ ...options, journal, run });
      const log = options.logger.child({ component: 'coordinator:resolve' });
      for (const b of content.blocked) log.info({ image: b.source, blockedBy: b.blockedBy }, 'image blocked by blockedImages');
      const requested = content.requested.length + content.prepared.length;
      options.progress?.update({ imagesTotal: requested });
      const { resolved, failed } = await resolveAll(content.requested, run, journal, options);
      return { requested, blocked: content.blocked, images: [...content.prepared, ...resolved], failed: [...content.failed, ...failed] };
    },
  };
}

async function resolveAll(
  requested: RequestedImage[],
  run: RunRecord,
  journal: RunJournal,
  options: RegistrySourceOptions,
): Promise<{ resolved: ResolvedImage[]; failed: FailedImage[] }> {
  const limit = pLimit(options.parallelImages);
  const architectures = options.config.mirror.platform?.architectures;
  const log = options.logger.child({ component: 'coordinator:resolve' });
  const results = await Promise.all(
    requested.map((image) =>
      limit(async (): Promise<ResolvedImage | FailedImage> => {
        throwIfAborted(options.signal);
        // A tag resolved earlier in an unfinished run stays pinned to that digest.
        const pinned = image.ref.digest === undefined ? await journal.pinnedDigest(run, image.source) : undefined;
        const toResolve = pinned === undefined ? image : { ...image, ref: { ...image.ref, digest: pinned } };
        try {
          const resolved = await resolveImage(toResolve, {
            client: options.client,
            // Operator images are mirrored with every platform, as oc-mirror v2 does: a catalog names
            // them by digest, and an index cut down to some platforms cannot be pushed by digest.
            ...(architectures === undefined || image.kind === 'operator' ? {} : { architectures }),
            ...(options.signal === undefined ? {} : { signal: options.signal }),
          });
          const result: ResolvedImage = { ...resolved, ref: image.ref };
          if (image.ref.digest === undefined && pinned === undefined) await journal.pin(run, image.source, result.descriptor.digest);
          return result;
        } catch (err) {
          if (options.signal?.aborted === true) throw err;
          log.warn({ image: image.source, code: errorCode(err), err: describeError(err) }, 'image could not be resolved');
          return { ...image, code: errorCode(err), reason: describeError(err) };
        }
      }),
    ),
  );
  const resolved: ResolvedImage[] = [];
  const failed: FailedImage[] = [];
  for (const r of results) ('descriptor' in r ? resolved : failed).push(r as never);
  options.progress?.update({ imagesFailed: failed.length });
  return { resolved, failed };
}
