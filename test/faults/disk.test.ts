/**
 * Fault matrix, disk group: the archive folder or the blob store on a small tmpfs that fills up in
 * the middle of a run. Expected: one clear line naming the path and "no space left on device", exit
 * 1, no chunk under a final name that is not complete, nothing already fetched lost; after space is
 * freed, the same command completes without fetching again what it held, and skopeo reads it back.
 *
 * Needs root (mount -t tmpfs); skipped with a warning otherwise.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { runMeshmirror } from '../support/cli.ts';
import { cacheWithIdentity, farmKeys, startAgent } from '../support/agents.ts';
import { diskToMirrorArgs, extractChunks, mirrorArgs, startMirrorFixture, type MirrorFixture } from '../support/mirror-fixture.ts';
import { skopeoInspectDigest } from '../support/skopeo.ts';
import { scenario } from './matrix.ts';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('test/faults/disk.test.ts: not root, so no tmpfs can be mounted; the disk scenarios are skipped');

interface Summary {
  images: { archived: number; failed: number };
  bytes: { fetched: number; unique: number };
}

let fx: MirrorFixture;
let root: string;
const mounts: string[] = [];

/** A tmpfs of `sizeMiB` at a new folder, with a filler file leaving about `freeMiB` free. */
async function smallDisk(name: string, sizeMiB: number, freeMiB: number): Promise<{ dir: string; filler: string; free(): Promise<number> }> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  await execFileAsync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', dir]);
  mounts.push(dir);
  const filler = join(dir, 'filler.bin');
  const fs0 = await statfs(dir);
  await writeFile(filler, Buffer.alloc(Math.max(0, fs0.bavail * fs0.bsize - freeMiB * MiB)));
  return {
    dir,
    filler,
    async free() {
      const fs = await statfs(dir);
      return fs.bavail * fs.bsize;
    },
  };
}

/** Every file below `dir`, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/**
 * Every `mirror_NNNNNN.tar` in `dir` must be a complete tar (`tar -t` lists it without error) whose
 * blob entries hash to their names; returns how many there are.
 */
async function checkFinalChunks(dir: string, into: string): Promise<number> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^mirror_\d{6}\.tar$/.test(n));
  for (const name of names) {
    const part = join(into, name);
    await mkdir(part, { recursive: true });
    await execFileAsync('tar', ['-xf', join(dir, name), '-C', part]);
    for (const file of await filesUnder(join(part, 'blobs', 'sha256'))) {
      const { stdout } = await execFileAsync('sha256sum', [file]);
      expect(stdout.split(' ')[0], `${name}: ${file}`).toBe(file.split('/').pop());
    }
  }
  return names.length;
}

function lastLine(text: string): string {
  return text.trim().split('\n').pop() ?? '';
}

/** With `--log-level error` the CLI's stderr holds no stack frame and at most one `meshmirror: error:` line. */
function expectOneLineError(stderr: string): void {
  expect(stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
  expect(stderr.match(/^meshmirror: error:/gm)?.length ?? 0).toBeLessThanOrEqual(1);
}

/** Whole blobs in a cache's store; each must hash to its name (none held that is not complete). */
async function verifiedStoreBlobs(cache: string): Promise<number> {
  const files = await filesUnder(join(cache, 'store', 'blobs', 'sha256'));
  for (const file of files) {
    const { stdout } = await execFileAsync('sha256sum', [file]);
    expect(stdout.split(' ')[0], file).toBe(file.split('/').pop());
  }
  return files.length;
}

/** Reads every OCI image of the set back from an extracted archive with skopeo, by digest. */
async function expectArchiveReadsBack(out: string, layout: string): Promise<number> {
  await extractChunks(out, layout);
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
  let read = 0;
  for (const pushed of fx.pushed) {
    const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === fx.viaProxy(pushed.name));
    expect(entry?.digest, pushed.name).toBe(pushed.digest);
    // skopeo 1.9 reads only OCI entries; the Docker-format image is checked by its index entry above.
    if (pushed.name !== 'sample/docker:3.1') expect(await skopeoInspectDigest(`oci:${layout}:${fx.viaProxy(pushed.name)}`)).toBe(pushed.digest);
    read++;
  }
  return read;
}

