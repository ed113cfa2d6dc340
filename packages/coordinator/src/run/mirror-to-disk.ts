import {
  differentialBasis,
  formatBytes,
  hashedBytes,
  MeshmirrorError,
  throwIfAborted,
  type Differential,
  type Digest,
  type ImageSetConfig,
  type LocalAgent,
  type Logger,
  type RegistryClient,
  type RunDescription,
} from '@meshmirror/shared';
import type { FailedImage, ResolvedImage } from '../resolve/image-set.ts';
import type { OpenShiftSources } from '../resolve/image-set-content.ts';
import type { LayerSource } from '../resolve/layer-source.ts';
import { buildPlan } from '../plan/plan.ts';
import { archivedBefore, leaveOutArchived, leaveOutReceived, type SinceReceipt } from '../plan/differential.ts';
import { planMesh } from '../plan/mesh-plan.ts';
import { supplyHoldings, type BlobSupply } from './mesh-fetch.ts';
import { ImageTally } from './image-tally.ts';
import type { ProgressReporter } from '../report/progress.ts';
import type { RunRecord } from './run-journal.ts';
import { closeRun, withRun } from './run-skeleton.ts';
import { registrySource } from './image-source.ts';
import { ArchiveSink, type ArchiveOutcome } from './archive-sink.ts';
import { fetchIntoWriter, type WriterFetchOutcome } from './writer-fetch.ts';
import { writeReports } from '../report/run-reports.ts';
import { diskTarget } from './disk-target.ts';
import { chunkBytesAlone, formatProblem, verifyArchive, VerifyAhead } from '@meshmirror/agent';
import type { ArchiveCheck, ImageOutcome, MirrorSummary } from '../report/summaries.ts';

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
  /** Manifests looked up at once while resolving (see `RegistrySourceOptions`). */
  manifestLookups: number;
  /** Blobs larger than this are fetched as several pieces in parallel. */
  pieceSize: number;
  /** Chunk size limit; defaults to the configuration's `archiveSize` GiB (oc-mirror's default is 500). */
  chunkSizeBytes: number;
  dryRun?: boolean;
  /** `--remove-signatures`: sigstore signature tags and referrers are not looked for. */
  removeSignatures?: boolean;
  /** `--no-verify`: the archive is not read back and checked when written. */
  skipVerify?: boolean;
  /** `--since-receipt`: leave out the blobs this receipt says the target holds (a differential archive). */
  sinceReceipt?: SinceReceipt;
  /** `--since`: leave out the blobs of images that runs in this cache archived before this time. */
  since?: Date;
  /** `--strict-archive`: fail before fetching when a blob cannot fit a chunk of `chunkSizeBytes`. */
  strictArchive?: boolean;
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
 * Mirror to disk: the source registries are the image source, the farm (or the farm of one) the
 * blob supply into the writer's store, the archive the sink. An image that fails is reported and
 * never costs another image its place in the archive; a re-run fetches only what is still missing.
 */
