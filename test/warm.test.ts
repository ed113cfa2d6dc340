/**
 * `meshmirror warm`: a real farm of two agents fills its stores from a real registry (behind the
 * counting proxy) and writes nothing; the mirror that follows with the same agents takes every blob
 * from the farm (no blob byte crosses the proxy), a second warm fetches nothing, and an image that
 * cannot be had fails alone, by name, with the partial exit code.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WarmSummary } from '../packages/coordinator/src/report/summaries.ts';
import { cacheWithIdentity, farmKeys, startAgent, type RunningAgent } from './support/agents.ts';
import { runMeshmirror } from './support/cli.ts';
import { mirrorArgs, startMirrorFixture, type MirrorFixture } from './support/mirror-fixture.ts';

describe('meshmirror warm', () => {
  let fx: MirrorFixture;
  let keys: Awaited<ReturnType<typeof farmKeys>>;
  let agents: RunningAgent[] = [];
  let farmFlags: string[];
  beforeAll(async () => {
    fx = await startMirrorFixture();
    keys = await farmKeys(fx.dir);
    agents = await Promise.all(['a', 'b'].map((n) => startAgent({ data: join(fx.dir, `agent-${n}`), swarmKey: keys.keyFile, allow: [keys.coordinatorId] })));
    farmFlags = ['--swarm-key', keys.keyFile, '--agents', agents.map((a) => a.addresses[0] ?? '').join(',')];
  }, 60_000);
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await fx?.close();
  });

  const warm = (config: string, cache: string, ...extra: string[]) =>
    runMeshmirror(['warm', '-c', config, '--cache-dir', cache, '--src-tls-verify=false', '--output', 'json', ...farmFlags, ...extra]);

  it('fills the farm, after which a mirror fetches nothing upstream', async () => {
    const names = fx.pushed.map((p) => p.name);
    const config = await fx.writeConfig('warm.yaml', { additionalImages: names.map((n) => fx.viaProxy(n)) });
    const cache = await cacheWithIdentity(keys.identityDir, join(fx.dir, 'cache'));
    fx.proxy.resetStats();
    const warmed = await warm(config, cache);
    expect(warmed.code, warmed.stderr).toBe(0);
    const summary = JSON.parse(warmed.stdout) as WarmSummary;
    expect(summary.mode).toBe('warm');
    expect(summary.images).toEqual({ requested: names.length, warmed: names.length, failed: 0 });
    expect(summary.bytes.inFarm).toBe(0);
    expect(summary.bytes.fetched).toBe(fx.uniqueBlobBytes);
    // Each blob crossed the upstream link once, spread over both agents.
    expect(fx.proxy.stats().blobBodyBytes).toBe(fx.uniqueBlobBytes);
    expect(summary.agents.map((a) => a.upstreamBytes).reduce((x, y) => x + y, 0)).toBe(fx.uniqueBlobBytes);
    expect(summary.agents.every((a) => a.upstreamBytes > 0)).toBe(true);
    // Nothing written beside the cache: warm has no destination.
    expect((await readdir(fx.dir)).filter((n) => n.startsWith('out'))).toEqual([]);

    // The mirror with the same agents: every blob comes from the farm.
    fx.proxy.resetStats();
    const mirrored = await runMeshmirror([...mirrorArgs(config, join(fx.dir, 'out'), cache), ...farmFlags]);
    expect(mirrored.code, mirrored.stderr).toBe(0);
    const mirror = JSON.parse(mirrored.stdout) as { images: { archived: number }; bytes: { fetched: number; pulled: number } };
    expect(mirror.images.archived).toBe(names.length);
    expect(mirror.bytes.fetched).toBe(0);
    expect(mirror.bytes.pulled).toBe(fx.uniqueBlobBytes);
    expect(fx.proxy.stats().blobBodyBytes).toBe(0);

    // Warm again: the farm holds everything.
    fx.proxy.resetStats();
    const again = await warm(config, cache);
    expect(again.code, again.stderr).toBe(0);
    const second = JSON.parse(again.stdout) as WarmSummary;
    expect(second.bytes.inFarm).toBe(fx.uniqueBlobBytes);
    expect(second.blobs.inFarm).toBe(second.blobs.unique);
    expect(second.bytes.fetched).toBe(0);
    expect(fx.proxy.stats().blobBodyBytes).toBe(0);
  }, 180_000);

  it('fails an image that cannot be had by name, and warms the others', async () => {
    const config = await fx.writeConfig('warm-missing.yaml', { additionalImages: [fx.viaProxy('sample/base:1.0'), fx.viaProxy('sample/missing:9.9')] });
    const cache = await cacheWithIdentity(keys.identityDir, join(fx.dir, 'cache-missing'));
    const result = await warm(config, cache);
    // 64 + 4: an additional image failed.
    expect(result.code, result.stderr).toBe(68);
    const summary = JSON.parse(result.stdout) as WarmSummary;
    expect(summary.images).toEqual({ requested: 2, warmed: 1, failed: 1 });
    const failed = summary.outcomes.find((o) => o.state === 'failed')!;
    expect(failed.source).toContain('sample/missing:9.9');
    const text = await runMeshmirror(['warm', '-c', config, '--cache-dir', cache, '--src-tls-verify=false', ...farmFlags]);
    expect(text.stdout).toContain('failed: ');
    expect(text.stdout).toContain('sample/missing:9.9');
  }, 120_000);

  it('refuses to run without a farm, saying how to give one', async () => {
    const config = await fx.writeConfig('warm-alone.yaml', { additionalImages: [fx.viaProxy('sample/base:1.0')] });
    const result = await runMeshmirror(['warm', '-c', config, '--cache-dir', join(fx.dir, 'cache-alone')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--agents');
  });
});
