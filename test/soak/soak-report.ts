/**
 * The soak's figures, its verdicts and the report printed at the end (and kept as
 * test-results/soak.md): what happened, bytes against unique, a table of every process per minute,
 * flatness per process, and one PASS or FAIL line per verdict.
 */
import { formatBytes } from '@meshmirror/shared';
import type { CliResult } from '../support/cli.ts';
import type { FaultProxyStats } from '../support/fault-proxy.ts';
import type { PushedImage } from '../support/push-layout.ts';
import type { SoakEvent } from './fault-plan.ts';
import { minuteTable, type Flatness, type FlatnessRule, type Incarnation } from './process-sampler.ts';
import { AGENTS } from './soak-farm.ts';
import { REST_SLACK_FDS, SAMPLE_EVERY_MS, sum, type SoakRun } from './soak-run.ts';

const MiB = 1024 * 1024;
/** Upstream bytes may exceed the unique bytes by this share, on top of what the kills had in flight. */
export const FETCH_SLACK = 0.05;

/** The parts of the run's `--output json` summary the soak reads. */
interface MirrorSummaryJson {
  resumed: boolean;
  images: { requested: number; archived: number; failed: number };
  outcomes: Array<{ source: string; state: string; digest?: string }>;
  bytes: { unique: number };
  archive: { chunks: unknown[] };
}

interface VerifyJson {
  problems: unknown[];
  images: number;
}

export interface SoakFigures {
  minutes: number;
  rate: string;
  pushed: PushedImage[];
  /** `host:port` the images were mirrored through (the fault proxy). */
  sourceHost: string;
  uniqueBytes: number;
  /** The run's end, in ms since the soak began. */
  endMs: number;
  run: SoakRun;
  /** The re-run's result (undefined when it was still going at the deadline). */
  final: CliResult | undefined;
  verify: CliResult;
  log: FaultProxyStats['log'];
  rule: FlatnessRule;
  flatness: Flatness[];
}

export interface Verdict {
  name: string;
  pass: boolean;
  detail: string;
}