export async function mirrorToDisk(options: MirrorToDiskOptions): Promise<MirrorSummary> {
  const started = Date.now();
  const hashedAtStart = hashedBytes();
  const { agent, progress, signal, supply, config, destination } = options;
  const abortable = signal === undefined ? {} : { signal };
  return await withRun(
    { cacheDir: options.cacheDir, identity: { config, destination }, config, logger: options.logger, component: 'coordinator:mirror' },
    async (ctx) => {
      const sourced = await registrySource(options).images(ctx);
      const { images: resolved } = sourced;
      const plan = buildPlan(resolved);
      const emptyBlobs = [...plan.blobs.values()].filter((b) => b.size === 0).map((b) => b.digest);
      for (const digest of emptyBlobs) plan.blobs.delete(digest);
      const differential =
        options.sinceReceipt !== undefined
          ? leaveOutReceived(plan, options.sinceReceipt)
          : options.since !== undefined
            ? leaveOutArchived(plan, resolved, await archivedBefore(ctx.journal, options.since), options.since)
            : undefined;
      if (differential !== undefined) {
        ctx.log.info(
          { basis: differentialBasis(differential), blobs: differential.omitted.length, bytes: differential.omittedBytes },
          'left out what the target holds',
        );
      }
      if (options.strictArchive === true) refuseOversized(resolved, options.chunkSizeBytes, (digest) => plan.blobs.has(digest));
      const wanted = [...plan.blobs.values()].map(({ digest, size }) => ({ digest, size }));
      const holdings = await agent.holdings(wanted, abortable);
      const split = planMesh(plan, holdings, await supplyHoldings(supply, holdings, wanted, ctx.log, signal), options.pieceSize);
      ctx.log.info(
        { images: resolved.length, uniqueBlobs: plan.blobs.size, uniqueBytes: plan.uniqueBytes, held: split.heldBytes, toFetch: split.missingBytes },
        'plan ready',
      );
      const summaryOf = (
        parts: Pick<MirrorSummary, 'images' | 'outcomes' | 'archive'> & Partial<MirrorSummary>,
        fetched?: WriterFetchOutcome,
        done: ResolvedImage[] = [],
      ): MirrorSummary => ({
        runId: ctx.run.runId,
        resumed: ctx.resumed,
        dryRun: options.dryRun === true,
        destination,
        warnings: ctx.warnings,
        ...(differential === undefined
          ? {}
          : {
              differential: {
                basis: differentialBasis(differential),
                ...(differential.receipt === undefined ? {} : { receipt: differential.receipt.file, target: differential.receipt.target }),
                ...(differential.since === undefined ? {} : { since: differential.since }),
                omittedBlobs: differential.omitted.length,
                omittedBytes: differential.omittedBytes,
              },
            }),
        signatures: {
          sigstore: { ...sourced.signatures.sigstore, mirrored: done.filter((i) => i.role === 'signature').length },
          release: sourced.signatures.release,
          referrers: { ...sourced.signatures.referrers, mirrored: done.filter((i) => i.role === 'referrer').length },
        },
        bytes: {
          unique: plan.uniqueBytes,
          held: split.heldBytes,
          resumed: split.resumedBytes,
          toFetch: split.missingBytes,
          fetched: fetched?.upstreamBytes ?? 0,
          ...(fetched?.pulledBytes === undefined ? {} : { pulled: fetched.pulledBytes }),
          hashed: hashedBytes() - hashedAtStart,
        },
        ...(fetched?.agents === undefined ? {} : { agents: fetched.agents }),
        retries: fetched?.retries ?? 0,
        rangesIgnored: fetched?.rangesIgnored ?? 0,
        repairedBlobs: 0,
        files: { report: '' },
        durationMs: Date.now() - started,
        ...parts,
      });
      const requestedCount = { requested: sourced.requested, blocked: sourced.blocked.length };

      if (options.dryRun === true) {
        const summary = summaryOf(
          {
            images: { ...requestedCount, archived: 0, failed: sourced.failed.length },
            outcomes: [...resolved.map((i) => ({ ...outcomeOf(i), state: 'planned' as const, digest: i.descriptor.digest })), ...sourced.failed.map(failedOutcome)],
            archive: { chunks: [], warnings: [] },
          },
          undefined,
          resolved,
        );
        summary.files = await writeReports(destination, summary, { dryRun: true, resolved });
        return summary;
      }

      // The read-back of the archive starts as its entries are written (see VerifyAhead).
      const ahead = options.skipVerify === true ? undefined : new VerifyAhead();
      const sink = await ArchiveSink.open(resolved, emptyBlobs, {
        agent,
        dir: destination,
        chunkSizeBytes: options.chunkSizeBytes,
        ...(options.strictArchive === true ? { strict: true } : {}),
        ...(ahead === undefined ? {} : { onBlobWritten: ahead.note }),
        logger: ctx.log,
        ...abortable,
      });
      let fetched: WriterFetchOutcome;
      let result: ArchiveOutcome;
      try {
        for (const blob of plan.blobs.values()) if (split.heldByWriter.has(blob.digest)) sink.add(blob.digest, blob.size);
        const images = new ImageTally(plan, [...split.piecesPerBlob.keys(), ...split.assemble.map((b) => b.digest)], sourced.failed.length, progress);
        fetched = await fetchIntoWriter({
          supply,
          plan,
          split,
          pieceSize: options.pieceSize,
          logger: options.logger,
          ...(progress === undefined ? {} : { progress }),
          ...abortable,
          onBlobHeld: (digest, size) => {
            images.blobEnded(digest, true);
            sink.add(digest, size, true);
          },
          onBlobFailed: (digest) => images.blobEnded(digest, false),
          corrupt: () => sink.evictCorrupt(plan.blobs),
        });
        throwIfAborted(signal);
        progress?.update({ phase: 'archiving' });
        const archiveStarted = Date.now();
        result = await sink.finish(resolved, fetched.failedBlobs, sourced.failed, async (archived, failed) =>
          runMetadata(ctx.run, options, archived, failed, await ctx.journal.history(), differential),
        );
        ctx.log.info({ ms: Date.now() - archiveStarted, chunks: result.archive.chunks.length }, 'archive finished');
      } catch (err) {
        await sink.abort();
        await ahead?.close();
        throw err;
      }
      const { archived, failed } = result;
      const outcomes: ImageOutcome[] = [
        ...archived.map((i) => ({ ...outcomeOf(i), state: 'archived' as const, digest: i.descriptor.digest })),
        ...failed.map(failedOutcome),
      ];
      await closeRun(
        ctx,
        outcomes.map((o) => ({ source: o.source, state: o.state === 'archived' ? 'archived' : 'failed', digest: o.digest, code: o.code, reason: o.reason })),
        progress,
      );
      // The archive as it is on disk, read back as `meshmirror verify` reads it, before anyone carries it.
      // (No image archived: no archive was written, nothing to read back.)
      const written = result.archive.chunks.length > 0;
      let verification: ArchiveCheck | undefined;
      try {
        verification = options.skipVerify === true || !written ? undefined : await checkArchive(destination, ctx.log, signal, ahead);
      } finally {
        await ahead?.close();
      }
      const summary = summaryOf(
        {
          images: { ...requestedCount, archived: archived.length, failed: failed.length },
          outcomes,
          archive: { ...result.archive, ...(verification === undefined ? {} : { verification }) },
          repairedBlobs: fetched.repaired + result.repairedManifests,
        },
        fetched,
        archived,
      );
      summary.files = await writeReports(destination, summary, { dryRun: false, resolved });
      return summary;
    },
  );
}

