/**
 * `pnpm package`: the self-contained tarball, checked and unpacked as on the far side, runs with a
 * PATH that holds no Node, npm or pnpm: `--version` and `--help` (timed), a mirror to disk and the
 * push of that archive into a registry, `keygen`, and an agent that a farm run fetches through
 * (libp2p and LevelDB from the bundle).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coordinatorVersion, packageName } from '../scripts/package.ts';
import { waitFor, type CliResult } from './support/cli.ts';
import { diskToMirrorArgs, mirrorArgs, startMirrorFixture, type MirrorFixture } from './support/mirror-fixture.ts';
import { skopeoInspectDigest } from './support/skopeo.ts';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const SCRIPT = fileURLToPath(new URL('../scripts/package.ts', import.meta.url));
/** What the far side needs besides the package: a shell, the launcher's two helpers, and tar, gzip and sha256sum to unpack. */
const FAR_SIDE_TOOLS = ['sh', 'dirname', 'readlink', 'tar', 'gzip', 'sha256sum'];
/** The image only the Helm chart names. */
const CHART_IMAGE = 'sample/docker:3.1';

let dir: string;
let fx: MirrorFixture;
/** Where the tarball was unpacked: `<dir>/opt/meshmirror-<version>-linux-x64`. */
let installed: string;
/** An environment with only FAR_SIDE_TOOLS and a `meshmirror` link to the unpacked bin/meshmirror on its PATH. */
let farSide: NodeJS.ProcessEnv;
const children: ChildProcess[] = [];

