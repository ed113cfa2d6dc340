/**
 * A real `mirror --status` run for the status tests: its status URL once it prints it, its stdout as
 * it comes (the JSON report is there while the run lingers), and the Prometheus text it serves,
 * parsed into samples.
 */
import type { ChildProcess } from 'node:child_process';
import { spawnMeshmirror, waitFor, type CliResult } from './cli.ts';

export interface WatchedRun {
  /** `http://HOST:PORT` of its status address. */
  url: string;
  child: ChildProcess;
  result: Promise<CliResult>;
  stdout(): string;
  stderr(): string;
}

/** Starts `meshmirror` with these arguments (which include `--status`); resolves once the status address is printed. */
export async function spawnWatchedRun(args: string[]): Promise<WatchedRun> {
  const run = spawnMeshmirror(args);
  let stdout = '';
  run.child.stdout?.on('data', (s: string) => (stdout += s));
  let exited = false;
  void run.result.then(() => (exited = true));
  await waitFor(() => exited || /status at (http:\/\/\S+)/.test(run.stderr()), 'the status address');
  const url = /status at (http:\/\/\S+)/.exec(run.stderr())?.[1];
  if (url === undefined) throw new Error(`meshmirror exited before it served its status: ${run.stderr().slice(-2000)}`);
  return { url, child: run.child, result: run.result, stdout: () => stdout, stderr: () => run.stderr() };
}

/** The run's `--output json` report, once it is all on stdout (the process may still be lingering). */
export async function reportOf<T>(run: WatchedRun, timeoutMs = 90_000): Promise<T> {
  let report: T | undefined;
  let exited = false;
  void run.result.then(() => (exited = true));
  await waitFor(
    () => {
      try {
        report = JSON.parse(run.stdout()) as T;
        return true;
      } catch {
        return exited;
      }
    },
    'the JSON report',
    timeoutMs,
  );
  if (report === undefined) throw new Error(`meshmirror exited without a JSON report: ${run.stderr().slice(-2000)}`);
  return report;
}

export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text format samples (comments skipped). */
export function parseMetrics(text: string): MetricSample[] {
  const samples: MetricSample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The sum of a metric's samples whose labels include `labels`; 0 when there are none. */
export function metricSum(samples: MetricSample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);
}

export async function scrape(url: string): Promise<MetricSample[]> {
  const response = await fetch(`${url}/metrics`);
  if (!response.ok) throw new Error(`GET /metrics: ${response.status}`);
  return parseMetrics(await response.text());
}
