import { readFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  createLogger,
  createRegistryClient,
  gibToBytes,
  HostBackoff,
  loadCredentialStore,
  loadImageSetConfig,
  describeError,
  formatDuration,
  MeshmirrorError,
  parseImageReference,
  readSwarmKeyFile,
  resolveTransferSettings,
  retryPolicyFromSettings,
  type AbortOptions,
  type LocalAgent,
  type PieceTask,
  type FetchSettings,
  type Logger,
  type PushSettings,
  type LogLevel,
  type RegistryLimit,
  type RetryPolicy,
  type TransferSettings,
} from '@meshmirror/shared';
import { createBlobStore, createInProcessAgent, createRateLimiter, registryLimiters, type BlobStore, type InProcessAgentOptions } from '@meshmirror/agent';
import { mirrorToDisk } from '../../run/mirror-to-disk.ts';
import type { BlobSupply, HolderCopy, MeshFetcher, MeshWriter } from '../../run/mesh-fetch.ts';
import { createProgressReporter, type ProgressReporter } from '../../report/progress.ts';
import { parseStatusAddress } from '../../report/status-address.ts';
import type { StatusServer } from '../../report/status-server.ts';
import { summaryText } from '../../report/summary-text.ts';
import { pushSummaryText } from '../../report/push-reports.ts';
import { diskToMirror } from '../../push/disk-to-mirror.ts';
import { parseDockerDestination } from '../../push/push-targets.ts';
import { mirrorToMirror } from '../../run/mirror-to-mirror.ts';
import type { OpenShiftSources } from '../../resolve/image-set-content.ts';
import { supplyLayerSource } from '../../resolve/layer-source.ts';
import { ExitCode, exitCodeForSummary } from '../exit-codes.ts';
import { parseSince, readSinceReceipt } from '../../plan/differential.ts';
import { receiptSummaryText, targetReceipt } from '../../run/target-receipt.ts';
import { loadCatalogSourceTemplates } from '../../cluster/catalog-source-template.ts';
import { withInterruptSignal } from '../interrupt.ts';

export interface MirrorFlags {
  config: string;
  cacheDir?: string;
  authfile?: string;
  srcTlsVerify?: boolean;
  destTlsVerify?: boolean;
  parallelImages?: number;
  parallelLayers?: number;
  retryTimes?: number;
  retryDelay?: number;
  imageTimeout?: number;
  stallTimeout?: number;
  connectTimeout?: number;
  pieceSize?: number;
  uploadChunkSize?: number;
  updateUrl?: string;
  graphDataUrl?: string;
  graphBaseImage?: string;
  from?: string;
  workspace?: string;
  agents?: string[];
  /** `--agents-file`: more agents, one multiaddr per line. */
  agentsFile?: string;
  /** `--limit-upstream`, in bytes per second: the coordinator's own agent's ceiling. */
  limitUpstream?: number;
  /** `--limit-registry HOST=RATE`: the coordinator's own agent's ceilings for single registries. */
  limitRegistry?: RegistryLimit[];
  /** `--limit-peer`, in bytes per second: what the writer pulls from a farm's agents. */
  limitPeer?: number;
  /** `--status HOST:PORT`: serve the live page, /metrics and /api/run while the run goes. */
  status?: string;
  /** `--status-linger`, in ms: how long the status address still answers once the run is over (default 0). */
  statusLinger?: number;
  swarmKey?: string;
  dryRun?: boolean;
  removeSignatures?: boolean;
  /** `--no-verify` sets it false. */
  verify?: boolean;
  sinceReceipt?: string;
  since?: string;
  maxNestedPaths?: number;
  strictArchive?: boolean;
  includeDependencies?: boolean;
  output: string;
  logLevel: string;
  v2?: boolean;
}

const DEFAULT_PIECE_SIZE = 64 * 1024 * 1024;
/**
 * Across a farm, smaller pieces balance the last seconds better. Measured with `pnpm bench:mesh`
 * (three agents, 1 GiB blob, uplinks at 100 Mbit/s): 16 MiB 36.0 s, 32 MiB 36.6 s, 64 MiB 39.2 s.
 */
export const DEFAULT_FARM_PIECE_SIZE = 16 * 1024 * 1024;

