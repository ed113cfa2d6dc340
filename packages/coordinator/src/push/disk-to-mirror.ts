/**
 * Disk to mirror: push the images of an archive into a target registry straight from its tar
 * chunks (no extraction, no temporary registry). The archive is checked before it is trusted (safe
 * entry names, chunk manifests that agree with the tar, every blob a manifest names present, every
 * blob's digest checked before the registry may commit it). Blobs go before the manifests that use
 * them, child manifests before their index, the tag last. A blob shared by several repositories is
 * uploaded once and mounted into the others. An image that fails never costs another image its push.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import {
  describeError,
  errorCode,
  MeshmirrorError,
  parseImageReference,
  throwIfAborted,
  walkImage,
  type Digest,
  type HostBackoff,
  type ImageReference,
  type ImageSetConfig,
  type Logger,
  type RegistryPushClient,
  type RetryPolicy,
  type RunMetadata,
} from '@meshmirror/shared';
import { openArchive, uploadBlob, type ArchiveReader, type UploadModes } from '@meshmirror/agent';
import type { RequestedImage } from '../resolve/image-set.ts';
import { requestedImages } from '../resolve/requested-images.ts';
import { RunJournal } from '../run/run-journal.ts';
import type { ProgressReporter } from '../report/progress.ts';
import { writePushReports } from '../report/push-reports.ts';
import { pushTarget, type PushDestination } from './push-targets.ts';
import { stripSparseIndex } from './sparse-index.ts';
import { finishPushRun, ImagePusher, uniqueBlobsOf, type ImagePush, type PushOutcome } from './image-pusher.ts';

export type { PushOutcome } from './image-pusher.ts';

import type { PushSummary } from '../report/summaries.ts';

export type { PushSummary };

export interface DiskToMirrorOptions {
  config: ImageSetConfig;
  /** The folder holding the archive chunks (`--from file://DIR`). */
  archiveDir: string;
  destination: PushDestination;
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
  logger: Logger;
  progress?: ProgressReporter;
  signal?: AbortSignal;
}

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export async function diskToMirror(options: DiskToMirrorOptions): Promise<PushSummary> {
  const started = Date.now();
  const { logger, progress, signal, destination } = options;
  const log = logger.child({ component: 'coordinator:push' });
  const warnings: string[] = [];

  // Refuses the whole archive on unsafe entry names, broken chunk manifests or missing chunks.
  const reader = await openArchive(options.archiveDir, signal === undefined ? {} : { signal });
  const metadata = await reader.runMetadata();
  const entries = await reader.images();
  const archived = new Map(entries.filter((e) => e.name !== undefined).map((e) => [e.name as string, e.descriptor]));
  // Images whose index lost platforms to the architecture filter at mirror time.
  const skippedPlatforms = new Map<string, boolean>();
  for (const image of metadata.images) if (image.status === 'archived') skippedPlatforms.set(image.source, image.skippedPlatforms.length > 0);

  // Release and catalog content was resolved when the archive was made (the graph and the catalogs
  // are not reachable from here): its images come from run.json, the additional ones from the config.
  const { images: requested, blocked } = requestedImages(options.config, resolvedContentOf(metadata));
  const outcomes: PushOutcome[] = [];
  const pushes: ImagePush[] = [];
  for (const image of requested) {
    const descriptor = archived.get(image.source);
    const base = { source: image.source, kind: image.kind, origin: image.origin, ...(image.role === undefined ? {} : { role: image.role }) };
    if (descriptor === undefined) {
      outcomes.push({
        ...base,
        state: 'failed',
        code: 'MM_NOT_FOUND',
        reason: `not in the archive in ${reader.dir} (mirror it to disk first, with the same configuration)`,
      });
      continue;
    }
    try {
      const byDigest = image.ref.digest !== undefined && image.ref.tag === undefined;
      const parts = await readImage(reader, image.source, descriptor.digest, skippedPlatforms.get(image.source) ?? false, byDigest, signal);
      pushes.push({ ...base, target: pushTarget(destination, image, descriptor.digest), ...parts });
    } catch (err) {
      if (signal?.aborted === true) throw err;
      log.warn({ image: image.source, code: errorCode(err), err: describeError(err) }, 'image refused');
      outcomes.push({ ...base, state: 'failed', digest: descriptor.digest, code: errorCode(err), reason: describeError(err) });
    }
  }

  const journal = await RunJournal.open(join(options.cacheDir, 'journal'));
  try {
    const { run, resumed } = await journal.beginRun(runKey(options, reader.archiveId));
    if (resumed) log.info({ runId: run.runId }, 'resuming unfinished push');

    const unique = uniqueBlobsOf(pushes);
    progress?.update({ phase: 'pushing', imagesTotal: requested.length, imagesDone: 0, imagesFailed: outcomes.length, bytesTotal: unique.bytes, bytesDone: 0 });

    const modes: UploadModes = { monolithic: new Set() };
    const pusher = new ImagePusher({
      images: pushes,
      client: options.client,
      journal,
      transfers: options.transfers,
      ...(progress === undefined ? {} : { progress }),
      ...(signal === undefined ? {} : { signal }),
      place: (blob, repository, mountFrom, onBytesSent) => {
        const where = reader.locateBlob(blob.digest);
        return uploadBlob({
          client: options.client,
          target: { registry: destination.registry, repository },
          digest: blob.digest,
          size: blob.size,
          source: {
            where: where === undefined ? `blob ${blob.digest}` : `${where.file} entry ${where.entry}`,
            openRange: (start, end, rangeSignal) => reader.openUnverified(blob.digest, start, end, rangeSignal === undefined ? {} : { signal: rangeSignal }),
          },
          chunkBytes: options.chunkBytes,
          retry: options.retry,
          backoff: options.backoff,
          stallTimeoutMs: options.stallTimeoutMs,
          mountFrom,
          modes,
          journal: {
            session: (repo, d) => journal.uploadSession(destination.registry, repo, d),
            saveSession: (repo, d, url) => journal.saveUploadSession(destination.registry, repo, d, url),
            clearSession: (repo, d) => journal.clearUploadSession(destination.registry, repo, d),
          },
          logger: log,
          onBytesSent,
          ...(signal === undefined ? {} : { signal }),
        });
      },
    });

    // Pushed by an earlier run and still there: nothing to send.
    const { toPush, outcomes: setAside, alreadyPushed } = await pusher.setAsidePushed(pushes);
    outcomes.push(...setAside);
    const results = await pusher.pushAll(toPush, { done: alreadyPushed, failed: outcomes.length - alreadyPushed }, log);
    outcomes.push(...results);
    throwIfAborted(signal);

    const { stats } = pusher;
    const workingDir = join(reader.dir, 'working-dir');
    const finished = await finishPushRun(journal, run, outcomes, workingDir, progress);
    const clusterFiles = finished.clusterResources;

    const summary: PushSummary = {
      runId: run.runId,
      resumed,
      from: reader.dir,
      destination: `docker://${destination.registry}${destination.prefix === '' ? '' : `/${destination.prefix}`}`,
      images: { requested: requested.length, blocked: blocked.length, pushed: finished.pushed, failed: finished.failed, alreadyPushed },
      outcomes,
      blobs: { unique: unique.count, present: stats.present, mounted: stats.mounted, uploaded: stats.uploaded },
      bytes: { unique: unique.bytes, skipped: stats.skippedBytes, uploaded: stats.uploadedBytes, sent: stats.sent, resumed: stats.resumed },
      retries: Math.max(stats.retries, options.backoff.failedRequests(destination.registry)),
      restarts: stats.restarts,
      warnings,
      files: { report: '', clusterResources: clusterFiles },
      durationMs: Date.now() - started,
    };
    summary.files = { ...(await writePushReports(workingDir, summary)), clusterResources: clusterFiles };
    return summary;
  } finally {
    await journal.close();
  }
}

