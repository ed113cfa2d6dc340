/**
 * `pnpm bench:push` (root): disk to mirror. The release-like set of `pnpm bench` (BENCH_BYTES,
 * default 520 MB) is pushed into a real `docker-registry` and mirrored to disk once; then, each into
 * an empty `docker-registry` after `sync`, it times:
 *
 * - meshmirror pushing the archive straight from its chunks
 *   (`mirror -c CONFIG --from file://ARCHIVE docker://HOST/bench`, a fresh cache);
 * - `skopeo copy --all --preserve-digests` image by image from the chunks extracted with `tar` into
 *   an OCI layout, as a user would script it.
 *
 * skopeo 1.9.3 does not see index.json entries with Docker media types, so Docker-format images are
 * left out of both timed runs (the output names them). Every pushed image is read back with skopeo
 * and must have its source digest. Then meshmirror pushes the same images plus one blob of
 * BENCH_BIG_BLOB_BYTES (default 1 GiB, 0 skips it) into another empty registry, to show that peak
 * memory does not grow with blob size. Prints wall times, MB/s of unique blob bytes, the ratio
 * meshmirror / skopeo (target <= 0.50) and peak memory (max RSS, from GNU time).
 *
 * meshmirror runs as installed, the package of `pnpm package` (scripts/package.ts), like `pnpm bench`:
 * MESHMIRROR_BIN points the support helpers at its bin/meshmirror. `BENCH_FROM_SOURCES=1` runs the
 * TypeScript sources instead.
 */
