/**
 * `serve` end to end: the coordinator's sample images written as an OCI layout, archived into
 * chunks by the archive writer, then served both ways (layout folder and archive folder) and read
 * by real clients: skopeo, the `tar` CLI and distribution's registry as a push target.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestHex, parseManifest, silentLogger, type Digest } from '@meshmirror/shared';
import { writeArchive } from '../packages/agent/src/archive/archive-writer.ts';
import { testRunDescription } from '../packages/agent/src/archive/test-run-fixture.ts';
import { openOciLayout } from '../packages/agent/src/layout/oci-layout-reader.ts';
import type { ImageFolder } from '../packages/agent/src/layout/image-folder.ts';
import { startRegistryServer, type RunningRegistryServer } from '../packages/agent/src/serve/registry-server.ts';
import { writeSampleLayout, type SampleImage, type WrittenImage } from '../packages/coordinator/src/demo/sample-image-set.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';

const execFileAsync = promisify(execFile);
const KiB = 1024;

const base = { seed: 'serve/base', size: 300 * KiB };
const IMAGES: SampleImage[] = [
  { name: 'sample/app:1.0', platforms: [{ architecture: 'amd64', layers: [base, { seed: 'serve/app', size: 40 * KiB }] }] },
  {
    name: 'registry.example.com/team/multi:2.0',
    platforms: [
      { architecture: 'amd64', layers: [base, { seed: 'serve/multi-amd64', size: 30 * KiB }] },
      { architecture: 'arm64', variant: 'v8', layers: [{ seed: 'serve/multi-arm64', size: 200 * KiB }] },
    ],
  },
  { name: 'sample/legacy:1.0', format: 'docker', platforms: [{ architecture: 'amd64', layers: [base, { seed: 'serve/legacy', size: 20 * KiB }] }] },
];

let work: string;
let layoutDir: string;
let archiveDir: string;
let written: WrittenImage[];
let blobs: Array<{ digest: Digest; size: number }>;
let chunkCount: number;
const servers: RunningRegistryServer[] = [];
let registry: RunningRegistry | undefined;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mm-serve-'));
  layoutDir = join(work, 'layout');
  archiveDir = join(work, 'archive');
  written = (await writeSampleLayout(layoutDir, IMAGES)).images;
  const layout = await openOciLayout(layoutDir);
  blobs = await collectBlobs(layout);
  const images = written.map((image) => ({ name: image.name, descriptor: { mediaType: image.mediaType, digest: image.digest, size: image.size } }));
  const result = await writeArchive(layout, { dir: archiveDir, chunkSizeBytes: 256 * KiB, images, blobs, metadata: testRunDescription('serve', images) });
  chunkCount = result.chunks.length;
  expect(result.warnings.some((warning) => warning.includes('larger than the chunk size limit'))).toBe(true);
  registry = await startRegistry();
});

afterAll(async () => {
  for (const server of servers) await server.close();
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

/** Every blob the images need, children before parents (layers, config, manifest, then index). */
async function collectBlobs(folder: ImageFolder): Promise<Array<{ digest: Digest; size: number }>> {
  const seen = new Map<Digest, number>();
  const visit = async (digest: Digest, size: number, mediaType: string): Promise<void> => {
    if (seen.has(digest)) return;
    const parsed = parseManifest(await readAll(await folder.openBlob(digest)), mediaType, digest);
    if (parsed.kind === 'index') {
      for (const child of parsed.index.manifests) await visit(child.digest, child.size, child.mediaType);
    } else {
      for (const blob of [...parsed.manifest.layers, parsed.manifest.config]) seen.set(blob.digest, blob.size);
    }
    seen.set(digest, size);
  };
  for (const image of await folder.images()) await visit(image.descriptor.digest, image.descriptor.size, image.descriptor.mediaType);
  return [...seen].map(([digest, size]) => ({ digest, size }));
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function sha256(bytes: Buffer): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

async function skopeo(args: string[]): Promise<Buffer> {
  const { stdout } = await execFileAsync('skopeo', ['--insecure-policy', ...args], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

function writtenImage(name: string): WrittenImage {
  const image = written.find((w) => w.name === name);
  if (image === undefined) throw new Error(`no sample image ${name}`);
  return image;
}

it('extracts the archive chunks with tar into a layout skopeo reads', async () => {
  expect(chunkCount).toBeGreaterThan(2);
  const extracted = join(work, 'extracted');
  await mkdir(extracted);
  for (let chunk = 1; chunk <= chunkCount; chunk++) {
    await execFileAsync('tar', ['-xf', join(archiveDir, `mirror_${String(chunk).padStart(6, '0')}.tar`), '-C', extracted]);
  }
  for (const blob of blobs) {
    expect(sha256(await readFile(join(extracted, 'blobs', 'sha256', digestHex(blob.digest))))).toBe(blob.digest);
  }
  for (const image of written) {
    // skopeo 1.9's oci: transport skips index.json entries with Docker media types (the layout is
    // still valid; `serve` and docker:// clients see them), so only OCI images are asked of it.
    if (image.mediaType.includes('docker')) continue;
    expect(sha256(await skopeo(['inspect', '--raw', `oci:${extracted}:${image.name}`]))).toBe(image.digest);
  }
});

describe.each([
  ['an OCI layout', () => layoutDir, 'layout'],
  ['an archive folder', () => archiveDir, 'archive'],
])('serving %s', (_label, dir, kind) => {
  let server: RunningRegistryServer;

  beforeAll(async () => {
    server = await startRegistryServer({ dir: dir(), host: '127.0.0.1', port: 0, logger: silentLogger() });
    servers.push(server);
    expect(server.folder.kind).toBe(kind);
  });

  const ref = (name: string): string => `docker://127.0.0.1:${server.port}/${name}`;

  it('gives skopeo inspect the same manifest bytes, under the plain and the registry-prefixed name', async () => {
    expect(sha256(await skopeo(['inspect', '--raw', '--tls-verify=false', ref('sample/app:1.0')]))).toBe(writtenImage('sample/app:1.0').digest);
    const multi = writtenImage('registry.example.com/team/multi:2.0').digest;
    expect(sha256(await skopeo(['inspect', '--raw', '--tls-verify=false', ref('team/multi:2.0')]))).toBe(multi);
    expect(sha256(await skopeo(['inspect', '--raw', '--tls-verify=false', ref('registry.example.com/team/multi:2.0')]))).toBe(multi);
    const inspected = JSON.parse((await skopeo(['inspect', '--tls-verify=false', ref('sample/app:1.0')])).toString()) as {
      Digest: string;
      Architecture: string;
      RepoTags: string[];
    };
    expect(inspected).toMatchObject({ Digest: writtenImage('sample/app:1.0').digest, Architecture: 'amd64', RepoTags: ['1.0'] });
  });

  it('lets skopeo copy a multi-arch image out with every digest intact', async () => {
    const dest = join(work, `copy-${kind}`);
    await skopeo(['copy', '--all', '--preserve-digests', '--src-tls-verify=false', ref('team/multi:2.0'), `oci:${dest}:multi`]);
    const index = JSON.parse(await readFile(join(dest, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    expect(index.manifests[0]?.digest).toBe(writtenImage('registry.example.com/team/multi:2.0').digest);
    for (const blob of blobs) {
      const copied = await readFile(join(dest, 'blobs', 'sha256', digestHex(blob.digest))).catch(() => undefined);
      if (copied !== undefined) expect(sha256(copied)).toBe(blob.digest);
    }
    const arm64Layer = await readFile(join(dest, 'blobs', 'sha256', digestHex(blobs.find((b) => b.size === 200 * KiB)!.digest)));
    expect(arm64Layer).toHaveLength(200 * KiB);
  });

  it('pushes through skopeo into a real registry with the same manifest digest', async () => {
    const target = `docker://${registry!.host}/mirror-${kind}/legacy:1.0`;
    await skopeo(['copy', '--preserve-digests', '--src-tls-verify=false', '--dest-tls-verify=false', ref('sample/legacy:1.0'), target]);
    expect(sha256(await skopeo(['inspect', '--raw', '--tls-verify=false', target]))).toBe(writtenImage('sample/legacy:1.0').digest);
  });

  it('lists tags for skopeo', async () => {
    const tags = JSON.parse((await skopeo(['list-tags', '--tls-verify=false', ref('sample/app')])).toString()) as { Tags: string[] };
    expect(tags.Tags).toEqual(['1.0']);
  });

  it('answers Range requests with the source bytes', async () => {
    const layer = blobs.find((b) => b.size === base.size)!;
    const source = await readFile(join(layoutDir, 'blobs', 'sha256', digestHex(layer.digest)));
    const response = await fetch(`${server.url}/v2/sample/app/blobs/${layer.digest}`, { headers: { Range: 'bytes=100000-200000' } });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe(`bytes 100000-200000/${layer.size}`);
    expect(Buffer.from(await response.arrayBuffer()).equals(source.subarray(100000, 200001))).toBe(true);
    const beyond = await fetch(`${server.url}/v2/sample/app/blobs/${layer.digest}`, { headers: { Range: `bytes=${layer.size}-` } });
    expect(beyond.status).toBe(416);
    await beyond.body?.cancel();
  });
});