/**
 * Reads an image's manifests from the archive (each checked against its digest) and lists the
 * blobs they name; every one must be in the archive. A child of an index that mirror to disk left
 * out by the architecture filter is skipped.
 */
async function readImage(
  reader: ArchiveReader,
  source: string,
  digest: Digest,
  platformsFiltered: boolean,
  byDigest: boolean,
  signal: AbortSignal | undefined,
): Promise<Pick<ImagePush, 'digest' | 'manifests' | 'blobs'>> {
  const top = await readManifest(reader, digest, source, signal);
  const walked = await walkImage(top, source, {
    child: async (child, where) => {
      if (reader.locateBlob(child.digest) === undefined) {
        if (platformsFiltered) return undefined;
        const at = reader.locateBlob(digest);
        throw new MeshmirrorError(
          'MM_ARCHIVE_INVALID',
          `${at === undefined ? source : `${at.file} entry ${at.entry}`}: the index of ${source} names manifest ${child.digest}, which is not in the archive`,
        );
      }
      return await readManifest(reader, child.digest, where, signal, child.mediaType);
    },
    onBlob: (d, owner) => {
      const located = reader.locateBlob(d.digest);
      if (located !== undefined && located.size === d.size) return;
      const at = reader.locateBlob(owner.manifest.digest);
      const why = located === undefined ? 'which is not in the archive' : `but the archive holds ${located.size} bytes for it`;
      throw new MeshmirrorError(
        'MM_ARCHIVE_INVALID',
        `${at === undefined ? owner.where : `${at.file} entry ${at.entry}`}: the manifest of ${owner.where} names blob ${d.digest} (${d.size} bytes), ${why}`,
        { data: { digest: d.digest, ...(at === undefined ? {} : { file: at.file, entry: at.entry }) } },
      );
    },
  });
  const manifests: ImagePush['manifests'] = walked.children.map((c) => c.manifest);
  const pushedTop = platformsFiltered ? stripSparseIndex(top, (child) => manifests.some((m) => m.digest === child), { source, byDigest }) : top;
  manifests.push(pushedTop);
  return { digest: pushedTop.digest, manifests, blobs: walked.blobs };
}

