/**
 * `pnpm bench`: a release-like image set (at least 500 MB: shared base, shared middle layers, unique
 * top layers, multi-arch indexes) served by a real `docker-registry`, mirrored to disk by meshmirror
 * and, in the same run, copied by `skopeo copy --all` image by image into one OCI layout. Then one
 * 1 GiB blob mirrored on its own to show that memory does not grow with blob size.
 * Prints wall times, the ratio and peak memory (max RSS, from GNU time).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { formatBytes } from '@meshmirror/shared';
import { releaseLikeImageSet, writeSampleLayout, type SampleImage } from '../../packages/coordinator/src/demo/sample-image-set.ts';
import { CLI_ENTRY } from '../support/cli.ts';
import { CLI_NODE_FLAGS } from '../../packages/coordinator/src/cli/node-flags.ts';
import { pushLayout } from '../support/push-layout.ts';
import { startRegistry, type RunningRegistry } from '../support/registry.ts';

const execFileAsync = promisify(execFile);
const MB = 1_000_000;
const totalBytes = Number(process.env['BENCH_BYTES'] ?? 520 * MB);
const bigBlobBytes = Number(process.env['BENCH_BIG_BLOB_BYTES'] ?? 1024 ** 3);

interface Timed {
  seconds: number;
  maxRssBytes: number;
}

/** Runs a command under GNU time; returns wall seconds and peak resident memory. */
async function timed(command: string, args: string[]): Promise<Timed> {
  const { stderr } = await execFileAsync('/usr/bin/time', ['-f', 'BENCH %e %M', command, ...args], { maxBuffer: 64 * MB });
  const m = /BENCH ([\d.]+) (\d+)\s*$/.exec(stderr);
  if (m === null) throw new Error(`no timing in output of ${command}: ${stderr.slice(-500)}`);
  return { seconds: Number(m[1]), maxRssBytes: Number(m[2]) * 1024 };
}

async function prepare(registry: RunningRegistry, dir: string, images: SampleImage[]): Promise<{ refs: string[]; uniqueBytes: number }> {
  const layout = join(dir, 'source');
  const written = await writeSampleLayout(layout, images);
  const pushed = await pushLayout(layout, registry.url);
  return { refs: pushed.map((p) => `${registry.host}/${p.name}`), uniqueBytes: written.uniqueBytes };
}

/**
 * Flushes dirty pages first, so a timed run does not pay for the write-back of whatever came before
 * it (generating and pushing the set leaves hundreds of MB for the disk to write).
 */
async function settle(): Promise<void> {
  await execFileAsync('sync');
}

async function meshmirror(dir: string, refs: string[], name: string): Promise<Timed> {
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
  return timed(process.execPath, [
    ...CLI_NODE_FLAGS,
    CLI_ENTRY,
    'mirror',
    '-c',
    config,
    `file://${join(dir, `${name}-out`)}`,
    '--cache-dir',
    join(dir, `${name}-cache`),
    '--src-tls-verify=false',
  ]);
}

async function skopeoAll(dir: string, refs: string[]): Promise<Timed> {
  const layout = join(dir, 'skopeo-layout');
  await rm(layout, { recursive: true, force: true });
  await settle();
  let seconds = 0;
  let maxRssBytes = 0;
  for (const ref of refs) {
    const name = ref.slice(ref.indexOf('/') + 1);
    const t = await timed('skopeo', ['copy', '--all', '--src-tls-verify=false', '--quiet', `docker://${ref}`, `oci:${layout}:${name}`]);
    seconds += t.seconds;
    maxRssBytes = Math.max(maxRssBytes, t.maxRssBytes);
  }
  return { seconds, maxRssBytes };
}

const dir = await mkdtemp(join(tmpdir(), 'meshmirror-bench-'));
const registry = await startRegistry();
try {
  console.log(`bench: generating a release-like set of at least ${formatBytes(totalBytes)} and pushing it to docker-registry at ${registry.host}`);
  const set = await prepare(registry, join(dir, 'set'), releaseLikeImageSet({ totalBytes }));
  console.log(`bench: ${set.refs.length} images, ${formatBytes(set.uniqueBytes)} of unique blobs and manifests`);

  // Two rounds, alternating, each from a cold cache and an empty destination; the best of each counts.
  const mmRuns: Timed[] = [];
  const skRuns: Timed[] = [];
  for (let round = 0; round < 2; round++) {
    mmRuns.push(await meshmirror(dir, set.refs, 'release-like'));
    skRuns.push(await skopeoAll(dir, set.refs));
    console.log(`bench: round ${round + 1}: meshmirror ${mmRuns[round]!.seconds.toFixed(1)} s, skopeo ${skRuns[round]!.seconds.toFixed(1)} s`);
  }
  const best = (runs: Timed[]): Timed => runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  const mm = best(mmRuns);
  const sk = best(skRuns);

  console.log(`bench: a single image with one ${formatBytes(bigBlobBytes)} layer`);
  const big = await prepare(registry, join(dir, 'big'), [
    { name: 'bench/one-big-blob:1.0', platforms: [{ architecture: 'amd64', layers: [{ seed: 'bench-big', size: bigBlobBytes }] }] },
  ]);
  const mmBig = await meshmirror(dir, big.refs, 'big-blob');

  const rows = [
    ['run', 'wall time', 'peak memory'],
    [`meshmirror mirror (${set.refs.length} images, best of 2)`, `${mm.seconds.toFixed(1)} s`, formatBytes(mm.maxRssBytes)],
    [`skopeo copy --all, image by image (best of 2)`, `${sk.seconds.toFixed(1)} s`, formatBytes(sk.maxRssBytes)],
    [`meshmirror mirror (one ${formatBytes(bigBlobBytes)} blob)`, `${mmBig.seconds.toFixed(1)} s`, formatBytes(mmBig.maxRssBytes)],
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  console.log('');
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join('  '));
  console.log('');
  const ratio = mm.seconds / sk.seconds;
  console.log(`ratio meshmirror / skopeo: ${ratio.toFixed(2)} (target <= 0.50: ${ratio <= 0.5 ? 'met' : 'NOT met'})`);
  console.log(
    `peak memory moving a ${formatBytes(bigBlobBytes)} blob: ${formatBytes(mmBig.maxRssBytes)} (target < 200 MB: ${mmBig.maxRssBytes < 200 * MB ? 'met' : 'NOT met'})`,
  );
} finally {
  await registry.stop();
  await rm(dir, { recursive: true, force: true });
}
