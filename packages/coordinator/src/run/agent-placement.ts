/**
 * Agents as the blob supply of a registry sink (mirror to mirror): each blob the target lacks is
 * fetched once, by the coordinator's own agent (a farm of one, pieces assembled in its store) or
 * by one of the farm's agents (whole, so it can upload it), and the agent that holds it places it
 * in the target itself: blob bytes never pass through the coordinator. Blobs the target already
 * has in a repository of this push are not fetched at all. A blob whose agent was lost (before it
 * was fetched, or while it was pushed) is fetched by the coordinator's own agent and pushed from
 * there, instead of failing its images.
 */
import pLimit from 'p-limit';
import {
  asErrorCode,
  describeError,
  errorCode,
  MeshmirrorError,
  type Agent,
  type BlobHolding,
  type BlobRef,
  type Digest,
  type LocalAgent,
  type Logger,
  type PushBlobResult,
  type RegistryPushClient,
} from '@meshmirror/shared';
import { planMesh } from '../plan/mesh-plan.ts';
import type { MirrorPlan, PlanBlob } from '../plan/plan.ts';
import type { ImagePusher } from '../push/image-pusher.ts';
import type { BlobPlacement } from '../push/registry-sink.ts';
import type { ProgressReporter } from '../report/progress.ts';
import { fetchLocally, isFarm, meshFetch, supplyHoldings, type AgentReport, type BlobSupply } from './mesh-fetch.ts';

export interface AgentPlacementOptions {
  supply: BlobSupply;
  /** The coordinator's own agent: pushes what it holds, and fetches what lost agents held. */
  agent: LocalAgent;
  /** The target registry host. */
  registry: string;
  /** Every blob of the image set with its sources, for a fetch after an agent was lost. */
  planned: Map<Digest, PlanBlob>;
  /** A farm of one splits blobs larger than this into pieces. */
  pieceSize: number;
  logger: Logger;
  /** Bytes fetched (the push's bytes go to the run's progress through the pusher). */
  progress?: ProgressReporter;
  signal?: AbortSignal;
}

export interface FetchStats {
  /** Bytes the agents already held from earlier runs, and bytes an interrupted fetch had committed. */
  held: number;
  resumed: number;
  fetched: number;
  retries: number;
  agents?: AgentReport[];
}

/** Presence checks at the target at once. */
const PRESENCE_CHECKS = 16;
/** A whole blob as one piece: the agent that fetches it holds all of it and can upload it. */
const WHOLE_BLOB = Number.MAX_SAFE_INTEGER;

export class AgentPlacement implements BlobPlacement {
  /** Blobs the target already had before this run, and the repository they were found in. */
  readonly foundIn = new Map<Digest, string>();
  /** Per agent: bytes it sent to the target and blobs it uploaded. */
  readonly pushedBy = new Map<string, { bytes: number; blobs: number }>();
  /** Blobs the coordinator's agent fetched itself because the agents that had them were lost. */
  readonly fallback = { blobs: 0, fetched: 0 };
  readonly #o: AgentPlacementOptions;
  readonly #abortable: { signal?: AbortSignal };
  /** Which agent holds each blob's bytes, once one does; rejected when the blob cannot be had. */
  readonly #holders = new Map<Digest, PromiseWithResolvers<Agent> & { settled: boolean }>();
  readonly #local = new Map<Digest, Promise<void>>();

  constructor(options: AgentPlacementOptions) {
    this.#o = options;
    this.#abortable = options.signal === undefined ? {} : { signal: options.signal };
  }

  whenReady = async (blob: BlobRef): Promise<void> => {
    try {
      await this.#holderOf(blob.digest).promise;
    } catch (err) {
      if (errorCode(err) !== 'MM_AGENT_LOST') throw err;
      await this.#copyLocally(blob, err);
    }
  };

