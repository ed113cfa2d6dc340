/**
 * `mirror --status HOST:PORT`: while a real run goes (held in its fetching phase by a stalled layer),
 * `/metrics` answers in the Prometheus text format and `/api/run` as JSON, with the numbers the run's
 * own summary then reports; on a farm run the per-agent counters equal the report's `agents[]`, and
 * `--status-linger` keeps the address answering after the report until a signal ends it.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MirrorSummary } from '../packages/coordinator/src/report/summaries.ts';
import type { RunStatusJson } from '../packages/coordinator/src/report/run-status.ts';
import { withFarm } from './support/agents.ts';
import { runMeshmirror, spawnMeshmirror, waitFor } from './support/cli.ts';
import { mirrorArgs, startMirrorFixture, type MirrorFixture } from './support/mirror-fixture.ts';
import { metricSum, reportOf, scrape, spawnWatchedRun } from './support/status-run.ts';

const MiB = 1024 * 1024;

describe('mirror --status', () => {
  let fx: MirrorFixture;
  beforeAll(async () => {
    fx = await startMirrorFixture();
  }, 60_000);
  afterAll(async () => {
    await fx?.close();
  });

  it('serves /metrics and /api/run while the run goes', async () => {
    const names = fx.pushed.map((p) => p.name);
    const config = await fx.writeConfig('status.yaml', { additionalImages: names.map((n) => fx.viaProxy(n)) });
    // The large layer stalls after 1 MiB until --stall-timeout gives that request up and the retry completes it.
    fx.proxy.setRules([{ match: { method: 'GET', path: /\/v2\/sample\/big\/blobs\/sha256:/ }, fault: { kind: 'stall-after', bytes: MiB, ms: 30_000 } }]);
    const run = spawnMeshmirror([...mirrorArgs(config, join(fx.dir, 'out'), join(fx.dir, 'cache')), '--status', '127.0.0.1:0', '--stall-timeout', '3s']);
    try {
      await waitFor(() => /status at (http:\/\/\S+)/.test(run.stderr()), 'the status address');
      const url = /status at (http:\/\/\S+)/.exec(run.stderr())![1]!;
      let seen: { phase: string; bytesDone: number; bytesTotal: number; imagesTotal: number } | undefined;
      await waitFor(async () => {
        seen = (await (await fetch(`${url}/api/run`)).json()) as typeof seen;
        return seen?.phase === 'fetching' && seen.bytesDone > 0;
      }, 'the run to be fetching');
      expect(seen!.imagesTotal).toBe(names.length);
      expect(seen!.bytesTotal).toBeGreaterThan(seen!.bytesDone);

      const metrics = await fetch(`${url}/metrics`);
      expect(metrics.headers.get('content-type')).toContain('text/plain');
      const text = await metrics.text();
      expect(text).toContain('meshmirror_run_phase{phase="fetching"} 1');
      expect(text).toContain(`meshmirror_run_images{state="total"} ${names.length}`);
      expect(text).toMatch(/meshmirror_run_bytes\{kind="total"\} [1-9]\d*/);
      expect(text).toMatch(/meshmirror_process_resident_memory_bytes \d+/);
      expect((await fetch(`${url}/nope`)).status).toBe(404);
    } finally {
      fx.proxy.setRules([]);
    }
    const result = await run.result;
    expect(result.code, result.stderr).toBe(0);
    expect((JSON.parse(result.stdout) as { images: { archived: number } }).images.archived).toBe(names.length);
  });

  it('on a farm run, counts per agent what the JSON report then says, and lingers until a signal ends it', async () => {
    const names = fx.pushed.map((p) => p.name);
    // One image that does not exist: the run's exit code is not 0, and must survive the linger.
    const config = await fx.writeConfig('status-farm.yaml', { additionalImages: [...names.map((n) => fx.viaProxy(n)), fx.viaProxy('sample/missing:1.0')] });
    const farmDir = join(fx.dir, 'status-farm');
    await mkdir(farmDir, { recursive: true });
    fx.proxy.setRules([{ match: { method: 'GET', path: /\/v2\/sample\/big\/blobs\/sha256:/ }, fault: { kind: 'stall-after', bytes: MiB, ms: 30_000 } }]);
    await withFarm(farmDir, 'farm', 2, async ({ cache, args }) => {
      const run = await spawnWatchedRun([
        ...mirrorArgs(config, join(fx.dir, 'out-farm'), cache),
        ...args,
        '--status',
        '127.0.0.1:0',
        '--status-linger',
        '30s',
        '--stall-timeout',
        '3s',
      ]);
      try {
        // During the run: both agents counted, the stalled pieces in flight, bytes arriving.
        let live: RunStatusJson | undefined;
        await waitFor(async () => {
          live = (await (await fetch(`${run.url}/api/run`)).json()) as RunStatusJson;
          // Small blobs go first: wait until the big blob's stalled request is out too, before the rule goes.
          const stalled = fx.proxy.stats().log.some((e) => e.path.startsWith('/v2/sample/big/blobs/') && e.fault === 'stall-after');
          return stalled && live.phase === 'fetching' && live.agents.length === 2 && live.pieces.inFlight > 0 && live.agents.some((a) => a.receivedBytes > 0);
        }, 'the farm to be fetching');
        const during = await scrape(run.url);
        expect(metricSum(during, 'meshmirror_run_phase', { phase: 'fetching' })).toBe(1);
        expect(metricSum(during, 'meshmirror_run_finished')).toBe(0);
        expect(metricSum(during, 'meshmirror_pieces_in_flight')).toBeGreaterThan(0);
        expect(metricSum(during, 'meshmirror_received_bytes_total')).toBeGreaterThan(0);
        for (const agent of live!.agents) {
          expect(agent.address).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//);
          expect(
            during.some((s) => s.name === 'meshmirror_farm_agent_state' && s.labels['agent'] === agent.agent && s.labels['state'] === 'working' && s.value === 1),
          ).toBe(true);
        }
      } finally {
        fx.proxy.setRules([]);
      }

      const report = await reportOf<MirrorSummary>(run);
      // The report is out and the process still answers: it lingers.
      expect(run.child.exitCode).toBeNull();
      const after = await scrape(run.url);
      expect(metricSum(after, 'meshmirror_run_finished')).toBe(1);
      // The writer's store size (measured at most every 10 s, so perhaps from during the run).
      expect(metricSum(after, 'meshmirror_store_bytes')).toBeGreaterThan(0);
      expect(report.agents).toHaveLength(2);
      for (const agent of report.agents!) {
        const mine = { agent: agent.agent };
        expect(metricSum(after, 'meshmirror_upstream_bytes_total', mine), agent.address).toBe(agent.upstreamBytes);
        expect(metricSum(after, 'meshmirror_served_bytes_total', mine)).toBe(agent.servedBytes);
        expect(metricSum(after, 'meshmirror_pieces_total', { ...mine, state: 'fetched' })).toBe(agent.piecesFetched);
        expect(metricSum(after, 'meshmirror_pieces_total', { ...mine, state: 'failed' })).toBe(agent.piecesFailed);
        expect(metricSum(after, 'meshmirror_pieces_total', { ...mine, state: 'wrong' })).toBe(agent.wrongPieces);
        expect(metricSum(after, 'meshmirror_farm_agent_readmissions_total', mine)).toBe(agent.readmitted ?? 0);
        expect(metricSum(after, 'meshmirror_farm_agent_state', { ...mine, state: 'working' })).toBe(agent.lost === undefined && agent.distrusted === undefined ? 1 : 0);
        expect(metricSum(after, 'meshmirror_pieces_in_flight', mine)).toBe(0);
      }
      expect(report.agents!.every((a) => a.piecesFetched > 0)).toBe(true);
      expect(metricSum(after, 'meshmirror_upstream_bytes_total')).toBe(report.bytes.fetched);
      expect(metricSum(after, 'meshmirror_upstream_bytes_total', { registry: fx.proxy.host })).toBe(report.bytes.fetched);
      expect(metricSum(after, 'meshmirror_served_bytes_total')).toBe(report.bytes.pulled);
      expect(metricSum(after, 'meshmirror_retries_total')).toBe(report.retries);
      expect(report.retries).toBeGreaterThan(0);
      expect(metricSum(after, 'meshmirror_run_images', { state: 'total' })).toBe(report.images.requested);
      expect(metricSum(after, 'meshmirror_run_images', { state: 'done' })).toBe(report.images.archived);
      expect(metricSum(after, 'meshmirror_run_images', { state: 'failed' })).toBe(report.images.failed);
      expect(metricSum(after, 'meshmirror_failures_total', { kind: 'image' })).toBe(report.images.failed);
      expect(report.images).toMatchObject({ archived: names.length, failed: 1 });
      const final = (await (await fetch(`${run.url}/api/run`)).json()) as RunStatusJson;
      expect(final.result).toMatchObject({
        images: { requested: report.images.requested, done: report.images.archived, failed: report.images.failed },
        bytes: { unique: report.bytes.unique, upstream: report.bytes.fetched, pulled: report.bytes.pulled },
      });
      expect(final.result!.failedImages.map((f) => f.source)).toEqual([fx.viaProxy('sample/missing:1.0')]);
      // Nothing secret: the swarm key appears nowhere.
      const swarmKey = (await readFile(args[args.indexOf('--swarm-key') + 1]!, 'utf8')).trim();
      const metricsText = await (await fetch(`${run.url}/metrics`)).text();
      for (const line of swarmKey.split('\n').filter((l) => l.length >= 16)) {
        expect(JSON.stringify(final)).not.toContain(line);
        expect(metricsText).not.toContain(line);
      }

      // A signal ends the linger at once; exit code and output are the run's own.
      const stopped = Date.now();
      run.child.kill('SIGTERM');
      const result = await run.result;
      expect(Date.now() - stopped).toBeLessThan(3_000);
      expect(result.code, result.stderr).toBe(68);
      expect(JSON.parse(result.stdout)).toEqual(report);
    });
  });

  it('refuses --status-linger without --status', async () => {
    const config = await fx.writeConfig('status-linger.yaml', { additionalImages: [fx.viaProxy('sample/base:1.0')] });
    const result = await runMeshmirror([...mirrorArgs(config, join(fx.dir, 'out-linger'), join(fx.dir, 'cache-linger')), '--status-linger', '5s']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--status-linger needs --status');
  });

  it('refuses an address that is not HOST:PORT, naming the flag', async () => {
    const config = await fx.writeConfig('status-bad.yaml', { additionalImages: [fx.viaProxy('sample/base:1.0')] });
    const result = await runMeshmirror([...mirrorArgs(config, join(fx.dir, 'out-bad'), join(fx.dir, 'cache-bad')), '--status', 'localhost']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--status');
  });
});
