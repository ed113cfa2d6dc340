/**
 * The soak's farm: a real docker-registry with the soak's image set pushed into it, the fault proxy
 * in front, three `meshmirror agent` processes held to a rate each, and the `mirror` command that
 * points a coordinator at them. Everything lives in one work folder.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeSampleLayout } from '../../packages/coordinator/src/demo/sample-image-set.ts';
import { cacheWithIdentity, farmKeys, startAgent, type RunningAgent } from '../support/agents.ts';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.ts';
import { mirrorArgs, writeImageSetConfig } from '../support/mirror-fixture.ts';
import { pushLayout, type PushedImage } from '../support/push-layout.ts';
import { startRegistry, type RunningRegistry } from '../support/registry.ts';
import { soakImages } from './soak-set.ts';

export const AGENTS = ['agent-a', 'agent-b', 'agent-c'] as const;

export interface SoakFarmOptions {
  dir: string;
  /** Distinct layer bytes of the image set, at least. */
  layerBytes: number;
  /** Each agent's `--limit-upstream`. */
  rate: string;
  logLevel: string;
}

export interface SoakFarm {
  proxy: FaultProxy;
  pushed: PushedImage[];
  /** Bytes of the set's distinct layers and configs: what a mirror fetches at least. */
  uniqueBytes: number;
  uniqueBlobs: number;
  agents: RunningAgent[];
  /** Agent `i` again, on the port and with the store it had. */
  restartAgent(i: number): Promise<RunningAgent>;
  /** The `meshmirror mirror` arguments of the run: to disk in `out`, through the agents. */
  mirrorArgs: string[];
  out: string;
  /** Every process's log goes here. */
  logDir: string;
  stop(): Promise<void>;
}

export async function startSoakFarm(options: SoakFarmOptions): Promise<SoakFarm> {
  const { dir } = options;
  const agents: RunningAgent[] = [];
  let registry: RunningRegistry | undefined;
  let proxy: FaultProxy | undefined;
  const stop = async (): Promise<void> => {
    await Promise.all(agents.map((a) => a.stop()));
    await proxy?.close();
    await registry?.stop();
  };
  try {
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.url);
    const layout = join(dir, 'source-layout');
    const written = await writeSampleLayout(layout, soakImages(options.layerBytes));
    const pushed = await pushLayout(layout, registry.url);
    await rm(layout, { recursive: true, force: true });

    const { keyFile, identityDir, coordinatorId } = await farmKeys(dir);
    const listenOf: string[] = [];
    const startOne = (i: number): Promise<RunningAgent> =>
      startAgent({
        data: join(dir, AGENTS[i]!),
        swarmKey: keyFile,
        allow: [coordinatorId],
        listen: listenOf[i] ?? '/ip4/127.0.0.1/tcp/0',
        logLevel: options.logLevel,
        extraArgs: ['--status', '127.0.0.1:0', '--limit-upstream', options.rate],
      });
    for (let i = 0; i < AGENTS.length; i += 1) {
      const agent = await startOne(i);
      agents.push(agent);
      // Started again, it listens where the coordinator's --agents says it is.
      listenOf[i] = agent.addresses[0]!.replace(/\/p2p\/.*$/, '');
    }
    const cache = await cacheWithIdentity(identityDir, join(dir, 'cache'));
    const out = join(dir, 'out');
    const logDir = join(dir, 'logs');
    await mkdir(logDir);
    const proxyHost = proxy.host;
    const config = await writeImageSetConfig(join(dir, 'soak.yaml'), { additionalImages: pushed.map((p) => `${proxyHost}/${p.name}`), archiveSize: 0.25 });
    return {
      proxy,
      pushed,
      uniqueBytes: written.uniqueBytes - written.manifestBytes,
      uniqueBlobs: written.uniqueBlobs - written.images.length,
      agents,
      restartAgent: startOne,
      // 8 MiB pieces: the large layers are several pieces each, resumed and moved between agents.
      mirrorArgs: [
        ...mirrorArgs(config, out, cache, '--piece-size', '8MiB', '--stall-timeout', '5s', '--log-level', options.logLevel),
        '--swarm-key',
        keyFile,
        '--agents',
        agents.map((a) => a.addresses[0]).join(','),
      ],
      out,
      logDir,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