/** Runs `command` as the far side would: the clean environment, resolved through its PATH. */
function spawnFarSide(command: string, args: string[], cwd = dir): { child: ChildProcess; result: Promise<CliResult> } {
  const child = spawn(command, args, { cwd, env: farSide, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const result = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, result };
}

function meshmirror(args: string[]): Promise<CliResult> {
  return spawnFarSide('meshmirror', args).result;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-package-'));
  fx = await startMirrorFixture();
  const dist = join(dir, 'dist');
  const started = performance.now();
  await execFileAsync(process.execPath, [SCRIPT, '--out-dir', dist]);
  console.log(`pnpm package: built in ${((performance.now() - started) / 1000).toFixed(1)} s`);

  const bin = join(dir, 'far-side-bin');
  await mkdir(bin);
  for (const tool of FAR_SIDE_TOOLS) {
    const { stdout } = await execFileAsync('sh', ['-c', `command -v ${tool}`]);
    await symlink(stdout.trim(), join(bin, tool));
  }
  farSide = { PATH: bin, HOME: join(dir, 'home') };

  // Carried across: the tarball and its checksum, nothing else.
  const name = packageName(await coordinatorVersion());
  const carried = join(dir, 'carried');
  await mkdir(carried);
  for (const file of [`${name}.tar.gz`, `${name}.tar.gz.sha256`]) await copyFile(join(dist, file), join(carried, file));
  await mkdir(join(dir, 'opt'));
  const unpack = await spawnFarSide('sh', ['-c', `sha256sum -c ${name}.tar.gz.sha256 && tar -xzf ${name}.tar.gz -C ../opt`], carried).result;
  expect(unpack.code, unpack.stderr).toBe(0);
  expect(unpack.stdout).toContain(`${name}.tar.gz: OK`);
  installed = join(dir, 'opt', name);
  // As /usr/local/bin/meshmirror would be: the launcher follows the link to its own folder.
  await symlink(join(installed, 'bin', 'meshmirror'), join(bin, 'meshmirror'));
  const tarball = (await stat(join(carried, `${name}.tar.gz`))).size;
  console.log(`pnpm package: ${name}.tar.gz is ${(tarball / MiB).toFixed(1)} MiB`);
  // The Node binary alone is about 40 MiB compressed; much more means something unintended came along.
  expect(tarball).toBeGreaterThan(20 * MiB);
  expect(tarball).toBeLessThan(80 * MiB);
}, 300_000);

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await fx?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('the self-contained package', () => {
  it('finds no Node, npm or pnpm on the far side PATH, and carries its own', async () => {
    const which = await spawnFarSide('sh', ['-c', 'command -v node || command -v nodejs || command -v npm || command -v npx || command -v pnpm || command -v corepack'])
      .result;
    expect(which.code).not.toBe(0);
    expect(which.stdout).toBe('');
    expect((await readdir(join(installed, 'bin'))).sort()).toEqual(['meshmirror']);
    expect((await stat(join(installed, 'lib', 'node'))).size).toBeGreaterThan(50 * MiB);
    expect((await stat(join(installed, 'README'))).size).toBeGreaterThan(0);
    // Only the prebuilt LevelDB addon for this platform came along.
    expect(await readdir(join(installed, 'lib', 'node_modules', 'classic-level', 'prebuilds'))).toEqual(['linux-x64']);
  });

  it('prints its version and help, and starts fast', async () => {
    const version = await meshmirror(['--version']);
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout.trim()).toBe(await coordinatorVersion());

    const timings: number[] = [];
    for (let run = 0; run < 5; run++) {
      const started = performance.now();
      const help = await meshmirror(['--help']);
      timings.push(performance.now() - started);
      expect(help.code, help.stderr).toBe(0);
      for (const command of ['mirror', 'serve', 'verify', 'agent', 'keygen']) expect(help.stdout).toContain(command);
    }
    const best = Math.min(...timings);
    console.log(`meshmirror --help from the package: best of 5 ${(best / 1000).toFixed(2)} s (${timings.map((t) => (t / 1000).toFixed(2)).join(', ')})`);
    // The target is 0.5 s; the bound only catches a start-up that went badly wrong on a busy machine.
    expect(best).toBeLessThan(2_000);
  });

  it('mirrors a registry to disk, with a Helm chart and --status, and pushes the archive into a registry at the same digests', async () => {
    // The chart renderer and prom-client are chunks loaded only by runs that need them: both load here.
    const chart = join(dir, 'chart');
    await mkdir(join(chart, 'templates'), { recursive: true });
    await writeFile(join(chart, 'Chart.yaml'), 'apiVersion: v2\nname: far-side\nversion: 0.1.0\n');
    await writeFile(join(chart, 'values.yaml'), `image: ${fx.direct(CHART_IMAGE)}\n`);
    await writeFile(
      join(chart, 'templates', 'pod.yaml'),
      'apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\nspec:\n  containers:\n    - name: main\n      image: {{ .Values.image }}\n',
    );
    const config = await fx.writeConfig('package.yaml', {
      additionalImages: fx.pushed.filter((p) => p.name !== CHART_IMAGE).map((p) => fx.direct(p.name)),
      extra: `  helm:\n    local:\n      - name: far-side\n        path: ${chart}`,
    });
    const out = join(dir, 'archive');
    const toDisk = await meshmirror([...mirrorArgs(config, out, join(dir, 'cache-disk')), '--status', '127.0.0.1:0']);
    expect(toDisk.code, toDisk.stderr).toBe(0);
    expect(toDisk.stderr).toMatch(/status at http:\/\/127\.0\.0\.1:\d+/);
    const archived = JSON.parse(toDisk.stdout);
    // Every pushed image, and the chart itself as an OCI artifact.
    expect(archived.images).toMatchObject({ archived: fx.pushed.length + 1, failed: 0 });
    expect(archived.outcomes).toContainEqual(expect.objectContaining({ source: fx.direct(CHART_IMAGE), kind: 'helm', state: 'archived' }));
    expect(archived.archive.verification).toMatchObject({ intact: true, problems: [] });

    const target = `${fx.registry.host}/far-side`;
    const push = await meshmirror(diskToMirrorArgs(config, out, target, join(dir, 'cache-push')));
    expect(push.code, push.stderr).toBe(0);
    for (const image of fx.pushed) expect(await skopeoInspectDigest(`docker://${target}/${image.name}`), image.name).toBe(image.digest);
  });

  it('makes a swarm key and runs an agent on its own Node, which a farm run fetches through', async () => {
    const key = join(dir, 'swarm.key');
    const keygen = await meshmirror(['keygen', '--swarm-key', key]);
    expect(keygen.code, keygen.stderr).toBe(0);
    expect(keygen.stdout).toContain(`wrote swarm key ${key}`);
    expect((await stat(key)).mode & 0o777).toBe(0o600);

    let agentOut = '';
    const agent = spawnFarSide('meshmirror', ['agent', '--data', join(dir, 'agent'), '--swarm-key', key, '--listen', '/ip4/127.0.0.1/tcp/0', '--log-level', 'warn']);
    agent.child.stdout?.on('data', (s: string) => (agentOut += s));
    await waitFor(() => /^agent \S+ listening on /m.test(agentOut) || agent.child.exitCode !== null, 'the agent to print its peer id');
    const [, peerId, address] = /^agent (\S+) listening on (\S+)/m.exec(agentOut) ?? [];
    expect(peerId, agentOut).toMatch(/^12D3KooW/);
    // The launcher exec'd the packaged Node: the agent process is lib/node, not a Node from elsewhere.
    expect(await readlink(`/proc/${agent.child.pid}/exe`)).toBe(join(installed, 'lib', 'node'));

    const config = await fx.writeConfig('package-farm.yaml', { additionalImages: fx.pushed.map((p) => fx.direct(p.name)) });
    const farm = await meshmirror(mirrorArgs(config, join(dir, 'archive-farm'), join(dir, 'cache-farm'), '--swarm-key', key, '--agents', address ?? ''));
    expect(farm.code, farm.stderr).toBe(0);
    const summary = JSON.parse(farm.stdout);
    expect(summary.images.archived).toBe(fx.pushed.length);
    expect(summary.agents).toEqual([expect.objectContaining({ agent: peerId, upstreamBytes: fx.uniqueBlobBytes })]);
    expect(summary.archive.verification).toMatchObject({ intact: true, problems: [] });

    agent.child.kill('SIGTERM');
    const stopped = await agent.result;
    expect(stopped.code, stopped.stderr).toBe(0);
  });
});
