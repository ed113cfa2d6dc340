/**
 * Fault matrix, upstream group: the outage that failed whole runs. Eight images share one 16 MiB
 * base layer; the registry (through the fault proxy) stops accepting connections while that layer
 * is half fetched, or half uploaded into the target, and comes back minutes later. With the default
 * settings a run must wait it out: exit 0, every image at its source digest, no byte fetched or
 * sent twice beyond what was in flight, a handful of probes while the host was down, and a progress
 * line that says what the run is waiting for.
 *
 * The sample keeps the outage at 40 s (longer than the old count of five retries lasted); the full
 * matrix takes the registry away for five minutes, and also shows the other end: with
 * `--image-timeout` shorter than the outage, the shared layer is given up once and every image that
 * needs it fails, by name, while the re-run completes.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import type { SampleImage } from '../../packages/coordinator/src/demo/sample-image-set.ts';
import { runMeshmirror, spawnMeshmirror, waitFor, type CliResult } from '../support/cli.ts';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.ts';
import { extractChunks, mirrorArgs, startMirrorFixture, type MirrorFixture } from '../support/mirror-fixture.ts';
import { startRegistry, type RunningRegistry } from '../support/registry.ts';
import { skopeoInspectDigest } from '../support/skopeo.ts';
import { FULL_MATRIX, scenario } from './matrix.ts';

const MiB = 1024 * 1024;
const IMAGES = 8;
const BASE_BYTES = 16 * MiB;
/** Where the outage starts: this far into the shared layer. */
const HELD_AT = 8 * MiB;
/** Bytes the proxy may serve beyond the unique set where a transfer resumes (a few socket reads). */
const RESUME_SLACK = 512 * 1024;
/** The sample's outage: longer than five retries from 1 s lasted (about 31 s), short enough for CI. */
const SAMPLE_OUTAGE_S = 40;
const FULL_OUTAGE_S = 300;

function outageImages(): SampleImage[] {
  const base = { seed: 'outage-base', size: BASE_BYTES };
  return Array.from({ length: IMAGES }, (_, i) => ({
    name: `outage/app${i}:1.0`,
    platforms: [{ architecture: 'amd64', layers: [base, { seed: `outage-app${i}`, size: MiB + i * 1_000 }] }],
  }));
}

/**
 * The most failed attempts an outage of `seconds` may cost: requests in flight when the host went
 * away (the default five parallel layers, each of which may also be mid-way through a manifest or
 * an upload session, so twice that), then one probe at a time with backoff 1, 2, 4, 8, 16 s and
 * every 30 s after. Were every waiting request to retry on its own, a 40 s outage would cost 35 or more.
 */
function probeBound(seconds: number): number {
  const inFlight = 2 * 5;
  const probes = 5 + Math.ceil(Math.max(0, seconds - 31) / 30) + 1;
  return inFlight + probes;
}

let fx: MirrorFixture;
let baseDigest: string;

beforeAll(async () => {
  fx = await startMirrorFixture(outageImages());
  const layout = join(fx.dir, 'source-layout');
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const first = index.manifests[0];
  if (first === undefined) throw new Error('empty source layout');
  const manifest = JSON.parse(await readFile(join(layout, 'blobs', 'sha256', first.digest.slice('sha256:'.length)), 'utf8')) as { layers: Array<{ digest: string }> };
  baseDigest = manifest.layers[0]?.digest ?? '';
});
afterAll(async () => {
  await fx?.close();
});

/** Body bytes the proxy delivered of the shared layer, from whichever repository it was asked. */
function baseBytesServed(proxy: FaultProxy): number {
  let bytes = 0;
  for (const [path, n] of proxy.stats().byPath) if (path.endsWith(`/blobs/${baseDigest}`)) bytes += n;
  return bytes;
}

async function config(label: string, host: string): Promise<string> {
  return fx.writeConfig(`${label}.yaml`, { additionalImages: fx.pushed.map((p) => `${host}/${p.name}`) });
}

/** Takes `proxy`'s registry away for `seconds` once `started()` holds; returns how long it was gone. */
async function outage(proxy: FaultProxy, seconds: number, started: () => boolean, running: () => boolean, what: string): Promise<number> {
  await waitFor(() => started() || !running(), what, 120_000);
  await proxy.setDown(true);
  const downAt = Date.now();
  // The outage is the fault itself, not a synchronisation: the registry is gone for `seconds`.
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  await proxy.setDown(false);
  return Date.now() - downAt;
}

