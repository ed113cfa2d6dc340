import { createHash } from 'node:crypto';
import { join } from 'node:path';
import pLimit from 'p-limit';
import {
  describeError,
  unsupportedImageSetContent,
  errorCode,
  hashedBytes,
  throwIfAborted,
  type LocalAgent,
  type Digest,
  type ImageSetConfig,
  type Logger,
  type RegistryClient,
  type RunDescription,
} from '@meshmirror/shared';
import type { FailedImage, RequestedImage, ResolvedImage } from '../resolve/image-set.ts';
import { resolveImage } from '../resolve/resolve-image.ts';
import { collectImageSet, type ImageSetContent, type OpenShiftSources } from '../resolve/image-set-content.ts';
import type { LayerSource } from '../resolve/layer-source.ts';
import { buildPlan, type MirrorPlan } from '../plan/plan.ts';
import { planMesh } from '../plan/mesh-plan.ts';
import { ArchiveFeed } from './archive-feed.ts';
import { fetchLocally, isFarm, meshFetch, supplyHoldings, type AgentReport, type BlobSupply } from './mesh-fetch.ts';
import { ImageTally } from './image-tally.ts';
import type { ProgressReporter } from '../report/progress.ts';
import { RunJournal, type RunRecord } from './run-journal.ts';
import { writeReports } from '../report/run-reports.ts';
import { diskTarget } from './disk-target.ts';

import type { ImageOutcome, MirrorSummary } from '../report/summaries.ts';

export type { ImageOutcome, MirrorSummary };

export interface MirrorToDiskOptions {
  /** The validated ImageSetConfiguration. */
  config: ImageSetConfig;
  /** The archive folder (`file://DIR` without the scheme). */
  destination: string;
  /** Holds the run journal; the agent's blob store lives beside it. */
  cacheDir: string;
  client: RegistryClient;
  /** The agent that fetches and writes; the in-process agent in a single-host run. */
  agent: LocalAgent;
  /** Reads release payload and catalog layers (through `agent`'s store, so they cross the link once). */
  layers: LayerSource;
  /** The update service and graph data (OpenShift content). */
  sources: OpenShiftSources;
  parallelImages: number;
  /** Blobs larger than this are fetched as several pieces in parallel. */
  pieceSize: number;
  /** Chunk size limit; defaults to the configuration's `archiveSize` GiB (oc-mirror's default is 500). */
  chunkSizeBytes: number;
  dryRun?: boolean;
  /**
   * Where blobs come from into `agent`'s store: `agent` itself alone (a farm of one), or a farm's
   * agents, `agent` then only writing, pulling every piece from its holder.
   */
  supply: BlobSupply;
  logger: Logger;
  progress?: ProgressReporter;
  signal?: AbortSignal;
}

/**
 * Mirror to disk: resolve the image set, fetch every blob not yet held, and write the archive of
 * every image whose blobs all arrived. An image that fails is reported and never costs another
 * image its place in the archive; a re-run fetches only what is still missing.
 */
