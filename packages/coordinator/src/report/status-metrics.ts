/**
 * `/metrics` of `mirror --status`: the run's `RunStatus` in the Prometheus text format (prom-client,
 * on a registry of its own). Every metric is read from the state when scraped, so a scrape agrees
 * with `/api/run`, and once the run is over with its summary: the per-agent counters are the
 * summary's `agents[]`, their sums its totals.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { RunPhase } from './progress.ts';
import type { RunStatus } from './run-status.ts';
import { counterOf, gaugeOf, type MetricRows } from './status-http.ts';

const PHASES: RunPhase[] = ['resolving', 'fetching', 'archiving', 'pushing', 'mirroring', 'done'];

type Rows<L extends string> = MetricRows<L>;

export function statusMetrics(status: RunStatus, storeBytes?: () => Promise<number>): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'meshmirror_' });
  const gauge = <L extends string>(name: string, help: string, labelNames: L[], rows: () => Rows<L>): void => gaugeOf(registry, name, help, labelNames, rows);
  const counter = <L extends string>(name: string, help: string, labelNames: L[], rows: () => Rows<L>): void => counterOf(registry, name, help, labelNames, rows);
  if (storeBytes !== undefined) {
    gaugeOf(registry, 'meshmirror_store_bytes', "Bytes in the coordinator's store folder (blobs, pieces, index), measured at most every 10 s", [], async () => [
      [{}, await storeBytes()],
    ]);
  }
  const perAgent = (pick: (a: ReturnType<RunStatus['agents']>[number]) => number): Rows<'agent'> => status.agents().map((a) => [{ agent: a.agent }, pick(a)]);

  gauge('meshmirror_run_phase', 'The run phase: 1 for the current one', ['phase'], () => PHASES.map((p) => [{ phase: p }, p === status.state.phase ? 1 : 0]));
  gauge('meshmirror_run_finished', '1 once the run is over (its summary printed): every counter then has its final value', [], () => [[{}, status.finished ? 1 : 0]]);
  gauge('meshmirror_run_bytes', 'Blob bytes of the run: done and total', ['kind'], () => [
    [{ kind: 'done' }, status.state.bytesDone],
    [{ kind: 'total' }, status.state.bytesTotal],
  ]);
  gauge('meshmirror_run_images', "Images of the run by state (at the end, the summary's requested, archived or pushed, and failed)", ['state'], () => [
    [{ state: 'total' }, status.state.imagesTotal],
    [{ state: 'done' }, status.state.imagesDone],
    [{ state: 'failed' }, status.state.imagesFailed],
  ]);
  counter('meshmirror_retries_total', 'Failed attempts that were retried, by host and error code', ['host', 'code'], () =>
    status.retries().map((r) => [{ host: r.host, code: r.code }, r.count]),
  );
  counter('meshmirror_failures_total', 'Pieces that failed after their retries, and (once the run is over) failed images, by error code', ['kind', 'code'], () =>
    status.failures().map((f) => [{ kind: f.kind, code: f.code }, f.count]),
  );
  counter(
    'meshmirror_upstream_bytes_total',
    'Body bytes from upstream registries, retries included, by registry and agent, counted as each piece ends (agents[].upstreamBytes; the sum is bytes.fetched)',
    ['registry', 'agent'],
    () => status.upstream().map((u) => [{ registry: u.registry, agent: u.agent }, u.bytes]),
  );
  counter('meshmirror_served_bytes_total', 'Bytes the writer pulled from each agent (agents[].servedBytes; the sum is bytes.pulled)', ['agent'], () =>
    perAgent((a) => a.servedBytes),
  );
  counter('meshmirror_received_bytes_total', 'Body bytes arriving at each agent, counted as they arrive: the live rate', ['agent'], () =>
    perAgent((a) => a.receivedBytes),
  );
  counter(
    'meshmirror_pieces_total',
    'Pieces each agent fetched, failed, had cancelled, and sent wrong (agents[].piecesFetched, piecesFailed, piecesCancelled, wrongPieces)',
    ['agent', 'state'],
    () =>
      status.agents().flatMap((a): Rows<'agent' | 'state'> => [
        [{ agent: a.agent, state: 'fetched' }, a.piecesFetched],
        [{ agent: a.agent, state: 'failed' }, a.piecesFailed],
        [{ agent: a.agent, state: 'cancelled' }, a.piecesCancelled],
        [{ agent: a.agent, state: 'wrong' }, a.wrongPieces],
      ]),
  );
  gauge('meshmirror_pieces_in_flight', 'Pieces each agent is fetching now', ['agent'], () => perAgent((a) => a.piecesInFlight));
  gauge('meshmirror_farm_agent_state', "1 for each agent's state: working, lost (agents[].lost) or distrusted (agents[].distrusted)", ['agent', 'state'], () =>
    status.agents().flatMap((a): Rows<'agent' | 'state'> => {
      const current = a.distrusted !== undefined ? 'distrusted' : a.lost !== undefined ? 'lost' : 'working';
      return (['working', 'lost', 'distrusted'] as const).map((state) => [{ agent: a.agent, state }, state === current ? 1 : 0]);
    }),
  );
  counter('meshmirror_farm_agent_readmissions_total', 'Times a lost agent answered again and was given work (agents[].readmitted)', ['agent'], () =>
    perAgent((a) => a.readmitted ?? 0),
  );
  counter('meshmirror_pushed_bytes_total', 'Body bytes sent to the target registry, counted when the run ends (bytes.sent of a push)', [], () => [
    [{}, status.result?.bytes.pushed ?? 0],
  ]);
  return registry;
}
