/**
 * `meshmirror prune` against real runs: a coordinator cache that three configurations mirrored into
 * keeps only what its kept run uses (the files of `store/blobs/sha256` are exactly that run's
 * archive), reports what it freed, and the next runs fetch exactly what was removed; a prune beside
 * a running mirror or agent is refused and changes nothing; an agent's data folder loses what it did
 * not use within --older-than.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobStore } from '@meshmirror/agent';
import { digestHex, sha256Digest, silentLogger, type Digest } from '@meshmirror/shared';
import type { PruneSummary } from '../packages/coordinator/src/prune/prune-store.ts';
import type { MirrorSummary } from '../packages/coordinator/src/report/summaries.ts';
import { startAgent } from './support/agents.ts';
import { runMeshmirror, spawnMeshmirror, waitFor } from './support/cli.ts';
import { archiveContent, fixtureImages, mirrorArgs, startMirrorFixture, type MirrorFixture } from './support/mirror-fixture.ts';

const MiB = 1024 * 1024;
const DAY = 24 * 60 * 60 * 1000;
const IN_USE = /the store at .* is in use by a running meshmirror \(a mirror run or an agent\); stop it or prune later/;

/** The blob files of a store, with their sizes. */
async function storeFiles(store: string): Promise<Map<string, number>> {
  const dir = join(store, 'blobs', 'sha256');
  const names = await readdir(dir).catch(() => [] as string[]);
  return new Map(await Promise.all(names.map(async (n) => [n, (await stat(join(dir, n))).size] as const)));
}

const total = (files: Map<string, number>): number => [...files.values()].reduce((n, s) => n + s, 0);

