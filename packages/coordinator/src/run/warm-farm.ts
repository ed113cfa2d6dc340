/**
 * `meshmirror warm`: the farm fills its stores ahead of a transfer window, and nothing is written.
 * The source registries are the image source and the farm's agents the supply, as in a mirror; there
 * is no sink: each blob stays, whole, with the agent that fetched it (as in a farm's mirror to
 * mirror), so the later `mirror` finds it in the farm's holdings and fetches nothing upstream.
 * Blobs some agent already holds whole are not fetched again; a blob that cannot be had fails its
 * images, and the next `warm` or `mirror` tries it again.
 */
import { buildPlan } from '../plan/plan.ts';
import { planMesh } from '../plan/mesh-plan.ts';
import type { BlobHolding, ImageSetConfig, LocalAgent, Logger, RegistryClient } from '@meshmirror/shared';
import type { OpenShiftSources } from '../resolve/image-set-content.ts';
import type { LayerSource } from '../resolve/layer-source.ts';
import type { ProgressReporter } from '../report/progress.ts';
import type { ImageOutcome, WarmSummary } from '../report/summaries.ts';
import { meshFetch, supplyHoldings, type BlobSupply } from './mesh-fetch.ts';
import { registrySource } from './image-source.ts';
import { closeRun, withRun } from './run-skeleton.ts';

export type { WarmSummary };

export interface WarmOptions {
  config: ImageSetConfig;
  /** Holds the run journal (the coordinator's own store is not used for blobs). */
  cacheDir: string;
  client: RegistryClient;
  /** The coordinator's own agent: keeps what resolution makes (filtered catalogs, the graph image). */
  agent: LocalAgent;
  /** Reads release payload and catalog layers (through the coordinator's own store). */
  layers: LayerSource;
  sources: OpenShiftSources;
  parallelImages: number;
  /** Manifests looked up at once while resolving (see `RegistrySourceOptions`). */
  manifestLookups: number;
  removeSignatures?: boolean;
  /** A farm's agents (`mirror --agents`): warming the coordinator's own store alone is a mirror. */
  supply: BlobSupply;
  logger: Logger;
  progress?: ProgressReporter;
  signal?: AbortSignal;
}

/** A whole blob as one piece: the agent that fetches it holds all of it. */
const WHOLE_BLOB = Number.MAX_SAFE_INTEGER;

export async function warmFarm(options: WarmOptions): Promise<WarmSummary> {
  const started = Date.now();
  const { supply, progress, signal, config } = options;
  return await withRun(
    { cacheDir: options.cacheDir, identity: { mode: 'warm', config }, config, logger: options.logger, component: 'coordinator:warm' },
    async (ctx) => {
      const sourced = await registrySource(options).images(ctx);
      const plan = buildPlan(sourced.images);
      for (const [digest, blob] of plan.blobs) if (blob.size === 0) plan.blobs.delete(digest);
      const wanted = [...plan.blobs.values()].map(({ digest, size }) => ({ digest, size }));
      const sizeOf = new Map(wanted.map((w) => [w.digest, w.size]));
      // Only whole copies count: an agent's partial pieces of another split are not resumed here.
      const whole = (h: BlobHolding): BlobHolding => ({ ...h, pieces: h.pieces.filter((p) => p.offset === 0 && p.length === sizeOf.get(h.digest)) });
      const theirs = await supplyHoldings(supply, [], wanted, ctx.log, signal);
      const split = planMesh(plan, [], new Map([...theirs].map(([name, holdings]) => [name, holdings.map(whole)])), WHOLE_BLOB);
      const inFarm = [...theirs.values()].flat().filter((h) => h.held);
      const heldBytes = [...new Map(inFarm.map((h) => [h.digest, sizeOf.get(h.digest) ?? 0]))].reduce((n, [, size]) => n + size, 0);
      ctx.log.info({ images: sourced.images.length, uniqueBlobs: plan.blobs.size, uniqueBytes: plan.uniqueBytes, inFarm: heldBytes }, 'warm plan ready');
      progress?.update({ phase: 'fetching', bytesTotal: plan.uniqueBytes, bytesDone: heldBytes });

      const fetched = await meshFetch({
        split,
        fetchers: supply.fetchers,
        logger: options.logger,
        ...(progress === undefined ? {} : { progress }),
        ...(signal === undefined ? {} : { signal }),
        onBlobHeld: () => undefined,
      });

      const outcomes: ImageOutcome[] = [];
      for (const image of sourced.images) {
        const bad = image.blobs.find((b) => fetched.failedBlobs.has(b.digest));
        const base = { source: image.source, kind: image.kind, origin: image.origin, digest: image.descriptor.digest };
        const why = bad === undefined ? undefined : fetched.failedBlobs.get(bad.digest);
        outcomes.push(
          bad === undefined || why === undefined
            ? { ...base, state: 'warmed' }
            : { ...base, state: 'failed', code: why.code, reason: `blob ${bad.digest} (${bad.size} bytes): ${why.message}` },
        );
      }
      for (const f of sourced.failed) outcomes.push({ source: f.source, kind: f.kind, origin: f.origin, state: 'failed', code: f.code, reason: f.reason });
      // Warmed images are resolved, not archived: the next mirror of the same configuration still has all to do.
      await closeRun(
        ctx,
        outcomes.map((o) => ({ source: o.source, state: o.state === 'failed' ? 'failed' : 'resolved', digest: o.digest, code: o.code, reason: o.reason })),
        progress,
      );
      const failedBytes = [...fetched.failedBlobs.keys()].reduce((n, d) => n + (sizeOf.get(d) ?? 0), 0);
      return {
        mode: 'warm',
        runId: ctx.run.runId,
        warnings: ctx.warnings,
        images: {
          requested: sourced.requested,
          warmed: outcomes.filter((o) => o.state !== 'failed').length,
          failed: outcomes.filter((o) => o.state === 'failed').length,
        },
        outcomes,
        blobs: { unique: plan.blobs.size, inFarm: new Set(inFarm.map((h) => h.digest)).size, failed: fetched.failedBlobs.size },
        bytes: { unique: plan.uniqueBytes, inFarm: heldBytes, toFetch: split.missingBytes, fetched: fetched.upstreamBytes, failed: failedBytes },
        agents: fetched.agents,
        retries: fetched.retries,
        durationMs: Date.now() - started,
      };
    },
  );
}
