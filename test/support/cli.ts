/**
 * Runs the real `meshmirror` CLI as a child process on the pinned Node (the one running vitest).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CLI_NODE_FLAGS } from '../../packages/coordinator/src/cli/node-flags.ts';
import type { NetHost } from './netns.ts';

export const CLI_ENTRY = fileURLToPath(new URL('../../packages/coordinator/src/cli/main.ts', import.meta.url));

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
  const argv = [...CLI_NODE_FLAGS, CLI_ENTRY, ...args];
  const child = options.host === undefined ? spawn(process.execPath, argv, spawnOptions) : options.host.spawn(process.execPath, argv, spawnOptions);
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