/** The progress lines that said what the run was waiting for. */
function waitingLines(result: CliResult, host: string): string[] {
  return result.stderr.split('\n').filter((l) => l.startsWith('progress:') && l.includes(`waiting for ${host}: unreachable for`));
}

/** Every image read back by skopeo at its source digest from an extracted archive; every blob hashes to its name. */
async function checkArchive(out: string, host: string, label: string): Promise<number> {
  const layout = join(fx.dir, `layout-${label}`);
  await extractChunks(out, layout);
  let delivered = 0;
  for (const pushed of fx.pushed) {
    expect(await skopeoInspectDigest(`oci:${layout}:${host}/${pushed.name}`), pushed.name).toBe(pushed.digest);
    delivered += 1;
  }
  const dir = join(layout, 'blobs', 'sha256');
  for (const name of await readdir(dir)) {
    expect(
      createHash('sha256')
        .update(await readFile(join(dir, name)))
        .digest('hex'),
      `archived blob ${name}`,
    ).toBe(name);
  }
  return delivered;
}

interface RunReport {
  retries: number;
  images: { archived?: number; pushed?: number; failed: number };
}

/** The run's report, or zero retries when the run stopped before writing it (its exit code says why). */
async function readReport(file: string): Promise<RunReport> {
  return JSON.parse(await readFile(file, 'utf8').catch(() => '{"retries":0,"images":{"failed":0}}')) as RunReport;
}

