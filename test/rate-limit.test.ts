/**
 * `--limit-upstream`: a host takes no more than its limit from the registries, on one host (`mirror`)
 * and on a farm agent (`agent --limit-upstream`, here from its config file). The rate is measured over
 * the whole command, start-up included, so it can only come out below the true transfer rate: the
 * assertion that it never exceeds the limit is strict, the one that the limit is used loose.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheWithIdentity, farmKeys, startAgent } from './support/agents.ts';
import { runMeshmirror } from './support/cli.ts';
import { mirrorArgs, startMirrorFixture, type MirrorFixture } from './support/mirror-fixture.ts';

const MiB = 1024 * 1024;
const LIMIT = 4 * MiB;

describe('--limit-upstream', () => {
  let fx: MirrorFixture;
  let config: string;
  beforeAll(async () => {
    fx = await startMirrorFixture();
    config = await fx.writeConfig('limit.yaml', { additionalImages: fx.pushed.map((p) => fx.viaProxy(p.name)) });
  }, 60_000);
  afterAll(async () => {
    await fx?.close();
  });

  /** Runs `args`, returns upstream bytes over wall time, and prints the figure. */
  const measured = async (what: string, args: string[]): Promise<number> => {
    fx.proxy.resetStats();
    const started = performance.now();
    const result = await runMeshmirror(args);
    const seconds = (performance.now() - started) / 1000;
    expect(result.code, result.stderr).toBe(0);
    const bytes = fx.proxy.stats().blobBodyBytes;
    expect(bytes).toBeGreaterThanOrEqual(fx.uniqueBlobBytes);
    const rate = bytes / seconds;
    console.log(
      `--limit-upstream 4MiB/s, ${what}: ${(bytes / MiB).toFixed(1)} MiB in ${seconds.toFixed(2)} s = ${(rate / MiB).toFixed(2)} MiB/s (${((rate / LIMIT) * 100).toFixed(1)}% of the limit)`,
    );
    return rate;
  };

  it('holds one host to its limit', async () => {
    const rate = await measured('one host', [...mirrorArgs(config, join(fx.dir, 'out-one'), join(fx.dir, 'cache-one')), '--limit-upstream', '4MiB/s']);
    expect(rate).toBeLessThanOrEqual(LIMIT * 1.02);
    expect(rate).toBeGreaterThan(LIMIT * 0.6);
  }, 120_000);

  it('holds a farm agent to the limit in its config file', async () => {
    const keys = await farmKeys(fx.dir);
    const etc = join(fx.dir, 'agent-etc');
    await mkdir(etc, { recursive: true });
    await writeFile(
      join(etc, 'agent.yaml'),
      `data: ${join(fx.dir, 'agent-data')}\nswarmKey: ${keys.keyFile}\nallow: [${keys.coordinatorId}]\nlimitUpstream: 32Mibit/s\n`,
    );
    const agent = await startAgent({ config: join(etc, 'agent.yaml') });
    try {
      const cache = await cacheWithIdentity(keys.identityDir, join(fx.dir, 'cache-farm'));
      const rate = await measured('a farm of one agent', [
        ...mirrorArgs(config, join(fx.dir, 'out-farm'), cache),
        '--swarm-key',
        keys.keyFile,
        '--agents',
        agent.addresses[0] ?? '',
      ]);
      expect(rate).toBeLessThanOrEqual(LIMIT * 1.02);
      expect(rate).toBeGreaterThan(LIMIT * 0.6);
    } finally {
      await agent.stop();
    }
  }, 120_000);
});
