/**
 * `meshmirror warm -c isc.yaml --agents … --swarm-key FILE`: the farm's agents fetch the image set
 * into their own stores ahead of a transfer window; no archive is written and nothing is pushed.
 * The later `mirror` with the same agents takes every blob from the farm.
 */
import { MeshmirrorError } from '@meshmirror/shared';
import { createProgressReporter } from '../../report/progress.ts';
import { warmSummaryText } from '../../report/summary-text.ts';
import { supplyLayerSource } from '../../resolve/layer-source.ts';
import { warmFarm } from '../../run/warm-farm.ts';
import { exitCodeForSummary } from '../exit-codes.ts';
import { withInterruptSignal } from '../interrupt.ts';
import {
  blobSupply,
  checkFarmFlags,
  commandContext,
  DEFAULT_FARM_PIECE_SIZE,
  joinFarm,
  openCommandAgent,
  openShiftSources,
  printSummary,
  readAgentsFile,
  type MirrorFlags,
} from './mirror.ts';

export type WarmFlags = Pick<
  MirrorFlags,
  | 'config'
  | 'cacheDir'
  | 'authfile'
  | 'logLevel'
  | 'output'
  | 'agents'
  | 'agentsFile'
  | 'swarmKey'
  | 'srcTlsVerify'
  | 'parallelImages'
  | 'parallelLayers'
  | 'retryTimes'
  | 'retryDelay'
  | 'imageTimeout'
  | 'stallTimeout'
  | 'connectTimeout'
  | 'pieceSize'
  | 'removeSignatures'
  | 'includeDependencies'
  | 'updateUrl'
  | 'graphDataUrl'
  | 'graphBaseImage'
  | 'limitUpstream'
  | 'limitRegistry'
>;

export async function runWarmCommand(given: WarmFlags): Promise<number> {
  const flags: MirrorFlags = given.agentsFile === undefined ? given : { ...given, agents: [...(given.agents ?? []), ...(await readAgentsFile(given.agentsFile))] };
  if (flags.output !== 'text' && flags.output !== 'json') throw new MeshmirrorError('MM_USAGE', `--output: expected text or json, got "${flags.output}"`);
  if (flags.agents === undefined || flags.agents.length === 0) {
    throw new MeshmirrorError('MM_USAGE', 'warm fills a farm: give the agents with --agents or --agents-file (one host alone warms its store with a mirror)');
  }
  await checkFarmFlags(flags);
  const context = await commandContext(flags, 'source');
  const { config, settings, cacheDir, logger, retry, backoff, client } = context;
  // The coordinator's own store keeps only what resolution reads (payload and catalog layers, manifests).
  const { store, agent } = await openCommandAgent(context, flags);
  const farm = await joinFarm(flags, cacheDir, settings, store, logger);
  const progress = createProgressReporter({
    mode: flags.output === 'json' && process.stderr.isTTY !== true ? 'none' : undefined,
    hostTroubles: () => backoff.troubles(),
  });
  try {
    const supply = blobSupply(agent, store, settings, farm);
    const pieceSize = flags.pieceSize ?? config.meshmirror?.pieceSizeBytes ?? DEFAULT_FARM_PIECE_SIZE;
    const summary = await withInterruptSignal((signal) =>
      warmFarm({
        config,
        cacheDir,
        client,
        agent,
        layers: supplyLayerSource(supply, store, { pieceSize, logger }),
        sources: openShiftSources(flags, settings, retry),
        parallelImages: settings.parallelImages,
        manifestLookups: settings.parallelImages * settings.parallelLayers,
        removeSignatures: flags.removeSignatures === true,
        supply,
        logger,
        progress,
        signal,
      }),
    );
    progress.stop();
    printSummary(flags, summary, warmSummaryText);
    return exitCodeForSummary(summary);
  } finally {
    progress.stop();
    await farm.stop();
    await agent.close();
    await client.close();
  }
}
