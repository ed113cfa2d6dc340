/**
 * Disk to mirror: push the images of an archive into a target registry straight from its tar
 * chunks (no extraction, no temporary registry). The archive is the image source and the blob
 * supply (always ready); the target registry is the sink. The archive is checked before it is
 * trusted (safe entry names, chunk manifests that agree with the tar, every blob a manifest names
 * present, every blob's digest checked before the registry may commit it). An image that fails
 * never costs another image its push.
 */
import { join } from 'node:path';
import { throwIfAborted, type Digest, type HostBackoff, type ImageSetConfig, type Logger, type RegistryPushClient, type RetryPolicy } from '@meshmirror/shared';
import { openArchive } from '@meshmirror/agent';
import { withRun } from '../run/run-skeleton.ts';
import type { ProgressReporter } from '../report/progress.ts';
import type { PushDestination } from './push-targets.ts';
import { archiveSource } from './archive-source.ts';
import { archivePlacement } from './archive-placement.ts';
import { findDifferentialBase, withDifferentialBase } from './differential-base.ts';
import { RegistrySink } from './registry-sink.ts';
import { uniqueBlobsOf } from './image-pusher.ts';

export type { PushOutcome } from './image-pusher.ts';

import type { PushSummary } from '../report/summaries.ts';
import type { CatalogSourceTemplate } from '../cluster/catalog-source-template.ts';

export type { PushSummary };

export interface DiskToMirrorOptions {
  config: ImageSetConfig;
  /** The folder holding the archive chunks (`--from file://DIR`). */
  archiveDir: string;
  destination: PushDestination;
  /** The catalogs' `targetCatalogSourceTemplate`s, checked, by origin (`mirror.operators[i]`). */
  catalogSourceTemplates?: ReadonlyMap<string, CatalogSourceTemplate>;
  /** Holds the journal (upload sessions, pushed images). */
  cacheDir: string;
  client: RegistryPushClient;
  retry: RetryPolicy;
  backoff: HostBackoff;
  stallTimeoutMs: number;
  /** Blob uploads at once (oc-mirror's parallel-images × parallel-layers). */
  transfers: number;
  /** Bytes per PATCH. */
  chunkBytes: number;
  /** `--remove-signatures`: the archive's signatures are not pushed. */
  removeSignatures?: boolean;
  logger: Logger;
  progress?: ProgressReporter;
  signal?: AbortSignal;
}

export async function diskToMirror(options: DiskToMirrorOptions): Promise<PushSummary> {
  const started = Date.now();
  const { logger, progress, signal, destination } = options;
  const abortable = signal === undefined ? {} : { signal };

  // Refuses the whole archive on unsafe entry names, broken chunk manifests or missing chunks.
  const reader = await openArchive(options.archiveDir, abortable);

  const identity = { mode: 'disk-to-mirror', config: options.config, archiveId: reader.archiveId, destination };
  return await withRun({ cacheDir: options.cacheDir, identity, logger, component: 'coordinator:push' }, async (ctx) => {
    const sourced = await archiveSource(reader, options.config, { logger, removeSignatures: options.removeSignatures === true, ...abortable }).images(ctx);
    const fromArchive = archivePlacement(reader, { ...options, registry: destination.registry, journal: ctx.journal, logger: ctx.log });
    // A differential archive: what it leaves out must be in the target already, or nothing is uploaded.
    const { differential } = await reader.runMetadata();
    const base = new Map<Digest, string>();
    const sink = new RegistrySink(sourced, differential === undefined ? fromArchive : withDifferentialBase(fromArchive, base), ctx, options);
    if (differential !== undefined) {
      for (const [digest, holder] of await findDifferentialBase(differential, sink.pushes, destination.registry, options.client, signal)) base.set(digest, holder);
    }
    progress?.update({
      phase: 'pushing',
      imagesTotal: sourced.requested,
      imagesDone: 0,
      imagesFailed: sink.outcomes.length,
      bytesTotal: uniqueBlobsOf(sink.pushes).bytes,
      bytesDone: 0,
    });
    // Pushed by an earlier run and still there: nothing to send.
    await sink.pushAll(await sink.setAsidePushed(), ctx.log);
    throwIfAborted(signal);
    return await sink.finish(join(reader.dir, 'working-dir'), reader.dir, started, (summary) => ({
      ...summary,
      retries: Math.max(summary.retries, options.backoff.failedRequests(destination.registry)),
    }));
  });
}