  place = async (blob: BlobRef, repository: string, mountFrom: string[], onBytesSent: (bytes: number) => void): Promise<PushBlobResult> => {
    const { agent, registry } = this.#o;
    let holder = this.#local.has(blob.digest) ? agent : await this.#holderOf(blob.digest).promise;
    // Where the presence check found it comes first: the mount then needs no bytes.
    const found = this.foundIn.get(blob.digest);
    const from = found === undefined || found === repository ? mountFrom : [found, ...mountFrom.filter((r) => r !== found)];
    const request = { digest: blob.digest, size: blob.size, target: { registry, repository }, mountFrom: from };
    let result: PushBlobResult;
    try {
      result = await holder.pushBlob(request, { ...this.#abortable, onBytesSent });
    } catch (err) {
      if (holder === agent || errorCode(err) !== 'MM_AGENT_LOST') throw err;
      await this.#copyLocally(blob, err);
      holder = agent;
      result = await agent.pushBlob(request, { ...this.#abortable, onBytesSent });
    }
    const tally = this.pushedBy.get(holder.name) ?? { bytes: 0, blobs: 0 };
    tally.bytes += result.bytesSent;
    if (result.action === 'uploaded') tally.blobs += 1;
    this.pushedBy.set(holder.name, tally);
    return result;
  };

  /**
   * Finds the blobs the images need that the target already has in a repository this push uses
   * (HEAD): they need no fetch, only a mount. Empty blobs need no fetch either. Returns the bytes
   * of the blobs found.
   */
  async skipPresent(needed: Map<Digest, number>, pusher: Pick<ImagePusher, 'repositoriesOf'>, target: RegistryPushClient): Promise<number> {
    const { agent, registry, signal } = this.#o;
    const log = this.#o.logger;
    const check = pLimit(PRESENCE_CHECKS);
    await Promise.all(
      [...needed.keys()].map((digest) =>
        check(async () => {
          for (const repository of pusher.repositoriesOf(digest)) {
            try {
              if (await target.blobExists({ registry, repository }, digest, this.#abortable)) {
                this.foundIn.set(digest, repository);
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
    let inTarget = 0;
    for (const digest of this.foundIn.keys()) {
      inTarget += needed.get(digest) ?? 0;
      this.#holderOf(digest).resolve(agent);
    }
    for (const [digest, size] of needed) {
      if (size !== 0 || this.foundIn.has(digest)) continue;
      await agent.putBlob(digest, new Uint8Array(0), this.#abortable);
      this.#holderOf(digest).resolve(agent);
    }
    return inTarget;
  }

  /** Whether the blob's holder is known (or known to be none). */
  settled(digest: Digest): boolean {
    return this.#holders.get(digest)?.settled === true;
  }

  /**
   * Fetches the blobs of `plan` across the supply; each is ready to place the moment an agent holds
   * it. Whatever is still waiting when the fetch ends cannot be had in this run.
   */
  async fetch(plan: MirrorPlan, onPlanned: (stats: Pick<FetchStats, 'held' | 'resumed'>) => void): Promise<FetchStats> {
    const { supply, agent, signal, logger } = this.#o;
    const wanted = [...plan.blobs.values()].map(({ digest, size }) => ({ digest, size }));
    try {
      const farm = isFarm(supply);
      const mine = await agent.holdings(wanted, this.#abortable);
      for (const h of mine) if (h.held) this.#holderOf(h.digest).resolve(agent);
      const theirs = await supplyHoldings(supply, mine, wanted, logger, signal);
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
        : planMesh(plan, mine, theirs, this.#o.pieceSize);
      onPlanned({ held: split.heldBytes, resumed: split.resumedBytes });
      const byName = new Map(supply.fetchers.map((f) => [f.agent.name, f.agent]));
      const outcome = await meshFetch({
        split,
        fetchers: supply.fetchers,
        // A farm leaves each blob with the agent that fetched it; a farm of one assembles it in its store.
        ...(farm ? {} : { writer: supply.writer }),
        logger,
        ...(this.#o.progress === undefined ? {} : { progress: this.#o.progress }),
        ...this.#abortable,
        onBlobHeld: (digest, _size, holder) => this.#holderOf(digest).resolve((holder === undefined ? undefined : byName.get(holder)) ?? agent),
      });
      for (const [digest, why] of outcome.failedBlobs) this.#holderOf(digest).reject(new MeshmirrorError(asErrorCode(why.code), why.message));
      return {
        held: split.heldBytes,
        resumed: split.resumedBytes,
        fetched: outcome.upstreamBytes,
        retries: outcome.retries,
        ...(farm ? { agents: outcome.agents } : {}),
      };
    } finally {
      // Whatever is still waiting will not arrive (the fetch ended or was stopped).
      for (const d of this.#holders.values()) {
        if (!d.settled) d.reject(signal?.aborted === true ? signal.reason : new MeshmirrorError('MM_NOT_FOUND', 'no agent could fetch this blob'));
      }
    }
  }

  #holderOf(digest: Digest): PromiseWithResolvers<Agent> & { settled: boolean } {
    let d = this.#holders.get(digest);
    if (d === undefined) {
      const inner = Promise.withResolvers<Agent>();
      // Rejections are read by whoever awaits; an unawaited one must not crash the process.
      inner.promise.catch(() => undefined);
      const state: PromiseWithResolvers<Agent> & { settled: boolean } = {
        promise: inner.promise,
        settled: false,
        resolve: (value) => {
          if (state.settled) return;
          state.settled = true;
          inner.resolve(value);
        },
        reject: (reason) => {
          if (state.settled) return;
          state.settled = true;
          inner.reject(reason);
        },
      };
      d = state;
      this.#holders.set(digest, d);
    }
    return d;
  }

  /** A farm of one over the coordinator's own agent for a blob whose agents were lost; once per blob. */
  #copyLocally(blob: BlobRef, why: unknown): Promise<void> {
    const known = this.#local.get(blob.digest);
    if (known !== undefined) return known;
    const { agent, supply, logger } = this.#o;
    const copy = (async () => {
      logger.warn({ digest: blob.digest, size: blob.size, err: describeError(why) }, 'the agent with this blob was lost; the coordinator fetches it itself');
      this.fallback.blobs += 1;
      const planned = this.#o.planned.get(blob.digest) ?? { ...blob, sources: [], images: [] };
      const one: MirrorPlan = { images: [], blobs: new Map([[blob.digest, planned]]), uniqueBytes: blob.size };
      const mine = await agent.holdings([blob], this.#abortable);
      let held = false;
      const outcome = await fetchLocally(supply, one, mine, this.#o.pieceSize, {
        logger,
        ...(this.#o.progress === undefined ? {} : { progress: this.#o.progress }),
        ...this.#abortable,
        onBlobHeld: () => {
          held = true;
        },
      });
      this.fallback.fetched += outcome.upstreamBytes;
      const failure = outcome.failedBlobs.get(blob.digest);
      if (!held && !mine.some((h) => h.held)) {
        throw new MeshmirrorError(
          asErrorCode(failure?.code ?? 'MM_NOT_FOUND'),
          failure?.message ?? `blob ${blob.digest} could not be fetched after its agent was lost`,
        );
      }
    })();
    this.#local.set(blob.digest, copy);
    return copy;
  }
}
