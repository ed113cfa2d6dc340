/**
 * Disk to mirror against a second real registry: an archive written by mirror to disk is pushed
 * straight from its chunks, checked with skopeo, through faults, after `kill -9`, into a target
 * that already holds part of it, and refused when it was tampered with.
 */
import { cp, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openArchive } from '../packages/agent/src/archive/archive-reader.ts';
import { parseManifest, parseReceipt, type Digest } from '@meshmirror/shared';
import { runMeshmirror, spawnMeshmirror, waitFor } from './support/cli.ts';
import { startFaultProxy, type FaultProxy } from './support/fault-proxy.ts';
import { diskToMirrorArgs, mirrorArgs, startMirrorFixture, type MirrorFixture } from './support/mirror-fixture.ts';
import { pushLayout } from './support/push-layout.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';
import { skopeoCopy, skopeoInspectDigest } from './support/skopeo.ts';
import { flipByte } from './support/flip-byte.ts';

const MiB = 1024 * 1024;

describe('disk to mirror into a real registry', () => {
  let fx: MirrorFixture;
  let archive: string;
  let config: string;
  /** name (`sample/app:1.0`) → the source reference the archive knows it by. */
  let sources: Map<string, string>;
  let target: RunningRegistry | undefined;
  let proxy: FaultProxy | undefined;

  beforeAll(async () => {
    fx = await startMirrorFixture();
    sources = new Map(fx.pushed.map((p) => [p.name, fx.viaProxy(p.name)]));
    config = await fx.writeConfig('push.yaml', { additionalImages: [...sources.values()], archiveSize: 0.01 });
    archive = join(fx.dir, 'archive');
    const result = await runMeshmirror(mirrorArgs(config, archive, join(fx.dir, 'cache-m2d')));
    expect(result.code, result.stderr).toBe(0);
  });
  afterEach(async () => {
    await proxy?.close();
    await target?.stop();
    proxy = undefined;
    target = undefined;
  });
  afterAll(async () => {
    await fx?.close();
  });

  const pushArgs = (from: string, destination: string, cache: string, ...extra: string[]): string[] => diskToMirrorArgs(config, from, destination, cache, ...extra);

  /** Every image of the set reads back from the target with the source's digest, and copies whole. */
  async function expectTargetMatchesSource(host: string): Promise<void> {
    for (const pushed of fx.pushed) {
      const ref = `docker://${host}/mirror/${pushed.name}`;
      expect(await skopeoInspectDigest(ref), pushed.name).toBe(pushed.digest);
      // A copy reads (and skopeo verifies) every blob of every platform.
      await skopeoCopy(ref, `oci:${join(fx.dir, 'readback')}:${pushed.name.replace(/[/:]/g, '-')}`);
    }
  }

  it('pushes every image with the source digests and writes the cluster resources', async () => {
    target = await startRegistry();
    const cache = join(fx.dir, 'cache-plain');
    const result = await runMeshmirror(pushArgs(archive, `${target.host}/mirror`, cache));
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.images).toMatchObject({ requested: fx.pushed.length, pushed: fx.pushed.length, failed: 0 });
    expect(summary.bytes.uploaded).toBe(fx.uniqueBlobBytes);
    // The base layer is shared by four repositories: uploaded once, mounted into the others.
    expect(summary.blobs.mounted).toBeGreaterThanOrEqual(3);
    await expectTargetMatchesSource(target.host);

    const resources = join(archive, 'working-dir', 'cluster-resources');
    const itms = await readFile(join(resources, 'itms-oc-mirror.yaml'), 'utf8');
    expect(itms).toContain('kind: ImageTagMirrorSet');
    expect(itms).toContain(`source: ${fx.proxy.host}/sample`);
    expect(itms).toContain(`- ${target.host}/mirror/sample`);
    expect(await readdir(resources)).not.toContain('idms-oc-mirror.yaml'); // nothing was mirrored by digest

    // A second push finds everything in place and sends nothing.
    const again = await runMeshmirror(pushArgs(archive, `${target.host}/mirror`, cache));
    expect(again.code, again.stderr).toBe(0);
    const second = JSON.parse(again.stdout);
    expect(second.bytes.sent).toBe(0);
    expect(second.images.alreadyPushed).toBe(fx.pushed.length);

    // The receipt: what the target holds, per repository, each entry of it there when asked.
    const receiptPath = join(archive, 'working-dir', 'receipt.json');
    expect(summary.files.receipt).toBe(receiptPath);
    const receipt = parseReceipt(JSON.parse(await readFile(receiptPath, 'utf8')));
    if (!receipt.success) throw new Error(receipt.problem);
    expect(receipt.data.target).toBe(`docker://${target.host}/mirror`);
    for (const pushed of fx.pushed) {
      expect(receipt.data.repositories[`mirror/${pushed.name.split(':')[0]!}`]?.manifests, pushed.name).toContain(pushed.digest);
    }
    const blobs = new Set(Object.values(receipt.data.repositories).flatMap((r) => r.blobs));
    expect([...blobs].reduce((n, d) => n + (receipt.data.sizes[d] ?? 0), 0)).toBe(fx.uniqueBlobBytes);
    for (const [repository, held] of Object.entries(receipt.data.repositories)) {
      for (const digest of held.blobs) {
        const head = await fetch(`${target.url}/v2/${repository}/blobs/${digest}`, { method: 'HEAD' });
        expect(head.status, `${repository}@${digest}`).toBe(200);
      }
    }
  });

  it('completes through resets mid-PATCH, a 500 on the closing PUT, a stall and 429s, sending each blob once', async () => {
    target = await startRegistry();
    proxy = await startFaultProxy(target.url);
    proxy.setRules([
      // The big layer's second and third chunks (4 MiB chunks): cut off after 256 KiB, then stalled.
      { match: { method: 'PATCH', header: ['content-range', /^4194304-/] }, fault: { kind: 'reset-request-after', bytes: 256 * 1024 }, times: 1 },
      { match: { method: 'PATCH', header: ['content-range', /^8388608-/] }, fault: { kind: 'stall-request-after', bytes: 256 * 1024, ms: 60_000 }, times: 1 },
      { match: { method: 'PUT', path: /\/blobs\/uploads\// }, fault: { kind: 'status', status: 500 }, times: 1 },
      { match: { method: 'POST' }, fault: { kind: 'status', status: 429, headers: { 'retry-after': '1' } }, times: 2 },
      { match: { method: 'HEAD' }, fault: { kind: 'status', status: 429, headers: { 'retry-after': '1' } }, times: 1 },
    ]);
    const result = await runMeshmirror(
      pushArgs(archive, `${proxy.host}/mirror`, join(fx.dir, 'cache-faults'), '--upload-chunk-size', String(4 * MiB), '--stall-timeout', '2s'),
    );
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.images.failed).toBe(0);
    const stats = proxy.stats();
    expect(stats.faultsInjected).toBe(6);
    const cut = stats.log.filter((e) => e.method === 'PATCH' && e.status === 0);
    expect(cut.length).toBe(2); // the reset and the stall
    expect(stats.log.some((e) => e.method === 'PUT' && e.status === 500)).toBe(true);
    // No blob was sent whole twice: what the proxy received is the blobs plus the cut-off pieces.
    expect(stats.uploadBodyBytes).toBeGreaterThanOrEqual(fx.uniqueBlobBytes);
    expect(stats.uploadBodyBytes / fx.uniqueBlobBytes).toBeLessThanOrEqual(1.05);
    await expectTargetMatchesSource(target.host);
  });

  it('--max-nested-paths flattens every target path as oc-mirror does, and the cluster resources name the flattened paths', async () => {
    target = await startRegistry();
    const result = await runMeshmirror(pushArgs(archive, `${target.host}/mirror/deep`, join(fx.dir, 'cache-nested'), '--max-nested-paths', '2'));
    expect(result.code, result.stderr).toBe(0);
    for (const pushed of fx.pushed) {
      // mirror/deep/sample/app → mirror/deep-sample-app
      const flat = `mirror/deep-${pushed.name.replace(/\//g, '-')}`;
      expect(await skopeoInspectDigest(`docker://${target.host}/${flat}`), flat).toBe(pushed.digest);
    }
    const itms = await readFile(join(archive, 'working-dir', 'cluster-resources', 'itms-oc-mirror.yaml'), 'utf8');
    expect(itms).toContain(`- ${target.host}/mirror/deep-sample-app`);
  });

  it('uploads only what a target that already holds part of the set lacks', async () => {
    target = await startRegistry();
    // The test's own uploader (not meshmirror's) puts two images there first, blobs unchanged
    // (skopeo would compress the uncompressed layers on the way, changing their digests).
    await pushLayout(join(fx.dir, 'source-layout'), target.url, { images: ['sample/base:1.0', 'sample/big:1.0'], rename: (name) => `mirror/${name}` });
    const held = new Set<string>();
    let heldBytes = 0;
    for (const name of ['sample/base:1.0', 'sample/big:1.0']) {
      for (const blob of await imageBlobs(archive, fx.pushed.find((p) => p.name === name)!.digest)) {
        if (held.has(blob.digest)) continue;
        held.add(blob.digest);
        heldBytes += blob.size;
      }
    }
    expect(heldBytes).toBeGreaterThan(fx.uniqueBlobBytes / 2);
    proxy = await startFaultProxy(target.url);
    const result = await runMeshmirror(pushArgs(archive, `${proxy.host}/mirror`, join(fx.dir, 'cache-half')));
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout);
    // Exactly the missing bytes crossed; the shared base layer was mounted, not sent.
    expect(proxy.stats().uploadBodyBytes).toBe(fx.uniqueBlobBytes - heldBytes);
    expect(summary.bytes.skipped).toBe(heldBytes);
    await expectTargetMatchesSource(target.host);
  });

  it('after kill -9 mid-blob, the same command resumes that upload and resends nothing confirmed', async () => {
    target = await startRegistry();
    proxy = await startFaultProxy(target.url);
    // Hold the big layer's ninth 1 MiB chunk, so the kill lands in the middle of a PATCH.
    proxy.setRules([
      { match: { method: 'PATCH', header: ['content-range', /^8388608-/] }, fault: { kind: 'stall-request-after', bytes: 64 * 1024, ms: 120_000 }, times: 1 },
    ]);
    const cache = join(fx.dir, 'cache-kill');
    const args = pushArgs(archive, `${proxy.host}/mirror`, cache, '--upload-chunk-size', String(MiB));
    const first = spawnMeshmirror(args);
    await waitFor(() => proxy!.stats().log.some((e) => e.fault === 'stall-request-after' && e.requestBytes >= 64 * 1024), 'the stalled PATCH');
    first.child.kill('SIGKILL');
    await first.result;
    const beforeRerun = proxy.stats().uploadBodyBytes;

    const second = await runMeshmirror(args);
    expect(second.code, second.stderr).toBe(0);
    const summary = JSON.parse(second.stdout);
    expect(summary.images.failed).toBe(0);
    // The big blob continued from the 8 MiB the registry had confirmed, and nothing was sent twice.
    expect(summary.bytes.resumed).toBe(8 * MiB);
    const total = proxy.stats().uploadBodyBytes;
    expect(total - beforeRerun).toBe(summary.bytes.sent);
    expect(summary.bytes.sent).toBe(summary.bytes.uploaded - summary.bytes.resumed);
    expect(total / fx.uniqueBlobBytes).toBeLessThanOrEqual(1.05);
    await expectTargetMatchesSource(target.host);
  });

  it('refuses a changed byte in a blob, pushes nothing from that entry, and still pushes the other images', async () => {
    const tampered = join(fx.dir, 'archive-tampered');
    await rm(tampered, { recursive: true, force: true });
    await cp(archive, tampered, { recursive: true, filter: (src) => !src.includes('working-dir') });
    const reader = await openArchive(tampered);
    const appTop = (await imageBlobs(tampered, fx.pushed.find((p) => p.name === 'sample/app:1.0')!.digest)).find((b) => b.size === 300_000);
    expect(appTop).toBeDefined();
    const where = reader.locateBlob(appTop!.digest)!;
    await flipByte(join(tampered, where.file), where.offset + 1000);

    target = await startRegistry();
    const result = await runMeshmirror(pushArgs(tampered, `${target.host}/mirror`, join(fx.dir, 'cache-tampered')));
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.code).toBe(68); // partial: an additional image failed
    const summary = JSON.parse(result.stdout);
    const failed = summary.outcomes.filter((o: { state: string }) => o.state === 'failed');
    expect(failed.map((o: { source: string }) => o.source)).toEqual([sources.get('sample/app:1.0')]);
    expect(failed[0].reason).toContain(`${where.file} entry ${where.entry}`);
    expect(failed[0].code).toBe('MM_DIGEST_MISMATCH');
    // The bad blob never became a blob in the target, and the image's manifest was not pushed.
    const blobHead = await fetch(`${target.url}/v2/mirror/sample/app/blobs/${appTop!.digest}`, { method: 'HEAD' });
    expect(blobHead.status).toBe(404);
    const manifestHead = await fetch(`${target.url}/v2/mirror/sample/app/manifests/1.0`, { method: 'HEAD' });
    expect(manifestHead.status).toBe(404);
    for (const name of ['sample/base:1.0', 'sample/big:1.0', 'sample/multi:2.0']) {
      const digest = fx.pushed.find((p) => p.name === name)?.digest;
      expect(await skopeoInspectDigest(`docker://${target.host}/mirror/${name}`)).toBe(digest);
    }
  });

  it('names the flag at fault for a push without an archive, with exit code 2', async () => {
    const cases: Array<[string[], string]> = [
      [['mirror', '-c', config, 'docker://127.0.0.1:1/mirror'], 'needs --from file://DIR'],
      [['mirror', '-c', config, '--from', archive, 'docker://127.0.0.1:1/mirror'], 'expected file://DIR'],
      [['mirror', '-c', config, '--from', `file://${join(fx.dir, 'no-such-folder')}`, 'docker://127.0.0.1:1/mirror'], 'is not a folder'],
      [['mirror', '-c', config, '--from', `file://${archive}`, 'docker://nohost/mirror'], '"nohost" is not a registry host'],
    ];
    for (const [args, message] of cases) {
      const result = await runMeshmirror(args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toContain(message);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('refuses an archive with a ../ entry before anything is pushed, naming chunk and entry', async () => {
    const evil = join(fx.dir, 'archive-evil');
    await rm(evil, { recursive: true, force: true });
    await cp(archive, evil, { recursive: true, filter: (src) => !src.includes('working-dir') });
    const chunks = (await readdir(evil)).filter((n) => n.endsWith('.tar')).sort();
    await appendTarEntry(join(evil, chunks[0]!), '../evil', Buffer.from('owned'));
    target = await startRegistry();
    proxy = await startFaultProxy(target.url);
    const result = await runMeshmirror(pushArgs(evil, `${proxy.host}/mirror`, join(fx.dir, 'cache-evil')));
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(chunks[0]);
    expect(result.stderr).toContain('../evil');
    expect(proxy.stats().requests).toBe(0);
  });
});

/** The configs and layers of an image in an archive (every platform of an index). */
async function imageBlobs(archiveDir: string, digest: Digest): Promise<Array<{ digest: Digest; size: number }>> {
  const reader = await openArchive(archiveDir);
  const read = async (d: Digest): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    for await (const chunk of (await reader.openBlob(d)) as AsyncIterable<Buffer>) chunks.push(chunk);
    return Buffer.concat(chunks);
  };
  const top = await read(digest);
  const parsed = parseManifest(top, (JSON.parse(top.toString()) as { mediaType: string }).mediaType, digest);
  const manifests = parsed.kind === 'image' ? [parsed.manifest] : [];
  if (parsed.kind === 'index') {
    for (const child of parsed.index.manifests) {
      const m = parseManifest(await read(child.digest), child.mediaType, child.digest);
      if (m.kind === 'image') manifests.push(m.manifest);
    }
  }
  return manifests.flatMap((m) => [m.config, ...m.layers]).map((d) => ({ digest: d.digest, size: d.size }));
}

/** Appends a regular-file entry to a tar file (before its end-of-archive blocks), name unchecked. */
async function appendTarEntry(file: string, name: string, data: Buffer): Promise<void> {
  const tar = await readFile(file);
  let end = tar.length;
  while (end >= 512 && tar.subarray(end - 512, end).every((b) => b === 0)) end -= 512;
  const header = Buffer.alloc(512);
  header.write(name, 0, 'utf8');
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124);
  header.write('00000000000\0', 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const padded = Buffer.alloc(Math.ceil(data.length / 512) * 512);
  data.copy(padded);
  const { writeFile } = await import('node:fs/promises');
  await writeFile(file, Buffer.concat([tar.subarray(0, end), header, padded, Buffer.alloc(1024)]));
}
