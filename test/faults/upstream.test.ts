/**
 * Fault matrix, upstream group: what the source registry (or the network to it) can do to one
 * `meshmirror mirror` to disk of the fixture's five images, through the fault proxy. Every row ends
 * with the run complete, every image read back by skopeo with the digest that was pushed, every
 * archived blob hashing to its name, and the blob bytes the proxy served compared with the set's
 * unique blob bytes: where a transfer can resume, it must resume, not start over.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { runMeshmirror, spawnMeshmirror, waitFor, type CliResult } from '../support/cli.ts';
import type { FaultRule } from '../support/fault-proxy.ts';
import { extractChunks, mirrorArgs, startMirrorFixture, type MirrorFixture } from '../support/mirror-fixture.ts';
import { skopeoInspectDigest } from '../support/skopeo.ts';
import { startTokenGate } from '../support/token-gate.ts';
import { FULL_MATRIX, scenario, type FaultRow } from './matrix.ts';

const MiB = 1024 * 1024;
/** Bytes the proxy may serve beyond the unique set where a transfer resumes (a few socket reads). */
const RESUME_SLACK = 512 * 1024;
/** Seed of the random faults; print it, and set MESHMIRROR_FAULT_SEED to replay a run's draws. */
const SEED = Number(process.env['MESHMIRROR_FAULT_SEED'] ?? 20261124);

interface Summary {
  images: { archived: number; failed: number };
  bytes: { fetched: number; unique: number };
  retries: number;
  rangesIgnored: number;
  files: { report: string; errors?: string };
}

let fx: MirrorFixture;
/** Blob paths in the source registry, e.g. the big layer's `/v2/sample/big/blobs/sha256:…`. */
let blobs: { big: RegExp; bigSize: number; appMid: RegExp; appTop: RegExp; appTopSize: number };

/** `[digest, size]` of layer `index` of an image in the fixture's source layout. */
async function layerOf(name: string, index: number): Promise<{ digest: string; size: number }> {
  const layout = join(fx.dir, 'source-layout');
  const readBlob = async (digest: string): Promise<Record<string, unknown>> =>
    JSON.parse(await readFile(join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length)), 'utf8')) as Record<string, unknown>;
  const index0 = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
  const entry = index0.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name']?.endsWith(name));
  if (entry === undefined) throw new Error(`${name} is not in the source layout`);
  const manifest = (await readBlob(entry.digest)) as { layers: Array<{ digest: string; size: number }> };
  const layer = manifest.layers[index];
  if (layer === undefined) throw new Error(`${name} has no layer ${index}`);
  return layer;
}

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

beforeAll(async () => {
  fx = await startMirrorFixture();
  const big = await layerOf('sample/big:1.0', 0);
  const appMid = await layerOf('sample/app:1.0', 1);
  const appTop = await layerOf('sample/app:1.0', 2);
  blobs = {
    big: new RegExp(`^/v2/sample/big/blobs/${escape(big.digest)}$`),
    bigSize: big.size,
    appMid: new RegExp(`^/v2/sample/app/blobs/${escape(appMid.digest)}$`),
    appTop: new RegExp(`^/v2/sample/app/blobs/${escape(appTop.digest)}$`),
    appTopSize: appTop.size,
  };
});
afterAll(async () => {
  await fx?.close();
});

interface ArchiveCheck {
  /** Images whose archived digest equals the pushed one. */
  delivered: number;
  /** Blob files in the extracted archive; each hashed to its name. */
  blobFiles: number;
}

/**
 * Extracts the archive, reads every OCI image back with skopeo (the Docker-format one, which skopeo
 * 1.9 cannot see in a layout, by its index.json entry and its manifest's bytes) and hashes every
 * blob file: a wrong byte that reached the archive fails here.
 */
async function checkArchive(out: string, host: string, label: string): Promise<ArchiveCheck> {
  const layout = join(fx.dir, `layout-${label}`);
  await extractChunks(out, layout);
  let delivered = 0;
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
  for (const pushed of fx.pushed) {
    const ref = `${host}/${pushed.name}`;
    if (pushed.name === 'sample/docker:3.1') {
      const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === ref);
      expect(entry?.digest, ref).toBe(pushed.digest);
    } else {
      expect(await skopeoInspectDigest(`oci:${layout}:${ref}`), ref).toBe(pushed.digest);
    }
    delivered += 1;
  }
  const dir = join(layout, 'blobs', 'sha256');
  const names = await readdir(dir);
  for (const name of names) {
    const actual = createHash('sha256')
      .update(await readFile(join(dir, name)))
      .digest('hex');
    expect(actual, `archived blob ${name}`).toBe(name);
  }
  return { delivered, blobFiles: names.length };
}

