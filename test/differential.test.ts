/**
 * Differential archives: set A is mirrored to disk and pushed (its receipt kept); then set B (A plus
 * more images) is mirrored with `--since-receipt`, so its archive carries every manifest but only
 * the blobs the target lacks. `verify` accepts it with its receipt; pushed onto the same target,
 * every image reads back with skopeo at the source digest; pushed into an empty registry, it is
 * refused before anything is uploaded, naming the count and the receipt.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReceipt, type Digest, type Receipt } from '@meshmirror/shared';
import { runMeshmirror } from './support/cli.ts';
import { archiveContent, diskToMirrorArgs, mirrorArgs, startMirrorFixture, type MirrorFixture } from './support/mirror-fixture.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';
import { skopeoInspectDigest } from './support/skopeo.ts';

interface Summary {
  images: { requested: number; archived?: number; pushed?: number; failed: number };
  differential?: { omittedBlobs: number; omittedBytes: number; target: string };
  bytes: { unique: number; fetched?: number; uploaded?: number };
  blobs?: { uploaded: number; present: number; mounted: number };
  files: { receipt?: string };
}

describe('differential archives from a receipt', () => {
  let fx: MirrorFixture;
  let target: RunningRegistry;
  let receipt: Receipt;
  let receiptFile: string;
  let setA: string[];
  let setB: string[];
  let configB: string;
  /** The bytes of new blobs the differential mirror to disk fetched (and carries). */
  let newBytes: number;

  beforeAll(async () => {
    fx = await startMirrorFixture();
    target = await startRegistry();
    setA = ['sample/base:1.0', 'sample/app:1.0', 'sample/multi:2.0'];
    setB = [...setA, 'sample/docker:3.1', 'sample/big:1.0'];
    const configA = await fx.writeConfig('a.yaml', { additionalImages: setA.map((n) => fx.direct(n)) });
    configB = await fx.writeConfig('b.yaml', { additionalImages: setB.map((n) => fx.direct(n)) });
    const archiveA = join(fx.dir, 'archive-a');
    const m2d = await runMeshmirror(mirrorArgs(configA, archiveA, join(fx.dir, 'cache-a')));
    expect(m2d.code, m2d.stderr).toBe(0);
    const d2m = await runMeshmirror(diskToMirrorArgs(configA, archiveA, `${target.host}/mirror`, join(fx.dir, 'cache-push-a')));
    expect(d2m.code, d2m.stderr).toBe(0);
    receiptFile = (JSON.parse(d2m.stdout) as Summary).files.receipt!;
    const parsed = parseReceipt(JSON.parse(await readFile(receiptFile, 'utf8')));
    if (!parsed.success) throw new Error(parsed.problem);
    receipt = parsed.data;
  }, 120_000);

  afterAll(async () => {
    await target?.stop();
    await fx?.close();
  });

  const receiptBlobs = (): Set<Digest> => new Set(Object.values(receipt.repositories).flatMap((r) => r.blobs));

  it('carries every manifest but only the blobs the receipt does not list, and verify accepts it with its receipt', async () => {
    const full = join(fx.dir, 'archive-b-full');
    const fullRun = await runMeshmirror(mirrorArgs(configB, full, join(fx.dir, 'cache-b-full')));
    expect(fullRun.code, fullRun.stderr).toBe(0);
    const diff = join(fx.dir, 'archive-b');
    const diffRun = await runMeshmirror(mirrorArgs(configB, diff, join(fx.dir, 'cache-b'), '--since-receipt', receiptFile));
    expect(diffRun.code, diffRun.stderr).toBe(0);
    const summary = JSON.parse(diffRun.stdout) as Summary;
    expect(summary.images).toMatchObject({ requested: setB.length, archived: setB.length, failed: 0 });

    const fullBlobs = (await archiveContent(full, join(fx.dir, 'layout-b-full'))).blobs;
    const diffBlobs = (await archiveContent(diff, join(fx.dir, 'layout-b'))).blobs;
    const left = receiptBlobs();
    const expected = fullBlobs.filter((hex) => !left.has(`sha256:${hex}`));
    expect(diffBlobs).toEqual(expected);
    expect(expected.length).toBeLessThan(fullBlobs.length);
    // What the receipt saved: the bytes of the blobs left out, neither fetched nor carried.
    const saved = fullBlobs.filter((hex) => left.has(`sha256:${hex}`)).reduce((n, hex) => n + (receipt.sizes[`sha256:${hex}`] ?? 0), 0);
    expect(summary.differential).toMatchObject({ omittedBlobs: fullBlobs.length - expected.length, omittedBytes: saved, target: receipt.target });
    expect(summary.bytes.fetched).toBe(summary.bytes.unique - saved);
    newBytes = summary.bytes.fetched ?? -1;

    const verify = await runMeshmirror(['verify', diff]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(verify.stdout).toContain(`made against the receipt ${receiptFile} of ${receipt.target}`);
  });

  it('meshmirror receipt asks the target and gives the same receipt, and the same differential archive', async () => {
    const asked = join(fx.dir, 'asked-receipt.json');
    const configA = join(fx.dir, 'a.yaml');
    const result = await runMeshmirror([
      'receipt',
      `docker://${target.host}/mirror`,
      '-c',
      configA,
      '-o',
      asked,
      '--cache-dir',
      join(fx.dir, 'cache-receipt'),
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      '--output',
      'json',
    ]);
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as { blobs: { checked: number; held: number }; manifests: { checked: number; held: number } };
    expect(summary.blobs.held).toBe(summary.blobs.checked);
    expect(summary.manifests.held).toBe(summary.manifests.checked);
    const parsed = parseReceipt(JSON.parse(await readFile(asked, 'utf8')));
    if (!parsed.success) throw new Error(parsed.problem);
    expect({ ...parsed.data, writtenAt: '' }).toEqual({ ...receipt, writtenAt: '' });

    const diff = join(fx.dir, 'archive-b-asked');
    const run = await runMeshmirror(mirrorArgs(configB, diff, join(fx.dir, 'cache-b-asked'), '--since-receipt', asked));
    expect(run.code, run.stderr).toBe(0);
    expect((await archiveContent(diff, join(fx.dir, 'layout-b-asked'))).blobs).toEqual(
      (await archiveContent(join(fx.dir, 'archive-b'), join(fx.dir, 'layout-b-again'))).blobs,
    );
  });

  it('--since DATE leaves out what runs in this cache archived before then: here the same blobs as the receipt', async () => {
    const now = new Date().toISOString();
    const diff = join(fx.dir, 'archive-b-since');
    const run = await runMeshmirror(mirrorArgs(configB, diff, join(fx.dir, 'cache-a'), '--since', now));
    expect(run.code, run.stderr).toBe(0);
    const summary = JSON.parse(run.stdout) as Summary & { differential: { since: string } };
    expect(summary.differential.since).toBe(now);
    expect((await archiveContent(diff, join(fx.dir, 'layout-b-since'))).blobs).toEqual(
      (await archiveContent(join(fx.dir, 'archive-b'), join(fx.dir, 'layout-b-3'))).blobs,
    );
    // A date before any run leaves nothing out.
    const early = await runMeshmirror(mirrorArgs(configB, join(fx.dir, 'archive-b-early'), join(fx.dir, 'cache-a'), '--since', '2000-01-01'));
    expect(early.code, early.stderr).toBe(0);
    expect((JSON.parse(early.stdout) as Summary).differential).toMatchObject({ omittedBlobs: 0, omittedBytes: 0 });
  });

  it('pushed onto the target it was made for, every image reads back at the source digest, and only the new blobs are uploaded', async () => {
    const result = await runMeshmirror(diskToMirrorArgs(configB, join(fx.dir, 'archive-b'), `${target.host}/mirror`, join(fx.dir, 'cache-push-b')));
    expect(result.code, result.stdout + result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as Summary;
    expect(summary.images).toMatchObject({ pushed: setB.length, failed: 0 });
    expect(summary.bytes.uploaded).toBe(newBytes);
    expect((summary.blobs?.present ?? 0) + (summary.blobs?.mounted ?? 0)).toBeGreaterThan(0);
    for (const name of setB) {
      const source = fx.pushed.find((p) => p.name === name)!;
      expect(await skopeoInspectDigest(`docker://${target.host}/mirror/${name}`, { tlsVerify: false }), name).toBe(source.digest);
    }
  });

  it('a receipt that is not one is refused before anything is fetched, naming the file and the field', async () => {
    const bad = join(fx.dir, 'bad-receipt.json');
    await writeFile(bad, JSON.stringify({ ...receipt, sizes: { 'sha256:nothex': 1 } }));
    const result = await runMeshmirror(mirrorArgs(configB, join(fx.dir, 'archive-bad'), join(fx.dir, 'cache-bad'), '--since-receipt', bad));
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`--since-receipt ${bad}: is not a meshmirror receipt: at sizes`);
    const wrongMode = await runMeshmirror(
      diskToMirrorArgs(configB, join(fx.dir, 'archive-b'), `${target.host}/x`, join(fx.dir, 'cache-x'), '--since-receipt', receiptFile),
    );
    expect(wrongMode.code).toBe(2);
    expect(wrongMode.stderr).toContain('--since-receipt is for mirror to disk');
  });

  it('pushed into a registry without that content, it is refused before any upload, naming the count and the receipt', async () => {
    const empty = await startRegistry();
    try {
      const result = await runMeshmirror(diskToMirrorArgs(configB, join(fx.dir, 'archive-b'), `${empty.host}/mirror`, join(fx.dir, 'cache-push-empty')));
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/this archive is differential: made against the receipt .*receipt\.json of docker:\/\/.*\/mirror/);
      expect(result.stderr).toContain(`${empty.host} lacks `);
      expect(result.stderr).toContain('Nothing was uploaded');
      const catalog = (await (await fetch(`${empty.url}/v2/_catalog`)).json()) as { repositories: string[] };
      expect(catalog.repositories).toEqual([]);
    } finally {
      await empty.stop();
    }
  });
});