/**
 * `--strict-archive` (oc-mirror's): a blob or manifest that no chunk of `chunkSizeBytes` can hold
 * fails the run before any blob is fetched for the archive, naming the largest and its image.
 */
function refuseOversized(images: ResolvedImage[], chunkSizeBytes: number, archived: (digest: Digest) => boolean): void {
  let worst: { digest: string; size: number; image: string } | undefined;
  for (const image of images) {
    // Manifests always go into the archive; a blob only when the plan still has it (not left out by a receipt).
    for (const b of [...image.blobs.filter((blob) => archived(blob.digest)), ...image.manifests.map((m) => ({ digest: m.digest, size: m.bytes.byteLength }))]) {
      if (chunkBytesAlone(b) > chunkSizeBytes && (worst === undefined || b.size > worst.size)) worst = { digest: b.digest, size: b.size, image: image.source };
    }
  }
  if (worst === undefined) return;
  throw new MeshmirrorError(
    'MM_CONFIG_INVALID',
    `archiveSize: ${formatBytes(chunkSizeBytes)} cannot hold blob ${worst.digest} (${formatBytes(worst.size)}) of ${worst.image}, and --strict-archive ` +
      'allows no chunk above archiveSize; raise archiveSize or drop --strict-archive. No blob was fetched for the archive',
  );
}

/** `meshmirror verify` of the archive just written; each problem is logged as well as reported. */
async function checkArchive(dir: string, log: Logger, signal: AbortSignal | undefined, ahead: VerifyAhead | undefined): Promise<ArchiveCheck> {
  const result = await verifyArchive(dir, { ...(signal === undefined ? {} : { signal }), ...(ahead === undefined ? {} : { ahead: ahead.lookup }) });
  const problems = result.problems.map(formatProblem);
  for (const problem of problems) log.error({ problem }, 'the archive just written is damaged');
  return { intact: problems.length === 0, chunks: result.chunks, blobs: result.blobs, bytes: result.bytes, images: result.images, problems };
}

function runMetadata(
  run: RunRecord,
  options: MirrorToDiskOptions,
  archived: ResolvedImage[],
  failed: FailedImage[],
  history: RunRecord[],
  differential: Differential | undefined,
): RunDescription {
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
        ...(i.releaseSignatures === undefined ? {} : { releaseSignatures: i.releaseSignatures.map((b) => Buffer.from(b).toString('base64')) }),
        status: 'archived' as const,
      })),
      ...failed.map((i) => ({ source: i.source, kind: i.kind, status: 'failed' as const, code: i.code, reason: i.reason })),
    ],
    history: history.map((h) => ({ runId: h.runId, startedAt: h.startedAt, finishedAt: h.finishedAt, state: h.state })),
    ...(differential === undefined ? {} : { differential }),
  };
}

function outcomeOf(image: { source: string; kind: ImageOutcome['kind']; origin: string }): Pick<ImageOutcome, 'source' | 'kind' | 'origin'> {
  return { source: image.source, kind: image.kind, origin: image.origin };
}

function failedOutcome(f: FailedImage): ImageOutcome {
  return { ...outcomeOf(f), state: 'failed', code: f.code, reason: f.reason };
}
