import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  createLogger,
  createRegistryClient,
  gibToBytes,
  HostBackoff,
  loadCredentialStore,
  loadImageSetConfig,
  MeshmirrorError,
  resolveTransferSettings,
  retryPolicyFromSettings,
  type LogLevel,
  type TransferSettings,
} from '@meshmirror/shared';
import { createBlobStore, createInProcessAgent } from '@meshmirror/agent';
import { mirrorToDisk } from '../../run/mirror-to-disk.ts';
import { createProgressReporter } from '../../report/progress.ts';
import { summaryText } from '../../report/summary-text.ts';
import { exitCodeForSummary } from '../exit-codes.ts';
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
  dryRun?: boolean;
  output: string;
  logLevel: string;
  v2?: boolean;
}

const DEFAULT_PIECE_SIZE = 64 * 1024 * 1024;

export async function runMirrorCommand(destinationArg: string, flags: MirrorFlags): Promise<number> {
  if (flags.output !== 'text' && flags.output !== 'json') {
    throw new MeshmirrorError('MM_USAGE', `--output: expected text or json, got "${flags.output}"`);
  }
  const destination = parseDiskDestination(destinationArg);
  const config = await loadImageSetConfig(flags.config);
  const settings = resolveTransferSettings(config.meshmirror, transferFlags(flags));
  const cacheDir = resolve(flags.cacheDir ?? join(homedir(), '.meshmirror'));
  const logger = createLogger({ level: flags.logLevel as LogLevel });

  const credentials = await loadCredentialStore({ ...(flags.authfile === undefined ? {} : { authfile: flags.authfile }) });
  const retry = retryPolicyFromSettings(settings);
  const backoff = new HostBackoff(retry);
  const client = createRegistryClient({
    credentials,
    tlsVerify: settings.srcTlsVerify,
    connectTimeoutMs: settings.connectTimeoutMs,
    headersTimeoutMs: settings.headersTimeoutMs,
    stallTimeoutMs: settings.stallTimeoutMs,
    retry,
    backoff,
    logger: logger.child({ component: 'registry' }),
  });
  const store = createBlobStore({ dir: join(cacheDir, 'store'), logger: logger.child({ component: 'agent:store' }) });
  await store.open();
  const agent = createInProcessAgent({
    name: 'local',
    store,
    client,
    retry,
    backoff,
    // oc-mirror's ceiling: parallel-images images, each with parallel-layers transfers.
    parallelLayers: settings.parallelImages * settings.parallelLayers,
    noProgressTimeoutMs: settings.imageTimeoutMs,
    logger,
  });
  const progress = createProgressReporter({ mode: flags.output === 'json' && process.stderr.isTTY !== true ? 'none' : undefined });
  try {
    const summary = await withInterruptSignal((signal) =>
      mirrorToDisk({
        config,
        destination,
        cacheDir,
        client,
        agent,
        parallelImages: settings.parallelImages,
        pieceSize: flags.pieceSize ?? config.meshmirror?.pieceSizeBytes ?? DEFAULT_PIECE_SIZE,
        chunkSizeBytes: gibToBytes(config.archiveSize),
        dryRun: flags.dryRun === true,
        logger,
        progress,
        signal,
      }),
    );
    progress.stop();
    if (flags.output === 'json') process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    else process.stdout.write(`${summaryText(summary)}\n`);
    return exitCodeForSummary(summary);
  } finally {
    progress.stop();
    await agent.close();
    await client.close();
  }
}

function parseDiskDestination(arg: string): string {
  if (arg.startsWith('file://')) {
    const path = arg.slice('file://'.length);
    if (path === '') throw new MeshmirrorError('MM_USAGE', `destination "${arg}": missing folder after file://`);
    return resolve(path);
  }
  if (arg.startsWith('docker://')) {
    throw new MeshmirrorError('MM_USAGE', `destination "${arg}": mirror to a registry is not supported yet; use file://DIR`);
  }
  throw new MeshmirrorError('MM_USAGE', `destination "${arg}": expected file://DIR`);
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