export async function runMirrorCommand(destinationArg: string, given: MirrorFlags): Promise<number> {
  const flags = given.agentsFile === undefined ? given : { ...given, agents: [...(given.agents ?? []), ...(await readAgentsFile(given.agentsFile))] };
  if (flags.status !== undefined) parseStatusAddress(flags.status);
  if (flags.statusLinger !== undefined && flags.status === undefined) throw new MeshmirrorError('MM_USAGE', '--status-linger needs --status HOST:PORT');
  if (flags.output !== 'text' && flags.output !== 'json') {
    throw new MeshmirrorError('MM_USAGE', `--output: expected text or json, got "${flags.output}"`);
  }
  if (destinationArg.startsWith('docker://')) {
    if (flags.strictArchive === true) throw new MeshmirrorError('MM_USAGE', '--strict-archive is for mirror to disk (file://DIR): it bounds the archive chunks');
    if (flags.sinceReceipt !== undefined || flags.since !== undefined) {
      throw new MeshmirrorError(
        'MM_USAGE',
        `${flags.since === undefined ? '--since-receipt' : '--since'} is for mirror to disk (file://DIR): it makes a differential archive`,
      );
    }
    return await runPushCommand(destinationArg, flags);
  }
  if (flags.workspace !== undefined)
    throw new MeshmirrorError('MM_USAGE', `--workspace is for mirror to mirror: the destination must be docker://HOST[/PREFIX], not "${destinationArg}"`);
  if (flags.from !== undefined)
    throw new MeshmirrorError('MM_USAGE', `--from is for disk to mirror: the destination must be docker://HOST[/PREFIX], not "${destinationArg}"`);
  const destination = parseDiskDestination(destinationArg);
  if (flags.maxNestedPaths !== undefined) {
    throw new MeshmirrorError('MM_USAGE', '--max-nested-paths applies when pushing (docker://HOST[/PREFIX]); an archive keeps the source names');
  }
  if (flags.since !== undefined && flags.sinceReceipt !== undefined) throw new MeshmirrorError('MM_USAGE', '--since and --since-receipt exclude each other: use one');
  const sinceReceipt = flags.sinceReceipt === undefined ? undefined : await readSinceReceipt(flags.sinceReceipt);
  const since = flags.since === undefined ? undefined : parseSince(flags.since);
  checkOpenShiftFlags(flags);
  await checkFarmFlags(flags);
  const context = await commandContext(flags, 'source');
  const { config, settings, cacheDir, logger, retry, backoff, client } = context;
  const { store, agent } = await openCommandAgent(context, flags);
  const farm = flags.agents === undefined ? undefined : await joinFarm(flags, cacheDir, settings, store, logger);
  const { progress, status } = await progressFor(flags, backoff, logger, cacheDir);
  try {
    const supply = blobSupply(agent, store, settings, farm);
    const pieceSize = flags.pieceSize ?? config.meshmirror?.pieceSizeBytes ?? (farm === undefined ? DEFAULT_PIECE_SIZE : DEFAULT_FARM_PIECE_SIZE);
    const summary = await withInterruptSignal((signal) =>
      mirrorToDisk({
        config,
        destination,
        cacheDir,
        client,
        agent,
        layers: supplyLayerSource(supply, store, { pieceSize, logger }),
        sources: openShiftSources(flags, settings, retry),
        parallelImages: settings.parallelImages,
        manifestLookups: settings.parallelImages * settings.parallelLayers,
        pieceSize,
        chunkSizeBytes: gibToBytes(config.archiveSize),
        dryRun: flags.dryRun === true,
        removeSignatures: flags.removeSignatures === true,
        skipVerify: flags.verify === false,
        ...(sinceReceipt === undefined ? {} : { sinceReceipt }),
        ...(since === undefined ? {} : { since }),
        ...(flags.strictArchive === true ? { strictArchive: true } : {}),
        supply,
        logger,
        progress,
        signal,
      }),
    );
    progress.stop();
    status?.finish(summary);
    printSummary(flags, summary, summaryText);
    // An archive that did not read back intact must not be carried, whatever became of the images.
    return summary.archive.verification?.intact === false ? ExitCode.ArchiveDamaged : exitCodeForSummary(summary);
  } finally {
    progress.stop();
    await farm?.stop();
    await agent.close();
    await client.close();
    await closeStatus(status, flags.statusLinger);
  }
}

/**
 * The progress line (quiet for `--output json` off a terminal; it names the hosts the run is waiting
 * for) and, with `--status`, the status server, told the same; stopping the progress leaves the
 * server answering until `closeStatus`.
 */