import { execFile } from 'node:child_process';
import { access, constants, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { formatBytes, MediaType, REF_NAME_ANNOTATION } from '@meshmirror/shared';
import { releaseLikeImageSet, type SampleImage } from '../../packages/coordinator/src/demo/sample-image-set.ts';
import type { PushSummary } from '@meshmirror/coordinator';
import { useInstalledMeshmirror } from './installed.ts';
import { meshmirrorCommand, runMeshmirror } from '../support/cli.ts';
import { extractChunks, mirrorArgs, startMirrorFixture, writeImageSetConfig, type MirrorFixture } from '../support/mirror-fixture.ts';
import { startLatencyRelay } from '../support/latency-relay.ts';
import { startRegistry } from '../support/registry.ts';
import { SKOPEO_BINARY, skopeoInspectDigest } from '../support/skopeo.ts';

const execFileAsync = promisify(execFile);
const MB = 1_000_000;
const GNU_TIME = '/usr/bin/time';
const totalBytes = Number(process.env['BENCH_BYTES'] ?? 520 * MB);
const bigBlobBytes = Number(process.env['BENCH_BIG_BLOB_BYTES'] ?? 1024 ** 3);
const BIG_IMAGE = 'bench/one-big-blob:1.0';
/** Round-trip time of the emulated link to the target for the second comparison (0 skips it). */
const rttMs = Number(process.env['BENCH_RTT_MS'] ?? 20);
/** Target repositories go under this prefix: `HOST/bench/ocp-release/release:4.16.0`. */
const PREFIX = 'bench';

interface Timed {
  seconds: number;
  maxRssBytes: number;
}

interface PushRun extends Timed {
  images: number;
  uniqueBytes: number;
}

try {
  await access(GNU_TIME, constants.X_OK);
} catch {
  console.error(`bench:push measures peak memory with GNU time; ${GNU_TIME} is missing (apt-get install time).`);
  process.exit(2);
}

/** Runs a command under GNU time: wall seconds, peak resident memory and what it printed on stdout. */
async function timed(command: string, args: string[]): Promise<Timed & { stdout: string }> {
  const started = process.hrtime.bigint();
  const { stdout, stderr } = await execFileAsync(GNU_TIME, ['-f', 'BENCH %M', command, ...args], { maxBuffer: 256 * MB });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const m = /BENCH (\d+)\s*$/.exec(stderr);
  if (m === null) throw new Error(`no peak memory in the output of ${command}: ${stderr.slice(-500)}`);
  return { seconds, maxRssBytes: Number(m[1]) * 1024, stdout };
}

/** Flushes dirty pages first, so a timed run does not pay for the write-back of whatever came before it. */
async function settle(): Promise<void> {
  await execFileAsync('sync');
}

/** Every image reads back from the target with its source digest: nothing was converted or recompressed. */
async function expectSourceDigests(fx: MirrorFixture, host: string, names: string[], tool: string): Promise<void> {
  for (const name of names) {
    const expected = fx.pushed.find((p) => p.name === name)!.digest;
    const actual = await skopeoInspectDigest(`docker://${host}/${PREFIX}/${name}`);
    if (actual !== expected) throw new Error(`${tool} changed ${name}: ${actual} in the target, ${expected} in the source`);
  }
}

/** `meshmirror mirror --from file://ARCHIVE` of `names` into an empty registry. */
async function meshmirrorPush(fx: MirrorFixture, archive: string, names: string[], run: string, linkRttMs = 0): Promise<PushRun> {
  const config = await writeImageSetConfig(join(fx.dir, `${run}.yaml`), { additionalImages: names.map((n) => fx.direct(n)), archiveSize: 8 });
  const target = await startRegistry();
  const relay = linkRttMs > 0 ? await startLatencyRelay({ target: target.host, oneWayMs: linkRttMs / 2 }) : undefined;
  try {
    await settle();
    const args = [
      'mirror',
      '-c',
      config,
      '--from',
      `file://${archive}`,
      `docker://${relay?.host ?? target.host}/${PREFIX}`,
      '--cache-dir',
      join(fx.dir, `${run}-cache`),
      '--dest-tls-verify=false',
      '--output',
      'json',
    ];
    const cli = meshmirrorCommand(args);
    const t = await timed(cli.command, cli.args);
    const summary = JSON.parse(t.stdout) as PushSummary;
    if (summary.images.pushed !== names.length || summary.images.failed > 0) {
      throw new Error(
        `meshmirror pushed ${summary.images.pushed} of ${names.length} images (${summary.images.failed} failed): ${JSON.stringify(summary.outcomes.filter((o) => o.state === 'failed'))}`,
      );
    }
    if (summary.bytes.uploaded !== summary.bytes.unique)
      throw new Error(`meshmirror uploaded ${summary.bytes.uploaded} bytes of ${summary.bytes.unique} into an empty registry`);
    await expectSourceDigests(fx, target.host, names, 'meshmirror');
    console.log(`bench:push: meshmirror, ${run}: ${t.seconds.toFixed(1)} s, ${formatBytes(summary.bytes.unique)} uploaded, peak ${formatBytes(t.maxRssBytes)}`);
    return { seconds: t.seconds, maxRssBytes: t.maxRssBytes, images: names.length, uniqueBytes: summary.bytes.unique };
  } finally {
    await relay?.close();
    await target.stop();
  }
}

/** `skopeo copy --all` of each image from the extracted layout into an empty registry, one after another. */
async function skopeoPush(fx: MirrorFixture, layout: string, names: string[], linkRttMs = 0): Promise<Timed> {
  const target = await startRegistry();
  const relay = linkRttMs > 0 ? await startLatencyRelay({ target: target.host, oneWayMs: linkRttMs / 2 }) : undefined;
  try {
    await settle();
    const started = process.hrtime.bigint();
    let maxRssBytes = 0;
    for (const name of names) {
      const t = await timed(SKOPEO_BINARY, [
        '--insecure-policy',
        'copy',
        '--all',
        '--preserve-digests',
        '--dest-tls-verify=false',
        '--quiet',
        `oci:${layout}:${fx.direct(name)}`,
        `docker://${relay?.host ?? target.host}/${PREFIX}/${name}`,
      ]);
      maxRssBytes = Math.max(maxRssBytes, t.maxRssBytes);
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    await expectSourceDigests(fx, target.host, names, 'skopeo');
    console.log(`bench:push: skopeo${linkRttMs > 0 ? `, ${linkRttMs} ms RTT link` : ''}: ${seconds.toFixed(1)} s, peak ${formatBytes(maxRssBytes)} (one copy)`);
    return { seconds, maxRssBytes };
  } finally {
    await relay?.close();
    await target.stop();
  }
}

function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows)
    console.log(
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    );
}

