/**
 * `meshmirror delete`, oc-mirror v2's delete workflow in two steps:
 * `delete --generate -c delete-isc.yaml --workspace file://DIR docker://HOST[/PREFIX]` writes the
 * list of what a mirror of that content pushed there; `delete --delete-yaml-file FILE
 * docker://HOST[/PREFIX]` deletes what a (reviewed) list names.
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import {
  createLogger,
  imageSetOfDelete,
  loadDeleteImageList,
  loadDeleteImageSetConfig,
  MeshmirrorError,
  resolveTransferSettings,
  type LogLevel,
  type TransferSettings,
} from '@meshmirror/shared';
import { deleteImages, deleteSummaryText } from '../../delete/delete-images.ts';
import { deleteGenerateSummaryText, generateDeleteList } from '../../delete/generate-delete.ts';
import { parseDockerDestination, type PushDestination } from '../../push/push-targets.ts';
import { supplyLayerSource } from '../../resolve/layer-source.ts';
import { exitCodeForSummary } from '../exit-codes.ts';
import { withInterruptSignal } from '../interrupt.ts';
import { blobSupply, DEFAULT_FARM_PIECE_SIZE, openLocalAgent, openShiftSources, printSummary, registryClients, type MirrorFlags } from './mirror.ts';

export interface DeleteFlags {
  /** Step 1: write the list instead of deleting. */
  generate?: boolean;
  /** `-c`: the DeleteImageSetConfiguration (step 1). */
  config?: string;
  /** `--workspace file://DIR`: the list goes to `DIR/working-dir/delete/` (step 1). */
  workspace?: string;
  deleteId?: string;
  deleteSignatures?: boolean;
  /** Step 2: the list to delete. */
  deleteYamlFile?: string;
  forceCacheDelete?: boolean;
  deleteV1Images?: boolean;
  cacheDir?: string;
  authfile?: string;
  srcTlsVerify?: boolean;
  destTlsVerify?: boolean;
  parallelImages?: number;
  retryTimes?: number;
  retryDelay?: number;
  imageTimeout?: number;
  stallTimeout?: number;
  connectTimeout?: number;
  maxNestedPaths?: number;
  includeDependencies?: boolean;
  updateUrl?: string;
  graphDataUrl?: string;
  graphBaseImage?: string;
  output: string;
  logLevel: string;
  v2?: boolean;
}

/** Flags that belong to the generate step only. */
const GENERATE_ONLY: ReadonlyArray<[keyof DeleteFlags, string]> = [
  ['config', '--config'],
  ['workspace', '--workspace'],
  ['deleteId', '--delete-id'],
  ['deleteSignatures', '--delete-signatures'],
  ['includeDependencies', '--include-dependencies'],
  ['updateUrl', '--update-url'],
  ['graphDataUrl', '--graph-data-url'],
  ['graphBaseImage', '--graph-base-image'],
  ['srcTlsVerify', '--src-tls-verify'],
];

export async function runDeleteCommand(destinationArg: string, flags: DeleteFlags): Promise<number> {
  if (flags.output !== 'text' && flags.output !== 'json') throw new MeshmirrorError('MM_USAGE', `--output: expected text or json, got "${flags.output}"`);
  if (flags.forceCacheDelete === true) {
    throw new MeshmirrorError(
      'MM_USAGE',
      "--force-cache-delete is not supported: meshmirror's cache is a store of blobs by digest that every run shares, not a registry of images",
    );
  }
  if (flags.deleteV1Images === true) throw new MeshmirrorError('MM_USAGE', "--delete-v1-images is not supported: meshmirror never pushed oc-mirror v1's tags");
  if (flags.generate !== true && flags.deleteYamlFile === undefined) {
    throw new MeshmirrorError(
      'MM_USAGE',
      'delete needs one of --generate (write the list: --generate -c delete-isc.yaml --workspace file://DIR) or --delete-yaml-file FILE (delete what a list names)',
    );
  }
  if (!destinationArg.startsWith('docker://')) {
    throw new MeshmirrorError('MM_USAGE', `destination "${destinationArg}": expected docker://HOST[/PREFIX], the registry a mirror pushed to`);
  }
  const destination = parseDockerDestination(destinationArg, flags.maxNestedPaths === undefined ? {} : { maxNestedPaths: flags.maxNestedPaths });
  if (flags.generate === true) return await runGenerate(destination, flags);
  for (const [key, flag] of GENERATE_ONLY) {
    if (flags[key] !== undefined) throw new MeshmirrorError('MM_USAGE', `${flag} is for --generate; deleting reads only --delete-yaml-file`);
  }
  return await runDelete(destination, flags.deleteYamlFile as string, flags);
}