async function readManifest(
  reader: ArchiveReader,
  digest: Digest,
  what: string,
  signal: AbortSignal | undefined,
  mediaTypeHint?: string,
): Promise<{ digest: Digest; mediaType: string; bytes: Buffer }> {
  const size = await reader.blobSize(digest);
  if (size === undefined) {
    const last = reader.chunks[reader.chunks.length - 1]?.file ?? 'the last chunk';
    throw new MeshmirrorError('MM_ARCHIVE_INVALID', `${last} entry index.json: names manifest ${digest} of ${what}, which is not in the archive`);
  }
  if (size > MAX_MANIFEST_BYTES) throw new MeshmirrorError('MM_MANIFEST_INVALID', `manifest ${digest} of ${what} is ${size} bytes, more than a manifest may be`);
  // A whole-blob read is checked against the digest as it streams.
  const stream = await reader.openBlob(digest, signal === undefined ? {} : { signal });
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  return { digest, mediaType: mediaTypeOf(bytes, mediaTypeHint), bytes };
}

function mediaTypeOf(bytes: Buffer, hint: string | undefined): string {
  try {
    const json = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
    if (typeof json.mediaType === 'string') return json.mediaType;
  } catch {
    // parseManifest reports it with the image's name.
  }
  return hint ?? 'application/vnd.oci.image.manifest.v1+json';
}

/**
 * From `run.json`: the release and operator images the mirror run archived, with their targets.
 * Additional images are not taken from here: the configuration names them.
 */
function resolvedContentOf(metadata: RunMetadata): RequestedImage[] {
  const out: RequestedImage[] = [];
  for (const image of metadata.images) {
    if (image.status !== 'archived' || image.kind === 'additional') continue;
    let ref: ImageReference;
    try {
      ref = parseImageReference(image.source);
    } catch {
      continue; // not an image the archive could hold
    }
    const { source, kind, origin, role, targetRepo, targetTag } = image;
    out.push({
      kind,
      source,
      ref,
      origin,
      ...(role === undefined ? {} : { role }),
      ...(targetRepo === undefined ? {} : { targetRepo }),
      ...(targetTag === undefined ? {} : { targetTag }),
    });
  }
  return out;
}

/** The same configuration, archive and target resume the same push run. */
function runKey(options: DiskToMirrorOptions, archiveId: string): string {
  return createHash('sha256')
    .update(JSON.stringify({ mode: 'disk-to-mirror', config: options.config, archiveId, destination: options.destination }))
    .digest('hex')
    .slice(0, 32);
}