const releaseLike = releaseLikeImageSet({ totalBytes });
const bigImage: SampleImage = { name: BIG_IMAGE, platforms: [{ architecture: 'amd64', layers: [{ seed: 'bench-big', size: bigBlobBytes }] }] };
const images = bigBlobBytes > 0 ? [...releaseLike, bigImage] : releaseLike;
console.log(
  `bench:push: generating a release-like set of at least ${formatBytes(totalBytes)}${bigBlobBytes > 0 ? ` and one ${formatBytes(bigBlobBytes)} blob` : ''}, pushing it to docker-registry and mirroring it to disk`,
);
// Every meshmirror run below, timed or not, goes through meshmirrorCommand(): the package's bin/meshmirror.
const meshmirror = await useInstalledMeshmirror('bench:push');
const fx = await startMirrorFixture(images);
try {
  const archive = join(fx.dir, 'archive');
  const diskConfig = await writeImageSetConfig(join(fx.dir, 'to-disk.yaml'), { additionalImages: images.map((i) => fx.direct(i.name)), archiveSize: 8 });
  const toDisk = await runMeshmirror(mirrorArgs(diskConfig, archive, join(fx.dir, 'to-disk-cache')));
  if (toDisk.code !== 0) throw new Error(`mirror to disk failed (${toDisk.code}): ${toDisk.stderr.slice(-3000)}`);
  const layout = join(fx.dir, 'layout');
  await extractChunks(archive, layout);

  // What skopeo can read from the layout decides which images both tools are timed on.
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ mediaType: string; annotations?: Record<string, string> }> };
  const mediaTypes = new Map(index.manifests.map((e) => [e.annotations?.[REF_NAME_ANNOTATION], e.mediaType]));
  const ociTypes: string[] = [MediaType.OciManifest, MediaType.OciIndex];
  const setNames: string[] = [];
  const skipped: string[] = [];
  for (const image of releaseLike) {
    const mediaType = mediaTypes.get(fx.direct(image.name));
    if (mediaType === undefined) throw new Error(`${image.name} is not in the archive's index.json`);
    (ociTypes.includes(mediaType) ? setNames : skipped).push(image.name);
  }
  if (skipped.length > 0) {
    console.log(`bench:push: left out of both timed runs (Docker media types, which skopeo 1.9.3 does not read from an OCI layout): ${skipped.join(', ')}`);
  }

  const mm = await meshmirrorPush(fx, archive, setNames, 'release-like');
  const sk = await skopeoPush(fx, layout, setNames);
  const link =
    rttMs > 0
      ? { mm: await meshmirrorPush(fx, archive, setNames, `release-like over a ${rttMs} ms link`, rttMs), sk: await skopeoPush(fx, layout, setNames, rttMs) }
      : undefined;
  const mmBig = bigBlobBytes > 0 ? await meshmirrorPush(fx, archive, [...setNames, BIG_IMAGE], `release-like + ${formatBytes(bigBlobBytes)} blob`) : undefined;

  const mbps = (r: Timed): string => (mm.uniqueBytes / MB / r.seconds).toFixed(1);
  console.log('');
  console.log(`Release-like set: ${setNames.length} images, ${formatBytes(mm.uniqueBytes)} of unique blobs, each run into an empty docker-registry`);
  table([
    ['tool', 'seconds', 'MB/s', 'peak memory'],
    ['meshmirror mirror --from file://ARCHIVE (from the chunks)', mm.seconds.toFixed(1), mbps(mm), formatBytes(mm.maxRssBytes)],
    ['skopeo copy --all, image by image (extracted layout)', sk.seconds.toFixed(1), mbps(sk), `${formatBytes(sk.maxRssBytes)} (one copy)`],
  ]);
  console.log('skopeo: --preserve-digests held and every digest matched the source (layers go as they are, not recompressed)');
  const ratio = mm.seconds / sk.seconds;
  console.log(`ratio meshmirror / skopeo on loopback: ${ratio.toFixed(2)} (target <= 0.50: ${ratio <= 0.5 ? 'met' : 'NOT met'})`);
  if (link !== undefined) {
    console.log('');
    console.log(`The same, with the target behind an emulated link of ${rttMs} ms round trip (a delaying TCP relay; no bandwidth cap)`);
    table([
      ['tool', 'seconds', 'MB/s'],
      ['meshmirror mirror --from file://ARCHIVE', link.mm.seconds.toFixed(1), mbps(link.mm)],
      ['skopeo copy --all, image by image', link.sk.seconds.toFixed(1), mbps(link.sk)],
    ]);
    const linkRatio = link.mm.seconds / link.sk.seconds;
    console.log(`ratio meshmirror / skopeo over the ${rttMs} ms link: ${linkRatio.toFixed(2)} (target <= 0.50: ${linkRatio <= 0.5 ? 'met' : 'NOT met'})`);
  }
  if (mmBig !== undefined) {
    console.log('');
    console.log('meshmirror peak memory against blob size');
    table([
      ['push', 'unique blobs', 'seconds', 'peak memory'],
      ['release-like set', formatBytes(mm.uniqueBytes), mm.seconds.toFixed(1), formatBytes(mm.maxRssBytes)],
      [`same + one ${formatBytes(bigBlobBytes)} blob`, formatBytes(mmBig.uniqueBytes), mmBig.seconds.toFixed(1), formatBytes(mmBig.maxRssBytes)],
    ]);
    const growth = mmBig.maxRssBytes - mm.maxRssBytes;
    console.log(
      `peak memory with the ${formatBytes(bigBlobBytes)} blob added: ${growth >= 0 ? '+' : ''}${formatBytes(growth)} (${((growth / mm.maxRssBytes) * 100).toFixed(0)}%)`,
    );
  }
} finally {
  await fx.close();
  await meshmirror.remove();
}
