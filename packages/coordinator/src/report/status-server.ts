/**
 * `--status HOST:PORT`: the run's state for operators while it goes. `/metrics` in the Prometheus
 * text format (prom-client, on a registry of its own), `/api/run` as JSON. It is fed through the same
 * `ProgressReporter` calls as the progress line, so every mode reports without knowing it is
 * watched. Nothing secret is in either: hosts and counts only.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { MeshmirrorError, type Logger } from '@meshmirror/shared';
import type { ProgressReporter, ProgressState, RunPhase } from './progress.ts';
import { parseStatusAddress } from './status-address.ts';

const PHASES: RunPhase[] = ['resolving', 'fetching', 'archiving', 'pushing', 'mirroring', 'done'];

export interface StatusServer {
  /** `http://HOST:PORT` as bound (a port of 0 becomes the one the system chose). */
  url: string;
  reporter: ProgressReporter;
  close(): Promise<void>;
}

export async function startStatusServer(address: string, options: { logger: Logger; now?: () => number }): Promise<StatusServer> {
  const { host, port } = parseStatusAddress(address);
  const now = options.now ?? Date.now;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'meshmirror_' });
  const phase = new Gauge({ name: 'meshmirror_run_phase', help: 'The run phase: 1 for the current one', labelNames: ['phase'], registers: [registry] });
  const bytes = new Gauge({ name: 'meshmirror_run_bytes', help: 'Blob bytes of the run: done and total', labelNames: ['kind'], registers: [registry] });
  const images = new Gauge({ name: 'meshmirror_run_images', help: 'Images of the run by state', labelNames: ['state'], registers: [registry] });
  const retries = new Counter({
    name: 'meshmirror_retries_total',
    help: 'Failed attempts that were retried, by host and error code',
    labelNames: ['host', 'code'],
    registers: [registry],
  });

  const startedAt = now();
  const state: ProgressState = { phase: 'resolving', bytesDone: 0, bytesTotal: 0, imagesTotal: 0, imagesDone: 0, imagesFailed: 0 };
  let retryCount = 0;
  const publish = (): void => {
    for (const p of PHASES) phase.set({ phase: p }, p === state.phase ? 1 : 0);
    bytes.set({ kind: 'done' }, state.bytesDone);
    bytes.set({ kind: 'total' }, state.bytesTotal);
    images.set({ state: 'total' }, state.imagesTotal);
    images.set({ state: 'done' }, state.imagesDone);
    images.set({ state: 'failed' }, state.imagesFailed);
  };
  publish();

  const runJson = (): Record<string, unknown> => {
    const elapsedSeconds = (now() - startedAt) / 1000;
    const rate = elapsedSeconds > 0 ? state.bytesDone / elapsedSeconds : 0;
    const left = state.bytesTotal - state.bytesDone;
    return {
      ...state,
      startedAt: new Date(startedAt).toISOString(),
      elapsedSeconds,
      bytesPerSecond: Math.round(rate),
      etaSeconds: rate > 0 && left > 0 ? Math.round(left / rate) : null,
      retries: retryCount,
    };
  };

  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://status').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    } else if (path === '/api/run') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(runJson()));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /api/run\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new MeshmirrorError('MM_USAGE', `--status ${address}: cannot listen: ${err.message}`, { cause: err })));
    server.listen(port, host, resolve);
  });
  const bound = server.address() as AddressInfo;
  const url = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  options.logger.info({ url }, 'status: /metrics and /api/run');

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }));
  return {
    url,
    reporter: {
      update(next) {
        Object.assign(state, next);
        publish();
      },
      addBytes(delta) {
        state.bytesDone += delta;
        publish();
      },
      noteRetry(event) {
        retryCount += 1;
        retries.inc({ host: event.host ?? 'unknown', code: event.code });
      },
      stop() {
        void close();
      },
    },
    close,
  };
}

/** One reporter that tells several: the progress line and the status server. */
export function teeProgress(...reporters: ProgressReporter[]): ProgressReporter {
  return {
    update: (state) => reporters.forEach((r) => r.update(state)),
    addBytes: (delta) => reporters.forEach((r) => r.addBytes(delta)),
    noteRetry: (event) => reporters.forEach((r) => r.noteRetry(event)),
    stop: () => reporters.forEach((r) => r.stop()),
  };
}
