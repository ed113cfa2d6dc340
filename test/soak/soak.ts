/**
 * `pnpm soak [--minutes N]` (or SOAK_MINUTES; default 20): one farm mirror to disk that lasts the
 * whole soak, through faults injected all along, then its figures and verdicts (printed, and kept
 * in test-results/soak.md). Exits 1 when a verdict fails, so CI can run a short one.
 *
 * One long run rather than many short ones: a long run is what oc-mirror failed at (1h4m, then an
 * empty archive), and only one run keeps one coordinator process alive long enough for its leaks to
 * show. The run lasts because the agents are held to SOAK_AGENT_RATE each (`--limit-upstream`,
 * default 1MiB/s) and the image set is sized to what three of them bring in over the soak.
 *
 * The farm (soak-farm.ts): a real docker-registry behind the fault proxy, three `meshmirror agent`
 * processes and one coordinator. The run (soak-run.ts): the third agent killed with SIGKILL and
 * started again on its port every few minutes, the coordinator killed once and the same command run
 * again, an outage and bursts of errors (fault-plan.ts). The report (soak-report.ts): every image
 * archived and `meshmirror verify` of the archive; bytes fetched upstream against the set's unique
 * bytes plus what each kill had in flight; every process's memory and descriptors per minute.
 *
 * SOAK_LOG_LEVEL (default info) is every process's log level; the logs, the stores and the archive
 * stay in the work folder when a verdict fails, or always with SOAK_KEEP=1.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatBytes, parseRate } from '@meshmirror/shared';
import { runMeshmirror } from '../support/cli.ts';
import { soakEvents } from './fault-plan.ts';
import { judgeFlatness, type FlatnessRule } from './process-sampler.ts';
import { AGENTS, startSoakFarm, type SoakFarm } from './soak-farm.ts';
import { formatSoakReport, judgeSoak } from './soak-report.ts';
import { SoakRun } from './soak-run.ts';

/**
 * Share of the soak the agents spend bringing in new bytes at their limit: the rest goes to the
 * outage, the restarts, stalls and Retry-After waits. Measured on the 2-core machine (README).
 */
const BUSY_SHARE = 0.75;

/**
 * Warm-up: a process's first minute (a sixth of a shorter soak, so the 3-minute sample judges its
 * re-run coordinator too). Wind-down: the run's last 15% (30 s at least), where it fetches its small
 * blobs, many at once: about the last 70 s of a 10-minute run. See `judgeFlatness`.
 */
function flatnessRule(durationMs: number, runMs: number): FlatnessRule {
  return { warmupMs: Math.min(60_000, durationMs / 6), windDownMs: Math.max(30_000, Math.round((0.15 * runMs) / 1000) * 1000), minJudgedMs: 60_000, maxRatio: 1.2 };
}

function soakMinutes(argv: string[]): number {
  const at = argv.indexOf('--minutes');
  const given = at >= 0 ? argv[at + 1] : process.env['SOAK_MINUTES'];
  const minutes = Number(given ?? 20);
  if (!Number.isFinite(minutes) || minutes < 2) throw new Error(`--minutes (or SOAK_MINUTES) must be a number of at least 2, got ${given}`);
  return minutes;
}

async function main(): Promise<number> {
  const minutes = soakMinutes(process.argv.slice(2));
  const durationMs = minutes * 60_000;
  const rate = process.env['SOAK_AGENT_RATE'] ?? '1MiB/s';
  const layerBytes = Math.round(AGENTS.length * parseRate(rate) * (durationMs / 1000) * BUSY_SHARE);
  const dir = await mkdtemp(join(tmpdir(), 'meshmirror-soak-'));
  let farm: SoakFarm | undefined;
  let keep = process.env['SOAK_KEEP'] !== undefined;
  try {
    console.log(`soak: ${minutes} min, 3 agents at --limit-upstream ${rate} each, a set of ${formatBytes(layerBytes)} of layers; work in ${dir}`);
    farm = await startSoakFarm({ dir, layerBytes, rate, logLevel: process.env['SOAK_LOG_LEVEL'] ?? 'info' });
    console.log(`soak: ${farm.pushed.length} images, ${farm.uniqueBlobs} unique blobs, ${formatBytes(farm.uniqueBytes)} unique, pushed`);

    const run = new SoakRun(farm);
    const final = await run.run(soakEvents(durationMs), Math.max(2 * durationMs, durationMs + 10 * 60_000));
    const endMs = run.elapsed();
    // Verifying takes a few seconds, after which the agents are at rest (idle connections closed).
    const verify = await runMeshmirror(['verify', farm.out, '--output', 'json']);
    await run.stopAgents();

    const rule = flatnessRule(durationMs, endMs);
    const figures = {
      minutes,
      rate,
      pushed: farm.pushed,
      sourceHost: farm.proxy.host,
      uniqueBytes: farm.uniqueBytes,
      endMs,
      run,
      final,
      verify,
      log: farm.proxy.stats().log,
      rule,
      flatness: run.sampler.incarnations().map((i) => judgeFlatness(i, rule, endMs)),
    };
    const verdicts = judgeSoak(figures);
    const report = formatSoakReport(figures, verdicts);
    console.log(`\n${report}`);
    await mkdir('test-results', { recursive: true });
    await writeFile(join('test-results', 'soak.md'), report);
    const failed = verdicts.filter((v) => !v.pass).length;
    if (failed > 0) keep = true;
    console.log(
      failed === 0 ? 'soak: every verdict passed' : `soak: ${failed} verdicts failed; the work folder stays for a look (every process's log in ${farm.logDir})`,
    );
    return failed === 0 ? 0 : 1;
  } finally {
    await farm?.stop();
    if (!keep) await rm(dir, { recursive: true, force: true });
  }
}

process.exitCode = await main().catch((error: unknown) => {
  console.error(`soak: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  return 1;
});
