/**
 * `pnpm bench`: a release-like image set (at least 500 MB: shared base, shared middle layers, unique
 * top layers, multi-arch indexes) served by a real `docker-registry`, mirrored to disk by meshmirror
 * and, in the same run, copied by `skopeo copy --all` image by image into one OCI layout. Then one
 * 1 GiB blob mirrored on its own to show that memory does not grow with blob size. Each round
 * also downloads every unique blob once, in parallel, to nowhere: the ceiling no mirroring tool can
 * beat on this registry and machine; then the same written once into files and fsynced, and the
 * same again also checked against their digests: the floor for a tool that checks and keeps each
 * byte once. `meshmirror --version` shows what a process start costs.
 * Prints wall times, CPU times, the ratios and peak memory (from GNU time).
 *
 * meshmirror runs as installed: the package of `pnpm package` (scripts/package.ts) is built into a
 * temporary folder first and every timed run is its bin/meshmirror, as issue 16's target asks.
 * `BENCH_FROM_SOURCES=1` runs the TypeScript sources instead (about 0.4 s more per run).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { formatBytes, walkImage, type Digest } from '@meshmirror/shared';
import { releaseLikeImageSet, writeSampleLayout, type SampleImage } from '../../packages/coordinator/src/demo/sample-image-set.ts';
import { meshmirrorCommand } from '../support/cli.ts';
import { pushLayout } from '../support/push-layout.ts';
import { startRegistry, type RunningRegistry } from '../support/registry.ts';
import { useInstalledMeshmirror } from './installed.ts';
import { sameStart, sameStartNote } from './same-start.ts';

const execFileAsync = promisify(execFile);
const MB = 1_000_000;
const totalBytes = Number(process.env['BENCH_BYTES'] ?? 520 * MB);
const bigBlobBytes = Number(process.env['BENCH_BIG_BLOB_BYTES'] ?? 1024 ** 3);
/**
 * `BENCH_SMALL_IMAGES=N`: N more images of one small layer each (about 40 KB), as an operator
 * catalog's bundles are: a set of many small blobs, where what each blob costs counts, not the bytes.
 */
const smallImages = Number(process.env['BENCH_SMALL_IMAGES'] ?? 0);
/** `BENCH_CPU_PROF=DIR`: each meshmirror run writes a V8 CPU profile there (open it in Chrome's DevTools). */
const cpuProfileDir = process.env['BENCH_CPU_PROF'];

interface Timed {
  seconds: number;
  maxRssBytes: number;
  /** Bytes the process sent toward the disk (its block output count, 512-byte units, from GNU time). */
  writtenBytes: number;
  /** Bytes meshmirror put through sha256 (its report's `bytes.hashed`). */
  hashedBytes?: number;
  /** CPU time the process used, user and system, in seconds (the machine has 2 cores; the registry shares them). */
  cpuSeconds: number;
}

