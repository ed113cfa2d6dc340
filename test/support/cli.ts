/**
 * Runs the real `meshmirror` CLI as a child process on the pinned Node (the one running vitest), or,
 * with `MESHMIRROR_BIN` set, as that executable (see meshmirrorCommand).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI_NODE_FLAGS } from '../../packages/coordinator/src/cli/node-flags.ts';
import type { NetHost } from './netns.ts';

export const CLI_ENTRY = fileURLToPath(new URL('../../packages/coordinator/src/cli/main.ts', import.meta.url));

/**
 * The command line that runs meshmirror with `args`, for every helper that starts one. By default the
 * sources, on this Node with the CLI's V8 flags. `MESHMIRROR_BIN=PATH` (read at each call) names an
 * executable `meshmirror` to run instead, such as the `bin/meshmirror` of a package built by
 * scripts/package.ts: the benchmarks set it to time meshmirror as installed.
 */
export function meshmirrorCommand(args: string[]): { command: string; args: string[] } {
  const bin = process.env['MESHMIRROR_BIN'];
  if (bin === undefined || bin === '') return { command: process.execPath, args: [...CLI_NODE_FLAGS, CLI_ENTRY, ...args] };
  // Absolute, so a child given another `cwd` (or started through `ip netns exec`) finds the same file.
  return { command: resolvePath(bin), args };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Run on this namespace host instead of this machine's own network. */
  host?: NetHost;
}

/** Starts the CLI; the caller may kill it. `result` settles when it exits. */
export function spawnMeshmirror(args: string[], options: CliOptions = {}): { child: ChildProcess; result: Promise<CliResult>; stderr(): string } {
  const spawnOptions = { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'] };
  const cli = meshmirrorCommand(args);
  const child = options.host === undefined ? spawn(cli.command, cli.args, spawnOptions) : options.host.spawn(cli.command, cli.args, spawnOptions);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const result = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, result, stderr: () => stderr };
}

export async function runMeshmirror(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return spawnMeshmirror(args, options).result;
}

/** Resolves when `condition()` is true, checking every `intervalMs`; fails after `timeoutMs`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000, intervalMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Starts `meshmirror serve DIR` on a free loopback port; resolves once it prints its address. */
export async function startServe(dir: string): Promise<{ url: string; host: string; stop(): Promise<void> }> {
  const { child, result } = spawnMeshmirror(['serve', dir, '--listen', '127.0.0.1:0', '--log-level', 'warn']);
  const url = await new Promise<string>((resolve, reject) => {
    let seen = '';
    child.stdout?.on('data', (s: string) => {
      seen += s;
      const m = /serving .* at (http:\/\/\S+)/.exec(seen);
      if (m?.[1] !== undefined) resolve(m[1].replace(/\/$/, ''));
    });
    result.then((r) => reject(new Error(`meshmirror serve exited early (${r.code}): ${r.stderr}`)), reject);
  });
  return {
    url,
    host: new URL(url).host,
    async stop() {
      child.kill('SIGTERM');
      await result;
    },
  };
}
