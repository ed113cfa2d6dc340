import { describe, expect, it } from 'vitest';
import { silentLogger } from '@meshmirror/shared';
import { startStatusServer, teeProgress } from './status-server.ts';
import { parseStatusAddress } from './status-address.ts';
import type { ProgressReporter } from './progress.ts';
import type { AgentReport } from '../schedule/farm-scheduler.ts';
import type { MirrorSummary } from './summaries.ts';

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

/** The events of a server-sent event stream, as they come. */
async function* readEvents(url: string, signal: AbortSignal): AsyncGenerator<{ event: string; data: string }> {
  const response = await fetch(url, { signal });
  expect(response.headers.get('content-type')).toBe('text/event-stream');
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event !== undefined && data !== undefined) yield { event, data };
    }
  }
}

const summary = (agents: AgentReport[]): MirrorSummary => ({
  runId: 'r1',
  resumed: false,
  dryRun: false,
  destination: '/out',
  images: { requested: 2, blocked: 0, archived: 1, failed: 1 },
  signatures: {
    sigstore: { found: 0, mirrored: 0, missing: 0, failed: 0 },
    release: { releases: 0, signatures: 0, missing: 0, invalid: 0 },
    referrers: { found: 0, mirrored: 0, failed: 0 },
  },
  outcomes: [
    { source: 'quay.io/a:1', kind: 'additional', origin: 'additionalImages[0]', state: 'archived' },
    { source: 'quay.io/b:1', kind: 'additional', origin: 'additionalImages[1]', state: 'failed', code: 'MM_NOT_FOUND', reason: 'manifest unknown' },
  ],
  bytes: { unique: 5000, held: 0, resumed: 0, toFetch: 5000, fetched: 4000, pulled: 4000, hashed: 0 },
  agents,
  retries: 0,
  rangesIgnored: 0,
  repairedBlobs: 0,
  archive: { chunks: [], warnings: [] },
  warnings: [],
  files: { report: '/out/working-dir/report.json' },
  durationMs: 1_000,
});

describe('the status server of a farm run', () => {
  it('counts per agent what the reports say, pushes changes as events, and ends with the summary', async () => {
    const status = await startStatusServer('127.0.0.1:0', { logger: silentLogger() });
    const stream = new AbortController();
    try {
      const events = readEvents(`${status.url}/api/events`, stream.signal);
      expect((await events.next()).value).toMatchObject({ event: 'run' });
      const agent: AgentReport = {
        agent: 'peer-a',
        address: '/ip4/10.0.0.1/tcp/4001/p2p/peer-a',
        upstreamBytes: 0,
        servedBytes: 0,
        peerBytes: 0,
        piecesFetched: 0,
        piecesFailed: 0,
        piecesCancelled: 0,
        wrongPieces: 0,
      };
      status.reporter.noteAgent?.({ type: 'agents', reports: [agent] });
      status.reporter.noteAgent?.({ type: 'fetch-started', agent: 'peer-a' });
      // A burst of changes comes as few events (at most four a second), each with the state then.
      const started = Date.now();
      for (let i = 0; i < 100; i++) status.reporter.noteAgent?.({ type: 'received', agent: 'peer-a', bytes: 40 });
      const next = JSON.parse((await events.next()).value!.data) as { agents: Array<{ receivedBytes: number; piecesInFlight: number }> };
      expect(next.agents[0]).toMatchObject({ receivedBytes: 4000, piecesInFlight: 1 });
      expect(Date.now() - started).toBeLessThan(1_000);

      agent.upstreamBytes = 4000;
      agent.servedBytes = 4000;
      agent.piecesFetched = 1;
      status.reporter.noteAgent?.({ type: 'piece-ended', agent: 'peer-a', registry: 'quay.io', upstreamBytes: 4000 });
      status.reporter.noteAgent?.({ type: 'fetch-ended', agent: 'peer-a' });
      status.finish(summary([agent]));
      let end: { event: string; data: string } | undefined;
      for await (const event of events) {
        if (event.event === 'end') {
          end = event;
          break;
        }
      }
      expect(JSON.parse(end!.data)).toMatchObject({ finished: true, result: { images: { done: 1, failed: 1 }, bytes: { upstream: 4000 } } });

      const metrics = await (await fetch(`${status.url}/metrics`)).text();
      for (const line of [
        'meshmirror_run_finished 1',
        'meshmirror_upstream_bytes_total{registry="quay.io",agent="peer-a"} 4000',
        'meshmirror_served_bytes_total{agent="peer-a"} 4000',
        'meshmirror_received_bytes_total{agent="peer-a"} 4000',
        'meshmirror_pieces_total{agent="peer-a",state="fetched"} 1',
        'meshmirror_pieces_in_flight{agent="peer-a"} 0',
        'meshmirror_farm_agent_state{agent="peer-a",state="working"} 1',
        'meshmirror_failures_total{kind="image",code="MM_NOT_FOUND"} 1',
        'meshmirror_run_images{state="done"} 1',
        'meshmirror_run_phase{phase="done"} 1',
      ])
        expect(metrics).toContain(line);
    } finally {
      stream.abort();
      await status.close();
    }
  });

  it('serves the page with its own script only, and nothing it does not know', async () => {
    const status = await startStatusServer('127.0.0.1:0', { logger: silentLogger() });
    try {
      const page = await fetch(`${status.url}/`);
      expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
      const html = await page.text();
      expect(html).toContain('<script src="page.js"></script>');
      // No resource from elsewhere: the page works without internet.
      expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
      const script = await fetch(`${status.url}/page.js`);
      expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
      expect(await script.text()).toContain("new EventSource('api/events')");
      expect((await fetch(`${status.url}/api/nope`)).status).toBe(404);
      expect((await fetch(`${status.url}/metrics`, { method: 'POST' })).status).toBe(405);
    } finally {
      await status.close();
    }
  });

  it('lingers after a finished run until the time is up or the signal says stop', async () => {
    const status = await startStatusServer('127.0.0.1:0', { logger: silentLogger() });
    // Not finished: no lingering.
    const unfinished = await startStatusServer('127.0.0.1:0', { logger: silentLogger() });
    let started = Date.now();
    await unfinished.close({ lingerMs: 60_000 });
    expect(Date.now() - started).toBeLessThan(1_000);

    status.finish(summary([]));
    const stop = new AbortController();
    started = Date.now();
    const closing = status.close({ lingerMs: 60_000, signal: stop.signal });
    const run = (await (await fetch(`${status.url}/api/run`)).json()) as { finished: boolean };
    expect(run.finished).toBe(true);
    stop.abort();
    await closing;
    expect(Date.now() - started).toBeLessThan(5_000);
    await expect(fetch(`${status.url}/api/run`)).rejects.toThrow();
  });
});
