import { describe, expect, it } from 'vitest';
import { silentLogger } from '@meshmirror/shared';
import { startStatusServer, teeProgress } from './status-server.ts';
import { parseStatusAddress } from './status-address.ts';
import type { ProgressReporter } from './progress.ts';

describe('parseStatusAddress', () => {
  it.each([
    ['127.0.0.1:9464', { host: '127.0.0.1', port: 9464 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    ['[::1]:9464', { host: '::1', port: 9464 }],
  ])('reads %s', (text, expected) => {
    expect(parseStatusAddress(text)).toEqual(expected);
  });

  it.each(['9464', 'localhost', 'host:99999', 'a b:1', '::1:9464'])('refuses %s, naming --status', (text) => {
    expect(() => parseStatusAddress(text)).toThrow('--status: expected HOST:PORT');
  });
});

describe('startStatusServer', () => {
  it('reports what the run tells it, with rate and ETA', async () => {
    let clock = 1_000_000;
    const status = await startStatusServer('127.0.0.1:0', { logger: silentLogger(), now: () => clock });
    try {
      const seen: string[] = [];
      const line: ProgressReporter = {
        update: () => seen.push('update'),
        addBytes: () => seen.push('bytes'),
        noteRetry: () => seen.push('retry'),
        stop: () => seen.push('stop'),
      };
      const both = teeProgress(line, status.reporter);
      both.update({ phase: 'fetching', bytesTotal: 1000, imagesTotal: 3 });
      both.addBytes(250);
      both.noteRetry({ type: 'retry', digest: `sha256:${'a'.repeat(64)}`, offset: 0, attempt: 1, delayMs: 10, code: 'MM_STALL', message: 'stalled', host: 'quay.io' });
      clock += 5_000;
      const run = (await (await fetch(`${status.url}/api/run`)).json()) as Record<string, unknown>;
      expect(run).toMatchObject({ phase: 'fetching', bytesDone: 250, bytesTotal: 1000, imagesTotal: 3, bytesPerSecond: 50, etaSeconds: 15, retries: 1 });
      const metrics = await (await fetch(`${status.url}/metrics`)).text();
      expect(metrics).toContain('meshmirror_retries_total{host="quay.io",code="MM_STALL"} 1');
      expect(metrics).toContain('meshmirror_run_bytes{kind="done"} 250');
      expect(seen).toEqual(['update', 'bytes', 'retry']);
    } finally {
      await status.close();
    }
  });
});
