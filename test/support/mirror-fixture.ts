/**
 * A source registry with a small image set pushed into it, a fault proxy in front, and helpers to
 * write an ImageSetConfiguration and read back what meshmirror archived.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { writeSampleLayout, type SampleImage } from '../../packages/coordinator/src/demo/sample-image-set.ts';
import { startFaultProxy, type FaultProxy } from './fault-proxy.ts';
import { pushLayout, type PushedImage } from './push-layout.ts';
import { startRegistry, type RunningRegistry } from './registry.ts';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;

/** Five images: shared base layer, a multi-arch index, a docker-format image and one large layer. */
export function fixtureImages(options: { bigLayerBytes?: number } = {}): SampleImage[] {
  const base = { seed: 'base', size: 2 * MiB };
  return [
    { name: 'sample/base:1.0', platforms: [{ architecture: 'amd64', layers: [base] }] },
    { name: 'sample/app:1.0', platforms: [{ architecture: 'amd64', layers: [base, { seed: 'app-mid', size: MiB }, { seed: 'app-top', size: 300_000 }] }] },
    {
      name: 'sample/multi:2.0',
      platforms: [
        { architecture: 'amd64', layers: [base, { seed: 'multi-amd64', size: 700_000 }] },
        {
          architecture: 'arm64',
          variant: 'v8',
          layers: [
            { seed: 'base-arm64', size: 1_500_000 },
            { seed: 'multi-arm64', size: 600_000 },
          ],
        },
      ],
    },
    { name: 'sample/docker:3.1', format: 'docker', platforms: [{ architecture: 'amd64', layers: [base, { seed: 'docker-top', size: 400_000 }] }] },
    { name: 'sample/big:1.0', platforms: [{ architecture: 'amd64', layers: [{ seed: 'big', size: options.bigLayerBytes ?? 24 * MiB }] }] },
  ];
}

export interface ConfigBody {
  additionalImages: string[];
  blockedImages?: string[];
  archiveSize?: number;
  architectures?: string[];
  extra?: string;
}

/** Writes an ImageSetConfiguration for additional images; returns its path. */
export async function writeImageSetConfig(path: string, body: ConfigBody): Promise<string> {
  const lines = ['kind: ImageSetConfiguration', 'apiVersion: mirror.openshift.io/v2alpha1', `archiveSize: ${body.archiveSize ?? 1}`, 'mirror:'];
  if (body.architectures !== undefined) lines.push('  platform:', '    architectures:', ...body.architectures.map((a) => `      - ${a}`));
  lines.push('  additionalImages:', ...body.additionalImages.map((n) => `    - name: ${n}`));
  if (body.blockedImages !== undefined) lines.push('  blockedImages:', ...body.blockedImages.map((n) => `    - name: ${n}`));
  if (body.extra !== undefined) lines.push(body.extra);
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
}

export interface MirrorFixture {
  dir: string;
  registry: RunningRegistry;
  proxy: FaultProxy;
  pushed: PushedImage[];
  /** Sum of the sizes of every unique layer and config in the set. */
  uniqueBlobBytes: number;
  /** `proxy-host/repository:tag` for a pushed name such as `sample/app:1.0`. */
  viaProxy(name: string): string;
  /** `registry-host/repository:tag`, bypassing the proxy. */
  direct(name: string): string;
  writeConfig(file: string, body: ConfigBody): Promise<string>;
  close(): Promise<void>;
}

export async function startMirrorFixture(images: SampleImage[] = fixtureImages()): Promise<MirrorFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'meshmirror-test-'));
  const registry = await startRegistry();
  const proxy = await startFaultProxy(registry.url);
  const layout = await writeSampleLayout(join(dir, 'source-layout'), images);
  const pushed = await pushLayout(join(dir, 'source-layout'), registry.url);
  return {
    dir,
    registry,
    proxy,
    pushed,
    uniqueBlobBytes: layout.uniqueBytes - layout.manifestBytes,
    viaProxy: (name) => `${proxy.host}/${name}`,
    direct: (name) => `${registry.host}/${name}`,
    writeConfig: (file, body) => writeImageSetConfig(join(dir, file), body),
    async close() {
      await proxy.close();
      await registry.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The archive chunks in a folder, in order, with their sizes. */
export async function listChunks(dir: string): Promise<Array<{ name: string; size: number }>> {
  const names = (await readdir(dir)).filter((n) => /^mirror_\d{6}\.tar$/.test(n)).sort();
  return Promise.all(names.map(async (name) => ({ name, size: (await stat(join(dir, name))).size })));
}

/** Extracts every chunk into one folder with the real `tar`, as a user would. */
export async function extractChunks(archiveDir: string, into: string): Promise<void> {
  await mkdir(into, { recursive: true });
  for (const chunk of await listChunks(archiveDir)) await execFileAsync('tar', ['-xf', join(archiveDir, chunk.name), '-C', into]);
}

/** Every blob file and the `index.json` entries of an archive, extracted into `into`: what two runs must agree on. */
export async function archiveContent(out: string, into: string): Promise<{ blobs: string[]; index: unknown }> {
  await extractChunks(out, into);
  const blobs = (await readdir(join(into, 'blobs', 'sha256'))).sort();
  const index = JSON.parse(await readFile(join(into, 'index.json'), 'utf8')) as { manifests: unknown[] };
  return { blobs, index: index.manifests };
}

/** `meshmirror mirror` arguments for a loopback source: plain HTTP, a cache of its own, a JSON summary. */
export function mirrorArgs(config: string, out: string, cache: string, ...extra: string[]): string[] {
  return ['mirror', '-c', config, `file://${out}`, '--cache-dir', cache, '--src-tls-verify=false', '--output', 'json', ...extra];
}

/** Disk to mirror: the archive in `from` pushed to `destination` (`HOST[/PREFIX]`), JSON summary. */
export function diskToMirrorArgs(config: string, from: string, destination: string, cache: string, ...extra: string[]): string[] {
  return ['mirror', '-c', config, '--from', `file://${from}`, `docker://${destination}`, '--cache-dir', cache, '--dest-tls-verify=false', '--output', 'json', ...extra];
}

/** Mirror to mirror into `destination` (`HOST[/PREFIX]`), reports in `workspace`, JSON summary. */
export function mirrorToMirrorArgs(config: string, workspace: string, destination: string, cache: string, ...extra: string[]): string[] {
  return [
    'mirror',
    '-c',
    config,
    '--workspace',
    `file://${workspace}`,
    `docker://${destination}`,
    '--cache-dir',
    cache,
    '--src-tls-verify=false',
    '--dest-tls-verify=false',
    '--output',
    'json',
    ...extra,
  ];
}
