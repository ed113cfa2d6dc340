import { statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMeshmirror, spawnMeshmirror, waitFor } from './support/cli.ts';
import { extractChunks, mirrorArgs, startMirrorFixture, type MirrorFixture } from './support/mirror-fixture.ts';
import { pushLayout } from './support/push-layout.ts';
import { skopeoInspectDigest } from './support/skopeo.ts';
import { flipByte } from './support/flip-byte.ts';

const MiB = 1024 * 1024;

describe('mirror to disk survives the oc-mirror failure report', () => {
  let fx: MirrorFixture;
  beforeAll(async () => {
    fx = await startMirrorFixture();
  });
  afterAll(async () => {
    await fx?.close();
  });

  const args = (config: string, out: string, cache: string, ...extra: string[]): string[] => mirrorArgs(config, out, cache, '--retry-delay', '50ms', ...extra);

  it('resets, stalls, 500 bursts, 429 with Retry-After, truncation and a 200 to a Range: resumes, not restarts', async () => {
    const names = fx.pushed.map((p) => fx.viaProxy(p.name));
    const config = await fx.writeConfig('faults.yaml', { additionalImages: names });
    const blobPath = /\/v2\/sample\/big\/blobs\/sha256:/;
    const anyBlob = /\/v2\/sample\/(app|docker|multi)\/blobs\/sha256:/;
    fx.proxy.resetStats();
    fx.proxy.setRules([
      { match: { method: 'GET', path: blobPath }, fault: { kind: 'reset-after', bytes: 5 * MiB }, times: 2 },
      { match: { method: 'GET', path: blobPath }, fault: { kind: 'stall-after', bytes: 3 * MiB, ms: 60_000 }, times: 1 },
      { match: { method: 'GET', path: blobPath }, fault: { kind: 'truncate-after', bytes: 2 * MiB }, times: 1 },
      { match: { method: 'GET', path: anyBlob }, fault: { kind: 'status', status: 500, body: 'boom' }, times: 3 },
      { match: { method: 'GET', path: anyBlob }, fault: { kind: 'status', status: 429, headers: { 'Retry-After': '1' } }, times: 1 },
      { match: { method: 'GET', path: /\/v2\/sample\/base\/blobs\/sha256:/ }, fault: { kind: 'ignore-range' }, times: 1 },
    ]);
    const out = join(fx.dir, 'out-faults');
    const result = await runMeshmirror(args(config, out, join(fx.dir, 'cache-faults'), '--stall-timeout', '2s', '--piece-size', String(256 * MiB)));
    fx.proxy.setRules([]);
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.images.archived).toBe(names.length);
    expect(summary.retries).toBeGreaterThanOrEqual(7);
    const served = fx.proxy.stats().blobBodyBytes;
    // Resume, not restart: restarting the big layer after each of its four faults would have served
    // 5+5+3+2 = 15 MiB more. Allow for one 2 MiB base layer served twice (the 200 to a Range).
    expect(served).toBeGreaterThanOrEqual(fx.uniqueBlobBytes);
    expect(served).toBeLessThanOrEqual(fx.uniqueBlobBytes + 3 * MiB);
    const layout = join(fx.dir, 'layout-faults');
    await extractChunks(out, layout);
    for (const pushed of fx.pushed.filter((p) => p.name !== 'sample/docker:3.1')) {
      expect(await skopeoInspectDigest(`oci:${layout}:${fx.viaProxy(pushed.name)}`)).toBe(pushed.digest);
    }
  });

  it('kill -9 in the middle of a large blob, then the same command: finishes without refetching committed bytes', async () => {
    const config = await fx.writeConfig('kill.yaml', { additionalImages: [fx.viaProxy('sample/big:1.0')] });
    const out = join(fx.dir, 'out-kill');
    const cache = join(fx.dir, 'cache-kill');
    const stallAt = 14 * MiB;
    fx.proxy.resetStats();
    fx.proxy.setRules([
      { match: { method: 'GET', path: /\/v2\/sample\/big\/blobs\/sha256:/ }, fault: { kind: 'stall-after', bytes: stallAt, ms: Infinity }, times: 1 },
    ]);
    const first = spawnMeshmirror(args(config, out, cache, '--piece-size', String(256 * MiB)));
    await waitFor(() => fx.proxy.stats().blobBodyBytes >= stallAt, 'the proxy to serve the first 14 MiB');
    first.child.kill('SIGKILL');
    const killed = await first.result;
    expect(killed.signal).toBe('SIGKILL');
    fx.proxy.setRules([]);
    fx.proxy.resetStats();

    const second = await runMeshmirror(args(config, out, cache, '--piece-size', String(256 * MiB)));
    expect(second.code, second.stderr).toBe(0);
    const summary = JSON.parse(second.stdout);
    expect(summary.resumed).toBe(true);
    // What the killed run had committed (flushed every 4 MiB; socket buffers hold some of what the
    // proxy sent) is not fetched again: the second run asks only for the rest.
    expect(summary.bytes.resumed).toBeGreaterThanOrEqual(4 * MiB);
    expect(summary.bytes.toFetch).toBeLessThanOrEqual(24 * MiB + 4096 - summary.bytes.resumed);
    expect(fx.proxy.stats().blobBodyBytes).toBe(summary.bytes.toFetch);
    const layout = join(fx.dir, 'layout-kill');
    await extractChunks(out, layout);
    const big = fx.pushed.find((p) => p.name === 'sample/big:1.0')!;
    expect(await skopeoInspectDigest(`oci:${layout}:${fx.viaProxy('sample/big:1.0')}`)).toBe(big.digest);
  });

  it('a missing image and a blob that is never served are reported by name; the rest is archived; a re-run completes', async () => {
    const missing = fx.viaProxy('sample/does-not-exist:9.9');
    const names = [fx.viaProxy('sample/base:1.0'), fx.viaProxy('sample/docker:3.1'), fx.viaProxy('sample/app:1.0'), missing];
    const config = await fx.writeConfig('partial.yaml', { additionalImages: names });
    const out = join(fx.dir, 'out-partial');
    const cache = join(fx.dir, 'cache-partial');
    // app:1.0's top layer is never served (every attempt gets a 503).
    fx.proxy.setRules([{ match: { method: 'GET', path: /\/v2\/sample\/app\/blobs\/sha256:/ }, fault: { kind: 'status', status: 503 } }]);
    const first = await runMeshmirror(args(config, out, cache, '--retry-times', '2'));
    fx.proxy.setRules([]);
    expect(first.code).toBe(64 + 4); // additional images failed
    const summary = JSON.parse(first.stdout);
    expect(summary.images).toMatchObject({ archived: 2, failed: 2 });
    const errorsFile = await readFile(summary.files.errors, 'utf8');
    expect(errorsFile).toContain(missing);
    expect(errorsFile).toMatch(/MANIFEST_UNKNOWN|not found|404/i);
    expect(errorsFile).toContain(fx.viaProxy('sample/app:1.0'));
    expect(errorsFile).toMatch(/503/);
    let layout = join(fx.dir, 'layout-partial-1');
    await extractChunks(out, layout);
    for (const name of ['sample/base:1.0']) {
      expect(await skopeoInspectDigest(`oci:${layout}:${fx.viaProxy(name)}`)).toBe(fx.pushed.find((p) => p.name === name)!.digest);
    }

    // The fault is gone and the missing image now exists: the same command completes the set and
    // fetches only what the first run could not get.
    await pushLayout(join(fx.dir, 'source-layout'), fx.registry.url, { images: ['sample/base:1.0'], rename: () => 'sample/does-not-exist:9.9' });
    fx.proxy.resetStats();
    const second = await runMeshmirror(args(config, out, cache));
    expect(second.code, second.stderr).toBe(0);
    const again = JSON.parse(second.stdout);
    expect(again.resumed).toBe(true);
    expect(again.images).toMatchObject({ archived: 4, failed: 0 });
    expect(fx.proxy.stats().blobBodyBytes).toBe(again.bytes.toFetch);
    expect(again.bytes.toFetch).toBeLessThan(again.bytes.unique - 2 * MiB);
    layout = join(fx.dir, 'layout-partial-2');
    await extractChunks(out, layout);
    expect(await skopeoInspectDigest(`oci:${layout}:${fx.viaProxy('sample/app:1.0')}`)).toBe(fx.pushed.find((p) => p.name === 'sample/app:1.0')!.digest);
  });
});

