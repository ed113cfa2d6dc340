/**
 * `mirror --status HOST:PORT`: while a real run goes (held in its fetching phase by a stalled layer),
 * `/metrics` answers in the Prometheus text format and `/api/run` as JSON, with the numbers the run's
 * own summary then reports.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMeshmirror, spawnMeshmirror, waitFor } from './support/cli.ts';
import { mirrorArgs, startMirrorFixture, type MirrorFixture } from './support/mirror-fixture.ts';

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

  it('refuses an address that is not HOST:PORT, naming the flag', async () => {
    const config = await fx.writeConfig('status-bad.yaml', { additionalImages: [fx.viaProxy('sample/base:1.0')] });
    const result = await runMeshmirror([...mirrorArgs(config, join(fx.dir, 'out-bad'), join(fx.dir, 'cache-bad')), '--status', 'localhost']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--status');
  });
});
