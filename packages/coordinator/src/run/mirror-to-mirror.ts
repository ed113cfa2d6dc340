/**
 * Mirror to mirror: from the source registries straight into a target registry, no archive. The
 * image set is resolved and planned as for mirror to disk; blobs the target already has (in any
 * repository this run pushes to) are not fetched at all; every other blob is fetched once into an
 * agent's store (the coordinator's own, or across the farm's agents) and that agent pushes it to
 * the target itself, with resumable chunked uploads, as soon as it holds it. The coordinator puts
 * each image's manifests and tag once all of its blobs are in the target.
 *
 * Across a farm every blob is fetched whole by one agent (not split into pieces over several), so
 * the agent that holds it can upload it: blob bytes never pass through the coordinator.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import pLimit from 'p-limit';
import {
  asErrorCode,
  describeError,
  errorCode,
  MeshmirrorError,
  throwIfAborted,
  unsupportedImageSetContent,
  type Agent,
  type LocalAgent,
  type BlobHolding,
  type Digest,
  type ImageSetConfig,
  type Logger,
  type PushBlobResult,
  type RegistryClient,
  type RegistryPushClient,
  type BlobRef,
} from '@meshmirror/shared';
import { collectImageSet, type OpenShiftSources } from '../resolve/image-set-content.ts';
import type { LayerSource } from '../resolve/layer-source.ts';
import { buildPlan, type MirrorPlan } from '../plan/plan.ts';
import { planMesh } from '../plan/mesh-plan.ts';
import { fetchLocally, isFarm, meshFetch, supplyHoldings, type AgentReport, type BlobSupply, type MeshFetchOutcome } from './mesh-fetch.ts';
import { resolveContent } from './mirror-to-disk.ts';
import { RunJournal } from './run-journal.ts';
import type { ProgressReporter } from '../report/progress.ts';
import { finishPushRun, ImagePusher, uniqueBlobsOf, type ImagePush, type PushOutcome } from '../push/image-pusher.ts';
import { pushTarget, type PushDestination } from '../push/push-targets.ts';
import { stripSparseIndex } from '../push/sparse-index.ts';
import { writePushReports } from '../report/push-reports.ts';

import type { MirrorToMirrorSummary } from '../report/summaries.ts';

export type { MirrorToMirrorSummary };

export interface MirrorToMirrorOptions {
  config: ImageSetConfig;
  /** `--workspace file://DIR`: reports and cluster resources go to `DIR/working-dir`. */
  workspace: string;
  destination: PushDestination;
  /** Holds the run journal. */
  cacheDir: string;
  /** Reads the source registries (manifests; the agents fetch the blobs). */
  client: RegistryClient;
  /** Talks to the target: presence checks, manifests, tags. */
  targetClient: RegistryPushClient;
  /** The coordinator's own agent, set up to push: it fetches and pushes everything in a single-host run. */
  agent: LocalAgent;
  /** Reads release payload and catalog layers (through `agent`'s store). */
  layers: LayerSource;
  /** The update service and graph data (OpenShift content). */
  sources: OpenShiftSources;
  parallelImages: number;
  /** Blob placements in the target at once, across the farm. */
  transfers: number;
  /** Single-host runs: blobs larger than this are fetched as several pieces in parallel. */
  pieceSize: number;
  /**
   * Where blobs come from: `agent` alone (a farm of one), or a farm's agents, which fetch blobs and
   * push them; the coordinator's agent then pushes only what it already holds.
   */
  supply: BlobSupply;
  logger: Logger;
  progress?: ProgressReporter;
  signal?: AbortSignal;
}

/** Presence checks at the target at once. */
const PRESENCE_CHECKS = 16;
/** A whole blob as one piece: the agent that fetches it holds all of it and can upload it. */
const WHOLE_BLOB = Number.MAX_SAFE_INTEGER;

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
  settled: boolean;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Rejections are read by whoever awaits; an unawaited one must not crash the process.
  promise.catch(() => undefined);
  const d: Deferred<T> = {
    promise,
    settled: false,
    resolve: (value) => {
      if (d.settled) return;
      d.settled = true;
      resolve(value);
    },
    reject: (reason) => {
      if (d.settled) return;
      d.settled = true;
      reject(reason);
    },
  };
  return d;
}

