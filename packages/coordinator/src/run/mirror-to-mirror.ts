/**
 * Mirror to mirror: from the source registries straight into a target registry, no archive. The
 * source registries are the image source, the agents the blob supply (`AgentPlacement`: the agent
 * that fetched a blob pushes it), the target registry the sink. Blobs the target already has (in
 * any repository this run pushes to) are not fetched at all, and images push while blobs arrive.
 */
import { join } from 'node:path';
import { throwIfAborted, type Digest, type ImageSetConfig, type LocalAgent, type Logger, type RegistryClient, type RegistryPushClient } from '@meshmirror/shared';
import type { OpenShiftSources } from '../resolve/image-set-content.ts';
import type { LayerSource } from '../resolve/layer-source.ts';
import { buildPlan } from '../plan/plan.ts';
import type { BlobSupply } from './mesh-fetch.ts';
import { registrySource } from './image-source.ts';
import { withRun } from './run-skeleton.ts';
import { AgentPlacement, type FetchStats } from './agent-placement.ts';
import type { ProgressReporter } from '../report/progress.ts';
import type { PushDestination } from '../push/push-targets.ts';
import { RegistrySink } from '../push/registry-sink.ts';

import type { MirrorToMirrorSummary } from '../report/summaries.ts';
import type { CatalogSourceTemplate } from '../cluster/catalog-source-template.ts';

export type { MirrorToMirrorSummary };

export interface MirrorToMirrorOptions {
  config: ImageSetConfig;
  /** `--workspace file://DIR`: reports and cluster resources go to `DIR/working-dir`. */
  workspace: string;
  destination: PushDestination;
  /** The catalogs' `targetCatalogSourceTemplate`s, checked, by origin (`mirror.operators[i]`). */
  catalogSourceTemplates?: ReadonlyMap<string, CatalogSourceTemplate>;
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
  /** Manifests looked up at once while resolving (see `RegistrySourceOptions`). */
  manifestLookups: number;
  /** `--remove-signatures`: sigstore signature tags and referrers are not looked for. */
  removeSignatures?: boolean;
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

export async function mirrorToMirror(options: MirrorToMirrorOptions): Promise<MirrorToMirrorSummary> {
  const started = Date.now();
  const { progress, signal, destination, config } = options;
  const identity = { mode: 'mirror-to-mirror', config, destination };
  return await withRun({ cacheDir: options.cacheDir, identity, config, logger: options.logger, component: 'coordinator:mirror-to-mirror' }, async (ctx) => {
    const sourced = await registrySource(options).images(ctx);
    // Fetched bytes and sent bytes share one bar; the fetch's own phases do not replace the push's.
    const fetchProgress: ProgressReporter | undefined =
      progress === undefined
        ? undefined
        : {
            update: () => undefined,
            addBytes: (delta) => progress.addBytes(delta),
            noteRetry: (event) => progress.noteRetry(event),
            // Each agent's pieces and bytes, for the status page and metrics.
            noteAgent: (event) => progress.noteAgent?.(event),
            stop: () => undefined,
          };
    const supply = new AgentPlacement({
      ...options,
      registry: destination.registry,
      planned: buildPlan(sourced.images).blobs,
      ...(fetchProgress === undefined ? {} : { progress: fetchProgress }),
    });
    const sink = new RegistrySink(sourced, supply, ctx, { ...options, client: options.targetClient });

    // Images an earlier run pushed and the target still has under the same digest: nothing to do.
    const toPush = await sink.setAsidePushed();
    const needed = new Map<Digest, number>();
    for (const image of toPush) for (const b of image.blobs) needed.set(b.digest, b.size);
    const inTarget = await supply.skipPresent(needed, sink.pusher, options.targetClient);

    const stillToPush = new Set(toPush.map((p) => p.source));
    const plan = buildPlan(sourced.images.filter((image) => stillToPush.has(image.source)));
    for (const digest of [...plan.blobs.keys()]) if (supply.settled(digest)) plan.blobs.delete(digest);
    let toFetch = 0;
    for (const b of plan.blobs.values()) toFetch += b.size;

    // What the target had counts as done; each byte to fetch counts twice, fetched and sent.
    const barTotal = (heldBytes: number): number => sink.pusher.stats.skippedBytes + inTarget + 2 * toFetch - heldBytes;
    progress?.update({
      phase: 'mirroring',
      imagesTotal: sourced.requested,
      imagesDone: sink.alreadyPushed,
      imagesFailed: sink.outcomes.length - sink.alreadyPushed,
      bytesTotal: barTotal(0),
    });

    // Images push as their blobs become held: pushing overlaps fetching.
    const pushing = sink.pushAll(toPush, ctx.log);
    let fetched: FetchStats;
    try {
      fetched = await supply.fetch(plan, (planned) => progress?.update({ bytesTotal: barTotal(planned.held + planned.resumed) }));
    } finally {
      // A fetch that threw leaves the pushes to end on their own (every blob they wait for was refused).
      await pushing.catch(() => undefined);
    }
    await pushing;
    throwIfAborted(signal);

    if (supply.fallback.blobs > 0)
      ctx.warnings.push(`${supply.fallback.blobs} blobs were fetched and pushed by the coordinator because the agents that had them were lost`);
    return await sink.finish(join(options.workspace, 'working-dir'), 'source registries', started, (summary): MirrorToMirrorSummary => ({
      mode: 'mirror-to-mirror',
      ...summary,
      retries: summary.retries + fetched.retries,
      fetch: {
        inTarget,
        held: fetched.held,
        resumed: fetched.resumed,
        toFetch: toFetch - fetched.held - fetched.resumed,
        fetched: fetched.fetched + supply.fallback.fetched,
        retries: fetched.retries,
        fetchedByCoordinator: supply.fallback.blobs,
      },
      ...(fetched.agents === undefined
        ? {}
        : {
            agents: fetched.agents.map((r) => ({ ...r, pushedBytes: supply.pushedBy.get(r.agent)?.bytes ?? 0, blobsPushed: supply.pushedBy.get(r.agent)?.blobs ?? 0 })),
          }),
    }));
  });
}
