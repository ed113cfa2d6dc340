/**
 * The live run page of `mirror --status`, in a real headless browser (Debian's chromium, driven by
 * playwright-core): during a farm run it loads without anything from the internet and its numbers
 * move; once the run is over it shows the figures of the run's `--output json` report. A screenshot
 * is left in `test-artifacts/status-page.png`.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MirrorSummary } from '../packages/coordinator/src/report/summaries.ts';
import { withFarm } from './support/agents.ts';
import { waitFor } from './support/cli.ts';
import { mirrorArgs, startMirrorFixture, type MirrorFixture } from './support/mirror-fixture.ts';
import { reportOf, spawnWatchedRun } from './support/status-run.ts';

const MiB = 1024 * 1024;
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url));

/** The exact number a page element carries beside its formatted text. */
async function valueOf(page: Page, id: string): Promise<number> {
  const value = await page.getAttribute(`#${id}`, 'data-value');
  if (value === null || value === '') throw new Error(`#${id} has no value yet`);
  return Number(value);
}

describe('the live run page', () => {
  let fx: MirrorFixture;
  let browser: Browser;
  beforeAll(async () => {
    // Not skipped when missing: `pnpm test` installs it first (test/support/ensure-tools.ts).
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run \`node test/support/ensure-tools.ts\` (as root it installs Debian's chromium)`);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    fx = await startMirrorFixture();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await fx?.close();
  });

  it('follows a farm run as it goes and shows the final figures of its report', async () => {
    const names = fx.pushed.map((p) => p.name);
    const missing = fx.viaProxy('sample/missing:1.0');
    const config = await fx.writeConfig('page.yaml', { additionalImages: [...names.map((n) => fx.viaProxy(n)), missing] });
    const farmDir = join(fx.dir, 'page-farm');
    await mkdir(farmDir, { recursive: true });
    // The large layer comes a MiB at a time: each request stalls after one, until --stall-timeout retries it.
    fx.proxy.setRules([{ match: { method: 'GET', path: /\/v2\/sample\/big\/blobs\/sha256:/ }, fault: { kind: 'stall-after', bytes: MiB, ms: 30_000 } }]);
    await withFarm(farmDir, 'page', 2, async ({ cache, args }) => {
      const run = await spawnWatchedRun([
        ...mirrorArgs(config, join(fx.dir, 'out-page'), cache),
        ...args,
        '--status',
        '127.0.0.1:0',
        '--status-linger',
        '60s',
        '--stall-timeout',
        '2s',
      ]);
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const elsewhere: string[] = [];
      page.on('request', (request) => {
        if (!request.url().startsWith(`${run.url}/`)) elsewhere.push(request.url());
      });
      const errors: string[] = [];
      page.on('pageerror', (err) => errors.push(err.message));
      try {
        await page.goto(`${run.url}/`);
        await waitFor(async () => (await page.textContent('#phase')) === 'fetching', 'the page to show the fetching phase');
        await waitFor(async () => Number(await page.getAttribute('#bytes-done', 'data-value')) > 0, 'bytes on the page');
        const first = await valueOf(page, 'bytes-done');
        // It moves without a reload: the next stalled MiB arrives after a retry.
        await waitFor(async () => (await valueOf(page, 'bytes-done')) > first, 'the byte count on the page to grow', 30_000);
        expect(await page.locator('#agents tr').count()).toBe(2);
        expect(await valueOf(page, 'pieces-in-flight')).toBeGreaterThan(0);
        expect(await page.locator('#final').isHidden()).toBe(true);
        expect(await page.textContent('#connection')).toBe('live');
      } finally {
        fx.proxy.setRules([]);
      }

      const report = await reportOf<MirrorSummary>(run);
      await page.waitForSelector('#final:not([hidden])');
      expect(await valueOf(page, 'final-images-done')).toBe(report.images.archived);
      expect(await valueOf(page, 'final-images-failed')).toBe(report.images.failed);
      expect(await valueOf(page, 'final-images-requested')).toBe(report.images.requested);
      expect(await valueOf(page, 'final-upstream-bytes')).toBe(report.bytes.fetched);
      expect(await valueOf(page, 'final-unique-bytes')).toBe(report.bytes.unique);
      expect(await valueOf(page, 'upstream-bytes')).toBe(report.bytes.fetched);
      expect(await valueOf(page, 'images-done')).toBe(report.images.archived);
      expect(await page.locator('#failed-images tr').allTextContents()).toEqual([expect.stringContaining(missing)]);
      expect(await page.textContent('#connection')).toBe('run over: final figures');
      // The chart drew a line per agent.
      expect(await page.locator('#chart polyline').count()).toBe(2);
      await mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, 'status-page.png'), fullPage: true });
      expect(elsewhere).toEqual([]);
      expect(errors).toEqual([]);
      await page.close();

      run.child.kill('SIGTERM');
      const result = await run.result;
      expect(result.code, result.stderr).toBe(68);
    });
  });
});
