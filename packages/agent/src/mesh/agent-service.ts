/**
 * `meshmirror agent`: a long-lived service on one host of a farm. It keeps a blob store and a peer
 * identity in its data folder, listens on the mesh, and serves the blobs it holds to admitted peers.
 */
import type { Libp2p } from '@libp2p/interface';
import { join } from 'node:path';
import {
  createRegistryClient,
  HostBackoff,
  retryPolicyFromSettings,
  type Agent,
  type CredentialStore,
  type FetchSettings,
  type HttpRegistryClient,
  type Logger,
  type PushSettings,
  type RetryPolicy,
  type SwarmKey,
} from '@meshmirror/shared';
import { createInProcessAgent, type InProcessAgentOptions } from '../in-process-agent.ts';
import { createRateLimiter, registryLimiters } from '../fetch/rate-limiter.ts';
import { createBlobStore, type BlobStore } from '../store/blob-store.ts';
import { AgentCounters } from './agent-counters.ts';
import { serveBlobs } from './blob-protocol.ts';
import { serveControl } from './control-protocol.ts';
import { loadOrCreateIdentity } from './identity.ts';
import { startMeshNode } from './node.ts';

export interface AgentServiceOptions {
  dataDir: string;
  listen: string[];
  swarmKey: SwarmKey;
  /** Admitted peer ids; undefined admits every peer holding the swarm key. */
  allow: ReadonlySet<string> | undefined;
  /** This host's registry credentials: they never travel over the mesh. */
  credentials: CredentialStore;
  /** `--limit-upstream`: this host's ceiling on bytes per second from registries, over all its fetches. */
  limitUpstreamBytesPerSecond?: number;
  /** `--limit-registry`: ceilings for single registries, by host (under the upstream one). */
  registryLimits?: ReadonlyArray<{ host: string; bytesPerSecond: number }>;
  /** `--limit-peer`: this host's ceiling on bytes it serves over the mesh. */
  limitPeerBytesPerSecond?: number;
  logger: Logger;
}

export interface RunningAgentService {
  peerId: string;
  /** Dialable addresses, each ending in `/p2p/<peer id>`. */
  addresses: string[];
  store: BlobStore;
  node: Libp2p;
  /** What it has fetched, served and pushed since it started (its `--status` metrics). */
  counters: AgentCounters;
  stop(): Promise<void>;
}

export async function startAgentService(options: AgentServiceOptions): Promise<RunningAgentService> {
  const { logger } = options;
  const identity = await loadOrCreateIdentity(options.dataDir);
  const store = createBlobStore({ dir: join(options.dataDir, 'store'), logger: logger.child({ component: 'store' }) });
  await store.open();
  let node: Libp2p;
  try {
    node = await startMeshNode({ identity, swarmKey: options.swarmKey, listen: options.listen, allow: options.allow, logger: logger.child({ component: 'mesh' }) });
  } catch (err) {
    await store.close();
    throw err;
  }
  const counters = new AgentCounters();
  await serveBlobs(node, {
    source: store,
    logger: logger.child({ component: 'blob-server' }),
    onServed: (peer, bytes) => counters.noteServed(peer, bytes),
    ...(options.limitPeerBytesPerSecond === undefined ? {} : { throttle: createRateLimiter(options.limitPeerBytesPerSecond) }),
  });
  // One agent per distinct set of transfer settings the coordinator sends (fetching or pushing),
  // all over the one store. Each reads this host's credentials, which never travel over the mesh.
  const backoff = new HostBackoff(retryPolicyFromSettings({ retryDelayMs: 0 }));
  const upstreamLimit = options.limitUpstreamBytesPerSecond === undefined ? undefined : createRateLimiter(options.limitUpstreamBytesPerSecond);
  const registryLimits = registryLimiters(options.registryLimits);
  const workers = new Map<string, { agent: Agent; client: HttpRegistryClient }>();
  const workerFor = (
    settings: FetchSettings | PushSettings,
    make: (common: { client: HttpRegistryClient; retry: RetryPolicy; backoff: HostBackoff }) => Partial<InProcessAgentOptions>,
  ): Agent => {
    const key = JSON.stringify(settings);
    const known = workers.get(key);
    if (known !== undefined) return known.agent;
    const retry = retryPolicyFromSettings({ ...settings, imageTimeoutMs: settings.noProgressTimeoutMs });
    const client = createRegistryClient({
      credentials: options.credentials,
      tlsVerify: settings.tlsVerify,
      connectTimeoutMs: settings.connectTimeoutMs,
      headersTimeoutMs: settings.headersTimeoutMs,
      stallTimeoutMs: settings.stallTimeoutMs,
      retry,
      backoff,
      logger: logger.child({ component: 'registry' }),
    });
    const common = { client, retry, backoff };
    const agent = counters.metered(
      createInProcessAgent({
        name: identity.peerId.toString(),
        store,
        parallelLayers: 1,
        logger,
        ...(upstreamLimit === undefined ? {} : { upstreamLimit }),
        ...(registryLimits === undefined ? {} : { registryLimits }),
        ...common,
        ...make(common),
      }),
    );
    workers.set(key, { agent, client });
    return agent;
  };
  const fetcherFor = (settings: FetchSettings): Agent => workerFor(settings, () => ({ parallelLayers: settings.parallel }));
  const pusherFor = (settings: PushSettings): Agent =>
    // Fetch and push settings never serialise alike (their fields differ), so they never share an agent.
    workerFor(settings, ({ client, retry, backoff: hostBackoff }) => ({
      push: { client, chunkBytes: settings.chunkBytes, stallTimeoutMs: settings.stallTimeoutMs, retry, backoff: hostBackoff },
    }));
  await serveControl(node, { store, fetcherFor, pusherFor, logger: logger.child({ component: 'control' }) });
  const addresses = node.getMultiaddrs().map((address) => address.toString());
  logger.info(
    {
      peer: identity.peerId.toString(),
      addresses,
      swarmKeyFingerprint: options.swarmKey.fingerprint(),
      allow: options.allow === undefined ? 'every peer with the swarm key' : [...options.allow],
      newIdentity: identity.created,
    },
    'agent started',
  );
  if (options.allow === undefined) logger.warn('no --allow given: every peer holding the swarm key is admitted');
  return {
    peerId: identity.peerId.toString(),
    addresses,
    store,
    node,
    counters,
    async stop() {
      await node.stop();
      for (const { client } of workers.values()) await client.close();
      await store.close();
    },
  };
}