async function progressFor(flags: MirrorFlags, backoff: HostBackoff, logger: Logger, cacheDir: string): Promise<{ progress: ProgressReporter; status?: StatusServer }> {
  const line = createProgressReporter({ mode: flags.output === 'json' && process.stderr.isTTY !== true ? 'none' : undefined, hostTroubles: () => backoff.troubles() });
  if (flags.status === undefined) return { progress: line };
  // prom-client is loaded only by runs that are watched.
  const { startStatusServer, teeProgress } = await import('../../report/status-server.ts');
  const status = await startStatusServer(flags.status, { logger, storeDir: join(cacheDir, 'store') });
  // Said whatever the log level: with a port of 0 this is the only way to find it.
  process.stderr.write(`meshmirror: status at ${status.url} (live page at /, /metrics, /api/run)\n`);
  return { progress: teeProgress(line, status.reporter), status };
}

/**
 * Closes the status server. After a run that ended with its summary, the address first answers for
 * `--status-linger`, so that the last scrape and the live page see the end; SIGINT or SIGTERM end
 * that wait at once, and the run's exit code stays what the run made it.
 */
async function closeStatus(status: StatusServer | undefined, lingerMs = 0): Promise<void> {
  if (status === undefined) return;
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    if (status.finished && lingerMs > 0)
      process.stderr.write(`meshmirror: status at ${status.url} answers for ${formatDuration(lingerMs)} more (--status-linger; Ctrl-C ends it)\n`);
    await status.close({ lingerMs, signal: stop.signal });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * Where release and graph content comes from: flags, then oc-mirror's `UPDATE_URL_OVERRIDE`; release
 * signatures from oc-mirror's `OCP_SIGNATURE_URL` and `OCP_SIGNATURE_VERIFICATION_PK`.
 */
export function openShiftSources(flags: MirrorFlags, settings: TransferSettings, retry: RetryPolicy): OpenShiftSources {
  const updateUrl = checkOpenShiftFlags(flags);
  const { signatureUrl, signatureKeys } = releaseSignatureSettings();
  return {
    ...(updateUrl === undefined ? {} : { updateUrl }),
    ...(signatureUrl === undefined ? {} : { signatureUrl }),
    ...(signatureKeys === undefined ? {} : { signatureKeys }),
    ...(flags.graphDataUrl === undefined ? {} : { graphDataUrl: flags.graphDataUrl }),
    ...(flags.graphBaseImage === undefined ? {} : { graphBaseImage: flags.graphBaseImage }),
    tlsVerify: settings.srcTlsVerify,
    retry,
  };
}

/** oc-mirror's `OCP_SIGNATURE_URL` and `OCP_SIGNATURE_VERIFICATION_PK` (the key file's text), checked. */
function releaseSignatureSettings(): { signatureUrl?: string; signatureKeys?: string } {
  const signatureUrl = nonEmpty(process.env['OCP_SIGNATURE_URL']);
  if (signatureUrl !== undefined && !/^https?:\/\/[^/]/.test(signatureUrl)) {
    throw new MeshmirrorError('MM_USAGE', `OCP_SIGNATURE_URL: expected an http(s):// URL, got "${signatureUrl}"`);
  }
  const keyFile = nonEmpty(process.env['OCP_SIGNATURE_VERIFICATION_PK']);
  let signatureKeys: string | undefined;
  if (keyFile !== undefined) {
    try {
      signatureKeys = readFileSync(keyFile, 'utf8');
    } catch (err) {
      throw new MeshmirrorError('MM_USAGE', `OCP_SIGNATURE_VERIFICATION_PK: cannot read ${keyFile}: ${describeError(err)}`, { cause: err });
    }
    if (signatureKeys.trim() === '') throw new MeshmirrorError('MM_USAGE', `OCP_SIGNATURE_VERIFICATION_PK: ${keyFile} is empty`);
  }
  return {
    // Joined with `sha256=<hex>/signature-N` as it is, like oc-mirror: a missing final `/` is added.
    ...(signatureUrl === undefined ? {} : { signatureUrl: signatureUrl.endsWith('/') ? signatureUrl : `${signatureUrl}/` }),
    ...(signatureKeys === undefined ? {} : { signatureKeys }),
  };
}

/** Checks the OpenShift source flags before anything is opened (bad input fetches and writes nothing); returns the update URL. */
function checkOpenShiftFlags(flags: MirrorFlags): string | undefined {
  const updateUrl = flags.updateUrl ?? nonEmpty(process.env['UPDATE_URL_OVERRIDE']);
  for (const [flag, value] of [
    ['--update-url', updateUrl],
    ['--graph-data-url', flags.graphDataUrl],
  ] as const) {
    if (value !== undefined && !/^https?:\/\/[^/]/.test(value)) {
      throw new MeshmirrorError(
        'MM_USAGE',
        `${flag === '--update-url' && flags.updateUrl === undefined ? 'UPDATE_URL_OVERRIDE' : flag}: expected an http(s):// URL, got "${value}"`,
      );
    }
  }
  releaseSignatureSettings();
  if (flags.graphBaseImage !== undefined) {
    try {
      parseImageReference(flags.graphBaseImage);
    } catch (err) {
      throw new MeshmirrorError('MM_REFERENCE_INVALID', `--graph-base-image: ${describeError(err)}`, { cause: err });
    }
  }
  return updateUrl;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/** The coordinator's own agent over the store in the cache dir. */
export async function openLocalAgent(
  options: Omit<InProcessAgentOptions, 'name' | 'store' | 'parallelLayers' | 'upstreamLimit' | 'registryLimits'> & {
    cacheDir: string;
    settings: TransferSettings;
    limitUpstream?: number | undefined;
    limitRegistry?: RegistryLimit[] | undefined;
  },
) {
  const { cacheDir, settings, logger, limitUpstream, limitRegistry, ...rest } = options;
  const registryLimits = registryLimiters(limitRegistry);
  const store = createBlobStore({ dir: join(cacheDir, 'store'), logger: logger.child({ component: 'agent:store' }) });
  await store.open();
  const agent = createInProcessAgent({
    ...rest,
    ...(limitUpstream === undefined ? {} : { upstreamLimit: createRateLimiter(limitUpstream) }),
    ...(registryLimits === undefined ? {} : { registryLimits }),
    name: 'local',
    store,
    // oc-mirror's ceiling: parallel-images images, each with parallel-layers transfers.
    parallelLayers: settings.parallelImages * settings.parallelLayers,
    logger,
  });
  return { store, agent };
}

/**
 * The coordinator's own agent for a command: over the store in its cache dir, with its clients and
 * retry settings, this host's upstream limits from the flags, and (pushing) the target's client.
 */
export function openCommandAgent(
  context: Pick<Awaited<ReturnType<typeof commandContext>>, 'cacheDir' | 'settings' | 'client' | 'retry' | 'backoff' | 'logger'>,
  flags: Pick<MirrorFlags, 'limitUpstream' | 'limitRegistry'>,
  push?: InProcessAgentOptions['push'],
) {
  const { cacheDir, settings, client, retry, backoff, logger } = context;
  return openLocalAgent({
    cacheDir,
    settings,
    client,
    retry,
    backoff,
    logger,
    limitUpstream: flags.limitUpstream,
    limitRegistry: flags.limitRegistry,
    ...(push === undefined ? {} : { push }),
  });
}

/**
 * `--agents-file`: one agent multiaddr per line, blank lines and `#` comments skipped; each checked
 * here so a bad line is named by file and line number.
 */
export async function readAgentsFile(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new MeshmirrorError('MM_USAGE', `--agents-file: cannot read ${file}: ${describeError(err)}`, { cause: err });
  }
  const mesh = await import('@meshmirror/agent/mesh');
  const agents: string[] = [];
  text.split('\n').forEach((line, i) => {
    const address = line.replace(/#.*/, '').trim();
    if (address === '') return;
    mesh.parseAgentAddress(address, `--agents-file ${file}:${i + 1}`);
    agents.push(address);
  });
  if (agents.length === 0) throw new MeshmirrorError('MM_USAGE', `--agents-file: ${file} lists no agents`);
  return agents;
}

/** Checks --agents and --swarm-key before the store is opened: bad input fetches and writes nothing. */
export async function checkFarmFlags(flags: MirrorFlags): Promise<void> {
  if (flags.agents === undefined) return;
  if (flags.swarmKey === undefined) throw new MeshmirrorError('MM_USAGE', '--agents needs --swarm-key FILE (the key the agents were started with)');
  await readSwarmKeyFile(resolve(flags.swarmKey));
  const mesh = await import('@meshmirror/agent/mesh');
  for (const text of flags.agents) mesh.parseAgentAddress(text, '--agents');
}

/**
 * Starts the coordinator's mesh node (its identity lives in the cache dir; `meshmirror identity`
 * prints it for the agents' `--allow`), admits exactly the listed agents, and checks each answers.
 * An agent that does not answer is left out with a warning; with none left the run stops.
 */
export async function joinFarm(
  flags: MirrorFlags,
  cacheDir: string,
  settings: TransferSettings,
  store: BlobStore,
  logger: Logger,
  pushSettings?: PushSettings,
): Promise<Farm> {
  if (flags.swarmKey === undefined) throw new MeshmirrorError('MM_USAGE', '--agents needs --swarm-key FILE (the key the agents were started with)');
  const mesh = await import('@meshmirror/agent/mesh');
  const swarmKey = await readSwarmKeyFile(resolve(flags.swarmKey));
  const listed = (flags.agents ?? []).map((text) => mesh.parseAgentAddress(text, '--agents'));
  const ids = new Set(listed.map((a) => a.peerId.toString()));
  if (ids.size !== listed.length) throw new MeshmirrorError('MM_USAGE', '--agents: the same agent (peer id) is listed twice');
  const identity = await mesh.loadOrCreateIdentity(cacheDir);
  if (ids.has(identity.peerId.toString())) throw new MeshmirrorError('MM_USAGE', `--agents: ${identity.peerId.toString()} is this coordinator's own peer id`);
  const meshLogger = logger.child({ component: 'mesh' });
  const node = await mesh.startMeshNode({ identity, swarmKey, listen: [], allow: ids, logger: meshLogger });
  const fetchSettings: FetchSettings = {
    tlsVerify: settings.srcTlsVerify,
    connectTimeoutMs: settings.connectTimeoutMs,
    headersTimeoutMs: settings.headersTimeoutMs,
    stallTimeoutMs: settings.stallTimeoutMs,
    ...(settings.retryTimes === undefined ? {} : { retryTimes: settings.retryTimes }),
    retryDelayMs: settings.retryDelayMs,
    parallel: settings.parallelImages * settings.parallelLayers,
    noProgressTimeoutMs: settings.imageTimeoutMs,
  };
  const remotes = listed.map(
    ({ address, peerId }) =>
      new mesh.RemoteAgent({ node, address, peerId, settings: fetchSettings, ...(pushSettings === undefined ? {} : { pushSettings }), logger: meshLogger }),
  );
  const answered = await Promise.all(
    remotes.map(async (remote) => {
      try {
        await remote.hello({ signal: AbortSignal.timeout(15_000) });
        return remote;
      } catch (err) {
        logger.warn({ agent: remote.name, address: remote.address.toString(), err: describeError(err) }, 'agent does not answer; running without it');
        return undefined;
      }
    }),
  );
  const fetchers = answered.filter((r) => r !== undefined);
  if (fetchers.length === 0) {
    await node.stop();
    const named =
      listed
        .slice(0, 3)
        .map((a) => a.address.toString())
        .join(', ') + (listed.length > 3 ? ` and ${listed.length - 3} more` : '');
    throw new MeshmirrorError(
      'MM_AGENT_LOST',
      `none of the ${listed.length} agents answered (${named}); check that each runs with this swarm key and --allow ${identity.peerId.toString()}`,
    );
  }
  logger.info({ coordinator: identity.peerId.toString(), agents: fetchers.map((f) => f.address.toString()) }, 'farm ready');
  const addressOf = new Map(fetchers.map((f) => [f.name, f.address]));
  const throttle = flags.limitPeer === undefined ? {} : { throttle: createRateLimiter(flags.limitPeer) };
  const pull = (holder: string, task: PieceTask, copy: HolderCopy, signal: AbortSignal, live: boolean): Promise<number> => {
    const address = addressOf.get(holder);
    if (address === undefined) return Promise.reject(new MeshmirrorError('MM_USAGE', `no address for agent ${holder}`));
    // A live pull is silent while the holder waits on upstream: a stall there only ends the streaming
    // (the piece is pulled once fetched), and asks whether the holder is still there.
    return mesh.pullPiece(node, address, store, task, copy, { signal, stallMs: Math.min(settings.stallTimeoutMs, PEER_PULL_STALL_MS), live, ...throttle });
  };
  return {
    fetchers: fetchers.map((agent) => ({ agent, address: agent.address.toString(), slots: fetchSettings.parallel, probe: (o: AbortOptions) => agent.hello(o) })),
    pull: (holder, task, copy, signal) => pull(holder, task, copy, signal, false),
    pullLive: (holder, task, copy, signal) => pull(holder, task, copy, signal, true),
    stop: async () => {
      await node.stop();
    },
  };
}

/** The farm's agents that answered, and how the writer pulls a finished piece from one of them. */
interface Farm {
  fetchers: MeshFetcher[];
  pull: MeshWriter['pull'];
  pullLive: NonNullable<MeshWriter['pullLive']>;
  stop(): Promise<void>;
}

/**
 * Where the run's blobs come from: the coordinator's own agent alone (a single host is a farm of
 * one), or the farm's agents, the coordinator's agent then only writing what it pulls from them.
 */
export function blobSupply(agent: LocalAgent, store: BlobStore, settings: TransferSettings, farm?: Farm): BlobSupply {
  // oc-mirror's ceiling: parallel-images images, each with parallel-layers transfers.
  const local: MeshFetcher = { agent, address: 'local', slots: settings.parallelImages * settings.parallelLayers, sharesWriterStore: true };
  return {
    local,
    fetchers: farm?.fetchers ?? [local],
    writer: {
      pull: farm?.pull ?? ((holder) => Promise.reject(new MeshmirrorError('MM_USAGE', `no agent named ${holder} to pull from`))),
      ...(farm === undefined ? {} : { pullLive: farm.pullLive }),
      completeBlob: (digest, size, signal) => store.completeBlob(digest, size, { signal }),
    },
  };
}

/**
 * Longest silence of a pull from a peer before it is given up and the peer asked whether it is still
 * there: peers serve from their own disk over the farm's LAN, so seconds of silence mean a host that
 * died or was cut off, not a slow registry (`--stall-timeout`, for upstream, is longer by default).
 */
const PEER_PULL_STALL_MS = 10_000;

/**
 * What every mirror command starts from: the configuration, settings (flags over file), logger, and
 * a registry client for the source registries or, pushing, the destination (its own TLS setting).
 */
export async function commandContext(flags: MirrorFlags, registries: 'source' | 'destination') {
  const loaded = await loadImageSetConfig(flags.config);
  // `--include-dependencies` is `includeDependencies: true` on every catalog (and so part of the run's identity).
  const config =
    flags.includeDependencies === true
      ? { ...loaded, mirror: { ...loaded.mirror, operators: loaded.mirror.operators.map((op) => ({ ...op, includeDependencies: true })) } }
      : loaded;
  // A bad CatalogSource template stops every mode here, before anything is fetched.
  const catalogSourceTemplates = await loadCatalogSourceTemplates(config);
  const settings = resolveTransferSettings(config.meshmirror, transferFlags(flags));
  const cacheDir = resolve(flags.cacheDir ?? join(homedir(), '.meshmirror'));
  const logger = createLogger({ level: flags.logLevel as LogLevel });
  const { retry, backoff, clientFor } = await registryClients(settings, flags.authfile, logger);
  const client = clientFor(registries);
  return { config, catalogSourceTemplates, settings, cacheDir, logger, retry, backoff, client, clientFor };
}

/** The retry policy, the per-host backoff, and registry clients for either side, from the settings and the auth files. */
export async function registryClients(settings: TransferSettings, authfile: string | undefined, logger: Logger) {
  const credentials = await loadCredentialStore(authfile === undefined ? {} : { authfile });
  const retry = retryPolicyFromSettings(settings);
  const backoff = new HostBackoff(retry);
  const clientFor = (side: 'source' | 'destination') =>
    createRegistryClient({
      credentials,
      tlsVerify: side === 'source' ? settings.srcTlsVerify : settings.destTlsVerify,
      connectTimeoutMs: settings.connectTimeoutMs,
      headersTimeoutMs: settings.headersTimeoutMs,
      stallTimeoutMs: settings.stallTimeoutMs,
      retry,
      backoff,
      logger: logger.child({ component: 'registry' }),
    });
  return { retry, backoff, clientFor };
}

/** Bytes per PATCH: small enough that a cut-off request costs little, large enough for few round trips. */
const DEFAULT_UPLOAD_CHUNK_BYTES = 16 * 1024 * 1024;

/** `mirror --from file://DIR docker://HOST[/PREFIX]`: push an archive into a registry. */
async function runPushCommand(destinationArg: string, flags: MirrorFlags): Promise<number> {
  if (flags.workspace !== undefined) return await runMirrorToMirrorCommand(destinationArg, flags);
  if (flags.from === undefined) {
    throw new MeshmirrorError(
      'MM_USAGE',
      `destination "${destinationArg}": pushing to a registry needs --from file://DIR (the archive to push) or --workspace file://DIR (mirror to mirror)`,
    );
  }
  if (!flags.from.startsWith('file://') || flags.from.length === 'file://'.length) {
    throw new MeshmirrorError('MM_USAGE', `--from "${flags.from}": expected file://DIR (a folder of mirror_*.tar chunks)`);
  }
  if (flags.agents !== undefined) throw new MeshmirrorError('MM_USAGE', '--agents applies to mirror to disk; a push from an archive runs on this host');
  if (flags.dryRun === true) throw new MeshmirrorError('MM_USAGE', '--dry-run is not supported for disk to mirror yet');
  const destination = parseDockerDestination(destinationArg, flags.maxNestedPaths === undefined ? {} : { maxNestedPaths: flags.maxNestedPaths });
  const archiveDir = resolve(flags.from.slice('file://'.length));
  const found = await stat(archiveDir).catch(() => undefined);
  if (found?.isDirectory() !== true) throw new MeshmirrorError('MM_USAGE', `--from "${flags.from}": ${archiveDir} is not a folder`);
  const { config, catalogSourceTemplates, settings, cacheDir, logger, retry, backoff, client } = await commandContext(flags, 'destination');
  const { progress, status } = await progressFor(flags, backoff, logger, cacheDir);
  try {
    const summary = await withInterruptSignal((signal) =>
      diskToMirror({
        config,
        archiveDir,
        destination,
        catalogSourceTemplates,
        cacheDir,
        client,
        retry,
        backoff,
        stallTimeoutMs: settings.stallTimeoutMs,
        transfers: settings.parallelImages * settings.parallelLayers,
        chunkBytes: flags.uploadChunkSize ?? DEFAULT_UPLOAD_CHUNK_BYTES,
        removeSignatures: flags.removeSignatures === true,
        logger,
        progress,
        signal,
      }),
    );
    progress.stop();
    status?.finish(summary);
    printSummary(flags, summary, pushSummaryText);
    return exitCodeForSummary(summary);
  } finally {
    progress.stop();
    await client.close();
    await closeStatus(status, flags.statusLinger);
  }
}

/**
 * `mirror --workspace file://DIR docker://HOST[/PREFIX]`: from the source registries straight into
 * the target. The coordinator's agent fetches and pushes, or with `--agents` the farm's agents do,
 * each pushing the blobs it fetched with its own credentials for the target.
 */
async function runMirrorToMirrorCommand(destinationArg: string, flags: MirrorFlags): Promise<number> {
  const workspaceArg = flags.workspace ?? '';
  if (!workspaceArg.startsWith('file://') || workspaceArg.length === 'file://'.length) {
    throw new MeshmirrorError('MM_USAGE', `--workspace "${workspaceArg}": expected file://DIR (where reports and cluster resources go)`);
  }
  if (flags.from !== undefined)
    throw new MeshmirrorError('MM_USAGE', '--from and --workspace exclude each other: --from pushes an archive, --workspace mirrors from the source registries');
  if (flags.dryRun === true) throw new MeshmirrorError('MM_USAGE', '--dry-run is not supported for mirror to mirror yet');
  const destination = parseDockerDestination(destinationArg, flags.maxNestedPaths === undefined ? {} : { maxNestedPaths: flags.maxNestedPaths });
  const workspace = resolve(workspaceArg.slice('file://'.length));
  checkOpenShiftFlags(flags);
  await checkFarmFlags(flags);
  const context = await commandContext(flags, 'source');
  const { config, catalogSourceTemplates, settings, cacheDir, logger, retry, backoff, client, clientFor } = context;
  const targetClient = clientFor('destination');
  const chunkBytes = flags.uploadChunkSize ?? DEFAULT_UPLOAD_CHUNK_BYTES;
  const { store, agent } = await openCommandAgent(context, flags, { client: targetClient, chunkBytes, stallTimeoutMs: settings.stallTimeoutMs, retry, backoff });
  const pushSettings: PushSettings = {
    tlsVerify: settings.destTlsVerify,
    connectTimeoutMs: settings.connectTimeoutMs,
    headersTimeoutMs: settings.headersTimeoutMs,
    stallTimeoutMs: settings.stallTimeoutMs,
    ...(settings.retryTimes === undefined ? {} : { retryTimes: settings.retryTimes }),
    retryDelayMs: settings.retryDelayMs,
    noProgressTimeoutMs: settings.imageTimeoutMs,
    chunkBytes,
  };
  let farm: Awaited<ReturnType<typeof joinFarm>> | undefined;
  const { progress, status } = await progressFor(flags, backoff, logger, cacheDir);
  try {
    farm = flags.agents === undefined ? undefined : await joinFarm(flags, cacheDir, settings, store, logger, pushSettings);
    const supply = blobSupply(agent, store, settings, farm);
    const pieceSize = flags.pieceSize ?? config.meshmirror?.pieceSizeBytes ?? DEFAULT_PIECE_SIZE;
    const summary = await withInterruptSignal((signal) =>
      mirrorToMirror({
        config,
        workspace,
        destination,
        catalogSourceTemplates,
        cacheDir,
        client,
        targetClient,
        agent,
        layers: supplyLayerSource(supply, store, { pieceSize, logger }),
        sources: openShiftSources(flags, settings, retry),
        parallelImages: settings.parallelImages,
        manifestLookups: settings.parallelImages * settings.parallelLayers,
        transfers: settings.parallelImages * settings.parallelLayers,
        pieceSize,
        removeSignatures: flags.removeSignatures === true,
        supply,
        logger,
        progress,
        signal,
      }),
    );
    progress.stop();
    status?.finish(summary);
    printSummary(flags, summary, pushSummaryText);
    return exitCodeForSummary(summary);
  } finally {
    progress.stop();
    await farm?.stop();
    await agent.close();
    await client.close();
    await targetClient.close();
    await closeStatus(status, flags.statusLinger);
  }
}

/** `receipt docker://HOST[/PREFIX] -c isc.yaml -o FILE`: what the target holds of the image set, asked of it. */
export async function runReceiptCommand(destinationArg: string, flags: MirrorFlags & { out: string }): Promise<number> {
  if (flags.output !== 'text' && flags.output !== 'json') throw new MeshmirrorError('MM_USAGE', `--output: expected text or json, got "${flags.output}"`);
  if (!destinationArg.startsWith('docker://'))
    throw new MeshmirrorError('MM_USAGE', `destination "${destinationArg}": expected docker://HOST[/PREFIX], the target to ask`);
  const destination = parseDockerDestination(destinationArg, flags.maxNestedPaths === undefined ? {} : { maxNestedPaths: flags.maxNestedPaths });
  checkOpenShiftFlags(flags);
  const context = await commandContext(flags, 'source');
  const { config, settings, cacheDir, logger, retry, client, clientFor } = context;
  const targetClient = clientFor('destination');
  const { store, agent } = await openCommandAgent(context, flags);
  try {
    const supply = blobSupply(agent, store, settings);
    const summary = await withInterruptSignal((signal) =>
      targetReceipt({
        config,
        destination,
        cacheDir,
        client,
        targetClient,
        agent,
        layers: supplyLayerSource(supply, store, { pieceSize: DEFAULT_PIECE_SIZE, logger }),
        sources: openShiftSources(flags, settings, retry),
        parallelImages: settings.parallelImages,
        manifestLookups: settings.parallelImages * settings.parallelLayers,
        out: resolve(flags.out),
        logger,
        signal,
      }),
    );
    printSummary(flags, summary, receiptSummaryText);
    return exitCodeForSummary({ outcomes: summary.failed.map((f) => ({ state: 'failed', kind: f.kind })) });
  } finally {
    await agent.close();
    await client.close();
    await targetClient.close();
  }
}

/** The summary on stdout: JSON with `--output json`, else the text a person reads. */
export function printSummary<T>(flags: MirrorFlags, summary: T, text: (summary: T) => string): void {
  process.stdout.write(`${flags.output === 'json' ? JSON.stringify(summary, null, 2) : text(summary)}\n`);
}

function parseDiskDestination(arg: string): string {
  if (arg.startsWith('file://')) {
    const path = arg.slice('file://'.length);
    if (path === '') throw new MeshmirrorError('MM_USAGE', `destination "${arg}": missing folder after file://`);
    return resolve(path);
  }
  throw new MeshmirrorError('MM_USAGE', `destination "${arg}": expected file://DIR (mirror to disk) or docker://HOST[/PREFIX] with --from (disk to mirror)`);
}

function transferFlags(flags: MirrorFlags): Partial<TransferSettings> {
  const out: Partial<TransferSettings> = {};
  if (flags.imageTimeout !== undefined) out.imageTimeoutMs = flags.imageTimeout;
  if (flags.stallTimeout !== undefined) out.stallTimeoutMs = flags.stallTimeout;
  if (flags.connectTimeout !== undefined) out.connectTimeoutMs = flags.connectTimeout;
  if (flags.retryTimes !== undefined) out.retryTimes = flags.retryTimes;
  if (flags.retryDelay !== undefined) out.retryDelayMs = flags.retryDelay;
  if (flags.parallelImages !== undefined) out.parallelImages = flags.parallelImages;
  if (flags.parallelLayers !== undefined) out.parallelLayers = flags.parallelLayers;
  if (flags.srcTlsVerify !== undefined) out.srcTlsVerify = flags.srcTlsVerify;
  if (flags.destTlsVerify !== undefined) out.destTlsVerify = flags.destTlsVerify;
  return out;
}