describe('upstream outage', () => {
  const mirrorOutage = (seconds: number, sample: boolean): void => {
    const name = `upstream: registry refuses connections for ${seconds} s in the middle of a layer ${IMAGES} images share`;
    scenario(name, { sample, timeout: (seconds + 180) * 1000 }, async (record) => {
      fx.proxy.resetStats();
      // The shared layer is held at 8 MiB, so the outage starts while it is mid-transfer.
      fx.proxy.setRules([
        { match: { method: 'GET', path: new RegExp(`/blobs/${baseDigest}$`) }, fault: { kind: 'stall-after', bytes: HELD_AT, ms: Infinity }, times: 1 },
      ]);
      const label = `outage-${seconds}`;
      const out = join(fx.dir, `out-${label}`);
      // Default settings; text output, so the progress lines go to stderr as they would in a log.
      const args = mirrorArgs(await config(label, fx.proxy.host), out, join(fx.dir, `cache-${label}`)).filter(
        (a, i, all) => a !== '--output' && all[i - 1] !== '--output',
      );
      const run = spawnMeshmirror(args);
      let running = true;
      void run.result.then(() => (running = false));
      try {
        const outageMs = await outage(
          fx.proxy,
          seconds,
          // Every other blob is in by then: the outage cuts the shared layer alone, so the failed
          // attempts counted are that layer's probes. (The blobs race the layer's first 8 MiB; cut
          // mid-transfer, each would fail once and retry after the pause, before the host is known
          // to refuse connections, which the count below does not allow for.)
          () => baseBytesServed(fx.proxy) >= HELD_AT && fx.proxy.stats().blobBodyBytes - baseBytesServed(fx.proxy) >= fx.uniqueBlobBytes - BASE_BYTES,
          () => running,
          'the shared layer to reach 8 MiB with every other blob in',
        );
        const stillRunning = running;
        const result = await run.result;
        fx.proxy.setRules([]);
        const report = await readReport(join(out, 'working-dir', 'report.json'));
        const fetched = fx.proxy.stats().blobBodyBytes;
        const delivered = result.code === 0 ? await checkArchive(out, fx.proxy.host, label) : 0;
        const waiting = waitingLines(result, fx.proxy.host);
        record({
          scenario: name,
          faults: `connections refused for ${(outageMs / 1000).toFixed(1)} s while the shared ${BASE_BYTES / MiB} MiB layer is at ${HELD_AT / MiB} MiB (default settings: retries until --image-timeout 10m passes without progress)`,
          expected: IMAGES,
          delivered,
          fetchedBytes: fetched,
          uniqueBytes: fx.uniqueBlobBytes,
          outcome: `${result.code === 0 ? 'complete' : `exit ${result.code}`} (${report.retries} failed attempts in all, the host probed one request at a time; ${waiting.length} progress lines said "${waiting[0]?.replace(/^.*; (waiting for)/, '$1') ?? '-'}"), skopeo ${delivered === IMAGES ? '✓' : '✗'}`,
        });
        expect(stillRunning, 'the run gave up during the outage').toBe(true);
        expect(result.code, result.stderr.slice(-2_000)).toBe(0);
        expect(delivered).toBe(IMAGES);
        // Resume, not restart: the shared layer continued from the byte it held.
        expect(fetched).toBeGreaterThanOrEqual(fx.uniqueBlobBytes);
        expect(fetched).toBeLessThanOrEqual(fx.uniqueBlobBytes + RESUME_SLACK);
        // A handful of probes: one request at a time, at 1, 2, 4, 8, 16 s, then every 30 s, plus what
        // was in flight when the host went away (each worker's request fails once).
        expect(report.retries).toBeLessThanOrEqual(probeBound(seconds));
        expect(waiting.length, 'progress lines naming the host the run waits for').toBeGreaterThanOrEqual(2);
      } finally {
        await fx.proxy.setDown(false);
        fx.proxy.setRules([]);
        if (running) run.child.kill('SIGKILL');
        await run.result;
      }
    });
  };
  mirrorOutage(FULL_MATRIX ? FULL_OUTAGE_S : SAMPLE_OUTAGE_S, true);

  scenario(
    'upstream: an outage longer than --image-timeout gives the shared layer up once; the re-run completes',
    { sample: false, timeout: 240_000 },
    async (record) => {
      const seconds = 30;
      fx.proxy.resetStats();
      fx.proxy.setRules([
        { match: { method: 'GET', path: new RegExp(`/blobs/${baseDigest}$`) }, fault: { kind: 'stall-after', bytes: HELD_AT, ms: Infinity }, times: 1 },
      ]);
      const label = 'outage-timeout';
      const out = join(fx.dir, `out-${label}`);
      const cache = join(fx.dir, `cache-${label}`);
      const configFile = await config(label, fx.proxy.host);
      const run = spawnMeshmirror(mirrorArgs(configFile, out, cache, '--image-timeout', '12s'));
      let running = true;
      void run.result.then(() => (running = false));
      try {
        const outageMs = await outage(
          fx.proxy,
          seconds,
          () => baseBytesServed(fx.proxy) >= HELD_AT,
          () => running,
          'the shared layer to reach 8 MiB',
        );
        const result = await run.result;
        const summary = JSON.parse(result.stdout) as RunReport & { files: { errors?: string } };
        const errors = (await readFile(summary.files.errors ?? '', 'utf8')).trim().split('\n');
        const rerun = await runMeshmirror(mirrorArgs(configFile, out, cache));
        const delivered = rerun.code === 0 ? await checkArchive(out, fx.proxy.host, label) : 0;
        record({
          scenario: 'upstream: an outage longer than --image-timeout gives the shared layer up once; the re-run completes',
          faults: `connections refused for ${(outageMs / 1000).toFixed(1)} s while the shared layer is at ${HELD_AT / MiB} MiB, --image-timeout 12s`,
          expected: IMAGES,
          delivered,
          fetchedBytes: fx.proxy.stats().blobBodyBytes,
          uniqueBytes: fx.uniqueBlobBytes,
          outcome: `exit ${result.code}: ${errors.length} images failed with "${(errors[0] ?? '').replace(/^.*?: (MM_)/, '$1').slice(0, 160)}" → re-run exit ${rerun.code}, skopeo ${delivered === IMAGES ? '✓' : '✗'}`,
        });
        expect(result.code).toBe(68);
        // The layer was given up once, when its own time ran out, and every image that needs it says so.
        expect(summary.images.failed).toBe(IMAGES);
        expect(errors).toHaveLength(IMAGES);
        for (const line of errors) expect(line).toContain('gave up after 12.0s without progress (--image-timeout)');
        expect(rerun.code, rerun.stderr.slice(-2_000)).toBe(0);
        expect(delivered).toBe(IMAGES);
        expect(fx.proxy.stats().blobBodyBytes).toBeLessThanOrEqual(fx.uniqueBlobBytes + RESUME_SLACK);
      } finally {
        await fx.proxy.setDown(false);
        fx.proxy.setRules([]);
        if (running) run.child.kill('SIGKILL');
        await run.result;
      }
    },
  );
});