/** Runs a command under GNU time (in `env`, default this one's); returns wall seconds, peak resident memory, bytes written and CPU time. */
async function timed(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Timed> {
  const { stderr } = await execFileAsync('/usr/bin/time', ['-f', 'BENCH %e %M %O %U %S', command, ...args], { maxBuffer: 64 * MB, env });
  const m = /BENCH ([\d.]+) (\d+) (\d+) ([\d.]+) ([\d.]+)\s*$/.exec(stderr);
  if (m === null) throw new Error(`no timing in output of ${command}: ${stderr.slice(-500)}`);
  return { seconds: Number(m[1]), maxRssBytes: Number(m[2]) * 1024, writtenBytes: Number(m[3]) * 512, cpuSeconds: Number(m[4]) + Number(m[5]) };
}

async function prepare(registry: RunningRegistry, dir: string, images: SampleImage[]): Promise<{ refs: string[]; uniqueBytes: number }> {
  const layout = join(dir, 'source');
  const written = await writeSampleLayout(layout, images);
  const pushed = await pushLayout(layout, registry.url);
  return { refs: pushed.map((p) => `${registry.host}/${p.name}`), uniqueBytes: written.uniqueBytes };
}

/**
 * Flushes dirty pages first, so a timed run does not pay for the write-back of whatever came before
 * it (generating and pushing the set leaves hundreds of MB for the disk to write), and starts it
 * from the same page cache as every other run (see same-start.ts).
 */
async function settle(): Promise<void> {
  await sameStart(registry.storageDir);
}

async function meshmirror(dir: string, refs: string[], name: string, extra: string[] = []): Promise<Timed> {
  await rm(join(dir, `${name}-out`), { recursive: true, force: true });
  await rm(join(dir, `${name}-cache`), { recursive: true, force: true });
  await settle();
  const config = join(dir, `${name}.yaml`);
  await writeFile(
    config,
    [
      'kind: ImageSetConfiguration',
      'apiVersion: mirror.openshift.io/v2alpha1',
      'archiveSize: 8',
      'mirror:',
      '  additionalImages:',
      ...refs.map((r) => `    - name: ${r}`),
      '',
    ].join('\n'),
  );
  const cli = meshmirrorCommand([
    'mirror',
    '-c',
    config,
    `file://${join(dir, `${name}-out`)}`,
    '--cache-dir',
    join(dir, `${name}-cache`),
    '--src-tls-verify=false',
    ...extra,
  ]);
  // bin/meshmirror passes on no Node flags: the profile is asked for in NODE_OPTIONS, where Node 24 allows
  // these three (a value in double quotes may hold spaces).
  const profile = [
    process.env['NODE_OPTIONS'] ?? '',
    '--cpu-prof',
    `--cpu-prof-dir=${JSON.stringify(cpuProfileDir)}`,
    `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`,
  ];
  const env = cpuProfileDir === undefined ? process.env : { ...process.env, NODE_OPTIONS: profile.filter((o) => o !== '').join(' ') };
  const run = await timed(cli.command, cli.args, env);
  const report = JSON.parse(await readFile(join(dir, `${name}-out`, 'working-dir', 'report.json'), 'utf8')) as { bytes: { hashed: number } };
  return { ...run, hashedBytes: report.bytes.hashed };
}

async function skopeoAll(dir: string, refs: string[]): Promise<Timed> {
  const layout = join(dir, 'skopeo-layout');
  await rm(layout, { recursive: true, force: true });
  await settle();
  let seconds = 0;
  let maxRssBytes = 0;
  let writtenBytes = 0;
  let cpuSeconds = 0;
  for (const ref of refs) {
    const name = ref.slice(ref.indexOf('/') + 1);
    const t = await timed('skopeo', ['copy', '--all', '--src-tls-verify=false', '--quiet', `docker://${ref}`, `oci:${layout}:${name}`]);
    seconds += t.seconds;
    maxRssBytes = Math.max(maxRssBytes, t.maxRssBytes);
    writtenBytes += t.writtenBytes;
    cpuSeconds += t.cpuSeconds;
  }
  return { seconds, maxRssBytes, writtenBytes, cpuSeconds };
}

function perUnique(bytes: number, unique: number): string {
  return `${(bytes / unique).toFixed(2)}×`;
}

/** Downloads at once, as many as meshmirror's default ceiling (--parallel-images 4 × --parallel-layers 5). */
const CEILING_PARALLEL = 20;

/** Every unique blob of the pushed images, with a repository that holds it. */
async function uniqueBlobs(registry: RunningRegistry, refs: string[]): Promise<Array<{ repository: string; digest: Digest; size: number }>> {
  const accept = [
    'application/vnd.oci.image.index.v1+json',
    'application/vnd.oci.image.manifest.v1+json',
    'application/vnd.docker.distribution.manifest.list.v2+json',
    'application/vnd.docker.distribution.manifest.v2+json',
  ].join(', ');
  const getManifest = async (repository: string, reference: string) => {
    const response = await fetch(`${registry.url}/v2/${repository}/manifests/${reference}`, { headers: { accept } });
    if (!response.ok) throw new Error(`GET manifest ${repository}:${reference}: ${response.status}`);
    const digest = response.headers.get('docker-content-digest') as Digest;
    return { digest, mediaType: response.headers.get('content-type') ?? '', bytes: new Uint8Array(await response.arrayBuffer()) };
  };
  const blobs = new Map<Digest, { repository: string; digest: Digest; size: number }>();
  for (const ref of refs) {
    const path = ref.slice(ref.indexOf('/') + 1);
    const repository = path.slice(0, path.lastIndexOf(':'));
    const walked = await walkImage(await getManifest(repository, path.slice(path.lastIndexOf(':') + 1)), ref, {
      child: (d) => getManifest(repository, d.digest),
    });
    for (const b of walked.blobs) if (!blobs.has(b.digest)) blobs.set(b.digest, { repository, ...b });
  }
  return [...blobs.values()];
}

type UniqueBlob = { repository: string; digest: Digest; size: number };

type Download = { seconds: number; bytes: number; cpuSeconds: number };

/** Downloads every blob once, CEILING_PARALLEL at a time, handing each body to `keep`; seconds, bytes and this process's CPU time. */
async function downloadAll(
  registry: RunningRegistry,
  blobs: UniqueBlob[],
  keep: (blob: UniqueBlob, body: AsyncIterable<Uint8Array>) => Promise<number>,
): Promise<Download> {
  await settle();
  const started = performance.now();
  const cpuAtStart = process.cpuUsage();
  let next = 0;
  let bytes = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < blobs.length; i = next++) {
      const blob = blobs[i]!;
      const response = await fetch(`${registry.url}/v2/${blob.repository}/blobs/${blob.digest}`);
      if (!response.ok || response.body === null) throw new Error(`GET blob ${blob.digest}: ${response.status}`);
      const kept = await keep(blob, response.body as AsyncIterable<Uint8Array>);
      bytes += kept;
    }
  };
  await Promise.all(Array.from({ length: CEILING_PARALLEL }, worker));
  const cpu = process.cpuUsage(cpuAtStart);
  return { seconds: (performance.now() - started) / 1000, bytes, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/** The raw ceiling: every unique blob once, read and thrown away. */
function rawCeiling(registry: RunningRegistry, blobs: UniqueBlob[]): Promise<Download> {
  return downloadAll(registry, blobs, async (_blob, body) => {
    let n = 0;
    for await (const chunk of body) n += chunk.byteLength;
    return n;
  });
}

/**
 * The ceiling for any tool that keeps what it fetches: every unique blob once, written once into a
 * file of its own and fsynced (meshmirror's archive is durable when it exits). With `check`, each
 * blob's bytes also go through sha256 and must match its digest, as any client must check them: the
 * floor for a tool that checks and keeps each byte once. On this machine writing fresh pages costs
 * more than loopback delivers them, so these, not the raw ceiling, are what a mirroring tool can approach.
 */
async function diskCeiling(registry: RunningRegistry, blobs: UniqueBlob[], into: string, check = false): Promise<Download> {
  await rm(into, { recursive: true, force: true });
  await mkdir(into, { recursive: true });
  const result = await downloadAll(registry, blobs, async (blob, body) => {
    const file = await open(join(into, blob.digest.slice('sha256:'.length)), 'w');
    const hash = check ? createHash('sha256') : undefined;
    let n = 0;
    try {
      for await (const chunk of body) {
        hash?.update(chunk);
        await file.write(chunk);
        n += chunk.byteLength;
      }
      await file.sync();
    } finally {
      await file.close();
    }
    if (hash !== undefined && `sha256:${hash.digest('hex')}` !== blob.digest) throw new Error(`blob ${blob.digest}: its bytes do not match its digest`);
    return n;
  });
  await rm(into, { recursive: true, force: true });
  return result;
}

/** What starting meshmirror costs before it does anything: `meshmirror --version`, best of 3. */
async function processStart(): Promise<Timed> {
  const cli = meshmirrorCommand(['--version']);
  const runs: Timed[] = [];
  for (let i = 0; i < 3; i++) runs.push(await timed(cli.command, cli.args));
  return runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
}

const dir = await mkdtemp(join(tmpdir(), 'meshmirror-bench-'));
const underTest = await useInstalledMeshmirror('bench');
const registry = await startRegistry();
try {
  console.log(`bench: generating a release-like set of at least ${formatBytes(totalBytes)} and pushing it to docker-registry at ${registry.host}`);
  const small: SampleImage[] = Array.from({ length: smallImages }, (_, i) => ({
    name: `bench/small-${i}:1.0`,
    platforms: [{ architecture: 'amd64', layers: [{ seed: `bench-small-${i}`, size: 40_000 + i }] }],
  }));
  const set = await prepare(registry, join(dir, 'set'), [...releaseLikeImageSet({ totalBytes }), ...small]);
  console.log(`bench: ${set.refs.length} images, ${formatBytes(set.uniqueBytes)} of unique blobs and manifests`);

  // Two rounds, alternating, each from a cold cache and an empty destination; the best of each counts.
  const blobs = await uniqueBlobs(registry, set.refs);
  const mmRuns: Timed[] = [];
  const unverifiedRuns: Timed[] = [];
  const skRuns: Timed[] = [];
  const ceilingRuns: Download[] = [];
  const diskRuns: Download[] = [];
  const checkedRuns: Download[] = [];
  for (let round = 0; round < 2; round++) {
    ceilingRuns.push(await rawCeiling(registry, blobs));
    diskRuns.push(await diskCeiling(registry, blobs, join(dir, 'disk-ceiling')));
    checkedRuns.push(await diskCeiling(registry, blobs, join(dir, 'disk-ceiling'), true));
    // The run after another pays for the first one's write-back: each goes first in one round.
    const verified = (): Promise<Timed> => meshmirror(dir, set.refs, 'release-like');
    const unverified = (): Promise<Timed> => meshmirror(dir, set.refs, 'release-like-unverified', ['--no-verify']);
    if (round % 2 === 0) {
      mmRuns.push(await verified());
      unverifiedRuns.push(await unverified());
    } else {
      unverifiedRuns.push(await unverified());
      mmRuns.push(await verified());
    }
    skRuns.push(await skopeoAll(dir, set.refs));
    console.log(
      `bench: round ${round + 1}: raw ceiling ${ceilingRuns[round]!.seconds.toFixed(1)} s, written once ${diskRuns[round]!.seconds.toFixed(1)} s, checked and written once ${checkedRuns[round]!.seconds.toFixed(1)} s, meshmirror ${mmRuns[round]!.seconds.toFixed(1)} s (--no-verify ${unverifiedRuns[round]!.seconds.toFixed(1)} s), skopeo ${skRuns[round]!.seconds.toFixed(1)} s`,
    );
  }
  const best = <T extends { seconds: number }>(runs: T[]): T => runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  const mm = best(mmRuns);
  const unverified = best(unverifiedRuns);
  const sk = best(skRuns);
  const ceiling = best(ceilingRuns);
  const disk = best(diskRuns);
  const checked = best(checkedRuns);
  const start = await processStart();

  console.log(`bench: a single image with one ${formatBytes(bigBlobBytes)} layer`);
  const big = await prepare(registry, join(dir, 'big'), [
    { name: 'bench/one-big-blob:1.0', platforms: [{ architecture: 'amd64', layers: [{ seed: 'bench-big', size: bigBlobBytes }] }] },
  ]);
  const mmBig = await meshmirror(dir, big.refs, 'big-blob');

  const cpu = (seconds: number): string => `${seconds.toFixed(1)} s`;
  const rows = [
    ['run', 'wall time', 'CPU time', 'peak memory', 'written to disk per unique byte', 'hashed per unique byte'],
    [
      `raw ceiling: ${blobs.length} unique blobs (${formatBytes(ceiling.bytes)}) to nowhere, ${CEILING_PARALLEL} at a time (best of 2)`,
      `${ceiling.seconds.toFixed(1)} s`,
      cpu(ceiling.cpuSeconds),
      '-',
      '0',
      '0',
    ],
    [`the same, each written once to a file and fsynced (best of 2)`, `${disk.seconds.toFixed(1)} s`, cpu(disk.cpuSeconds), '-', '1.00×', '0'],
    [`the same, each also checked against its digest (sha256) (best of 2)`, `${checked.seconds.toFixed(1)} s`, cpu(checked.cpuSeconds), '-', '1.00×', '1.00×'],
    [`meshmirror --version: a process start (best of 3)`, `${start.seconds.toFixed(2)} s`, cpu(start.cpuSeconds), formatBytes(start.maxRssBytes), '-', '-'],
    [
      `meshmirror mirror (${set.refs.length} images, best of 2)`,
      `${mm.seconds.toFixed(1)} s`,
      cpu(mm.cpuSeconds),
      formatBytes(mm.maxRssBytes),
      perUnique(mm.writtenBytes, set.uniqueBytes),
      perUnique(mm.hashedBytes ?? 0, set.uniqueBytes),
    ],
    [
      `the same with --no-verify (no reading the archive back)`,
      `${unverified.seconds.toFixed(1)} s`,
      cpu(unverified.cpuSeconds),
      formatBytes(unverified.maxRssBytes),
      perUnique(unverified.writtenBytes, set.uniqueBytes),
      perUnique(unverified.hashedBytes ?? 0, set.uniqueBytes),
    ],
    [
      `skopeo copy --all, image by image (best of 2)`,
      `${sk.seconds.toFixed(1)} s`,
      cpu(sk.cpuSeconds),
      formatBytes(sk.maxRssBytes),
      perUnique(sk.writtenBytes, set.uniqueBytes),
      '-',
    ],
    [
      `meshmirror mirror (one ${formatBytes(bigBlobBytes)} blob)`,
      `${mmBig.seconds.toFixed(1)} s`,
      cpu(mmBig.cpuSeconds),
      formatBytes(mmBig.maxRssBytes),
      perUnique(mmBig.writtenBytes, big.uniqueBytes),
      perUnique(mmBig.hashedBytes ?? 0, big.uniqueBytes),
    ],
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  console.log('');
  console.log(`meshmirror runs ${underTest.mode}; ${sameStartNote()}`);
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join('  '));
  console.log('');
  const overCeiling = mm.seconds / ceiling.seconds;
  console.log(`ratio meshmirror / raw ceiling: ${overCeiling.toFixed(2)} (target <= 1.10: ${overCeiling <= 1.1 ? 'met' : 'NOT met'})`);
  console.log(
    `ratio meshmirror / each byte written once: ${(mm.seconds / disk.seconds).toFixed(2)} (meshmirror writes each byte twice, its resumable store and then the archive, and starts a process)`,
  );
  console.log(
    `ratio meshmirror / each byte checked and written once: ${(mm.seconds / checked.seconds).toFixed(2)}, with its process start taken off: ${((mm.seconds - start.seconds) / checked.seconds).toFixed(2)}; --no-verify: ${(unverified.seconds / checked.seconds).toFixed(2)}`,
  );
  console.log(
    `CPU time per wall second on this machine's ${availableParallelism()} cores: raw ceiling ${(ceiling.cpuSeconds / ceiling.seconds).toFixed(2)}, checked and written once ${(checked.cpuSeconds / checked.seconds).toFixed(2)}, meshmirror ${(mm.cpuSeconds / mm.seconds).toFixed(2)} (the registry's own CPU comes on top)`,
  );
  const ratio = mm.seconds / sk.seconds;
  console.log(
    `ratio meshmirror / skopeo: ${ratio.toFixed(2)} (issue 16's target <= 0.70: ${ratio <= 0.7 ? 'met' : 'NOT met'}; the first release's <= 0.50: ${ratio <= 0.5 ? 'met' : 'NOT met'})`,
  );
  console.log(
    `peak memory moving a ${formatBytes(bigBlobBytes)} blob: ${formatBytes(mmBig.maxRssBytes)} (target < 200 MB: ${mmBig.maxRssBytes < 200 * MB ? 'met' : 'NOT met'})`,
  );
} finally {
  await registry.stop();
  await underTest.remove();
  await rm(dir, { recursive: true, force: true });
}
