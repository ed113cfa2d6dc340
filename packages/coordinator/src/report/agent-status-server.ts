/**
 * `agent --status HOST:PORT`: a farm agent's own metrics, for the Prometheus that watches the farm.
 * `/metrics` in the Prometheus text format and `/api/agent` as JSON, both read from the agent's
 * `AgentCounters` at each request, so they always agree with each other and with the per-agent
 * figures the coordinator reports. Counters count since the agent started. Hosts, peer ids and
 * counts only: nothing secret.
 */
import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Logger } from '@meshmirror/shared';
import type { AgentCounters, AgentCountersSnapshot } from '@meshmirror/agent/mesh';
import { answerMetrics, cachedFolderBytes, counterOf, gaugeOf, listenOnStatusAddress, type MetricRows } from './status-http.ts';

export interface AgentStatusOptions {
  counters: AgentCounters;
  peerId: string;
  /** The agent's store folder: its size is reported. */
  storeDir: string;
  logger: Logger;
}

export interface AgentStatusServer {
  url: string;
  close(): Promise<void>;
}

export async function startAgentStatusServer(address: string, options: AgentStatusOptions): Promise<AgentStatusServer> {
  const { counters } = options;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'meshmirror_agent_' });
  const storeSize = cachedFolderBytes(options.storeDir);

  // Every metric is filled from one snapshot, taken once per request.
  let snapshot: AgentCountersSnapshot = counters.snapshot();
  const fromSnapshot = <L extends string>(name: string, help: string, labelNames: L[], rows: (s: AgentCountersSnapshot) => MetricRows<L>): void =>
    counterOf(registry, name, help, labelNames, () => rows(snapshot));
  const byKey = (record: Record<string, number>, label: string): MetricRows<string> => Object.entries(record).map(([key, value]) => [{ [label]: key }, value]);
  fromSnapshot('meshmirror_agent_upstream_bytes_total', 'Body bytes received from upstream registries, retries included', ['registry'], (s) =>
    byKey(s.upstreamBytes, 'registry'),
  );
  fromSnapshot('meshmirror_agent_served_bytes_total', 'Bytes served over the mesh (to the writer and other agents)', ['peer'], (s) => byKey(s.servedBytes, 'peer'));
  fromSnapshot('meshmirror_agent_pushed_bytes_total', 'Body bytes sent to target registries, failed attempts included', ['registry'], (s) =>
    byKey(s.pushedBytes, 'registry'),
  );
  fromSnapshot(
    'meshmirror_agent_pieces_total',
    'Pieces fetched from upstream, by outcome (cancelled: stopped by the coordinator, e.g. the losing copy of an endgame duplicate)',
    ['state'],
    (s) => [
      [{ state: 'done' }, s.pieces.done],
      [{ state: 'failed' }, s.pieces.failed],
      [{ state: 'cancelled' }, s.pieces.cancelled],
    ],
  );
  fromSnapshot('meshmirror_agent_piece_failures_total', 'Failed pieces by error code', ['code'], (s) => byKey(s.pieceFailures, 'code'));
  fromSnapshot('meshmirror_agent_retries_total', 'Failed attempts that were retried, by registry and error code', ['registry', 'code'], (s) =>
    s.retries.map((r) => [{ registry: r.host, code: r.code }, r.count]),
  );
  fromSnapshot('meshmirror_agent_pushes_total', 'Blob pushes by outcome (present, mounted, uploaded, failed, aborted)', ['outcome'], (s) => byKey(s.pushes, 'outcome'));
  fromSnapshot('meshmirror_agent_assignments_total', 'Batches of pieces the coordinator handed over: started and finished', ['state'], (s) => [
    [{ state: 'started' }, s.assignments.started],
    [{ state: 'finished' }, s.assignments.finished],
  ]);
  gaugeOf(registry, 'meshmirror_agent_pieces_in_flight', 'Pieces being fetched now', [], () => [[{}, snapshot.pieces.inFlight]]);
  gaugeOf(registry, 'meshmirror_agent_store_bytes', "Bytes in the agent's store folder (blobs, pieces, index)", [], async () => [[{}, await storeSize()]]);

  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://status').pathname;
    snapshot = counters.snapshot();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      answerMetrics(registry, res);
    } else if (path === '/api/agent') {
      storeSize().then(
        (storeBytes) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ peerId: options.peerId, ...snapshot, storeBytes })),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /api/agent\n');
    }
  });
  const url = await listenOnStatusAddress(server, address);
  options.logger.info({ url }, 'status: /metrics and /api/agent');
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
