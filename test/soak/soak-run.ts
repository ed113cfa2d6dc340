/**
 * The soak's run: the farm's mirror, started and (once) killed and run again, with the fault plan's
 * events applied at their times while it goes, every process sampled from /proc and its log kept,
 * and what each kill had in flight noted.
 */
import type { ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatBytes } from '@meshmirror/shared';
import type { RunningAgent } from '../support/agents.ts';
import { spawnMeshmirror, type CliResult } from '../support/cli.ts';
import type { FaultProxy } from '../support/fault-proxy.ts';
import { BURST_EVERY_MS, BURST_WINDOW_MS, burstRules, steadyRules, type SoakEvent } from './fault-plan.ts';
import { connectionsTo, openBlobRequests } from './in-flight.ts';
import { ProcessSampler, readProcess } from './process-sampler.ts';
import { AGENTS, type SoakFarm } from './soak-farm.ts';

/** The agent that is killed and started again; the other two live through the whole soak. */
export const VICTIM = 2;
export const SAMPLE_EVERY_MS = 2_000;
/** At rest an agent may hold this many descriptors more than when it started: the soak's own keep-alive connection to its status page. */
export const REST_SLACK_FDS = 2;
/** How long an agent is given to close what the run left open (idle connections) before what it holds counts. */
const REST_WAIT_MS = 15_000;

export interface KillRecord {
  what: string;
  atMs: number;
  /** Proxy log indexes of the blob requests open at the kill. */
  open: number[];
  /** The victim agent's own counters at the kill (from `--status`). */
  counters?: { piecesInFlight: number; upstream: number; served: number };
}

export interface AgentCounters {
  pieces: { inFlight: number; done: number; failed: number };
  upstreamBytes: Record<string, number>;
  servedBytes: Record<string, number>;
}

/** Appends what `child` writes to stderr from now on (after `earlier`, what it wrote before) to `file`. */
function keepLog(child: ChildProcess, file: string, earlier = ''): void {
  const out = createWriteStream(file);
  out.write(earlier);
  child.stderr?.pipe(out);
}

export const sum = (record: Record<string, number>): number => Object.values(record).reduce((a, b) => a + b, 0);

async function agentCounters(agent: RunningAgent): Promise<AgentCounters | undefined> {
  if (agent.statusUrl === undefined) return undefined;
  const response = await fetch(`${agent.statusUrl}/api/agent`).catch(() => undefined);
  return response?.ok === true ? ((await response.json()) as AgentCounters) : undefined;
}

/** Everything the soak does to its farm and when, with what happened recorded for the report. */
export class SoakRun {
  readonly #proxy: FaultProxy;
  readonly #sampler: ProcessSampler;
  readonly #start: number;
  readonly #agents: RunningAgent[];
  readonly #farm: SoakFarm;
  /** Remote ports named in descriptor kinds: the registry's (the fault proxy's). */
  readonly #ports: ReadonlyMap<number, string>;
  readonly kills: KillRecord[] = [];
  /** Scheduled events that found the run already over. */
  readonly missed: SoakEvent[] = [];
  readonly happened: string[] = [];
  /** Every agent process: its counters when it was killed or at the end, and what it held open once the run was over. */
  readonly agentRuns: Array<{ role: string; pid: number; counters?: AgentCounters; atRest?: Record<string, number> }> = [];
  /** The proxy's running total of blob body bytes, every sample: upstream per minute. */
  readonly upstream: Array<{ at: number; bytes: number }> = [];
  readonly #upstreamTimer: NodeJS.Timeout;
  #mirror: ReturnType<typeof spawnMeshmirror>;
  #mirrorOver = false;
  #outage: Promise<void> = Promise.resolve();
  #burstEnd: NodeJS.Timeout | undefined;
  firstRun: CliResult | undefined;