interface MirrorRun {
  result: CliResult;
  summary: Summary | undefined;
  out: string;
  cache: string;
}

function parseSummary(result: CliResult): Summary | undefined {
  try {
    return JSON.parse(result.stdout) as Summary;
  } catch {
    return undefined;
  }
}

/** The five images, by `host` (the proxy, or a gate in front of it). */
async function configFor(label: string, host = fx.proxy.host): Promise<string> {
  return fx.writeConfig(`${label}.yaml`, { additionalImages: fx.pushed.map((p) => `${host}/${p.name}`) });
}

/** One `meshmirror mirror` of the five images to `out-<label>` with a cache of its own. */
async function mirrorOnce(label: string, extra: string[] = [], host?: string): Promise<MirrorRun> {
  const out = join(fx.dir, `out-${label}`);
  const cache = join(fx.dir, `cache-${label}`);
  const result = await runMeshmirror(mirrorArgs(await configFor(label, host), out, cache, ...extra));
  return { result, summary: parseSummary(result), out, cache };
}

/** The row's outcome: `complete (…), skopeo ✓`, or the exit code and the first line of the errors file (or of stderr). */
/** The row of a scenario that mirrors the fixture's images once (or resumes into the same archive). */
async function mirrorRow(scenario: string, faults: string, run: MirrorRun, check: ArchiveCheck | undefined, fetchedBytes: number, note = ''): Promise<FaultRow> {
  return {
    scenario,
    faults,
    expected: fx.pushed.length,
    delivered: check?.delivered ?? 0,
    fetchedBytes,
    uniqueBytes: fx.uniqueBlobBytes,
    outcome: await outcomeOf(run, check, note),
  };
}

async function outcomeOf(run: MirrorRun, check: ArchiveCheck | undefined, note = ''): Promise<string> {
  const { result, summary } = run;
  if (result.code !== 0) {
    const errors = summary?.files.errors === undefined ? '' : await readFile(summary.files.errors, 'utf8').catch(() => '');
    const line = errors.trim().split('\n')[0] ?? '';
    return `exit ${result.code}: "${line !== '' ? line : lastLine(result.stderr)}"`;
  }
  return `complete${note === '' ? '' : ` (${note})`}, skopeo ${check?.delivered === fx.pushed.length ? '✓' : '✗'}`;
}

function lastLine(text: string): string {
  return (
    text
      .trim()
      .split('\n')
      .filter((l) => !l.startsWith('progress:') && !l.startsWith('{'))
      .pop() ?? ''
  );
}

/** Body bytes of the error answers the proxy made up for blob GETs (they count in `blobBodyBytes`). */
function injectedBlobBodyBytes(stats: ReturnType<typeof fx.proxy.stats>, rules: FaultRule[]): number {
  let bytes = 0;
  for (const entry of stats.log) {
    if (entry.fault !== 'status' || !/\/blobs\/sha256:/.test(entry.path)) continue;
    const rule = rules.find((r) => r.fault.kind === 'status' && r.match.path?.test(entry.path) === true && r.fault.status === entry.status);
    if (rule?.fault.kind === 'status') bytes += Buffer.byteLength(rule.fault.body ?? '');
  }
  return bytes;
}

/** Rules apply to a scenario's run only; stats start from zero. */
function inject(rules: FaultRule[], seed?: number): void {
  fx.proxy.resetStats();
  fx.proxy.setRules(rules, seed === undefined ? {} : { seed });
}

const anyGet = /^\/v2\/sample\/[^/]+\/(manifests|blobs)\//;
const manifestOf = (repository: string, tag: string): RegExp => new RegExp(`^/v2/sample/${repository}/manifests/${escape(tag)}$`);