function parse<T>(text: string): T | undefined {
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

/** Body bytes of blob GETs the proxy delivered; injected 5xx and 429 bodies are not blob bytes. */
function fetchedBytes(log: FaultProxyStats['log']): number {
  return log.filter((e) => e.method === 'GET' && /\/blobs\/sha256:/.test(e.path) && e.fault !== 'status').reduce((n, e) => n + e.bytes, 0);
}

/** Each kill with the final byte count of the blob requests it had open. */
function killsInFlight(f: SoakFigures): Array<SoakRun['kills'][number] & { bytes: number }> {
  return f.run.kills.map((k) => ({ ...k, bytes: k.open.reduce((n, i) => n + (f.log[i]?.bytes ?? 0), 0) }));
}

function countFaults(log: FaultProxyStats['log']): { resets: number; stalls: number; status5xx: number; status429: number; total: number } {
  const faulted = log.filter((e) => e.fault !== undefined);
  return {
    resets: faulted.filter((e) => e.fault === 'reset-random').length,
    stalls: faulted.filter((e) => e.fault === 'stall-after').length,
    status5xx: faulted.filter((e) => e.fault === 'status' && e.status >= 500).length,
    status429: faulted.filter((e) => e.fault === 'status' && e.status === 429).length,
    total: faulted.length,
  };
}

export function judgeSoak(f: SoakFigures): Verdict[] {
  const fetched = fetchedBytes(f.log);
  const inFlight = killsInFlight(f).reduce((n, k) => n + k.bytes, 0);
  const allowed = (1 + FETCH_SLACK) * f.uniqueBytes + inFlight;
  const judged = f.flatness.filter((x) => x.skipped === undefined);
  const atRest = descriptorsAtRest(f);
  const faults = countFaults(f.log);
  const missed = f.run.missed.filter((e) => e.kind !== 'burst');
  return [
    imagesVerdict(f),
    {
      name: 'bytes fetched upstream',
      pass: fetched <= allowed,
      detail: `${formatBytes(fetched)} (${fetched} B) for ${formatBytes(f.uniqueBytes)} unique: ${(fetched / f.uniqueBytes).toFixed(3)}×; allowed ${(1 + FETCH_SLACK).toFixed(2)}× unique + ${formatBytes(inFlight)} in flight at the kills = ${formatBytes(allowed)}`,
    },
    {
      name: 'RSS and descriptors flat after warm-up',
      pass: judged.length > 0 && judged.every((x) => x.flat) && atRest.every((a) => a.fds <= a.atStart + REST_SLACK_FDS),
      detail:
        `${judged.filter((x) => x.flat).length} of ${judged.length} processes judged are flat (${f.flatness.length - judged.length} lived too short to judge); ` +
        `once the run was over, the agents held ${atRest.map((a) => `${a.fds}`).join(', ')} descriptors against ${atRest.map((a) => `${a.atStart}`).join(', ')} when they started`,
    },
    {
      name: 'every planned fault met the running mirror',
      pass: missed.length === 0 && f.run.firstRun?.signal === 'SIGKILL' && faults.status5xx > 0 && faults.status429 > 0,
      detail:
        missed.length === 0
          ? `coordinator kill, ${f.run.kills.length - 1} agent kills, the outage, ${faults.status5xx} 5xx and ${faults.status429} 429 answers, ${faults.resets} resets, ${faults.stalls} stalls`
          : `the run ended at ${(f.endMs / 1000).toFixed(0)} s, before: ${missed.map((e: SoakEvent) => `${e.kind} at ${(e.atMs / 1000).toFixed(0)} s`).join(', ')}`,
    },
  ];
}

/**
 * Each agent alive at the end: the descriptors it held once the run was over, and in its first
 * sample. A leaked file or socket stays after the run; the work of the moment does not.
 */
function descriptorsAtRest(f: SoakFigures): Array<{ role: string; fds: number; atStart: number }> {
  const incarnations = f.run.sampler.incarnations();
  return f.run.agentRuns.flatMap((a) => {
    const first = incarnations.find((i) => i.pid === a.pid)?.samples[0];
    if (a.atRest === undefined || first === undefined) return [];
    return [{ role: a.role, fds: Object.values(a.atRest).reduce((n, c) => n + c, 0), atStart: first.fds }];
  });
}

/** Every image archived at the digest pushed, by a re-run that resumed, and `meshmirror verify` content. */
function imagesVerdict(f: SoakFigures): Verdict {
  const name = 'every image archived, the archive verifies';
  const summary = f.final === undefined ? undefined : parse<MirrorSummaryJson>(f.final.stdout);
  if (f.final === undefined || summary === undefined) {
    return {
      name,
      pass: false,
      detail: `the run did not end with a summary (exit ${f.final?.code ?? f.final?.signal ?? 'none'}): ${f.final?.stderr.slice(-500) ?? ''}`,
    };
  }
  const outcomes = new Map(summary.outcomes.map((o) => [o.source, o]));
  const wrong = f.pushed.filter((p) => {
    const outcome = outcomes.get(`${f.sourceHost}/${p.name}`);
    return outcome?.state !== 'archived' || outcome.digest !== p.digest;
  });
  const verification = parse<VerifyJson>(f.verify.stdout);
  const pass =
    f.final.code === 0 &&
    summary.resumed &&
    summary.images.archived === f.pushed.length &&
    summary.images.failed === 0 &&
    wrong.length === 0 &&
    f.verify.code === 0 &&
    verification?.problems.length === 0 &&
    verification.images === f.pushed.length;
  return {
    name,
    pass,
    detail:
      `re-run exit ${f.final.code}, resumed ${summary.resumed}, ${summary.images.archived}/${f.pushed.length} archived (${summary.images.failed} failed, ${wrong.length} not at the pushed digest), ` +
      `${summary.archive.chunks.length} chunks; meshmirror verify exit ${f.verify.code}: ${verification === undefined ? f.verify.stderr.slice(-300) : `${verification.images} images, ${verification.problems.length} problems`}`,
  };
}

/** MiB the proxy delivered in minute `m`, from its running totals. */
function upstreamInMinute(totals: SoakRun['upstream'], m: number): string {
  const upTo = (ms: number): number => totals.filter((t) => t.at <= ms).pop()?.bytes ?? 0;
  return ((upTo((m + 1) * 60_000) - upTo(m * 60_000)) / MiB).toFixed(1);
}

const kinds = (counts: Record<string, number>): string =>
  Object.entries(counts)
    .map(([kind, n]) => `${kind} ${n}`)
    .join(', ');

function describeFlatness(f: Flatness, incarnation: Incarnation | undefined): string {
  const peak = incarnation?.peakFds === undefined ? '–' : `${kinds(incarnation.peakFds.kinds)} (at ${(incarnation.peakFds.at / 1000).toFixed(0)} s)`;
  if (f.skipped !== undefined || f.rss === undefined || f.fds === undefined || f.fdsMax === undefined) {
    return `| ${f.role} (pid ${f.pid}) | – | – | ${peak} | not judged: ${f.skipped ?? 'no figures'} |`;
  }
  const mib = (n: number): string => `${(n / MiB).toFixed(1)} MiB`;
  return `| ${f.role} (pid ${f.pid}) | ${mib(f.rss.firstThird)} → ${mib(f.rss.lastThird)} (${f.rss.ratio.toFixed(2)}) | ${f.fds.firstThird} → ${f.fds.lastThird} (${f.fds.ratio.toFixed(2)}); highest ${f.fdsMax.firstThird} → ${f.fdsMax.lastThird} | ${peak} | ${f.flat ? 'yes' : 'NO'} |`;
}

export function formatSoakReport(f: SoakFigures, verdicts: Verdict[]): string {
  const fetched = fetchedBytes(f.log);
  const faults = countFaults(f.log);
  const summary = f.final === undefined ? undefined : parse<MirrorSummaryJson>(f.final.stdout);
  const incarnations = f.run.sampler.incarnations();
  const { rule } = f;
  return [
    `# Soak: ${f.minutes} min (${new Date().toISOString()})`,
    '',
    `Command: \`npx -y pnpm@10 soak --minutes ${f.minutes}\`; agents at --limit-upstream ${f.rate}; ${f.pushed.length} images, ${formatBytes(f.uniqueBytes)} unique; ` +
      `the run took ${(f.endMs / 1000).toFixed(0)} s (first run killed, the re-run ${summary?.resumed === true ? 'resumed' : 'did not resume'}).`,
    '',
    '## What happened',
    '',
    ...f.run.happened.map((l) => `    ${l}`),
    '',
    `Faults injected by the proxy: ${faults.resets} resets, ${faults.stalls} stalls, ${faults.status5xx} 5xx, ${faults.status429} 429 (Retry-After: 2), ${faults.total} in all, over ${f.log.length} requests.`,
    '',
    '## Bytes',
    '',
    `Fetched upstream (blob bodies the proxy delivered): ${formatBytes(fetched)}; unique: ${formatBytes(f.uniqueBytes)} (the run's summary: ${formatBytes(summary?.bytes.unique ?? 0)}); ratio ${(fetched / f.uniqueBytes).toFixed(3)}.`,
    '',
    "| kill | at | blob requests open | their bytes | victim's counters (pieces in flight, upstream of finished pieces, served) |",
    '| --- | ---: | ---: | ---: | --- |',
    ...killsInFlight(f).map(
      (k) =>
        `| ${k.what} | ${(k.atMs / 1000).toFixed(0)} s | ${k.open.length} | ${formatBytes(k.bytes)} | ${k.counters === undefined ? '–' : `${k.counters.piecesInFlight}, ${formatBytes(k.counters.upstream)}, ${formatBytes(k.counters.served)}`} |`,
    ),
    '',
    '| agent process | upstream | served | descriptors once the run was over |',
    '| --- | ---: | ---: | --- |',
    ...f.run.agentRuns.map(
      (a) =>
        `| ${a.role} (pid ${a.pid}) | ${formatBytes(sum(a.counters?.upstreamBytes ?? {}))} | ${formatBytes(sum(a.counters?.servedBytes ?? {}))} | ${a.atRest === undefined ? 'killed' : kinds(a.atRest)} |`,
    ),
    '',
    `## Processes (sampled every ${SAMPLE_EVERY_MS / 1000} s; per minute the highest VmRSS, the highest VmHWM, the most open descriptors; * = restarted in that minute)`,
    '',
    minuteTable(incarnations, ['coordinator', ...AGENTS], f.endMs, { header: 'upstream MiB', cell: (m) => upstreamInMinute(f.run.upstream, m) }),
    '',
    `Flat: of the samples after a process's first ${rule.warmupMs / 1000} s and before the run's last ${rule.windDownMs / 1000} s, split by time into thirds, ` +
      `the last third's highest RSS ≤ ${rule.maxRatio}× the first third's, and the same for the median of its open descriptors ` +
      `(judged when sampled ≥ ${rule.minJudgedMs / 1000} s in between; process-sampler.ts says why).`,
    '',
    '| process | highest RSS, first third → last third | median fds, first third → last third | descriptors at their most | flat |',
    '| --- | --- | --- | --- | --- |',
    ...f.flatness.map((x, i) => describeFlatness(x, incarnations[i])),
    '',
    '## Verdicts',
    '',
    ...verdicts.map((v) => `- ${v.pass ? 'PASS' : 'FAIL'} ${v.name}: ${v.detail}`),
    '',
  ].join('\n');
}