describe('push outage', () => {
  let target: RunningRegistry;
  let targetProxy: FaultProxy;
  let archive: string;

  beforeAll(async () => {
    target = await startRegistry();
    targetProxy = await startFaultProxy(target.url);
    // The archive to push, mirrored straight from the source registry.
    archive = join(fx.dir, 'push-archive');
    const made = await runMeshmirror(mirrorArgs(await config('push-source', fx.registry.host), archive, join(fx.dir, 'cache-push-source')));
    if (made.code !== 0) throw new Error(`could not make the archive to push: ${made.stderr.slice(-2_000)}`);
  });
  afterAll(async () => {
    await targetProxy?.close();
    await target?.stop();
  });

  const pushOutage = (seconds: number, sample: boolean): void => {
    const name = `upstream: the target registry refuses connections for ${seconds} s in the middle of an upload (disk to mirror)`;
    scenario(name, { sample, timeout: (seconds + 180) * 1000 }, async (record) => {
      targetProxy.resetStats();
      // The shared layer goes in 4 MiB PATCHes; the third is held after 64 KiB, then the target goes away.
      targetProxy.setRules([
        { match: { method: 'PATCH', header: ['content-range', /^8388608-/] }, fault: { kind: 'stall-request-after', bytes: 64 * 1024, ms: 600_000 }, times: 1 },
      ]);
      const configFile = await config('push-source', fx.registry.host);
      const args = [
        'mirror',
        '-c',
        configFile,
        '--from',
        `file://${archive}`,
        `docker://${targetProxy.host}/mirror`,
        '--dest-tls-verify=false',
        '--cache-dir',
        join(fx.dir, `cache-push-${seconds}`),
        '--upload-chunk-size',
        String(4 * MiB),
      ];
      const run = spawnMeshmirror(args);
      let running = true;
      void run.result.then(() => (running = false));
      try {
        const stalled = (): boolean => targetProxy.stats().log.some((e) => e.fault === 'stall-request-after' && e.requestBytes >= 64 * 1024);
        const outageMs = await outage(targetProxy, seconds, stalled, () => running, 'the held PATCH');
        const stillRunning = running;
        const result = await run.result;
        const stats = targetProxy.stats();
        // What the target had taken but not confirmed when it went away: requests that got no answer.
        const inFlight = stats.log.filter((e) => e.status === 0 && /\/blobs\/uploads\//.test(e.path)).reduce((n, e) => n + e.requestBytes, 0);
        const report = await readReport(join(archive, 'working-dir', 'push-report.json'));
        let delivered = 0;
        for (const pushed of fx.pushed) {
          const repository = pushed.name.split(':')[0] ?? '';
          const digest = await skopeoInspectDigest(`docker://${target.host}/mirror/${repository}:1.0`, { tlsVerify: false }).catch(() => undefined);
          if (digest === pushed.digest) delivered += 1;
        }
        const waiting = waitingLines(result, targetProxy.host);
        record({
          scenario: name,
          faults: `target connections refused for ${(outageMs / 1000).toFixed(1)} s while the shared layer's third 4 MiB PATCH is in flight (default settings)`,
          expected: IMAGES,
          delivered,
          fetchedBytes: stats.uploadBodyBytes,
          uniqueBytes: fx.uniqueBlobBytes,
          outcome: `${result.code === 0 ? 'complete' : `exit ${result.code}`} (sent ${stats.uploadBodyBytes} B for ${fx.uniqueBlobBytes} B unique, ${inFlight} B in flight at the outage; ${report.retries} failed attempts; ${waiting.length} progress lines named the target), skopeo ${delivered === IMAGES ? '✓' : '✗'}`,
        });
        expect(stillRunning, 'the push gave up during the outage').toBe(true);
        expect(result.code, result.stderr.slice(-2_000)).toBe(0);
        expect(delivered).toBe(IMAGES);
        // The held upload resumed from what the target confirmed: only what was in flight went twice.
        expect(stats.uploadBodyBytes).toBeLessThanOrEqual(fx.uniqueBlobBytes + inFlight);
        expect(report.retries).toBeLessThanOrEqual(probeBound(seconds));
        expect(waiting.length, 'progress lines naming the target the push waits for').toBeGreaterThanOrEqual(2);
      } finally {
        await targetProxy.setDown(false);
        targetProxy.setRules([]);
        if (running) run.child.kill('SIGKILL');
        await run.result;
      }
    });
  };
  pushOutage(FULL_MATRIX ? FULL_OUTAGE_S : SAMPLE_OUTAGE_S, true);
});