function settingsOf(flags: DeleteFlags): TransferSettings {
  return resolveTransferSettings(undefined, {
    imageTimeoutMs: flags.imageTimeout,
    stallTimeoutMs: flags.stallTimeout,
    connectTimeoutMs: flags.connectTimeout,
    retryTimes: flags.retryTimes,
    retryDelayMs: flags.retryDelay,
    parallelImages: flags.parallelImages,
    srcTlsVerify: flags.srcTlsVerify,
    destTlsVerify: flags.destTlsVerify,
  });
}

/** Step 1: the list of what a mirror of the configuration's content pushed to the destination. */
async function runGenerate(destination: PushDestination, flags: DeleteFlags): Promise<number> {
  if (flags.deleteYamlFile !== undefined) throw new MeshmirrorError('MM_USAGE', '--delete-yaml-file is for deleting; --generate writes the list');
  if (flags.config === undefined) throw new MeshmirrorError('MM_USAGE', '--generate needs -c FILE: the DeleteImageSetConfiguration');
  const workspaceArg = flags.workspace ?? '';
  if (!workspaceArg.startsWith('file://') || workspaceArg.length === 'file://'.length) {
    throw new MeshmirrorError('MM_USAGE', `--generate needs --workspace file://DIR (the list goes to DIR/working-dir/delete/), got "${workspaceArg}"`);
  }
  if (flags.deleteId !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(flags.deleteId)) {
    throw new MeshmirrorError('MM_USAGE', `--delete-id "${flags.deleteId}": expected letters, digits, ".", "_" and "-" (it becomes part of file names)`);
  }
  const loaded = await loadDeleteImageSetConfig(flags.config);
  const asMirror = imageSetOfDelete(loaded);
  // As with mirror: `--include-dependencies` is `includeDependencies: true` on every catalog.
  const config =
    flags.includeDependencies === true
      ? { ...asMirror, mirror: { ...asMirror.mirror, operators: asMirror.mirror.operators.map((op) => ({ ...op, includeDependencies: true })) } }
      : asMirror;
  // The saved copy keeps `delete:` as the user wrote it (the schema fills in defaults).
  const deleteSection = (parseYaml(await readFile(flags.config, 'utf8')) as { delete?: unknown }).delete;
  const settings = settingsOf(flags);
  const cacheDir = resolve(flags.cacheDir ?? join(homedir(), '.meshmirror'));
  const logger = createLogger({ level: flags.logLevel as LogLevel });
  const sourceFlags: MirrorFlags = {
    config: flags.config,
    output: flags.output,
    logLevel: flags.logLevel,
    ...(flags.updateUrl === undefined ? {} : { updateUrl: flags.updateUrl }),
    ...(flags.graphDataUrl === undefined ? {} : { graphDataUrl: flags.graphDataUrl }),
    ...(flags.graphBaseImage === undefined ? {} : { graphBaseImage: flags.graphBaseImage }),
  };
  const { retry, backoff, clientFor } = await registryClients(settings, flags.authfile, logger);
  const sources = openShiftSources(sourceFlags, settings, retry);
  const client = clientFor('source');
  const { store, agent } = await openLocalAgent({ cacheDir, settings, client, retry, backoff, logger });
  try {
    const supply = blobSupply(agent, store, settings);
    const summary = await withInterruptSignal((signal) =>
      generateDeleteList({
        config,
        destination,
        cacheDir,
        workspace: resolve(workspaceArg.slice('file://'.length)),
        ...(flags.deleteId === undefined ? {} : { deleteId: flags.deleteId }),
        deleteSignatures: flags.deleteSignatures === true,
        deleteSection,
        client,
        agent,
        // Resolution reads only payload and catalog layers, whole: no pieces needed.
        layers: supplyLayerSource(supply, store, { pieceSize: DEFAULT_FARM_PIECE_SIZE, logger }),
        sources,
        parallelImages: settings.parallelImages,
        manifestLookups: settings.parallelImages * settings.parallelLayers,
        logger,
        signal,
      }),
    );
    printSummary(sourceFlags, summary, deleteGenerateSummaryText);
    return exitCodeForSummary({ outcomes: summary.failed.map((f) => ({ state: 'failed', kind: f.kind })) });
  } finally {
    await agent.close();
    await client.close();
  }
}

/** Step 2: delete what the list names from the destination. */
async function runDelete(destination: PushDestination, file: string, flags: DeleteFlags): Promise<number> {
  const list = await loadDeleteImageList(file);
  const settings = settingsOf(flags);
  const logger = createLogger({ level: flags.logLevel as LogLevel });
  const { clientFor } = await registryClients(settings, flags.authfile, logger);
  const client = clientFor('destination');
  try {
    const summary = await withInterruptSignal((signal) => deleteImages({ list, file, destination, client, logger, signal }));
    printSummary({ config: file, output: flags.output, logLevel: flags.logLevel }, summary, deleteSummaryText);
    // Items that failed: 64 plus a bit per part of the image set, as a mirror run's exit code.
    return exitCodeForSummary({ outcomes: summary.outcomes });
  } finally {
    await client.close();
  }
}
