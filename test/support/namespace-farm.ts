/**
 * A farm of separate hosts on one machine (root only; see netns.ts): a "registry" host with the real
 * `docker-registry`, a "coordinator" host and N agent hosts, each farm host with a WAN uplink to the
 * registry shaped by `tc` and a LAN link to the others. The image set is pushed into the registry's
 * storage on loopback first, then that storage is served from inside the registry host.
 *
 * Upstream bytes are read from the registry's own access log, per client address, so they count
 * what each host took over its uplink independently of meshmirror's report.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSampleLayout, type SampleImage } from '../../packages/coordinator/src/demo/sample-image-set.ts';
import { cacheWithIdentity, startAgent, type RunningAgent } from './agents.ts';
import { runMeshmirror } from './cli.ts';
import { buildNetwork, type NetHost, type Network } from './netns.ts';
import { pushLayout, type PushedImage } from './push-layout.ts';
import { blobBytesServed, startRegistry, type RunningRegistry } from './registry.ts';

export interface NamespaceFarmOptions {
  images: SampleImage[];
  /** One entry per agent host: its WAN rate in Mbit/s (undefined: an unshaped link). */
  agentMbit: Array<number | undefined>;
  /** The coordinator host's WAN rate (it resolves manifests, and fetches blobs when alone); undefined: unshaped. */
  coordinatorMbit: number | undefined;
}

export interface NamespaceFarm {
  dir: string;
  network: Network;
  registry: RunningRegistry;
  pushed: PushedImage[];
  /** Unique layer and config bytes of the set (manifests excluded). */
  uniqueBlobBytes: number;
  coordinator: NetHost;
  agentHosts: NetHost[];
  keyFile: string;
  coordinatorId: string;
  /** `REGISTRY/name` as the farm hosts reach it. */
  ref(name: string): string;
  /**
   * Starts one agent on each of the first `count` agent hosts (all by default), each with a fresh
   * store under `dir/<prefix>-<n>`, with `extraArgs` after the usual flags.
   */
  startAgents(prefix: string, count?: number, extraArgs?: string[]): Promise<RunningAgent[]>;
  /** A coordinator cache folder holding the identity the agents admit. */
  coordinatorCache(name: string): Promise<string>;
  /** Blob bytes the registry has served so far, per host address. */
  upstream(): Promise<Map<string, number>>;
  close(): Promise<void>;
}

export async function startNamespaceFarm(options: NamespaceFarmOptions): Promise<NamespaceFarm> {
  const dir = await mkdtemp(join(tmpdir(), 'meshmirror-netns-'));
  const running: RunningAgent[] = [];
  let network: Network | undefined;
  let registry: RunningRegistry | undefined;
  const close = async (): Promise<void> => {
    await Promise.all(running.splice(0).map((a) => a.stop()));
    await registry?.stop();
    await network?.destroy();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const storageDir = join(dir, 'registry-storage');
    const layout = await writeSampleLayout(join(dir, 'source-layout'), options.images);
    const loading = await startRegistry({ storageDir });
    let pushed: PushedImage[];
    try {
      pushed = await pushLayout(join(dir, 'source-layout'), loading.url);
    } finally {
      await loading.stop();
    }
    await rm(join(dir, 'source-layout'), { recursive: true, force: true });

    network = await buildNetwork([
      { name: 'registry' },
      { name: 'coordinator', ...(options.coordinatorMbit === undefined ? {} : { wanMbit: options.coordinatorMbit }), lan: true },
      ...options.agentMbit.map((wanMbit, i) => ({ name: `agent-${i + 1}`, ...(wanMbit === undefined ? {} : { wanMbit }), lan: true })),
    ]);
    const registryHost = network.host('registry');
    registry = await startRegistry({ storageDir, netns: { ns: registryHost.ns, address: registryHost.wanAddress } });
    const agentHosts = options.agentMbit.map((_, i) => network!.host(`agent-${i + 1}`));

    const keyFile = join(dir, 'swarm.key');
    const keygen = await runMeshmirror(['keygen', '--swarm-key', keyFile]);
    if (keygen.code !== 0) throw new Error(`keygen failed: ${keygen.stderr}`);
    const identityDir = join(dir, 'identity');
    const identity = await runMeshmirror(['identity', '--cache-dir', identityDir]);
    if (identity.code !== 0) throw new Error(`identity failed: ${identity.stderr}`);
    const coordinatorId = identity.stdout.trim();
    const registryAddress = registry.host;

    return {
      dir,
      network,
      registry,
      pushed,
      uniqueBlobBytes: layout.uniqueBytes - layout.manifestBytes,
      coordinator: network.host('coordinator'),
      agentHosts,
      keyFile,
      coordinatorId,
      ref: (name) => `${registryAddress}/${name}`,
      async startAgents(prefix, count = agentHosts.length, extraArgs) {
        const agents = await Promise.all(
          agentHosts.slice(0, count).map((host, i) =>
            startAgent({
              host,
              data: join(dir, `${prefix}-${i + 1}`),
              swarmKey: keyFile,
              allow: [coordinatorId],
              listen: `/ip4/${host.lanAddress}/tcp/4001`,
              logLevel: 'info',
              ...(extraArgs === undefined ? {} : { extraArgs }),
            }),
          ),
        );
        running.push(...agents);
        return agents;
      },
      coordinatorCache: (name) => cacheWithIdentity(identityDir, join(dir, name)),
      upstream: () => blobBytesServed(registry!.logFile),
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Blob bytes served between two readings of `upstream()`, per address. */
export function servedBetween(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const served = new Map<string, number>();
  for (const [address, bytes] of after) served.set(address, bytes - (before.get(address) ?? 0));
  return served;
}