export async function mirrorToDisk(options: MirrorToDiskOptions): Promise<MirrorSummary> {
  const started = Date.now();
  const hashedAtStart = hashedBytes();
  const { agent, logger, progress, signal } = options;
  const warnings: string[] = [];
  const log = logger.child({ component: 'coordinator:mirror' });

  for (const notice of unsupportedImageSetContent(options.config)) warnings.push(`${notice.path}: ${notice.message}`);
  for (const w of warnings) log.warn(w);

  const journal = await RunJournal.open(join(options.cacheDir, 'journal'));
  try {
    const { run, resumed } = await journal.beginRun(runKey(options));
    if (resumed) log.info({ runId: run.runId }, 'resuming unfinished run');
    progress?.update({ phase: 'resolving' });

    const content = await collectImageSet({ ...options, journal, run });
    const { requested, blocked } = content;
    for (const b of blocked) log.info({ image: b.source, blockedBy: b.blockedBy }, 'image blocked by blockedImages');
    const { resolved, failed } = await resolveContent(content, run, journal, options);
    const plan = buildPlan(resolved);
    const emptyBlobs = [...plan.blobs.values()].filter((b) => b.size === 0);
    for (const b of emptyBlobs) plan.blobs.delete(b.digest);

    const wanted = [...plan.blobs.values()].map(({ digest, size }) => ({ digest, size }));
    const { supply } = options;
    const holdings = await agent.holdings(wanted, signal === undefined ? {} : { signal });
    const split = planMesh(plan, holdings, await supplyHoldings(supply, holdings, wanted, log, signal), options.pieceSize);
    log.info(
      { images: resolved.length, uniqueBlobs: plan.blobs.size, uniqueBytes: plan.uniqueBytes, held: split.heldBytes, toFetch: split.missingBytes },
      'plan ready',
    );

    const summaryBase = {
      runId: run.runId,
      resumed,
      dryRun: options.dryRun === true,
      destination: options.destination,
      warnings,
    };

    if (options.dryRun === true) {
      const outcomes: ImageOutcome[] = [
        ...resolved.map((i) => ({ source: i.source, kind: i.kind, origin: i.origin, state: 'planned' as const, digest: i.descriptor.digest })),
        ...failed.map(failedOutcome),
      ];
      const summary: MirrorSummary = {
        ...summaryBase,
        images: { requested: requested.length + content.prepared.length, blocked: blocked.length, archived: 0, failed: failed.length },
        outcomes,
        bytes: {
          unique: plan.uniqueBytes,
          held: split.heldBytes,
          resumed: split.resumedBytes,
          toFetch: split.missingBytes,
          fetched: 0,
          hashed: hashedBytes() - hashedAtStart,
        },
        retries: 0,
        rangesIgnored: 0,
        repairedBlobs: 0,
        archive: { chunks: [], warnings: [] },
        files: { report: '' },
        durationMs: Date.now() - started,
      };
      summary.files = await writeReports(options.destination, summary, { dryRun: true, resolved });
      return summary;
    }

    // Manifests are small and already in hand: give them to the writer now.
    for (const image of resolved) {
      for (const m of image.manifests) await agent.putBlob(m.digest, m.bytes, { signal });
    }
    for (const b of emptyBlobs) await agent.putBlob(b.digest, new Uint8Array(0), { signal });

    // The archive is written while blobs arrive: each blob goes into the current chunk as soon as
    // it is held, so writing overlaps the network instead of following it.
    const session = await agent.startArchive({
      dir: options.destination,
      chunkSizeBytes: options.chunkSizeBytes,
      ...(signal === undefined ? {} : { signal }),
    });
    const archiveFailures = new Map<Digest, { code: string; message: string }>();
    // Blobs go to the archive in the order they are held; the feed keeps the ones the writer has
    // not reached yet as small records instead of a queued promise each.
    const adds = new ArchiveFeed({
      session,
      ...(signal === undefined ? {} : { signal }),
      onFailure: (digest, err) => {
        log.error({ digest, code: errorCode(err), err: describeError(err) }, 'blob could not be archived');
        archiveFailures.set(digest, { code: errorCode(err), message: `cannot archive: ${describeError(err)}` });
      },
    });
    const addToArchive = (digest: Digest, size: number, verified = false): void => adds.add(digest, size, verified);
    let archive: MirrorSummary['archive'];
    const archived: ResolvedImage[] = [];
    const fetchTotals = { upstreamBytes: 0, retries: 0, rangesIgnored: 0, repaired: 0 };
    let agentReports: AgentReport[] | undefined;
    let pulledBytes: number | undefined;
    try {
      for (const blob of plan.blobs.values()) if (split.heldByWriter.has(blob.digest)) addToArchive(blob.digest, blob.size);
      for (const b of emptyBlobs) addToArchive(b.digest, 0);

      const fetchStarted = Date.now();
      const images = new ImageTally(plan, [...split.piecesPerBlob.keys(), ...split.assemble.map((b) => b.digest)], failed.length, progress);
      const fetchOutcome = await meshFetch({
        split,
        fetchers: supply.fetchers,
        writer: supply.writer,
        logger: options.logger,
        ...(progress === undefined ? {} : { progress }),
        ...(signal === undefined ? {} : { signal }),
        onBlobHeld: (digest, size) => {
          images.blobEnded(digest, true);
          addToArchive(digest, size, true);
        },
        onBlobFailed: (digest) => images.blobEnded(digest, false),
      });
      if (isFarm(supply)) {
        agentReports = fetchOutcome.agents;
        pulledBytes = fetchOutcome.pulledBytes;
      }
      await adds.settled();

      // A blob held from an earlier run that fails verification as it is archived (disk corruption,
      // a crash that lost written data) is evicted and fetched again, instead of failing this run
      // and every later one.
      const corrupt = [...archiveFailures].filter(([digest, f]) => isCorruption(f.code) && plan.blobs.has(digest)).map(([d]) => d);
      if (corrupt.length > 0) {
        log.warn({ blobs: corrupt }, 'held blobs failed verification; evicting and fetching them again');
        await agent.evict(corrupt, signal === undefined ? {} : { signal });
        for (const digest of corrupt) archiveFailures.delete(digest);
      }
      // A blob that arrived with wrong bytes (damaged on the way: a proxy, a bad link) was discarded
      // by the store; it is fetched once more, as the registry client does for manifests. The same
      // wrong bytes twice fail the image.
      const wrongBytes = [...fetchOutcome.failedBlobs].filter(([d, f]) => f.code === 'MM_DIGEST_MISMATCH' && !corrupt.includes(d)).map(([d]) => d);
      if (wrongBytes.length > 0) log.warn({ blobs: wrongBytes }, 'fetched blobs did not match their digests; fetching them once more');
      for (const digest of wrongBytes) fetchOutcome.failedBlobs.delete(digest);
      const refetch = [...corrupt, ...wrongBytes];
      if (refetch.length > 0) {
        // Fetched afresh by the coordinator's own agent: the copies elsewhere in the farm may be the wrong ones.
        const repairPlan: MirrorPlan = { ...plan, blobs: new Map(refetch.map((d) => [d, plan.blobs.get(d)!])) };
        const repaired = await fetchLocally(supply, repairPlan, [], options.pieceSize, {
          logger: options.logger,
          ...(progress === undefined ? {} : { progress }),
          ...(signal === undefined ? {} : { signal }),
          onBlobHeld: (digest, size) => addToArchive(digest, size, true),
        });
        await adds.settled();
        for (const [digest, why] of repaired.failedBlobs) fetchOutcome.failedBlobs.set(digest, why);
        fetchOutcome.upstreamBytes += repaired.upstreamBytes;
        fetchOutcome.retries += repaired.retries;
        fetchOutcome.rangesIgnored += repaired.rangesIgnored;
        fetchTotals.repaired = corrupt.length;
      }
      Object.assign(fetchTotals, { upstreamBytes: fetchOutcome.upstreamBytes, retries: fetchOutcome.retries, rangesIgnored: fetchOutcome.rangesIgnored });
      log.info({ ms: Date.now() - fetchStarted, upstreamBytes: fetchOutcome.upstreamBytes, failedBlobs: fetchOutcome.failedBlobs.size }, 'fetch finished');

      // Every image whose blobs all arrived goes into the archive; the rest are reported.
      for (const image of resolved) {
        const bad = image.blobs.find((b) => fetchOutcome.failedBlobs.has(b.digest) || archiveFailures.has(b.digest));
        if (bad === undefined) {
          archived.push(image);
          continue;
        }
        const why = fetchOutcome.failedBlobs.get(bad.digest) ?? archiveFailures.get(bad.digest);
        failed.push({ ...image, code: why?.code ?? 'UNKNOWN', reason: `blob ${bad.digest} (${bad.size} bytes): ${why?.message ?? 'not fetched'}` });
      }

      throwIfAborted(signal);
      progress?.update({ phase: 'archiving' });
      // Manifests last: children before the index that names them. One whose stored copy fails
      // verification is stored again from the bytes in hand.
      const manifests = archived.flatMap((image) => [...image.manifests.slice(1), ...image.manifests.slice(0, 1)]);
      for (const m of manifests) addToArchive(m.digest, m.bytes.byteLength);
      await adds.settled();
      const badManifests = manifests.filter((m) => isCorruption(archiveFailures.get(m.digest)?.code));
      if (badManifests.length > 0) {
        await agent.evict(
          badManifests.map((m) => m.digest),
          signal === undefined ? {} : { signal },
        );
        for (const m of badManifests) {
          archiveFailures.delete(m.digest);
          await agent.putBlob(m.digest, m.bytes, signal === undefined ? {} : { signal });
          addToArchive(m.digest, m.bytes.byteLength);
        }
        await adds.settled();
        fetchTotals.repaired += badManifests.length;
      }
      const unarchivable = archived.filter((image) => image.manifests.some((m) => archiveFailures.has(m.digest)));
      for (const image of unarchivable) {
        const bad = image.manifests.find((m) => archiveFailures.has(m.digest))!;
        const why = archiveFailures.get(bad.digest)!;
        archived.splice(archived.indexOf(image), 1);
        failed.push({ ...image, code: why.code, reason: `manifest ${bad.digest}: ${why.message}` });
      }
      const history = await journal.history();
      const archiveStarted = Date.now();
      if (archived.length === 0) {
        await session.abort();
        archive = { chunks: [], warnings: ['no image could be archived; no archive was written'] };
      } else {
        archive = await session.finish(
          {
            // One entry per source: a release component tagged by several releases is one image.
            images: [...new Map(archived.map((i) => [i.source, { name: i.source, descriptor: i.descriptor }])).values()],
            metadata: runMetadata(run, options, archived, failed, history),
          },
          signal === undefined ? {} : { signal },
        );
      }
      log.info({ ms: Date.now() - archiveStarted, chunks: archive.chunks.length }, 'archive finished');
    } catch (err) {
      await session.abort();
      throw err;
    }
    const outcomes: ImageOutcome[] = [
      ...archived.map((i) => ({ source: i.source, kind: i.kind, origin: i.origin, state: 'archived' as const, digest: i.descriptor.digest })),
      ...failed.map(failedOutcome),
    ];
    await journal.recordImages(
      run,
      outcomes.map((o) => ({ source: o.source, state: o.state === 'archived' ? 'archived' : 'failed', digest: o.digest, code: o.code, reason: o.reason })),
    );
    await journal.finishRun(run, failed.length === 0 ? 'complete' : 'partial');
    progress?.update({ phase: 'done', imagesDone: archived.length, imagesFailed: failed.length });

    const summary: MirrorSummary = {
      ...summaryBase,
      images: { requested: requested.length + content.prepared.length, blocked: blocked.length, archived: archived.length, failed: failed.length },
      outcomes,
      bytes: {
        unique: plan.uniqueBytes,
        held: split.heldBytes,
        resumed: split.resumedBytes,
        toFetch: split.missingBytes,
        fetched: fetchTotals.upstreamBytes,
        ...(pulledBytes === undefined ? {} : { pulled: pulledBytes }),
        hashed: hashedBytes() - hashedAtStart,
      },
      ...(agentReports === undefined ? {} : { agents: agentReports }),
      retries: fetchTotals.retries,
      rangesIgnored: fetchTotals.rangesIgnored,
      repairedBlobs: fetchTotals.repaired,
      archive,
      files: { report: '' },
      durationMs: Date.now() - started,
    };
    summary.files = await writeReports(options.destination, summary, { dryRun: false, resolved });
    return summary;
  } finally {
    await journal.close();
  }
}

