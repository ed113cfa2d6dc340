/**
 * `agent --status HOST:PORT`: each agent of a real farm serves Prometheus `/metrics` and
 * `/api/agent`. Scraped while a run goes (held in its fetching phase by a stalled layer) they show
 * pieces in flight; scraped after the run their counters equal the run's per-agent report exactly
 * (upstream bytes, bytes served to the writer, pieces) and the coordinator's own `/metrics` for
 * that agent, and after a farm mirror to mirror they count the bytes pushed.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheWithIdentity, farmKeys, startAgent, type RunningAgent } from './support/agents.ts';
import { spawnMeshmirror, waitFor } from './support/cli.ts';
import { metricSum, reportOf, scrape, spawnWatchedRun } from './support/status-run.ts';
import { mirrorArgs, mirrorToMirrorArgs, startMirrorFixture, type MirrorFixture } from './support/mirror-fixture.ts';
import type { AgentReport } from '@meshmirror/coordinator';

const MiB = 1024 * 1024;

interface AgentJson {
  peerId: string;
  upstreamBytes: Record<string, number>;
  servedBytes: Record<string, number>;
  pushedBytes: Record<string, number>;
  pieces: { inFlight: number; done: number; failed: number; cancelled: number };
  pushes: Record<string, number>;
  storeBytes: number;
}

const sum = (record: Record<string, number>): number => Object.values(record).reduce((a, b) => a + b, 0);

/** The value of one sample of a metric in Prometheus text, or undefined when it is not there. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels === '' ? '' : `{${labels}}`} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('agent --status', () => {
  let fx: MirrorFixture;
  let keys: Awaited<ReturnType<typeof farmKeys>>;
  let agents: RunningAgent[] = [];
  beforeAll(async () => {
    fx = await startMirrorFixture();
    keys = await farmKeys(fx.dir);
    agents = await Promise.all(
      ['a', 'b'].map((n) =>
        startAgent({ data: join(fx.dir, `agent-${n}`), swarmKey: keys.keyFile, allow: [keys.coordinatorId], logLevel: 'info', extraArgs: ['--status', '127.0.0.1:0'] }),
      ),
    );
  }, 60_000);
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await fx?.close();
  });

  const api = async (agent: RunningAgent): Promise<AgentJson> => (await (await fetch(`${agent.statusUrl}/api/agent`)).json()) as AgentJson;
  const metrics = async (agent: RunningAgent): Promise<string> => {
    const response = await fetch(`${agent.statusUrl}/metrics`);
    expect(response.headers.get('content-type')).toContain('text/plain');
    return await response.text();
  };

  it('counts what each agent did, and matches the run report exactly', async () => {
    for (const a of agents) expect(a.statusUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const registryHost = fx.proxy.host;
    const config = await fx.writeConfig('farm.yaml', { additionalImages: fx.pushed.map((p) => fx.viaProxy(p.name)) });
    const cache = await cacheWithIdentity(keys.identityDir, join(fx.dir, 'cache'));
    // The large layer stalls after 1 MiB until --stall-timeout gives that request up and the retry completes it.
    fx.proxy.setRules([{ match: { method: 'GET', path: /\/v2\/sample\/big\/blobs\/sha256:/ }, fault: { kind: 'stall-after', bytes: MiB, ms: 30_000 } }]);
    // The coordinator serves its own status too, and lingers after its report, so both sides are scraped at the end.
    const run = await spawnWatchedRun([
      ...mirrorArgs(config, join(fx.dir, 'out'), cache, '--piece-size', '4MiB', '--stall-timeout', '3s', '--status', '127.0.0.1:0', '--status-linger', '60s'),
      '--swarm-key',
      keys.keyFile,
      '--agents',
      agents.map((a) => a.addresses[0] ?? '').join(','),
    ]);
    try {
      // During the run: some agent is in the middle of a piece, and says so in both forms.
      // Both forms are read back to back, and taken only when both show it: a short piece can
      // finish between the two requests (the stalled one stays in flight for seconds).
      let text = '';
      await waitFor(async () => {
        for (const agent of agents) {
          const json = await api(agent);
          if (json.pieces.inFlight === 0 || sum(json.upstreamBytes) === 0) continue;
          const scraped = await metrics(agent);
          if (sample(scraped, 'meshmirror_agent_pieces_in_flight', '') === 0) continue;
          text = scraped;
          return true;
        }
        return false;
      }, 'an agent with a piece in flight');
      expect(sample(text, 'meshmirror_agent_pieces_in_flight', '')).toBeGreaterThan(0);
      expect(sample(text, 'meshmirror_agent_upstream_bytes_total', `registry="${registryHost}"`)).toBeGreaterThan(0);
      expect(text).toMatch(/meshmirror_agent_process_resident_memory_bytes \d+/);
    } finally {
      fx.proxy.setRules([]);
    }
    const report = await reportOf<{ agents: AgentReport[]; bytes: { fetched: number } }>(run);
    expect(report.agents).toHaveLength(2);
    const coordinator = await scrape(run.url);

    // After the run: each agent's counters are its row of the report.
    let upstream = 0;
    for (const agent of agents) {
      const row = report.agents.find((r) => r.agent === agent.peerId)!;
      expect(row, `a report row for ${agent.peerId}`).toBeDefined();
      const json = await api(agent);
      const text = await metrics(agent);
      expect(json.peerId).toBe(agent.peerId);
      expect(sum(json.upstreamBytes)).toBe(row.upstreamBytes);
      expect(json.upstreamBytes[registryHost] ?? 0).toBe(row.upstreamBytes);
      expect(sample(text, 'meshmirror_agent_upstream_bytes_total', `registry="${registryHost}"`) ?? 0).toBe(row.upstreamBytes);
      expect(sum(json.servedBytes)).toBe(row.servedBytes);
      expect(sample(text, 'meshmirror_agent_served_bytes_total', `peer="${keys.coordinatorId}"`) ?? 0).toBe(row.servedBytes);
      expect(json.pieces.done).toBe(row.piecesFetched);
      expect(json.pieces.failed).toBe(row.piecesFailed);
      // A copy cancelled as another won (the stalled layer's endgame duplicate) is counted on both sides too.
      expect(json.pieces.cancelled).toBe(row.piecesCancelled);
      expect(sample(text, 'meshmirror_agent_pieces_total', 'state="cancelled"')).toBe(row.piecesCancelled);
      expect(metricSum(coordinator, 'meshmirror_pieces_total', { agent: agent.peerId, state: 'cancelled' })).toBe(json.pieces.cancelled);
      expect(sample(text, 'meshmirror_agent_pieces_total', 'state="done"')).toBe(row.piecesFetched);
      expect(json.pieces.inFlight).toBe(0);
      expect(json.storeBytes).toBeGreaterThanOrEqual(row.upstreamBytes > 0 ? 1 : 0);
      // The coordinator's view of this agent, from the events it received, is the agent's own.
      expect(metricSum(coordinator, 'meshmirror_upstream_bytes_total', { agent: agent.peerId })).toBe(sum(json.upstreamBytes));
      expect(metricSum(coordinator, 'meshmirror_served_bytes_total', { agent: agent.peerId })).toBe(json.servedBytes[keys.coordinatorId] ?? 0);
      expect(metricSum(coordinator, 'meshmirror_pieces_total', { agent: agent.peerId, state: 'fetched' })).toBe(json.pieces.done);
      upstream += row.upstreamBytes;
      console.log(
        `agent ${agent.peerId.slice(-8)}: upstream ${row.upstreamBytes} B, served ${row.servedBytes} B, ${row.piecesFetched} pieces, ${row.piecesCancelled} cancelled; /metrics and /api/agent agree`,
      );
    }
    // The stalled request's first MiB was fetched twice: the report and the agents both count it.
    expect(upstream).toBe(report.bytes.fetched);
    expect(upstream).toBeGreaterThanOrEqual(fx.uniqueBlobBytes);
    run.child.kill('SIGTERM');
    const result = await run.result;
    expect(result.code, result.stderr).toBe(0);
  }, 180_000);

  it('counts the bytes each agent pushed in a farm mirror to mirror', async () => {
    const before = await Promise.all(agents.map(api));
    const config = await fx.writeConfig('push.yaml', { additionalImages: fx.pushed.map((p) => fx.direct(p.name)) });
    const cache = await cacheWithIdentity(keys.identityDir, join(fx.dir, 'cache-push'));
    const result = await spawnMeshmirror([
      ...mirrorToMirrorArgs(config, join(fx.dir, 'workspace'), `${fx.registry.host}/copied`, cache),
      '--swarm-key',
      keys.keyFile,
      '--agents',
      agents.map((a) => a.addresses[0] ?? '').join(','),
    ]).result;
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as { agents: Array<AgentReport & { pushedBytes: number; blobsPushed: number }> };
    let pushed = 0;
    for (const [i, agent] of agents.entries()) {
      const row = report.agents.find((r) => r.agent === agent.peerId)!;
      const after = await api(agent);
      const delta = sum(after.pushedBytes) - sum(before[i]!.pushedBytes);
      expect(delta).toBe(row.pushedBytes);
      expect(after.pushedBytes[fx.registry.host] ?? 0).toBeGreaterThanOrEqual(delta);
      const text = await metrics(agent);
      expect(sample(text, 'meshmirror_agent_pushed_bytes_total', `registry="${fx.registry.host}"`) ?? 0).toBe(after.pushedBytes[fx.registry.host] ?? 0);
      pushed += delta;
    }
    expect(pushed).toBeGreaterThanOrEqual(fx.uniqueBlobBytes);
  }, 180_000);

  it('refuses a bad --status address, naming the flag', async () => {
    await expect(
      startAgent({ data: join(fx.dir, 'agent-bad'), swarmKey: keys.keyFile, allow: [keys.coordinatorId], extraArgs: ['--status', 'nowhere'] }),
    ).rejects.toThrow('--status');
  });
});
