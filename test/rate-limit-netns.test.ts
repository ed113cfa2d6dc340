/**
 * Rate limits on separate hosts (root only): a registry host and a farm agent host in network
 * namespaces, their links left unshaped, so only meshmirror's own limits slow the transfer. The
 * agent's `--status` counters are sampled while it works, and the rate over the steady part (from
 * its first byte to its last) must be within a few percent of the limit:
 *
 * - `--limit-registry HOST=RATE`: what the agent takes from that registry.
 * - `--limit-peer RATE`: what the agent serves to the coordinator's writer over the mesh.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningAgent } from './support/agents.ts';
import { runMeshmirror } from './support/cli.ts';
import { fixtureImages, mirrorArgs, writeImageSetConfig } from './support/mirror-fixture.ts';
import { startNamespaceFarm, type NamespaceFarm } from './support/namespace-farm.ts';
import { canBuildNetworks } from './support/netns.ts';

const MiB = 1024 * 1024;
const LIMIT = 4 * MiB;

const enabled = await canBuildNetworks();
if (!enabled) console.warn('rate-limit-netns: skipped (needs root with ip netns and tc)');

interface Sample {
  at: number;
  bytes: number;
}

/**
 * Samples `read` every 100 ms until `done` settles; the rate between the first sample that moved
 * and the first that reached the final count.
 */
async function sampledRate(read: () => Promise<number>, done: Promise<unknown>): Promise<{ rate: number; bytes: number; seconds: number }> {
  const samples: Sample[] = [];
  let finished = false;
  void done.finally(() => (finished = true));
  while (!finished) {
    samples.push({ at: performance.now(), bytes: await read() });
    await Promise.race([done, new Promise((r) => setTimeout(r, 100))]).catch(() => undefined);
  }
  samples.push({ at: performance.now(), bytes: await read() });
  const final = samples.at(-1)!.bytes;
  // The last sample before the first byte, and the first that saw every byte.
  const firstMoved = samples.findIndex((s) => s.bytes > 0);
  const start = samples[Math.max(0, firstMoved - 1)]!;
  const end = samples.find((s) => s.bytes === final)!;
  const seconds = (end.at - start.at) / 1000;
  return { rate: (end.bytes - start.bytes) / seconds, bytes: end.bytes - start.bytes, seconds };
}

describe.skipIf(!enabled)('rate limits on unshaped links between hosts', () => {
  let farm: NamespaceFarm;
  let config: string;

  beforeAll(async () => {
    farm = await startNamespaceFarm({ images: fixtureImages({ bigLayerBytes: 16 * MiB }), agentMbit: [undefined], coordinatorMbit: undefined });
    config = await writeImageSetConfig(join(farm.dir, 'limits.yaml'), { additionalImages: farm.pushed.map((p) => farm.ref(p.name)) });
  }, 120_000);
  afterAll(async () => {
    await farm?.close();
  });

  const agentJson = async (agent: RunningAgent): Promise<{ upstreamBytes: Record<string, number>; servedBytes: Record<string, number> }> => {
    const text = await farm.coordinator.run('curl', ['-sf', `${agent.statusUrl}/api/agent`]);
    return JSON.parse(text) as { upstreamBytes: Record<string, number>; servedBytes: Record<string, number> };
  };
  const total = (record: Record<string, number>): number => Object.values(record).reduce((a, b) => a + b, 0);

  const farmRun = async (name: string, agentArgs: string[]): Promise<{ agent: RunningAgent; run: Promise<{ code: number | null; stderr: string }> }> => {
    const [agent] = await farm.startAgents(name, 1, [...agentArgs, '--status', `${farm.agentHosts[0]!.lanAddress}:9465`]);
    const cache = await farm.coordinatorCache(`${name}-cache`);
    const run = runMeshmirror(
      [...mirrorArgs(config, join(farm.dir, `${name}-out`), cache, '--piece-size', '4MiB'), '--swarm-key', farm.keyFile, '--agents', agent!.addresses[0] ?? ''],
      { host: farm.coordinator },
    );
    return { agent: agent!, run };
  };

  const check = (what: string, measured: { rate: number; bytes: number; seconds: number }): void => {
    console.log(
      `rate-limit-netns: ${what}: ${(measured.bytes / MiB).toFixed(1)} MiB in ${measured.seconds.toFixed(2)} s = ${(measured.rate / MiB).toFixed(2)} MiB/s (${((measured.rate / LIMIT) * 100).toFixed(1)}% of the 4 MiB/s limit)`,
    );
    expect(measured.bytes).toBeGreaterThanOrEqual(farm.uniqueBlobBytes);
    expect(measured.rate).toBeLessThanOrEqual(LIMIT * 1.03);
    // Loose below (a busy machine can fall short of the limit), strict above.
    expect(measured.rate).toBeGreaterThanOrEqual(LIMIT * 0.85);
  };

  it('--limit-registry holds what an agent takes from that registry', async () => {
    const registry = farm.ref('x').slice(0, -2);
    const { agent, run } = await farmRun('by-registry', ['--limit-registry', `${registry}=4MiB/s`]);
    const measured = await sampledRate(async () => total((await agentJson(agent)).upstreamBytes), run).finally(() => agent.stop());
    const result = await run;
    expect(result.code, result.stderr).toBe(0);
    check(`--limit-registry ${registry}=4MiB/s, upstream`, measured);
  }, 120_000);

  it('--limit-peer holds what an agent serves over the mesh', async () => {
    const { agent, run } = await farmRun('by-peer', ['--limit-peer', '4MiB/s']);
    const measured = await sampledRate(async () => total((await agentJson(agent)).servedBytes), run).finally(() => agent.stop());
    const result = await run;
    expect(result.code, result.stderr).toBe(0);
    check('--limit-peer 4MiB/s, served to the writer', measured);
  }, 120_000);
});
