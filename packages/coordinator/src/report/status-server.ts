/**
 * `--status HOST:PORT`: the run's state for operators while it goes. `/` is a live page (no
 * internet needed), `/metrics` the Prometheus text format, `/api/run` JSON, and `/api/events` the
 * same JSON as server-sent events on every change (at most EVENTS_PER_SECOND a second, and an `end`
 * event with the summary's figures once the run is over). It is fed through the same
 * `ProgressReporter` calls as the progress line, so every mode reports without knowing it is
 * watched. Nothing secret is in any of them: hosts and counts only.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '@meshmirror/shared';
import type { ProgressReporter } from './progress.ts';
import { RunStatus, type RunSummary } from './run-status.ts';
import { parseStatusAddress } from './status-address.ts';
import { answerMetrics, cachedFolderBytes, listenOnStatusAddress } from './status-http.ts';
import { statusMetrics } from './status-metrics.ts';
import { STATUS_PAGE_HTML, STATUS_PAGE_SCRIPT } from './status-page.ts';

export interface StatusServer {
  /** `http://HOST:PORT` as bound (a port of 0 becomes the one the system chose). */
  url: string;
  reporter: ProgressReporter;
  /** Whether `finish` was called. */
  readonly finished: boolean;
  /** The run is over: its summary becomes the final state (the page shows it, the counters end at its figures). */
  finish(summary: RunSummary): void;
  /**
   * Stops answering. After `finish`, it first answers for `lingerMs` more, or until `signal` aborts,
   * so that a last scrape and the page see the end state.
   */
  close(options?: { lingerMs?: number; signal?: AbortSignal }): Promise<void>;
}

export interface StatusServerOptions {
  logger: Logger;
  now?: () => number;
  /** The coordinator's store folder: its size is reported (`meshmirror_store_bytes`). */
  storeDir?: string;
}

/** Server-sent events a second at most: a page needs no more, and a large farm changes state thousands of times a second. */
const EVENTS_PER_SECOND = 4;
/** How often the throughput chart takes a sample. */
const SAMPLE_EVERY_MS = 1_000;
/** A comment line now and then keeps proxies from closing an event stream that is quiet. */
const KEEPALIVE_EVERY_MS = 15_000;

// The page's script is served by the server itself, so the page can forbid every other script.
const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
};

export async function startStatusServer(address: string, options: StatusServerOptions): Promise<StatusServer> {
  // The address is checked before anything else is set up.
  parseStatusAddress(address);
  const status = new RunStatus(options.now);
  const registry = statusMetrics(status, options.storeDir === undefined ? undefined : cachedFolderBytes(options.storeDir));
  const streams = new Set<ServerResponse>();

  let lastSentAt = 0;
  let pending: NodeJS.Timeout | undefined;
  const send = (event: 'run' | 'end', to: Iterable<ServerResponse>): void => {
    const data = `event: ${event}\ndata: ${JSON.stringify(status.json())}\n\n`;
    for (const res of to) res.write(data);
  };
  const broadcast = (): void => {
    pending = undefined;
    lastSentAt = Date.now();
    send(status.finished ? 'end' : 'run', streams);
  };
  const unsubscribe = status.onChange(() => {
    if (pending !== undefined || streams.size === 0) return;
    pending = setTimeout(broadcast, Math.max(0, lastSentAt + 1000 / EVENTS_PER_SECOND - Date.now()));
  });
  const sampler = setInterval(() => status.sample(), SAMPLE_EVERY_MS);
  sampler.unref();
  const keepalive = setInterval(() => {
    for (const res of streams) res.write(': keepalive\n\n');
  }, KEEPALIVE_EVERY_MS);
  keepalive.unref();

  const events = (req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    // A page that loses the stream tries again after this long (the page falls back to polling after a few tries).
    res.write('retry: 2000\n\n');
    send(status.finished ? 'end' : 'run', [res]);
    streams.add(res);
    req.once('close', () => streams.delete(res));
  };

  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://status').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/') {
      res.writeHead(200, PAGE_HEADERS).end(STATUS_PAGE_HTML);
    } else if (path === '/page.js') {
      res
        .writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
        .end(STATUS_PAGE_SCRIPT);
    } else if (path === '/metrics') {
      answerMetrics(registry, res);
    } else if (path === '/api/run') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(status.json()));
    } else if (path === '/api/events') {
      events(req, res);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /, /metrics, /api/run or /api/events\n');
    }
  });
  const url = await listenOnStatusAddress(server, address);
  options.logger.info({ url }, 'status: the live page at /, /metrics, /api/run, /api/events');

  let closed: Promise<void> | undefined;
  const shut = (): Promise<void> =>
    (closed ??= new Promise<void>((resolve) => {
      unsubscribe();
      clearTimeout(pending);
      clearInterval(sampler);
      clearInterval(keepalive);
      for (const res of streams) res.end();
      server.closeAllConnections();
      server.close(() => resolve());
    }));
  return {
    url,
    reporter: status.reporter(),
    get finished() {
      return status.finished;
    },
    finish(summary) {
      status.finish(summary);
      // The end goes out at once, not after the throttle: a page must not miss it when the address closes soon after.
      clearTimeout(pending);
      pending = undefined;
      broadcast();
    },
    async close({ lingerMs = 0, signal } = {}) {
      if (closed === undefined && status.finished && lingerMs > 0 && signal?.aborted !== true) {
        await sleep(lingerMs, undefined, signal === undefined ? {} : { signal }).catch(() => undefined);
      }
      await shut();
    },
  };
}

/** One reporter that tells several: the progress line and the status server. */
export function teeProgress(...reporters: ProgressReporter[]): ProgressReporter {
  return {
    update: (state) => reporters.forEach((r) => r.update(state)),
    addBytes: (delta) => reporters.forEach((r) => r.addBytes(delta)),
    noteRetry: (event) => reporters.forEach((r) => r.noteRetry(event)),
    noteAgent: (event) => reporters.forEach((r) => r.noteAgent?.(event)),
    stop: () => reporters.forEach((r) => r.stop()),
  };
}