/** A run is identified by its configuration and destination: the same command resumes the same run. */
function runKey(options: MirrorToDiskOptions): string {
  return createHash('sha256')
    .update(JSON.stringify({ config: options.config, destination: options.destination }))
    .digest('hex')
    .slice(0, 32);
}

export async function resolveAll(
  requested: RequestedImage[],
  run: RunRecord,
  journal: RunJournal,
  options: Pick<MirrorToDiskOptions, 'config' | 'client' | 'parallelImages' | 'logger' | 'progress' | 'signal'>,
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

/** Resolves the requested images; the images made during collection join them, and the parts that failed. */
export async function resolveContent(
  content: ImageSetContent,
  run: RunRecord,
  journal: RunJournal,
  options: Parameters<typeof resolveAll>[3],
): Promise<{ resolved: ResolvedImage[]; failed: FailedImage[] }> {
  options.progress?.update({ imagesTotal: content.requested.length + content.prepared.length });
  const { resolved, failed } = await resolveAll(content.requested, run, journal, options);
  return { resolved: [...content.prepared, ...resolved], failed: [...content.failed, ...failed] };
}

function runMetadata(run: RunRecord, options: MirrorToDiskOptions, archived: ResolvedImage[], failed: FailedImage[], history: RunRecord[]): RunDescription {
  return {
    tool: 'meshmirror',
    runId: run.runId,
    startedAt: run.startedAt,
    writtenAt: new Date().toISOString(),
    imageSetConfig: options.config,
    images: [
      ...archived.map((i) => ({
        source: i.source,
        kind: i.kind,
        origin: i.origin,
        ...(i.role === undefined ? {} : { role: i.role }),
        ...(i.targetRepo === undefined ? {} : { targetRepo: i.targetRepo }),
        ...(i.targetTag === undefined ? {} : { targetTag: i.targetTag }),
        digest: i.descriptor.digest,
        mediaType: i.descriptor.mediaType,
        target: diskTarget(options.destination, i),
        platforms: i.platforms,
        skippedPlatforms: i.skippedPlatforms,
        status: 'archived' as const,
      })),
      ...failed.map((i) => ({ source: i.source, kind: i.kind, status: 'failed' as const, code: i.code, reason: i.reason })),
    ],
    history: history.map((h) => ({ runId: h.runId, startedAt: h.startedAt, finishedAt: h.finishedAt, state: h.state })),
  };
}

/** Codes that mean the store's copy of a blob is not what its digest says. */
function isCorruption(code: string | undefined): boolean {
  return code === 'MM_DIGEST_MISMATCH' || code === 'MM_SIZE_MISMATCH';
}

function failedOutcome(f: FailedImage): ImageOutcome {
  return { source: f.source, kind: f.kind, origin: f.origin, state: 'failed', code: f.code, reason: f.reason };
}