describe('meshmirror prune', () => {
  let fx: MirrorFixture;
  beforeAll(async () => {
    fx = await startMirrorFixture(fixtureImages({ bigLayerBytes: 6 * MiB }));
  }, 60_000);
  afterAll(async () => {
    await fx?.close();
  });

  async function mirror(name: string, images: string[], cache: string, ...extra: string[]): Promise<MirrorSummary> {
    const config = await fx.writeConfig(`${name}.yaml`, { additionalImages: images.map((i) => fx.viaProxy(i)) });
    const result = await runMeshmirror(mirrorArgs(config, join(fx.dir, `out-${name}`), cache, ...extra));
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as MirrorSummary;
  }

  async function prune(...args: string[]): Promise<PruneSummary> {
    const result = await runMeshmirror(['prune', ...args, '--output', 'json']);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as PruneSummary;
  }

  it('keeps only what the kept run uses, reports what it freed, and the next runs fetch exactly what went', async () => {
    const cache = join(fx.dir, 'cache');
    const store = join(cache, 'store');
    // Three configurations that share the base layer (and sample/base itself, between a and c).
    const a = await mirror('a', ['sample/base:1.0', 'sample/app:1.0'], cache);
    const b = await mirror('b', ['sample/app:1.0', 'sample/docker:3.1'], cache);
    const c = await mirror('c', ['sample/base:1.0', 'sample/multi:2.0'], cache);
    expect(b.bytes.held).toBeGreaterThan(0);
    expect(c.bytes.held).toBeGreaterThan(0);
    const before = await storeFiles(store);
    const { blobs: keptByC } = await archiveContent(join(fx.dir, 'out-c'), join(fx.dir, 'layout-c'));
    expect(before.size).toBeGreaterThan(keptByC.length);

    // --older-than 0s: no run is kept for its age, only the most recent one (--keep-runs defaults to 1).
    const dry = await prune('--cache-dir', cache, '--older-than', '0s', '--dry-run');
    expect(dry.dryRun).toBe(true);
    expect(await storeFiles(store)).toEqual(before);

    const pruned = await prune('--cache-dir', cache, '--older-than', '0s');
    const after = await storeFiles(store);
    expect([...after.keys()].sort()).toEqual(keptByC);
    expect(pruned.runs?.kept.map((r) => r.runId)).toEqual([c.runId]);
    expect(pruned.runs?.kept[0]).toMatchObject({ why: 'most recent', state: 'complete', images: 2 });
    expect(pruned.runs?.removed.map((r) => r.runId).sort()).toEqual([a.runId, b.runId].sort());
    expect(pruned.blobs).toEqual({
      removed: { count: before.size - after.size, bytes: total(before) - total(after) },
      kept: { count: after.size, bytes: total(after) },
      unstamped: 0,
    });
    expect(pruned.freedBytes).toBe(total(before) - total(after));
    expect(pruned.partial.removed.count).toBe(0);
    // The dry run said the same, and took nothing away.
    expect({ ...dry, dryRun: false, usedSince: pruned.usedSince }).toEqual(pruned);
    expect(Date.parse(pruned.usedSince)).toBeLessThanOrEqual(Date.now());

    // The journal forgot the other runs: a second prune finds only c's.
    const again = await prune('--cache-dir', cache, '--older-than', '0s', '--dry-run');
    expect(again.runs).toEqual({ kept: pruned.runs!.kept, removed: [] });
    expect(again.blobs.removed.count).toBe(0);

    // The kept configuration fetches nothing; a pruned one fetches what it lost, and only that.
    fx.proxy.resetStats();
    const cAgain = await mirror('c', ['sample/base:1.0', 'sample/multi:2.0'], cache);
    expect(cAgain.bytes.fetched).toBe(0);
    expect(fx.proxy.stats().blobBodyBytes).toBe(0);
    fx.proxy.resetStats();
    const aAgain = await mirror('a', ['sample/base:1.0', 'sample/app:1.0'], cache);
    expect(aAgain.bytes.fetched).toBeGreaterThan(MiB);
    expect(aAgain.bytes.fetched).toBe(aAgain.bytes.toFetch);
    // The base layer, kept for c, is not fetched again.
    expect(aAgain.bytes.held).toBeGreaterThanOrEqual(2 * MiB);
    expect(fx.proxy.stats().blobBodyBytes).toBe(aAgain.bytes.fetched);
  });

  it('is refused while a mirror run has the cache open, and changes nothing', async () => {
    const cache = join(fx.dir, 'cache-busy');
    const store = join(cache, 'store');
    await mirror('busy-first', ['sample/base:1.0'], cache);
    const held = (await storeFiles(store)).size;
    const config = await fx.writeConfig('busy.yaml', { additionalImages: [fx.viaProxy('sample/big:1.0')] });
    // The big layer stalls after 1 MiB until --stall-timeout gives that request up and the retry completes it.
    fx.proxy.setRules([{ match: { method: 'GET', path: /\/v2\/sample\/big\/blobs\/sha256:/ }, fault: { kind: 'stall-after', bytes: MiB, ms: 30_000 } }]);
    fx.proxy.resetStats();
    const run = spawnMeshmirror([...mirrorArgs(config, join(fx.dir, 'out-busy'), cache), '--stall-timeout', '10s']);
    try {
      // Held in place: its manifest and config in the store, its layer stalled after 1 MiB.
      await waitFor(async () => fx.proxy.stats().blobBodyBytes >= MiB && (await storeFiles(store)).size === held + 2, 'the run to be stalled on the big layer');
      const before = await storeFiles(store);
      const partial = await readdir(join(store, 'partial'));
      for (const args of [['--older-than', '0s', '--keep-runs', '0'], ['--dry-run']]) {
        const refused = await runMeshmirror(['prune', '--cache-dir', cache, ...args]);
        expect(refused.code, refused.stderr).toBe(4);
        expect(refused.stderr).toMatch(IN_USE);
        expect(refused.stderr).toContain(cache);
        expect(refused.stdout).toBe('');
      }
      expect(await storeFiles(store)).toEqual(before);
      expect(await readdir(join(store, 'partial'))).toEqual(partial);
    } finally {
      fx.proxy.setRules([]);
    }
    const result = await run.result;
    expect(result.code, result.stderr).toBe(0);
    // Once the run is over, the same prune goes ahead: everything is older than the moment it runs.
    const emptied = await prune('--cache-dir', cache, '--older-than', '0s', '--keep-runs', '0');
    expect(emptied.runs?.removed).toHaveLength(2);
    expect(emptied.blobs.kept.count).toBe(0);
    expect(await storeFiles(store)).toEqual(new Map());
  });

  it("prunes an agent's data folder by age, and refuses while the agent runs on it", async () => {
    const data = join(fx.dir, 'agent-data');
    const storeDir = join(data, 'store');
    const now = Date.now();
    const longAgo = now - 40 * DAY;
    // Written 40 days ago by the store's clock: one blob never used since, one read today.
    let store = createBlobStore({ dir: storeDir, logger: silentLogger(), now: () => longAgo });
    await store.open();
    const blob = async (size: number): Promise<Digest> => {
      const bytes = randomBytes(size);
      const digest = sha256Digest(bytes);
      await store.putBlob(digest, bytes);
      return digest;
    };
    const unused = await blob(300_000);
    const servedToday = await blob(200_000);
    const partialBytes = randomBytes(100_000);
    const stale = await store.openPiece({ digest: sha256Digest(partialBytes), blobSize: 100_000, offset: 0, length: 100_000 });
    await stale.write(partialBytes.subarray(0, 60_000));
    await stale.close();
    await store.close();
    await utimes(join(storeDir, 'partial', digestHex(sha256Digest(partialBytes))), new Date(longAgo), new Date(longAgo));
    store = createBlobStore({ dir: storeDir, logger: silentLogger() });
    await store.open();
    const fresh = await blob(100_000);
    (await store.openBlob(servedToday)).destroy();
    await store.close();

    const keyFile = join(fx.dir, 'agent-swarm.key');
    expect((await runMeshmirror(['keygen', '--swarm-key', keyFile])).code).toBe(0);
    const agent = await startAgent({ data, swarmKey: keyFile });
    try {
      const refused = await runMeshmirror(['prune', '--data', data]);
      expect(refused.code, refused.stderr).toBe(4);
      expect(refused.stderr).toMatch(IN_USE);
    } finally {
      await agent.stop();
    }

    const dry = await prune('--data', data, '--older-than', '30d', '--dry-run');
    expect((await storeFiles(storeDir)).size).toBe(3);
    const pruned = await prune('--data', data, '--older-than', '30d');
    expect({ ...dry, dryRun: false, usedSince: pruned.usedSince }).toEqual(pruned);
    expect(pruned).toMatchObject({
      kind: 'agent',
      blobs: { removed: { count: 1, bytes: 300_000 }, kept: { count: 2, bytes: 300_000 }, unstamped: 0 },
      partial: { removed: { count: 1 }, kept: { count: 0, bytes: 0 } },
    });
    expect(pruned.runs).toBeUndefined();
    expect(pruned.freedBytes).toBe(300_000 + pruned.partial.removed.bytes);
    expect([...(await storeFiles(storeDir)).keys()].sort()).toEqual([servedToday, fresh].map(digestHex).sort());
    expect(await readdir(join(storeDir, 'partial'))).toEqual([]);
    expect(unused).not.toBe(fresh);

    // An agent has no runs: --keep-runs is refused, as is a coordinator cache given as --data.
    const keepRuns = await runMeshmirror(['prune', '--data', data, '--keep-runs', '2']);
    expect(keepRuns.code).toBe(2);
    expect(keepRuns.stderr).toContain('--keep-runs is for --cache-dir');
    const cacheDir = join(fx.dir, 'a-cache');
    await mkdir(join(cacheDir, 'journal'), { recursive: true });
    await mkdir(join(cacheDir, 'store'), { recursive: true });
    const cacheAsData = await runMeshmirror(['prune', '--data', cacheDir]);
    expect(cacheAsData.code).toBe(2);
    expect(cacheAsData.stderr).toContain('it is a coordinator');
  });
});