describe.skipIf(!isRoot)('disk faults', () => {
  let config: string;
  beforeAll(async () => {
    fx = await startMirrorFixture();
    root = await mkdtemp(join(tmpdir(), 'mm-faults-disk-'));
    config = await fx.writeConfig('disk.yaml', { additionalImages: fx.pushed.map((p) => fx.viaProxy(p.name)), archiveSize: 0.005 });
  });
  afterAll(async () => {
    for (const dir of mounts.reverse()) await execFileAsync('umount', ['-l', dir]).catch((e: unknown) => console.warn(`umount ${dir}: ${String(e)}`));
    if (root !== undefined) await rm(root, { recursive: true, force: true });
    await fx?.close();
  });

  scenario('disk: archive folder has no space left', { sample: true, timeout: 180_000 }, async (record) => {
    // Every byte of the tmpfs taken: not even the errors file or report.json fits.
    const disk = await smallDisk('archive-full', 48, 0);
    const out = join(disk.dir, 'out');
    const cache = join(root, 'cache-full');
    const args = mirrorArgs(config, out, cache, '--retry-delay', '50ms', '--log-level', 'error');
    fx.proxy.resetStats();
    const first = await runMeshmirror(args);
    const line = lastLine(first.stderr);
    const leftInOut = await filesUnder(out);
    const heldAfterFirst = await verifiedStoreBlobs(cache);

    await rm(disk.filler);
    const second = await runMeshmirror(args);
    const fetched = fx.proxy.stats().blobBodyBytes;
    const summary = second.code === 0 ? (JSON.parse(second.stdout) as Summary) : undefined;
    const delivered = second.code === 0 ? await expectArchiveReadsBack(out, join(root, 'layout-full')) : 0;
    record({
      scenario: 'disk: archive folder has no space left',
      faults: 'archive dir on a full tmpfs (0 B free)',
      expected: fx.pushed.length,
      delivered,
      fetchedBytes: fetched,
      uniqueBytes: fx.uniqueBlobBytes,
      outcome: `exit ${first.code}: "${line.replace(root, '…')}", ${leftInOut.length} files left in the folder, ${heldAfterFirst} blobs held → free space, re-run exit ${second.code}, ${summary?.bytes.fetched ?? '?'} B fetched again, skopeo ✓`,
    });
    expect(first.code).toBe(1);
    expect(line).toMatch(/^meshmirror: error: cannot write \S+: no space left on device$/);
    expect(line).toContain(out);
    expectOneLineError(first.stderr);
    // Nothing under a final name, no report cut short.
    expect(leftInOut).toEqual([]);
    // Everything fetched is held, verified, in the cache.
    expect(heldAfterFirst).toBeGreaterThanOrEqual(fx.pushed.length);
    expect(second.code, second.stderr).toBe(0);
    expect(summary?.bytes.fetched).toBe(0);
    expect(fetched).toBe(fx.uniqueBlobBytes);
    expect(delivered).toBe(fx.pushed.length);
  });

  scenario('disk: archive folder fills up mid-run', { sample: false, timeout: 180_000 }, async (record) => {
    // 15 MiB free for a ~30 MiB set in 5 MiB chunks: the small blobs fit, the 24 MiB layer does not.
    const disk = await smallDisk('archive-disk', 48, 15);
    const out = join(disk.dir, 'out');
    const cache = join(root, 'cache-archive');
    const args = mirrorArgs(config, out, cache, '--retry-delay', '50ms', '--log-level', 'error');
    fx.proxy.resetStats();
    const first = await runMeshmirror(args);
    const firstSummary = JSON.parse(first.stdout) as Summary & { files: { errors?: string } };
    const errors = firstSummary.files.errors === undefined ? '' : await readFile(firstSummary.files.errors, 'utf8');
    const finalChunks = await checkFinalChunks(out, join(root, 'chunks-archive-1'));
    const partials = (await readdir(out)).filter((n) => n.endsWith('.partial'));
    // What the first run archived is a readable archive of the images it says it archived.
    const firstLayout = join(root, 'layout-archive-1');
    await extractChunks(out, firstLayout);
    const firstRead: string[] = [];
    for (const pushed of fx.pushed.filter((p) => p.name !== 'sample/docker:3.1' && p.name !== 'sample/big:1.0')) {
      expect(await skopeoInspectDigest(`oci:${firstLayout}:${fx.viaProxy(pushed.name)}`)).toBe(pushed.digest);
      firstRead.push(pushed.name);
    }

    await rm(disk.filler);
    const second = await runMeshmirror(args);
    const fetched = fx.proxy.stats().blobBodyBytes;
    const summary = second.code === 0 ? (JSON.parse(second.stdout) as Summary) : undefined;
    const delivered = second.code === 0 ? await expectArchiveReadsBack(out, join(root, 'layout-archive')) : 0;
    const errorLine = errors.trim().split('\n')[0] ?? '';
    record({
      scenario: 'disk: archive folder fills up mid-run',
      faults: 'archive dir on tmpfs with 15 MiB free, set 30.3 MiB, 5 MiB chunks',
      expected: fx.pushed.length,
      delivered,
      fetchedBytes: fetched,
      uniqueBytes: fx.uniqueBlobBytes,
      outcome:
        `exit ${first.code}, ${firstSummary.images.archived} archived in ${finalChunks} complete chunks, errors file: "${errorLine.replace(root, '…')}" ` +
        `→ free space, re-run exit ${second.code}, ${summary?.bytes.fetched ?? '?'} B fetched again, skopeo ✓`,
    });
    // The images that fit are archived; the one that does not fails by name, with the path and the reason.
    expect(first.code).toBe(68);
    expect(firstSummary.images).toMatchObject({ archived: fx.pushed.length - 1, failed: 1 });
    expect(errors.trim().split('\n')).toHaveLength(1);
    expect(errorLine).toContain('sample/big:1.0');
    expect(errorLine).toContain(`${out}/mirror_`);
    expect(errorLine).toContain('no space left on device');
    expectOneLineError(first.stderr);
    // Every chunk under a final name is complete and its blobs verify; nothing is left as .partial.
    expect(finalChunks).toBeGreaterThan(0);
    expect(partials).toEqual([]);
    expect(firstRead).toHaveLength(3);
    expect(second.code, second.stderr).toBe(0);
    expect(summary?.bytes.fetched).toBe(0);
    expect(fetched).toBe(fx.uniqueBlobBytes);
    expect(delivered).toBe(fx.pushed.length);
  });

  scenario('disk: blob store fills up during fetch', { sample: false, timeout: 180_000 }, async (record) => {
    // 15 MiB free for the cache: the 24 MiB layer cannot be held.
    const disk = await smallDisk('store-disk', 48, 15);
    const cache = join(disk.dir, 'cache');
    const out = join(root, 'out-store');
    const args = mirrorArgs(config, out, cache, '--retry-delay', '50ms', '--log-level', 'error');
    fx.proxy.resetStats();
    const first = await runMeshmirror(args);
    const line = lastLine(first.stderr);
    const afterFirst = fx.proxy.stats().blobBodyBytes;
    const heldAfterFirst = await verifiedStoreBlobs(cache);
    fx.proxy.resetStats();
    const leftInOut = (await readdir(out).catch(() => [] as string[])).filter((n) => n.startsWith('mirror_'));

    await rm(disk.filler);
    const second = await runMeshmirror(args);
    const secondFetched = fx.proxy.stats().blobBodyBytes;
    const fetched = afterFirst + secondFetched;
    const summary = second.code === 0 ? (JSON.parse(second.stdout) as Summary & { bytes: { held: number; resumed: number; toFetch: number } }) : undefined;
    const delivered = second.code === 0 ? await expectArchiveReadsBack(out, join(root, 'layout-store')) : 0;
    record({
      scenario: 'disk: blob store fills up during fetch',
      faults: 'cache dir on tmpfs with 15 MiB free, set 30.3 MiB',
      expected: fx.pushed.length,
      delivered,
      fetchedBytes: fetched,
      uniqueBytes: fx.uniqueBlobBytes,
      outcome:
        `exit ${first.code}: "${line.replace(root, '…')}", no chunk written, ${heldAfterFirst} verified blobs kept ` +
        `→ free space, re-run exit ${second.code} (${summary?.bytes.held ?? '?'} B held, ${summary?.bytes.resumed ?? '?'} B resumed, ${secondFetched} B fetched), skopeo ✓`,
    });
    expect(first.code).toBe(1);
    expect(line).toMatch(/^meshmirror: error: cannot write \S+: .*no space left on device/);
    expect(line).toContain(join(cache, 'store'));
    expectOneLineError(first.stderr);
    expect(leftInOut).toEqual([]);
    expect(heldAfterFirst).toBeGreaterThan(0);
    expect(afterFirst).toBeGreaterThan(0);
    expect(second.code, second.stderr).toBe(0);
    expect(delivered).toBe(fx.pushed.length);
    // The re-run fetches only what the store did not hold or had not committed: whole blobs and
    // committed bytes are kept (held + resumed), and the proxy served exactly what the run said it needed.
    expect(summary!.bytes.held + summary!.bytes.resumed).toBeGreaterThan(0);
    expect(summary!.bytes.held + summary!.bytes.resumed + summary!.bytes.toFetch).toBe(fx.uniqueBlobBytes);
    expect(secondFetched).toBe(summary!.bytes.toFetch);
    // What is fetched twice is only what was in flight, uncommitted, when the disk filled.
    expect(fetched).toBeLessThanOrEqual(fx.uniqueBlobBytes + 16 * MiB);
  });

  scenario("disk: a farm agent's data folder fills up", { sample: false, timeout: 240_000 }, async (record) => {
    // Two agents; one keeps its store on a tmpfs with 3 MiB free, so its first bigger piece cannot be held.
    const disk = await smallDisk('agent-data', 48, 3);
    const keys = await farmKeys(root);
    const full = await startAgent({ data: join(disk.dir, 'agent'), swarmKey: keys.keyFile, allow: [keys.coordinatorId], logLevel: 'info' });
    const roomy = await startAgent({ data: join(root, 'agent-roomy'), swarmKey: keys.keyFile, allow: [keys.coordinatorId], logLevel: 'info' });
    try {
      const cache = await cacheWithIdentity(keys.identityDir, join(root, 'cache-agent-full'));
      const out = join(root, 'out-agent-full');
      const args = [
        ...mirrorArgs(config, out, cache, '--piece-size', '4MiB', '--retry-delay', '50ms', '--log-level', 'error'),
        '--swarm-key',
        keys.keyFile,
        '--agents',
        `${full.addresses[0]},${roomy.addresses[0]}`,
      ];
      fx.proxy.resetStats();
      const run = await runMeshmirror(args);
      const fetched = fx.proxy.stats().blobBodyBytes;
      type Row = { agent: string; upstreamBytes: number; piecesFetched: number; piecesFailed: number; lost?: string };
      const summary = run.code === 0 ? (JSON.parse(run.stdout) as Summary & { agents: Row[] }) : undefined;
      const rowOf = (id: string): Row | undefined => summary?.agents.find((a) => a.agent === id);
      const delivered = run.code === 0 ? await expectArchiveReadsBack(out, join(root, 'layout-agent-full')) : 0;
      const fullLog = full.stderr();
      record({
        scenario: "disk: a farm agent's data folder fills up",
        faults: "farm of 2; one agent's data folder on a tmpfs with 3 MiB free, 4 MiB pieces",
        expected: fx.pushed.length,
        delivered,
        fetchedBytes: fetched,
        uniqueBytes: fx.uniqueBlobBytes,
        outcome:
          `exit ${run.code}; full agent: ${rowOf(full.peerId)?.piecesFetched ?? '?'} pieces done, ${rowOf(full.peerId)?.piecesFailed ?? '?'} failed` +
          `${rowOf(full.peerId)?.lost === undefined ? '' : `, lost (${rowOf(full.peerId)?.lost})`}; the other: ${rowOf(roomy.peerId)?.piecesFetched ?? '?'} pieces; skopeo ✓`,
      });
      expect(run.code, `${run.stderr}\n${run.stdout.slice(-3000)}`).toBe(0);
      expect(delivered).toBe(fx.pushed.length);
      // The full agent said why, naming its store, and kept running.
      expect(fullLog).toMatch(/no space left on device|ENOSPC/i);
      expect(full.child.exitCode).toBeNull();
      expect(rowOf(full.peerId)!.piecesFailed).toBeGreaterThan(0);
      // What crossed the link twice is what the full agent fetched and could not keep, plus what the
      // proxy had already sent into its sockets' buffers (at most a piece each) when it stopped reading.
      const fullRow = rowOf(full.peerId)!;
      expect(fetched).toBeLessThanOrEqual(fx.uniqueBlobBytes + fullRow.upstreamBytes + fullRow.piecesFailed * 4 * MiB);
    } finally {
      await full.stop();
      await roomy.stop();
    }
  });

  scenario("disk: push's working files have no space", { sample: false, timeout: 240_000 }, async (record) => {
    // The archive is made on a roomy disk, then pushed with --cache-dir (run journal, upload journals) on a full tmpfs.
    const archive = join(root, 'out-push-source');
    const made = await runMeshmirror(mirrorArgs(config, archive, join(root, 'cache-push-source'), '--log-level', 'error'));
    expect(made.code, made.stderr).toBe(0);
    const disk = await smallDisk('push-work', 16, 0);
    const cache = join(disk.dir, 'cache');
    const target = `${fx.registry.host}/pushed-full`;
    const args = diskToMirrorArgs(config, archive, target, cache, '--log-level', 'error');
    const first = await runMeshmirror(args);
    const line = lastLine(first.stderr);
    const catalogAfterFirst = await fetch(`${fx.registry.url}/v2/_catalog`).then((r) => r.json() as Promise<{ repositories: string[] }>);

    await rm(disk.filler);
    const second = await runMeshmirror(args);
    const summary = second.code === 0 ? (JSON.parse(second.stdout) as { images: { pushed: number; failed: number } }) : undefined;
    let delivered = 0;
    if (second.code === 0) {
      for (const pushed of fx.pushed) {
        expect(await skopeoInspectDigest(`docker://${target}/${pushed.name}`)).toBe(pushed.digest);
        delivered++;
      }
    }
    record({
      scenario: "disk: push's working files have no space",
      faults: '--cache-dir of a disk-to-mirror push on a full tmpfs (0 B free)',
      expected: fx.pushed.length,
      delivered,
      outcome: `exit ${first.code}: "${line.replace(root, '…')}", ${catalogAfterFirst.repositories.filter((r) => r.startsWith('pushed-full/')).length} repositories touched → free space, re-run exit ${second.code} (${summary?.images.pushed ?? '?'} pushed), skopeo ✓`,
    });
    expect(first.code).toBe(1);
    expect(line).toMatch(/^meshmirror: error: .*no space left on device/);
    expect(line).toContain(cache);
    expectOneLineError(first.stderr);
    expect(second.code, second.stderr).toBe(0);
    expect(delivered).toBe(fx.pushed.length);
  });
});
