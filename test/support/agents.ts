/**
 * Real `meshmirror agent` processes for mesh tests: started through the CLI, ready once they print
 * their peer id and addresses, stopped with SIGTERM (or killed).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { meshmirrorCommand, runMeshmirror } from './cli.ts';
import type { NetHost } from './netns.ts';

export interface RunningAgent {
  peerId: string;
  addresses: string[];
  child: ChildProcess;
  /** Everything the agent logged so far (JSON lines). */
  stderr(): string;
  stdout(): string;
  /** `http://HOST:PORT` of its `--status` server, when it was given one. */
  statusUrl?: string;
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface StartAgentOptions {
  /** `--config FILE`; the flags below then only override it (leave them out to use the file's). */
  config?: string;
  data?: string;
  swarmKey?: string;
  allow?: string[];
  listen?: string;
  logLevel?: string;
  /** Run on this namespace host instead of this machine's own network. */
  host?: NetHost;
  /** This host's registry credentials (`agent --authfile`). */
  authfile?: string;
  /** Added to the agent's environment (e.g. MESHMIRROR_MESH_TRACE). */
  env?: NodeJS.ProcessEnv;
  /** More flags, after the ones above (`--status 127.0.0.1:0`, `--limit-peer 4MiB/s`). */
  extraArgs?: string[];
}

export function startAgent(options: StartAgentOptions): Promise<RunningAgent> {
  const fromFile = options.config !== undefined;
  const args = [
    'agent',
    ...(options.config === undefined ? [] : ['--config', options.config]),
    ...(options.data === undefined ? [] : ['--data', options.data]),
    ...(options.swarmKey === undefined ? [] : ['--swarm-key', options.swarmKey]),
    ...(fromFile && options.listen === undefined ? [] : ['--listen', options.listen ?? '/ip4/127.0.0.1/tcp/0']),
    ...(fromFile && options.logLevel === undefined ? [] : ['--log-level', options.logLevel ?? 'debug']),
    ...(options.allow === undefined ? [] : ['--allow', ...options.allow]),
    ...(options.authfile === undefined ? [] : ['--authfile', options.authfile]),
    ...(options.extraArgs ?? []),
  ];
  const cli = meshmirrorCommand(args);
  const stdio = { stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'], ...(options.env === undefined ? {} : { env: { ...process.env, ...options.env } }) };
  const child = options.host === undefined ? spawn(cli.command, cli.args, stdio) : options.host.spawn(cli.command, cli.args, stdio);
  let stdout = '';
  let stderr = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise<RunningAgent>((resolve, reject) => {
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
      const m = /^agent (\S+) listening on (.+)$/m.exec(stdout);
      if (m === null) return;
      const status = /^agent \S+ status at (\S+)$/m.exec(stdout)?.[1];
      resolve({
        ...(status === undefined ? {} : { statusUrl: status }),
        peerId: m[1] ?? '',
        addresses: (m[2] ?? '').trim().split(' '),
        child,
        stderr: () => stderr,
        stdout: () => stdout,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          return await exited;
        },
      });
    });
    child.on('error', reject);
    void exited.then(({ code, signal }) => reject(new Error(`agent exited (${code ?? signal}) before it was ready: ${stderr.slice(-2000)}`)));
  });
}

/**
 * A coordinator cache folder `cache` holding the identity made by `meshmirror identity --cache-dir
 * identityDir`, so every run of a test uses the one peer id the agents admit.
 */
export async function cacheWithIdentity(identityDir: string, cache: string): Promise<string> {
  await mkdir(cache, { recursive: true });
  await copyFile(join(identityDir, 'identity.key'), join(cache, 'identity.key'));
  await chmod(join(cache, 'identity.key'), 0o600);
  return cache;
}

/**
 * A farm's keys, made with the real CLI in `dir`: the swarm key (`meshmirror keygen`) and the
 * coordinator identity the agents admit (`meshmirror identity`, kept in `dir/identity`).
 */
export async function farmKeys(dir: string): Promise<{ keyFile: string; identityDir: string; coordinatorId: string }> {
  const keyFile = join(dir, 'swarm.key');
  const identityDir = join(dir, 'identity');
  const keygen = await runMeshmirror(['keygen', '--swarm-key', keyFile]);
  if (keygen.code !== 0) throw new Error(`meshmirror keygen failed: ${keygen.stderr}`);
  const identity = await runMeshmirror(['identity', '--cache-dir', identityDir]);
  if (identity.code !== 0) throw new Error(`meshmirror identity failed: ${identity.stderr}`);
  return { keyFile, identityDir, coordinatorId: identity.stdout.trim() };
}

/**
 * A farm of `count` real agents for the length of `body`: keys made in `dir`, each agent's data in
 * `dir/<name>-agent-<i>`, and the coordinator's cache (`dir/<name>-cache`, holding the admitted
 * identity) with the flags that point a mirror command at the agents. The agents stop afterwards.
 */
export async function withFarm<T>(dir: string, name: string, count: number, body: (farm: { cache: string; args: string[] }) => Promise<T>): Promise<T> {
  const { keyFile, identityDir, coordinatorId } = await farmKeys(dir);
  const agents = await Promise.all(
    Array.from({ length: count }, (_, i) => startAgent({ data: join(dir, `${name}-agent-${i}`), swarmKey: keyFile, allow: [coordinatorId] })),
  );
  try {
    const cache = await cacheWithIdentity(identityDir, join(dir, `${name}-cache`));
    // Comma-separated, the form DESIGN.md shows (mesh-run's tests use the space-separated one).
    return await body({ cache, args: ['--swarm-key', keyFile, '--agents', agents.map((a) => a.addresses[0] ?? '').join(',')] });
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
  }
}
