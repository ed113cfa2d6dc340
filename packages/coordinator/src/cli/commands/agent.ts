import { resolve } from 'node:path';
import {
  createLogger,
  loadAgentConfig,
  loadCredentialStore,
  MeshmirrorError,
  parseRate,
  readSwarmKeyFile,
  type LogLevel,
  type RegistryLimit,
} from '@meshmirror/shared';
import { checkListenAddress, parsePeerId, startAgentService } from '@meshmirror/agent/mesh';

export interface AgentFlags {
  config?: string;
  data?: string;
  listen?: string[];
  swarmKey?: string;
  allow?: string[];
  authfile?: string;
  logLevel?: string;
  /** `--limit-upstream`, in bytes per second. */
  limitUpstream?: number;
  /** `--limit-registry HOST=RATE`, repeatable. */
  limitRegistry?: RegistryLimit[];
  /** `--limit-peer`, in bytes per second. */
  limitPeer?: number;
  /** `--status HOST:PORT`. */
  status?: string;
}

const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/4001'];

/** The flags over the config file (when given) over the defaults; data and swarm key are required. */
async function agentSettings(given: AgentFlags) {
  const file = given.config === undefined ? {} : await loadAgentConfig(given.config);
  const data = given.data ?? file.data;
  const swarmKey = given.swarmKey ?? file.swarmKey;
  const from = given.config === undefined ? '' : ` or in ${given.config}`;
  if (data === undefined) throw new MeshmirrorError('MM_USAGE', `the agent needs a data folder: --data DIR${from === '' ? '' : `${from} (data:)`}`);
  if (swarmKey === undefined)
    throw new MeshmirrorError('MM_USAGE', `the agent needs the farm's swarm key: --swarm-key FILE${from === '' ? '' : `${from} (swarmKey:)`}`);
  const allow = given.allow ?? file.allow;
  const authfile = given.authfile ?? file.authfile;
  return {
    data,
    swarmKey,
    listen: given.listen ?? file.listen ?? DEFAULT_LISTEN,
    ...(allow === undefined ? {} : { allow }),
    ...(authfile === undefined ? {} : { authfile }),
    logLevel: given.logLevel ?? file.logLevel ?? 'info',
    limitUpstream: given.limitUpstream ?? (file.limitUpstream === undefined ? undefined : parseRate(file.limitUpstream)),
    limitPeer: given.limitPeer ?? (file.limitPeer === undefined ? undefined : parseRate(file.limitPeer)),
    // Flags and file add up; a host named by both takes the flag's rate.
    limitRegistry: [
      ...new Map([
        ...Object.entries(file.limitRegistry ?? {}).map(([host, rate]) => [host.toLowerCase(), parseRate(rate)] as const),
        ...(given.limitRegistry ?? []).map((l) => [l.host, l.bytesPerSecond] as const),
      ]),
    ].map(([host, bytesPerSecond]) => ({ host, bytesPerSecond })),
    status: given.status ?? file.status,
  };
}

/**
 * `meshmirror agent [--config FILE] --data DIR --listen MULTIADDR --swarm-key FILE [--allow PEERID...]`:
 * runs until SIGINT/SIGTERM. Prints one line with its peer id and addresses on stdout for scripts and tests.
 */
export async function runAgentCommand(given: AgentFlags): Promise<number> {
  const flags = await agentSettings(given);
  const swarmKey = await readSwarmKeyFile(resolve(flags.swarmKey));
  const allowFrom = given.allow !== undefined || given.config === undefined ? '--allow' : `${given.config}: allow`;
  const allow = flags.allow === undefined ? undefined : new Set(flags.allow.map((id) => parsePeerId(id, allowFrom).toString()));
  const listenFrom = given.listen !== undefined || given.config === undefined ? '--listen' : `${given.config}: listen`;
  for (const address of flags.listen) checkListenAddress(address, listenFrom);
  const logger = createLogger({ level: flags.logLevel as LogLevel });
  const credentials = await loadCredentialStore({ ...(flags.authfile === undefined ? {} : { authfile: flags.authfile }) });
  const agent = await startAgentService({
    dataDir: resolve(flags.data),
    listen: flags.listen,
    swarmKey,
    allow,
    credentials,
    logger,
    ...(flags.limitUpstream === undefined ? {} : { limitUpstreamBytesPerSecond: flags.limitUpstream }),
    ...(flags.limitPeer === undefined ? {} : { limitPeerBytesPerSecond: flags.limitPeer }),
    registryLimits: flags.limitRegistry,
  });
  let status: { url: string; close(): Promise<void> } | undefined;
  try {
    if (flags.status !== undefined) {
      // prom-client is loaded only by agents that serve metrics.
      const { startAgentStatusServer } = await import('../../report/agent-status-server.ts');
      status = await startAgentStatusServer(flags.status, { counters: agent.counters, peerId: agent.peerId, storeDir: agent.store.dir, logger });
    }
  } catch (err) {
    await agent.stop();
    throw err;
  }
  // The status line first: scripts that wait for "listening on" then know both.
  if (status !== undefined) process.stdout.write(`agent ${agent.peerId} status at ${status.url}\n`);
  process.stdout.write(`agent ${agent.peerId} listening on ${agent.addresses.join(' ')}\n`);
  await new Promise<void>((done) => {
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  await status?.close();
  await agent.stop();
  return 0;
}