  constructor(farm: SoakFarm) {
    this.#farm = farm;
    this.#proxy = farm.proxy;
    this.#agents = farm.agents;
    this.#start = Date.now();
    this.#ports = new Map([[Number(new URL(farm.proxy.url).port), 'registry']]);
    this.#sampler = new ProcessSampler(this.#start, SAMPLE_EVERY_MS, this.#ports);
    for (const [i, agent] of this.#agents.entries()) this.#follow(AGENTS[i]!, agent.child, agent.stderr());
    this.#upstreamTimer = setInterval(() => this.upstream.push({ at: this.elapsed(), bytes: this.#proxy.stats().blobBodyBytes }), SAMPLE_EVERY_MS);
    this.#proxy.setRules(steadyRules(), { seed: 1 });
    this.#mirror = this.#spawnMirror();
  }

  get sampler(): ProcessSampler {
    return this.#sampler;
  }

  elapsed(): number {
    return Date.now() - this.#start;
  }

  /** A new process of `role`: sampled from now on, its log kept as `<role>-<pid>.log`. */
  #follow(role: string, child: ChildProcess, earlier = ''): void {
    this.#sampler.track(role, child.pid!);
    keepLog(child, join(this.#farm.logDir, `${role}-${child.pid}.log`), earlier);
  }

  #spawnMirror(): ReturnType<typeof spawnMeshmirror> {
    const mirror = spawnMeshmirror(this.#farm.mirrorArgs);
    this.#follow('coordinator', mirror.child);
    void mirror.result.then(() => {
      if (this.#mirror === mirror) this.#mirrorOver = true;
    });
    return mirror;
  }

  #note(line: string): void {
    const text = `${(this.elapsed() / 1000).toFixed(0).padStart(5)} s  ${line}`;
    this.happened.push(text);
    console.log(text);
  }

  /** Runs the plan's events at their times, then waits for the run to end (at most `deadlineMs` from the start). */
  async run(events: SoakEvent[], deadlineMs: number): Promise<CliResult | undefined> {
    for (const event of events) {
      await this.#untilOver(event.atMs);
      if (this.#mirrorOver) {
        if (event.kind !== 'burst') this.missed.push(event);
        continue;
      }
      await this.#apply(event);
    }
    // Bursts go on until the run ends, so its tail meets them too.
    let n = events.filter((e) => e.kind === 'burst').length;
    const bursts = setInterval(() => this.#burst(n++), BURST_EVERY_MS);
    try {
      await this.#untilOver(deadlineMs);
      const result = this.#mirrorOver ? await this.#mirror.result : undefined;
      if (result === undefined) {
        this.#note(`the run is still going ${(deadlineMs / 60_000).toFixed(0)} min after the start: killed`);
        this.#mirror.child.kill('SIGKILL');
      }
      return result;
    } finally {
      clearInterval(bursts);
      clearTimeout(this.#burstEnd);
      await this.#outage;
      this.#proxy.setRules([]);
    }
  }

  /** Until `atMs` into the soak, or until the run is over if that comes first. */
  async #untilOver(atMs: number): Promise<void> {
    const cancel = new AbortController();
    const timer = sleep(Math.max(0, this.#start + atMs - Date.now()), undefined, { signal: cancel.signal }).catch(() => undefined);
    await Promise.race([timer, this.#mirror.result]);
    cancel.abort();
  }

  async #apply(event: SoakEvent): Promise<void> {
    switch (event.kind) {
      case 'burst':
        this.#burst(event.burst);
        return;
      case 'outage':
        this.#outage = this.#takeUpstreamDown(event.forMs);
        return;
      case 'kill-coordinator':
        return await this.#killCoordinator();
      case 'kill-agent':
        return await this.#killAgent(event.restartAfterMs);
    }
  }

  /** Burst `n`'s rules for its window, then the steady ones again (each with a seed of its own). */
  #burst(n: number): void {
    clearTimeout(this.#burstEnd);
    this.#proxy.setRules([...burstRules(n), ...steadyRules()], { seed: 2 * n + 2 });
    this.#burstEnd = setTimeout(() => this.#proxy.setRules(steadyRules(), { seed: 2 * n + 3 }), BURST_WINDOW_MS);
  }

  async #takeUpstreamDown(forMs: number): Promise<void> {
    this.#note(`upstream down for ${forMs / 1000} s (connections refused)`);
    await this.#proxy.setDown(true);
    await sleep(forMs);
    await this.#proxy.setDown(false);
    this.#note('upstream back');
  }

  /**
   * What the agent `pid` holds open with no run going: once it is down to what it held when it
   * started (its idle registry connections close after their keep-alive time, 4 to 5 s), or what it
   * still holds after REST_WAIT_MS.
   */
  async #atRest(pid: number): Promise<Record<string, number> | undefined> {
    const atStart = this.#sampler.incarnations().find((i) => i.pid === pid)?.samples[0]?.fds ?? 0;
    const deadline = Date.now() + REST_WAIT_MS;
    for (;;) {
      const kinds = (await readProcess(pid, this.#ports))?.kinds;
      const open = Object.values(kinds ?? {}).reduce((a, b) => a + b, 0);
      if (kinds === undefined || open <= atStart + REST_SLACK_FDS || Date.now() >= deadline) return kinds;
      await sleep(500);
    }
  }

  /** The blob requests `pids` have open at the proxy now. */
  async #openRequests(pids: number[]): Promise<number[]> {
    const port = Number(new URL(this.#proxy.url).port);
    const connections = (await Promise.all(pids.map((pid) => connectionsTo(pid, port)))).flat();
    return openBlobRequests(this.#proxy.stats().log, connections);
  }

  async #killCoordinator(): Promise<void> {
    // Its agents drop their assignments with it: their open requests are what it had in flight.
    const open = await this.#openRequests([this.#mirror.child.pid!, ...this.#agents.map((a) => a.child.pid!)]);
    const atMs = this.elapsed();
    this.#mirror.child.kill('SIGKILL');
    this.firstRun = await this.#mirror.result;
    this.kills.push({ what: 'coordinator', atMs, open });
    this.#note(`coordinator killed (${this.firstRun.signal ?? `exit ${this.firstRun.code}`}), ${open.length} blob requests open; the same command again`);
    this.#mirror = this.#spawnMirror();
    // The killed run's end marked the run over; the same command now carries it on.
    this.#mirrorOver = false;
  }

  async #killAgent(restartAfterMs: number): Promise<void> {
    const victim = this.#agents[VICTIM]!;
    const before = await agentCounters(victim);
    const open = await this.#openRequests([victim.child.pid!]);
    const atMs = this.elapsed();
    victim.child.kill('SIGKILL');
    await victim.stop();
    const counters =
      before === undefined ? undefined : { piecesInFlight: before.pieces.inFlight, upstream: sum(before.upstreamBytes), served: sum(before.servedBytes) };
    this.agentRuns.push({ role: AGENTS[VICTIM], pid: victim.child.pid!, ...(before === undefined ? {} : { counters: before }) });
    this.kills.push({ what: AGENTS[VICTIM], atMs, open, ...(counters === undefined ? {} : { counters }) });
    this.#note(
      `${AGENTS[VICTIM]} killed (SIGKILL) with ${counters?.piecesInFlight ?? '?'} pieces and ${open.length} blob requests open; ` +
        `it had brought in ${formatBytes(counters?.upstream ?? 0)} (finished pieces) and served ${formatBytes(counters?.served ?? 0)}`,
    );
    await sleep(restartAfterMs);
    const again = await this.#farm.restartAgent(VICTIM);
    this.#agents[VICTIM] = again;
    this.#follow(AGENTS[VICTIM], again.child, again.stderr());
    this.#note(`${AGENTS[VICTIM]} started again (pid ${again.child.pid})`);
  }

  /** The agents' counters now, what they hold open once at rest, and then they stop. */
  async stopAgents(): Promise<void> {
    for (const [i, agent] of this.#agents.entries()) {
      const counters = await agentCounters(agent);
      const atRest = await this.#atRest(agent.child.pid!);
      this.agentRuns.push({ role: AGENTS[i]!, pid: agent.child.pid!, ...(counters === undefined ? {} : { counters }), ...(atRest === undefined ? {} : { atRest }) });
    }
    await Promise.all(this.#agents.map((a) => a.stop()));
    this.#sampler.stop();
    clearInterval(this.#upstreamTimer);
  }
}