describe('upstream faults', () => {
  scenario('upstream: resets at random offsets in 10% of responses', { sample: true }, async (record) => {
    inject([{ match: { method: 'GET', path: anyGet }, fault: { kind: 'reset-random' }, probability: 0.1 }], SEED);
    const run = await mirrorOnce('random-resets');
    fx.proxy.setRules([]);
    const stats = fx.proxy.stats();
    const resets = stats.log.filter((e) => e.fault === 'reset-random');
    const blobResets = resets.filter((e) => e.path.includes('/blobs/')).length;
    const check = run.result.code === 0 ? await checkArchive(run.out, fx.proxy.host, 'random-resets') : undefined;
    record({
      scenario: 'upstream: resets at random offsets in 10% of responses',
      faults: `reset at a random body offset in 10% of manifest and blob GETs (seed ${SEED}: ${resets.length} of ${stats.log.filter((e) => e.method === 'GET').length} GETs, ${blobResets} of them blobs)`,
      expected: fx.pushed.length,
      delivered: check?.delivered ?? run.summary?.images.archived ?? 0,
      fetchedBytes: stats.blobBodyBytes,
      uniqueBytes: fx.uniqueBlobBytes,
      outcome: await outcomeOf(run, check, `${run.summary?.retries ?? '?'} retries`),
    });
    expect(run.result.code, run.result.stderr).toBe(0);
    // A seed that injects nothing proves nothing.
    expect(blobResets, `seed ${SEED} reset no blob; pick another`).toBeGreaterThanOrEqual(1);
    expect(check?.delivered).toBe(fx.pushed.length);
    // Resume, not restart: a reset blob continues from the byte it reached.
    expect(stats.blobBodyBytes).toBeGreaterThanOrEqual(fx.uniqueBlobBytes);
    expect(stats.blobBodyBytes).toBeLessThanOrEqual(fx.uniqueBlobBytes + RESUME_SLACK);
  });

  scenario('upstream: stalls', { sample: false }, async (record) => {
    const stall = (bytes: number): FaultRule['fault'] => ({ kind: 'stall-after', bytes, ms: Infinity });
    inject([
      { match: { method: 'GET', path: blobs.big }, fault: stall(6 * MiB), times: 1 },
      { match: { method: 'GET', path: blobs.big }, fault: stall(9 * MiB), times: 1 },
      { match: { method: 'GET', path: blobs.appMid }, fault: stall(300_000), times: 1 },
      { match: { method: 'GET', path: manifestOf('multi', '2.0') }, fault: stall(100), times: 1 },
    ]);
    const run = await mirrorOnce('stalls', ['--stall-timeout', '2s']);
    fx.proxy.setRules([]);
    const stats = fx.proxy.stats();
    const stalls = stats.log.filter((e) => e.fault === 'stall-after').length;
    const check = run.result.code === 0 ? await checkArchive(run.out, fx.proxy.host, 'stalls') : undefined;
    record(
      await mirrorRow(
        'upstream: stalls',
        'body stops for good: big layer at 6 MiB, then 9 MiB further; a 1 MiB layer at 300 kB; an index manifest at 100 B (--stall-timeout 2s)',
        run,
        check,
        stats.blobBodyBytes,
        `${run.summary?.retries ?? '?'} retries`,
      ),
    );
    expect(run.result.code, run.result.stderr).toBe(0);
    expect(stalls).toBe(4);
    expect(check?.delivered).toBe(fx.pushed.length);
    expect(stats.blobBodyBytes).toBeGreaterThanOrEqual(fx.uniqueBlobBytes);
    expect(stats.blobBodyBytes).toBeLessThanOrEqual(fx.uniqueBlobBytes + RESUME_SLACK);
  });

  scenario('upstream: 5xx bursts on manifests and blobs', { sample: true }, async (record) => {
    const status = (code: number): FaultRule['fault'] => ({ kind: 'status', status: code, body: `{"errors":[{"code":"UNAVAILABLE","message":"injected ${code}"}]}` });
    // Five in a row on the big layer: as many as oc-mirror's --retry-times 5 would have allowed but the last.
    const bigBurst = [503, 500, 502, 503, 500];
    const manifestBurst = [500, 502, 503];
    const rules: FaultRule[] = [
      ...bigBurst.map((code) => ({ match: { method: 'GET', path: blobs.big }, fault: status(code), times: 1 })),
      ...manifestBurst.map((code) => ({ match: { method: 'GET', path: manifestOf('app', '1.0') }, fault: status(code), times: 1 })),
      ...manifestBurst.map((code) => ({ match: { method: 'GET', path: blobs.appTop }, fault: status(code), times: 1 })),
    ];
    inject(rules);
    const run = await mirrorOnce('5xx', ['--retry-delay', '200ms']);
    fx.proxy.setRules([]);
    const stats = fx.proxy.stats();
    const injected = stats.log.filter((e) => e.fault === 'status').length;
    const check = run.result.code === 0 ? await checkArchive(run.out, fx.proxy.host, '5xx') : undefined;
    record(
      await mirrorRow(
        'upstream: 5xx bursts on manifests and blobs',
        `503 500 502 503 500 in a row on the big layer; 500 502 503 on a manifest and on a layer (--retry-delay 200ms)`,
        run,
        check,
        stats.blobBodyBytes,
        `${run.summary?.retries ?? '?'} retries`,
      ),
    );
    expect(run.result.code, run.result.stderr).toBe(0);
    expect(injected).toBe(bigBurst.length + 2 * manifestBurst.length);
    expect(check?.delivered).toBe(fx.pushed.length);
    // A 5xx carries no blob bytes (only its error body): nothing is fetched twice.
    expect(stats.blobBodyBytes).toBe(fx.uniqueBlobBytes + injectedBlobBodyBytes(stats, rules));
  });

  scenario('upstream: 429 with Retry-After', { sample: true }, async (record) => {
    const retryAfterS = 3;
    const tooMany: FaultRule['fault'] = {
      kind: 'status',
      status: 429,
      headers: { 'Retry-After': String(retryAfterS), 'content-type': 'application/json' },
      body: '{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
    };
    const rules: FaultRule[] = [
      { match: { method: 'GET', path: blobs.big }, fault: tooMany, times: 1 },
      { match: { method: 'GET', path: manifestOf('base', '1.0') }, fault: tooMany, times: 1 },
    ];
    inject(rules);
    const run = await mirrorOnce('429');
    fx.proxy.setRules([]);
    const stats = fx.proxy.stats();
    // The same request again, after the 429: when did it come?
    const waits = stats.log
      .filter((e) => e.status === 429)
      .map((refused) => {
        const next = stats.log.find((e) => e.at >= refused.at && e !== refused && e.method === refused.method && e.path === refused.path);
        return next === undefined ? Infinity : next.at - refused.at;
      });
    const check = run.result.code === 0 ? await checkArchive(run.out, fx.proxy.host, '429') : undefined;
    record(
      await mirrorRow(
        'upstream: 429 with Retry-After',
        `429 TOOMANYREQUESTS, Retry-After: ${retryAfterS}, on the big layer and on a manifest (default retry settings)`,
        run,
        check,
        stats.blobBodyBytes,
        `asked again after ${waits.map((w) => `${(w / 1000).toFixed(2)} s`).join(' and ')}`,
      ),
    );
    expect(run.result.code, run.result.stderr).toBe(0);
    expect(waits).toHaveLength(2);
    // Honoured: not before Retry-After (timers may fire a few ms early on a loaded machine), and not
    // much later either (the default backoff from 1 s would have come back sooner).
    for (const wait of waits) {
      expect(wait).toBeGreaterThanOrEqual(retryAfterS * 1000 - 20);
      expect(wait).toBeLessThan(retryAfterS * 1000 + 5_000);
    }
    expect(check?.delivered).toBe(fx.pushed.length);
    expect(stats.blobBodyBytes).toBe(fx.uniqueBlobBytes + injectedBlobBodyBytes(stats, rules));
  });

  scenario('upstream: 503 with Retry-After as an HTTP date', { sample: true }, async (record) => {
    // An HTTP date has whole seconds: the date is fixed now, some seconds ahead, and each refused
    // request must not come back before it.
    const until = Math.ceil(Date.now() / 1000) * 1000 + 5_000;
    const unavailable: FaultRule['fault'] = {
      kind: 'status',
      status: 503,
      headers: { 'Retry-After': new Date(until).toUTCString(), 'content-type': 'application/json' },
      body: '{"errors":[{"code":"UNAVAILABLE","message":"maintenance"}]}',
    };
    const rules: FaultRule[] = [
      { match: { method: 'GET', path: blobs.big }, fault: unavailable, times: 1 },
      { match: { method: 'GET', path: manifestOf('base', '1.0') }, fault: unavailable, times: 1 },
    ];
    inject(rules);
    const run = await mirrorOnce('retry-after-date');
    fx.proxy.setRules([]);
    const stats = fx.proxy.stats();
    const refusals = stats.log.filter((e) => e.status === 503);
    const retriedAt = refusals.map(
      (refused) => stats.log.find((e) => e.at >= refused.at && e !== refused && e.method === refused.method && e.path === refused.path)?.at ?? Infinity,
    );
    const check = run.result.code === 0 ? await checkArchive(run.out, fx.proxy.host, 'retry-after-date') : undefined;
    record(
      await mirrorRow(
        'upstream: 503 with Retry-After as an HTTP date',
        `503 UNAVAILABLE, Retry-After: ${new Date(until).toUTCString()} (about 5 s ahead), on the big layer and on a manifest`,
        run,
        check,
        stats.blobBodyBytes,
        `asked again ${retriedAt.map((at) => `${((at - until) / 1000).toFixed(2)} s`).join(' and ')} after the date`,
      ),
    );
    expect(run.result.code, run.result.stderr).toBe(0);
    expect(retriedAt).toHaveLength(2);
    // Not before the date (timers may fire a few ms early), and not long after it.
    for (const at of retriedAt) {
      expect(at).toBeGreaterThanOrEqual(until - 20);
      expect(at).toBeLessThan(until + 5_000);
    }
    expect(check?.delivered).toBe(fx.pushed.length);
    expect(stats.blobBodyBytes).toBe(fx.uniqueBlobBytes + injectedBlobBodyBytes(stats, rules));
  });

  scenario('upstream: token expiry mid-run (401, then a new token)', { sample: false }, async (record) => {
    const username = 'mirror-bot';
    const password = 'Gate-pa55word-that-must-never-leak';
    const gate = await startTokenGate({ upstream: fx.proxy.url, username, password, tokenLifetimeMs: 1_000 });
    try {
      const authfile = join(fx.dir, 'gate-auth.json');
      const basic = Buffer.from(`${username}:${password}`).toString('base64');
      await writeFile(authfile, JSON.stringify({ auths: { [gate.host]: { auth: basic } } }));
      // The big layer breaks at 8 MiB; its next attempt, 1.5 s later, carries a token the gate has
      // expired by then (the token server said 60 s), so it must be refused once and renewed.
      inject([{ match: { method: 'GET', path: blobs.big }, fault: { kind: 'reset-after', bytes: 8 * MiB }, times: 1 }]);
      const run = await mirrorOnce('token', ['--authfile', authfile, '--retry-delay', '1500ms', '--log-level', 'trace'], gate.host);
      fx.proxy.setRules([]);
      const stats = fx.proxy.stats();
      const gateStats = gate.stats();
      const check = run.result.code === 0 ? await checkArchive(run.out, gate.host, 'token') : undefined;
      record({
        scenario: 'upstream: token expiry mid-run (401, then a new token)',
        faults: 'Bearer token gate (Basic to the token endpoint from --authfile); tokens die after 1 s though announced for 60 s; big layer reset at 8 MiB',
        expected: fx.pushed.length,
        delivered: check?.delivered ?? 0,
        fetchedBytes: stats.blobBodyBytes,
        uniqueBytes: fx.uniqueBlobBytes,
        outcome: await outcomeOf(
          run,
          check,
          `${gateStats.tokensIssued} tokens issued, refused for an expired token: ${gateStats.expiredTokenRejections}; no secret in output or files`,
        ),
      });
      expect(run.result.code, run.result.stderr).toBe(0);
      expect(gateStats.tokenRequestsRefused).toBe(0);
      expect(gateStats.expiredTokenRejections).toBeGreaterThanOrEqual(1);
      expect(gateStats.tokensIssued).toBeGreaterThan(fx.pushed.length);
      expect(check?.delivered).toBe(fx.pushed.length);
      expect(stats.blobBodyBytes).toBeLessThanOrEqual(fx.uniqueBlobBytes + RESUME_SLACK);
      // Neither the password, nor its Basic form, nor any token reaches the output or a file.
      const secrets = [password, basic, ...gate.issuedTokens()];
      const files = [...(await filesUnder(run.out)), ...(await filesUnder(join(run.cache, 'journal')))];
      expect(files.length).toBeGreaterThan(0);
      for (const secret of secrets) {
        expect(run.result.stdout.includes(secret), 'stdout').toBe(false);
        expect(run.result.stderr.includes(secret), 'stderr').toBe(false);
        for (const file of files) expect((await readFile(file)).includes(secret), file).toBe(false);
      }
    } finally {
      fx.proxy.setRules([]);
      await gate.close();
    }
  });

  const outageScenario = (seconds: number, sample: boolean): void => {
    const name = `upstream: registry down for ${seconds} s mid-transfer`;
    scenario(name, { sample, timeout: 300_000 }, async (record) => {
      const heldAt = 8 * MiB;
      // The big layer is held at 8 MiB, so the outage starts while it is mid-transfer.
      inject([{ match: { method: 'GET', path: blobs.big }, fault: { kind: 'stall-after', bytes: heldAt, ms: Infinity }, times: 1 }]);
      const label = `outage-${seconds}`;
      const out = join(fx.dir, `out-${label}`);
      const cache = join(fx.dir, `cache-${label}`);
      // Default retry settings: until --image-timeout (10 min) without progress, backoff from 1 s to 30 s.
      const child = spawnMeshmirror(mirrorArgs(await configFor(label), out, cache));
      let running = true;
      void child.result.then(() => (running = false));
      try {
        await waitFor(() => (fx.proxy.stats().byPath.get(pathOf(blobs.big)) ?? 0) >= heldAt || !running, 'the big layer to reach 8 MiB');
        await fx.proxy.setDown(true);
        const downAt = Date.now();
        // The outage is the fault itself, not a synchronisation: the registry is gone for `seconds`.
        await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
        const stillRunning = running;
        await fx.proxy.setDown(false);
        const outageMs = Date.now() - downAt;
        const result = await child.result;
        fx.proxy.setRules([]);
        const run: MirrorRun = { result, summary: parseSummary(result), out, cache };
        const stats = fx.proxy.stats();
        const check = result.code === 0 ? await checkArchive(out, fx.proxy.host, label) : undefined;
        record(
          await mirrorRow(
            name,
            `connections refused for ${(outageMs / 1000).toFixed(1)} s while the big layer is at 8 MiB (default settings: backoff from 1 s, no count cap)`,
            run,
            check,
            stats.blobBodyBytes,
            `${run.summary?.retries ?? '?'} retries, waited the outage out`,
          ),
        );
        expect(stillRunning, 'the run gave up during the outage').toBe(true);
        expect(result.code, result.stderr).toBe(0);
        expect(check?.delivered).toBe(fx.pushed.length);
        // The big layer resumed from the byte it held when the registry went away.
        expect(stats.blobBodyBytes).toBeGreaterThanOrEqual(fx.uniqueBlobBytes);
        expect(stats.blobBodyBytes).toBeLessThanOrEqual(fx.uniqueBlobBytes + RESUME_SLACK);
      } finally {
        await fx.proxy.setDown(false);
        fx.proxy.setRules([]);
        if (running) child.child.kill('SIGKILL');
        await child.result;
      }
    });
  };
  // The sample keeps the outage short; the full matrix takes the registry away for 20 s.
  outageScenario(FULL_MATRIX ? 20 : 5, true);

  scenario('upstream: truncated bodies', { sample: false }, async (record) => {
    const truncate = (bytes: number): FaultRule['fault'] => ({ kind: 'truncate-after', bytes });
    inject([
      { match: { method: 'GET', path: blobs.big }, fault: truncate(5 * MiB), times: 1 },
      { match: { method: 'GET', path: blobs.big }, fault: truncate(7 * MiB), times: 1 },
      { match: { method: 'GET', path: blobs.appMid }, fault: truncate(300_000), times: 1 },
      { match: { method: 'GET', path: manifestOf('base', '1.0') }, fault: truncate(50), times: 1 },
    ]);
    const run = await mirrorOnce('truncated');
    fx.proxy.setRules([]);
    const stats = fx.proxy.stats();
    const truncations = stats.log.filter((e) => e.fault === 'truncate-after').length;
    const check = run.result.code === 0 ? await checkArchive(run.out, fx.proxy.host, 'truncated') : undefined;
    record(
      await mirrorRow(
        'upstream: truncated bodies',
        'response ends early (shorter than Content-Length): big layer at 5 MiB, then 7 MiB further; a 1 MiB layer at 300 kB; a manifest at 50 B',
        run,
        check,
        stats.blobBodyBytes,
        `${run.summary?.retries ?? '?'} retries`,
      ),
    );
    expect(run.result.code, run.result.stderr).toBe(0);
    expect(truncations).toBe(4);
    expect(check?.delivered).toBe(fx.pushed.length);
    expect(stats.blobBodyBytes).toBeGreaterThanOrEqual(fx.uniqueBlobBytes);
    expect(stats.blobBodyBytes).toBeLessThanOrEqual(fx.uniqueBlobBytes + RESUME_SLACK);
  });

  scenario('upstream: 200 to a ranged request', { sample: false }, async (record) => {
    const cutAt = 8 * MiB;
    inject([
      { match: { method: 'GET', path: blobs.big }, fault: { kind: 'reset-after', bytes: cutAt }, times: 1 },
      { match: { method: 'GET', path: blobs.big }, fault: { kind: 'ignore-range' }, times: 1 },
    ]);
    const run = await mirrorOnce('ignore-range');
    fx.proxy.setRules([]);
    const stats = fx.proxy.stats();
    const resumed = stats.log.filter((e) => e.fault === 'ignore-range');
    const check = run.result.code === 0 ? await checkArchive(run.out, fx.proxy.host, 'ignore-range') : undefined;
    record(
      await mirrorRow(
        'upstream: 200 to a ranged request',
        'big layer reset at 8 MiB, then its resuming request (Range: bytes=8388608-…) answered 200 with the whole blob',
        run,
        check,
        stats.blobBodyBytes,
        `${run.summary?.rangesIgnored ?? '?'} range ignored, the 8 MiB already held skipped, not rewritten`,
      ),
    );
    expect(run.result.code, run.result.stderr).toBe(0);
    expect(resumed).toHaveLength(1);
    expect(resumed[0]?.range).toMatch(/^bytes=[1-9]\d*-/);
    expect(run.summary?.rangesIgnored).toBe(1);
    expect(check?.delivered).toBe(fx.pushed.length);
    // The whole blob crossed the link a second time (the registry's doing), and nothing more.
    expect(stats.blobBodyBytes).toBeGreaterThanOrEqual(fx.uniqueBlobBytes + cutAt - RESUME_SLACK);
    expect(stats.blobBodyBytes).toBeLessThanOrEqual(fx.uniqueBlobBytes + cutAt + RESUME_SLACK);
  });

  scenario('upstream: wrong bytes (digest mismatch)', { sample: true }, async (record) => {
    inject([
      { match: { method: 'GET', path: blobs.big }, fault: { kind: 'corrupt', at: 10 * MiB + 7 }, times: 1 },
      { match: { method: 'GET', path: blobs.appTop }, fault: { kind: 'corrupt', at: 1_000 }, times: 1 },
      { match: { method: 'GET', path: manifestOf('multi', '2.0') }, fault: { kind: 'corrupt', at: 40 }, times: 1 },
    ]);
    const run = await mirrorOnce('corrupt');
    fx.proxy.setRules([]);
    const stats = fx.proxy.stats();
    const corrupted = stats.log.filter((e) => e.fault === 'corrupt').length;
    const check = run.result.code === 0 ? await checkArchive(run.out, fx.proxy.host, 'corrupt') : undefined;
    const refetch = blobs.bigSize + blobs.appTopSize;
    record(
      await mirrorRow(
        'upstream: wrong bytes (digest mismatch)',
        'one byte flipped in the big layer (at 10 MiB), in a 300 kB layer and in an index manifest, once each',
        run,
        check,
        stats.blobBodyBytes,
        'both blobs fetched again, every archived blob hashes to its name',
      ),
    );
    expect(run.result.code, run.result.stderr).toBe(0);
    expect(corrupted).toBe(3);
    // checkArchive hashed every archived blob: the flipped bytes did not get in.
    expect(check?.delivered).toBe(fx.pushed.length);
    // A wrong blob cannot be repaired in place (which byte?): both are fetched once more, whole.
    expect(stats.blobBodyBytes).toBeGreaterThanOrEqual(fx.uniqueBlobBytes + refetch);
    expect(stats.blobBodyBytes).toBeLessThanOrEqual(fx.uniqueBlobBytes + refetch + RESUME_SLACK);
  });

  scenario('upstream: the same wrong bytes every time', { sample: false }, async (record) => {
    inject([{ match: { method: 'GET', path: blobs.appTop }, fault: { kind: 'corrupt', at: 1_000 } }]);
    const first = await mirrorOnce('corrupt-always');
    fx.proxy.setRules([]);
    const firstStats = fx.proxy.stats();
    const corrupted = firstStats.log.filter((e) => e.fault === 'corrupt').length;
    const errors = first.summary?.files.errors === undefined ? '' : await readFile(first.summary.files.errors, 'utf8');
    // The registry is fixed: the same command again fetches only the one blob it lacks.
    fx.proxy.resetStats();
    const second = await mirrorOnce('corrupt-always');
    const secondStats = fx.proxy.stats();
    const check = second.result.code === 0 ? await checkArchive(second.out, fx.proxy.host, 'corrupt-always') : undefined;
    record({
      scenario: 'upstream: the same wrong bytes every time',
      faults: 'one byte flipped in a 300 kB layer of sample/app:1.0 on every request; then the registry is fixed',
      expected: fx.pushed.length,
      delivered: check?.delivered ?? 0,
      fetchedBytes: firstStats.blobBodyBytes + secondStats.blobBodyBytes,
      uniqueBytes: fx.uniqueBlobBytes,
      outcome: `${await outcomeOf(first, undefined)} → re-run ${await outcomeOf(second, check)}`,
    });
    expect(first.result.code).toBe(64 + 4);
    expect(first.summary?.images).toMatchObject({ archived: fx.pushed.length - 1, failed: 1 });
    // Fetched twice (the second chance), then given up on, by name.
    expect(corrupted).toBe(2);
    expect(errors).toContain(`${fx.proxy.host}/sample/app:1.0`);
    expect(errors).toMatch(/digest mismatch/i);
    expect(second.result.code, second.result.stderr).toBe(0);
    expect(secondStats.blobBodyBytes).toBe(blobs.appTopSize);
    expect(check?.delivered).toBe(fx.pushed.length);
  });

  scenario('upstream: everything at once', { sample: false }, async (record) => {
    inject(
      [
        { match: { method: 'GET', path: blobs.big }, fault: { kind: 'stall-after', bytes: 3 * MiB, ms: Infinity }, times: 1 },
        { match: { method: 'GET', path: blobs.big }, fault: { kind: 'status', status: 503 }, times: 2 },
        { match: { method: 'GET', path: blobs.big }, fault: { kind: 'truncate-after', bytes: 4 * MiB }, times: 1 },
        { match: { method: 'GET', path: blobs.big }, fault: { kind: 'status', status: 429, headers: { 'Retry-After': '1' } }, times: 1 },
        { match: { method: 'GET', path: blobs.appTop }, fault: { kind: 'corrupt', at: 77 }, times: 1 },
        { match: { method: 'GET', path: manifestOf('app', '1.0') }, fault: { kind: 'status', status: 502 }, times: 2 },
        { match: { method: 'GET', path: anyGet }, fault: { kind: 'reset-random' }, probability: 0.1 },
      ],
      SEED,
    );
    const run = await mirrorOnce('everything', ['--stall-timeout', '2s']);
    fx.proxy.setRules([]);
    const stats = fx.proxy.stats();
    const check = run.result.code === 0 ? await checkArchive(run.out, fx.proxy.host, 'everything') : undefined;
    record(
      await mirrorRow(
        'upstream: everything at once',
        `big layer: stall at 3 MiB, 503 ×2, truncation 4 MiB further, 429 Retry-After 1; a layer corrupted; 502 ×2 on a manifest; random resets in 10% of GETs (seed ${SEED}); ${stats.faultsInjected} faults in all`,
        run,
        check,
        stats.blobBodyBytes,
        `${run.summary?.retries ?? '?'} retries`,
      ),
    );
    expect(run.result.code, run.result.stderr).toBe(0);
    expect(check?.delivered).toBe(fx.pushed.length);
    // Only the corrupted layer is fetched twice; everything else resumes.
    expect(stats.blobBodyBytes).toBeGreaterThanOrEqual(fx.uniqueBlobBytes + blobs.appTopSize);
    expect(stats.blobBodyBytes).toBeLessThanOrEqual(fx.uniqueBlobBytes + blobs.appTopSize + RESUME_SLACK);
  });
});

/** The path a blob regex stands for (`^/v2/…$` without the anchors and escapes). */
function pathOf(pattern: RegExp): string {
  return pattern.source.slice(1, -1).replace(/\\(.)/g, '$1');
}

/** Every file below `dir`, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}