describe('a corrupted blob store heals itself', () => {
  let fx: MirrorFixture;
  beforeAll(async () => {
    fx = await startMirrorFixture();
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('a held layer whose bytes changed on disk is evicted and fetched again; the archive stays correct', async () => {
    const config = await fx.writeConfig('heal.yaml', { additionalImages: [fx.viaProxy('sample/app:1.0')] });
    const cache = join(fx.dir, 'cache-heal');
    const run = (out: string) => runMeshmirror(mirrorArgs(config, join(fx.dir, out), cache));
    const first = await run('out-heal-1');
    expect(first.code, first.stderr).toBe(0);

    // Flip one byte of the 1 MiB middle layer in the store, keeping its size.
    const blobs = join(cache, 'store', 'blobs', 'sha256');
    const victim = (await readdir(blobs)).find((name) => statSync(join(blobs, name)).size === MiB);
    expect(victim).toBeDefined();
    await flipByte(join(blobs, victim!), 1000);

    fx.proxy.resetStats();
    const second = await run('out-heal-2');
    expect(second.code, second.stderr).toBe(0);
    const summary = JSON.parse(second.stdout);
    expect(summary.repairedBlobs).toBe(1);
    expect(fx.proxy.stats().blobBodyBytes).toBe(MiB);
    const layout = join(fx.dir, 'layout-heal');
    await extractChunks(join(fx.dir, 'out-heal-2'), layout);
    expect(await skopeoInspectDigest(`oci:${layout}:${fx.viaProxy('sample/app:1.0')}`)).toBe(fx.pushed.find((p) => p.name === 'sample/app:1.0')!.digest);
  });
});