export async function mirrorToMirror(options: MirrorToMirrorOptions): Promise<MirrorToMirrorSummary> {
  const started = Date.now();
  const { agent, logger, progress, signal, destination } = options;
  const log = logger.child({ component: 'coordinator:mirror-to-mirror' });
  const warnings: string[] = [];
  for (const notice of unsupportedImageSetContent(options.config)) warnings.push(`${notice.path}: ${notice.message}`);
  for (const w of warnings) log.warn(w);
  const abortable = signal === undefined ? {} : { signal };

  const journal = await RunJournal.open(join(options.cacheDir, 'journal'));
  try {
    const { run, resumed } = await journal.beginRun(runKey(options));
    if (resumed) log.info({ runId: run.runId }, 'resuming unfinished run');
    progress?.update({ phase: 'resolving' });

    const content = await collectImageSet({ ...options, journal, run });
    const { blocked } = content;
    const requested = [...content.prepared, ...content.requested];
    const { resolved, failed } = await resolveContent(content, run, journal, options);
    const outcomes: PushOutcome[] = failed.map((f) => ({ source: f.source, kind: f.kind, origin: f.origin, state: 'failed', code: f.code, reason: f.reason }));
    const pushes: ImagePush[] = [];
    for (const image of resolved) {
      const children = image.manifests.slice(1);
      try {
        const top =
          image.skippedPlatforms.length === 0
            ? image.manifests[0]!
            : stripSparseIndex(image.manifests[0]!, (child) => children.some((m) => m.digest === child), {
                source: image.source,
                byDigest: image.ref.digest !== undefined && image.ref.tag === undefined,
              });
        pushes.push({
          source: image.source,
          kind: image.kind,
          origin: image.origin,
          ...(image.role === undefined ? {} : { role: image.role }),
          digest: top.digest,
          target: pushTarget(destination, image, image.descriptor.digest),
          // Children before the index that names them.
          manifests: [...children, top],
          blobs: image.blobs,
        });
      } catch (err) {
        outcomes.push({ source: image.source, kind: image.kind, origin: image.origin, state: 'failed', code: errorCode(err), reason: describeError(err) });
      }
    }

    // Which agent holds each blob's bytes, once one does; rejected when the blob cannot be had.
    const holders = new Map<Digest, Deferred<Agent>>();
    const holderOf = (digest: Digest): Deferred<Agent> => {
      let d = holders.get(digest);
      if (d === undefined) {
        d = deferred<Agent>();
        holders.set(digest, d);
      }
      return d;
    };
    const pushedBy = new Map<string, { bytes: number; blobs: number }>();
    /** Blobs the target already had before this run, and the repository they were found in. */
    const foundIn = new Map<Digest, string>();
    const sourcesOf = buildPlan(resolved).blobs;
    const pusher = new ImagePusher({
      images: pushes,
      client: options.targetClient,
      journal,
      transfers: options.transfers,
      ...(progress === undefined ? {} : { progress }),
      ...abortable,
      // A blob whose agents were lost (before it was fetched, or while it was pushed) is fetched
      // again by the coordinator's own agent and pushed from there, instead of failing its images.
      whenReady: async (blob) => {
        try {
          await holderOf(blob.digest).promise;
        } catch (err) {
          if (errorCode(err) !== 'MM_AGENT_LOST') throw err;
          await copyLocally(blob, err);
        }
      },
      place: async (blob, repository, mountFrom, onBytesSent) => {
        let holder = local.has(blob.digest) ? agent : await holderOf(blob.digest).promise;
        // Where the presence check found it comes first: the mount then needs no bytes.
        const found = foundIn.get(blob.digest);
        const from = found === undefined || found === repository ? mountFrom : [found, ...mountFrom.filter((r) => r !== found)];
        const request = { digest: blob.digest, size: blob.size, target: { registry: destination.registry, repository }, mountFrom: from };
        let result: PushBlobResult;
        try {
          result = await holder.pushBlob(request, { ...abortable, onBytesSent });
        } catch (err) {
          if (holder === agent || errorCode(err) !== 'MM_AGENT_LOST') throw err;
          await copyLocally(blob, err);
          holder = agent;
          result = await agent.pushBlob(request, { ...abortable, onBytesSent });
        }
        const tally = pushedBy.get(holder.name) ?? { bytes: 0, blobs: 0 };
        tally.bytes += result.bytesSent;
        if (result.action === 'uploaded') tally.blobs += 1;
        pushedBy.set(holder.name, tally);
        return result;
      },
    });

    /** Blobs the coordinator's agent fetched itself because the agents that had them were lost. */
    const local = new Map<Digest, Promise<void>>();
    const fallback = { blobs: 0, fetched: 0 };
    const copyLocally = (blob: BlobRef, why: unknown): Promise<void> => {
      const known = local.get(blob.digest);
      if (known !== undefined) return known;
      const copy = (async () => {
        log.warn({ digest: blob.digest, size: blob.size, err: describeError(why) }, 'the agent with this blob was lost; the coordinator fetches it itself');
        fallback.blobs += 1;
        // A farm of one over the coordinator's own agent, resuming whatever its store holds of the blob.
        const { supply } = options;
        const planned = sourcesOf.get(blob.digest) ?? { ...blob, sources: [], images: [] };
        const one: MirrorPlan = { images: [], blobs: new Map([[blob.digest, planned]]), uniqueBytes: blob.size };
        const mine = await agent.holdings([blob], abortable);
        let held = false;
        const outcome = await fetchLocally(supply, one, mine, options.pieceSize, {
          logger,
          ...(fetchProgress === undefined ? {} : { progress: fetchProgress }),
          ...abortable,
          onBlobHeld: () => {
            held = true;
          },
        });
        fallback.fetched += outcome.upstreamBytes;
        const failure = outcome.failedBlobs.get(blob.digest);
        if (!held && !mine.some((h) => h.held)) {
          throw new MeshmirrorError(
            asErrorCode(failure?.code ?? 'MM_NOT_FOUND'),
            failure?.message ?? `blob ${blob.digest} could not be fetched after its agent was lost`,
          );
        }
      })();
      local.set(blob.digest, copy);
      return copy;
    };

    // Images an earlier run pushed and the target still has under the same digest: nothing to do.
    const { toPush, outcomes: setAside, alreadyPushed } = await pusher.setAsidePushed(pushes);
    outcomes.push(...setAside);

    // Blobs the target already has in a repository this run pushes to need no fetch: they are
    // found there (HEAD) or mounted from there.
    const needed = new Map<Digest, number>();
    for (const image of toPush) for (const b of image.blobs) needed.set(b.digest, b.size);
    const check = pLimit(PRESENCE_CHECKS);
    await Promise.all(
      [...needed.keys()].map((digest) =>
        check(async () => {
          for (const repository of pusher.repositoriesOf(digest)) {
            try {
              if (await options.targetClient.blobExists({ registry: destination.registry, repository }, digest, abortable)) {
                foundIn.set(digest, repository);
                return;
              }
            } catch (err) {
              if (signal?.aborted === true) throw err;
              // Not known to be there: fetched, and the push's own HEAD decides.
              log.debug({ digest, repository, err: describeError(err) }, 'presence check failed');
              return;
            }
          }
        }),
      ),
    );
    let inTargetBytes = 0;
    for (const digest of foundIn.keys()) {
      inTargetBytes += needed.get(digest) ?? 0;
      holderOf(digest).resolve(agent);
    }
    // An empty blob needs no fetch: the coordinator's agent stores it and pushes it.
    for (const [digest, size] of needed) {
      if (size !== 0 || foundIn.has(digest)) continue;
      await agent.putBlob(digest, new Uint8Array(0), abortable);
      holderOf(digest).resolve(agent);
    }

    const stillToPush = new Set(toPush.map((p) => p.source));
    const plan = buildPlan(resolved.filter((image) => stillToPush.has(image.source)));
    for (const digest of [...plan.blobs.keys()]) if (holderOf(digest).settled) plan.blobs.delete(digest);
    let toFetchBytes = 0;
    for (const b of plan.blobs.values()) toFetchBytes += b.size;
    const wanted = [...plan.blobs.values()].map(({ digest, size }) => ({ digest, size }));

    // Progress: fetched bytes and sent bytes on one bar; what the target had counts as done.
    const barTotal = (heldBytes: number): number => pusher.stats.skippedBytes + inTargetBytes + 2 * toFetchBytes - heldBytes;
    progress?.update({
      phase: 'mirroring',
      imagesTotal: requested.length,
      imagesDone: alreadyPushed,
      imagesFailed: outcomes.length - alreadyPushed,
      bytesTotal: barTotal(0),
    });
    const fetchProgress: ProgressReporter | undefined =
      progress === undefined
        ? undefined
        : { update: () => undefined, addBytes: (delta) => progress.addBytes(delta), noteRetry: (event) => progress.noteRetry(event), stop: () => undefined };

    // Images push as their blobs become held: pushing overlaps fetching.
    const pushing = pusher.pushAll(toPush, { done: alreadyPushed, failed: outcomes.length - alreadyPushed }, log);

    const fetchStats = { held: 0, resumed: 0, fetched: 0, retries: 0 };
    let agentReports: AgentReport[] | undefined;
    const failBlobs = (failedBlobs: MeshFetchOutcome['failedBlobs']): void => {
      for (const [digest, why] of failedBlobs) holderOf(digest).reject(new MeshmirrorError(asErrorCode(why.code), why.message));
    };
    try {
      const { supply } = options;
      const farm = isFarm(supply);
      const mine = await agent.holdings(wanted, abortable);
      for (const h of mine) if (h.held) holderOf(h.digest).resolve(agent);
      const theirs = await supplyHoldings(supply, mine, wanted, log, signal);
      // Across a farm, every blob is fetched whole by one agent, which pushes it itself: only whole
      // copies count, and partial pieces of another split are not resumed. A farm of one splits big
      // blobs into pieces in its own store, as mirror to disk does.
      const whole = (h: BlobHolding, size: number): BlobHolding => ({ ...h, pieces: h.pieces.filter((p) => p.offset === 0 && p.length === size) });
      const sizeOf = new Map(wanted.map((w) => [w.digest, w.size]));
      const split = farm
        ? planMesh(
            plan,
            mine.map((h) => ({ ...h, pieces: [] })),
            new Map([...theirs].map(([name, holdings]) => [name, holdings.map((h) => whole(h, sizeOf.get(h.digest) ?? 0))])),
            WHOLE_BLOB,
          )
        : planMesh(plan, mine, theirs, options.pieceSize);
      Object.assign(fetchStats, { held: split.heldBytes, resumed: split.resumedBytes });
      progress?.update({ bytesTotal: barTotal(split.heldBytes + split.resumedBytes) });
      const byName = new Map(supply.fetchers.map((f) => [f.agent.name, f.agent]));
      const outcome = await meshFetch({
        split,
        fetchers: supply.fetchers,
        writer: {
          // Only another host's copy is pulled: that agent pushes the blob itself, nothing comes to the coordinator.
          pull: (holder, task) => {
            const holding = byName.get(holder);
            if (holding === undefined) return Promise.reject(new MeshmirrorError('MM_USAGE', `no agent named ${holder}`));
            holderOf(task.digest).resolve(holding);
            return Promise.resolve(0);
          },
          completeBlob: (digest, size, blobSignal) => (farm ? Promise.resolve() : supply.writer.completeBlob(digest, size, blobSignal)),
        },
        logger,
        ...(fetchProgress === undefined ? {} : { progress: fetchProgress }),
        ...abortable,
        onBlobHeld: (digest) => {
          if (!farm) holderOf(digest).resolve(agent);
        },
      });
      failBlobs(outcome.failedBlobs);
      Object.assign(fetchStats, { fetched: outcome.upstreamBytes, retries: outcome.retries });
      if (farm) agentReports = outcome.agents;
    } finally {
      // Whatever is still waiting will not arrive (the fetch ended or was stopped).
      for (const d of holders.values()) d.reject(signal?.aborted === true ? signal.reason : new MeshmirrorError('MM_NOT_FOUND', 'no agent could fetch this blob'));
    }
    outcomes.push(...(await pushing));
    throwIfAborted(signal);

    if (fallback.blobs > 0) warnings.push(`${fallback.blobs} blobs were fetched and pushed by the coordinator because the agents that had them were lost`);
    const workingDir = join(options.workspace, 'working-dir');
    const finished = await finishPushRun(journal, run, outcomes, workingDir, progress);
    const clusterFiles = finished.clusterResources;
    const { stats } = pusher;
    const unique = uniqueBlobsOf(pushes);
    const summary: MirrorToMirrorSummary = {
      mode: 'mirror-to-mirror',
      runId: run.runId,
      resumed,
      from: 'source registries',
      destination: `docker://${destination.registry}${destination.prefix === '' ? '' : `/${destination.prefix}`}`,
      images: { requested: requested.length, blocked: blocked.length, pushed: finished.pushed, failed: finished.failed, alreadyPushed },
      outcomes,
      blobs: { unique: unique.count, present: stats.present, mounted: stats.mounted, uploaded: stats.uploaded },
      bytes: { unique: unique.bytes, skipped: stats.skippedBytes, uploaded: stats.uploadedBytes, sent: stats.sent, resumed: stats.resumed },
      retries: stats.retries + fetchStats.retries,
      restarts: stats.restarts,
      fetch: {
        inTarget: inTargetBytes,
        held: fetchStats.held,
        resumed: fetchStats.resumed,
        toFetch: toFetchBytes - fetchStats.held - fetchStats.resumed,
        fetched: fetchStats.fetched + fallback.fetched,
        retries: fetchStats.retries,
        fetchedByCoordinator: fallback.blobs,
      },
      ...(agentReports === undefined
        ? {}
        : { agents: agentReports.map((r) => ({ ...r, pushedBytes: pushedBy.get(r.agent)?.bytes ?? 0, blobsPushed: pushedBy.get(r.agent)?.blobs ?? 0 })) }),
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

/** The same configuration and target resume the same run. */
function runKey(options: MirrorToMirrorOptions): string {
  return createHash('sha256')
    .update(JSON.stringify({ mode: 'mirror-to-mirror', config: options.config, destination: options.destination }))
    .digest('hex')
    .slice(0, 32);
}
