/**
 * The README demo: builds a small sample image set, serves it with `meshmirror serve` as a local
 * registry, and mirrors it to disk with the real CLI, first on this host alone, then through a farm
 * of three agents, all on loopback (no outside network).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '@meshmirror/shared';
import { openArchive, startRegistryServer } from '@meshmirror/agent';
import { demoImageSet, writeSampleLayout } from './sample-image-set.ts';
import { CLI_NODE_FLAGS } from '../cli/node-flags.ts';

const root = resolve(process.argv[2] ?? 'demo-out');
const cli = fileURLToPath(new URL('../cli/main.ts', import.meta.url));

await rm(root, { recursive: true, force: true });
await mkdir(root, { recursive: true });
const sourceDir = join(root, 'source-layout');
const images = demoImageSet();
const written = await writeSampleLayout(sourceDir, images);
console.log(`demo: wrote ${written.images.length} sample images (${written.uniqueBlobs} blobs) to ${sourceDir}`);

const server = await startRegistryServer({ dir: sourceDir, host: '127.0.0.1', port: 0, logger: createLogger({ level: 'warn' }) });
console.log(`demo: serving them as a registry at ${server.url} (meshmirror serve)`);
try {
  const configFile = join(root, 'imageset-config.yaml');
  await writeFile(
    configFile,
    [
      'kind: ImageSetConfiguration',
      'apiVersion: mirror.openshift.io/v2alpha1',
      'archiveSize: 0.002 # GiB per chunk, tiny so the demo shows several chunks',
      'mirror:',
      '  additionalImages:',
      ...images.map((i) => `    - name: ${new URL(server.url).host}/${i.name}`),
      '',
    ].join('\n'),
  );
  const archiveDir = join(root, 'archive');
  const code = await meshmirror(['mirror', '-c', configFile, `file://${archiveDir}`, '--cache-dir', join(root, 'cache'), '--src-tls-verify=false']);
  if (code !== 0) {
    console.error(`demo: meshmirror exited with ${code}`);
    process.exitCode = code;
  } else {
    const archive = await openArchive(archiveDir);
    const listed = await archive.images();
    console.log(`\ndemo: the archive in ${archiveDir} holds ${listed.length} images:`);
    for (const image of listed) console.log(`  ${image.name ?? '(unnamed)'}  ${image.descriptor.digest}`);
    console.log('demo: extract every mirror_*.tar into one folder to get an OCI image layout (skopeo, crane and oras read it).');
    process.exitCode = await farmDemo(
      configFile,
      listed.map((i) => i.descriptor.digest),
    );
  }
} finally {
  await server.close();
}

/**
 * The same image set through a farm of three agents on loopback, as on three hosts: a swarm key, the
 * coordinator's identity for the agents' --allow, three agents, one mirror with --agents.
 */
async function farmDemo(configFile: string, singleHost: string[]): Promise<number> {
  const farm = join(root, 'farm');
  console.log('\ndemo: now a farm of three agents on this machine (on a real farm each runs on its own host):');
  await mkdir(farm, { recursive: true });
  const keyFile = join(farm, 'swarm.key');
  const coordinatorDir = join(farm, 'coordinator');
  if ((await meshmirror(['keygen', '--swarm-key', keyFile])) !== 0) return 1;
  const identity = await meshmirrorOutput(['identity', '--cache-dir', coordinatorDir]);
  if (identity === undefined) return 1;
  const agents: ChildProcess[] = [];
  try {
    const addresses: string[] = [];
    for (const n of [1, 2, 3]) {
      const args = [
        'agent',
        '--data',
        join(farm, `agent-${n}`),
        '--swarm-key',
        keyFile,
        '--listen',
        '/ip4/127.0.0.1/tcp/0',
        '--allow',
        identity,
        '--log-level',
        'warn',
      ];
      console.log(`demo: meshmirror ${args.join(' ')} &`);
      const agent = spawn(process.execPath, [...CLI_NODE_FLAGS, cli, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
      agents.push(agent);
      addresses.push(await listeningAddress(agent));
    }
    console.log(`demo: the agents listen on ${addresses.join(', ')}`);
    const farmArchive = join(root, 'farm-archive');
    const code = await meshmirror([
      'mirror',
      '-c',
      configFile,
      `file://${farmArchive}`,
      '--cache-dir',
      coordinatorDir,
      '--src-tls-verify=false',
      '--swarm-key',
      keyFile,
      '--agents',
      addresses.join(','),
    ]);
    if (code !== 0) {
      console.error(`demo: meshmirror exited with ${code}`);
      return code;
    }
    const digests = (await (await openArchive(farmArchive)).images()).map((i) => i.descriptor.digest);
    const same = digests.length === singleHost.length && digests.every((d, i) => d === singleHost[i]);
    console.log(
      same
        ? `\ndemo: the farm's archive in ${farmArchive} holds the same ${digests.length} images at the same digests; each agent fetched its share once.`
        : `\ndemo: the farm's archive differs from the single host's: ${digests.join(', ')}`,
    );
    return same ? 0 : 1;
  } finally {
    for (const agent of agents) agent.kill('SIGTERM');
    await Promise.all(agents.filter((a) => a.exitCode === null && a.signalCode === null).map((a) => once(a, 'exit')));
  }
}

/** Runs the CLI with its output on this terminal, saying the command first; resolves with its exit code. */
async function meshmirror(args: string[]): Promise<number> {
  console.log(`demo: meshmirror ${args.join(' ')}\n`);
  const child = spawn(process.execPath, [...CLI_NODE_FLAGS, cli, ...args], { stdio: 'inherit' });
  const [code] = (await once(child, 'exit')) as [number | null];
  return code ?? 1;
}

/** Runs the CLI and returns what it printed on stdout, trimmed; undefined (having said why) when it failed. */
async function meshmirrorOutput(args: string[]): Promise<string | undefined> {
  console.log(`demo: meshmirror ${args.join(' ')}`);
  const child = spawn(process.execPath, [...CLI_NODE_FLAGS, cli, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) {
    console.error(`demo: meshmirror ${args[0]} exited with ${code}`);
    return undefined;
  }
  return out.trim();
}

/** The agent's first address, from the line it prints once it listens. */
function listeningAddress(agent: ChildProcess): Promise<string> {
  return new Promise((resolveAddress, reject) => {
    let out = '';
    agent.stdout?.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const m = /^agent \S+ listening on (\S+)/m.exec(out);
      if (m !== null) resolveAddress(m[1]!);
    });
    agent.once('exit', (code) => reject(new Error(`the agent exited (${code}) before it listened`)));
  });
}
