/**
 * What the `meshmirror serve` tests serve: small real images (gzip tar layers, so podman can unpack
 * them) in every form a registry answers differently for — an OCI manifest under several tags, an
 * OCI index, a Docker schema 2 manifest, a Docker manifest list, an image mirrored only by digest,
 * and an SBOM that refers to an image — pushed into distribution's registry, mirrored from it with
 * `meshmirror mirror` into archive chunks, and those chunks extracted with `tar` into a layout.
 *
 * The registry keeps running: it holds the same images under the same repository names, so a test
 * can ask it the same question as `serve` and compare (distribution is the reference where the spec
 * leaves room).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestHex, MediaType, REF_NAME_ANNOTATION, sha256Digest, type Digest } from '@meshmirror/shared';
import { CLI_NODE_FLAGS } from '../../packages/coordinator/src/cli/node-flags.ts';
import { CLI_ENTRY, runMeshmirror, spawnMeshmirror } from './cli.ts';
import { extractChunks, mirrorArgs, writeImageSetConfig } from './mirror-fixture.ts';
import { LayoutBuilder, tarLayer, type BuiltImage, type Layer } from './oci-image-builder.ts';
import { pushLayout } from './push-layout.ts';
import { startRegistry, type RunningRegistry } from './registry.ts';

/** An image of the fixture as a client sees it. */
export interface ServedImage {
  repository: string;
  /** Tags it is served under (the first is the one the tests pull). */
  tags: string[];
  digest: Digest;
  mediaType: string;
  size: number;
  /** For an index or manifest list: its manifests by `architecture[/variant]`. */
  platforms: Map<string, { digest: Digest; mediaType: string }>;
  /** Config and layer digests (of every platform). */
  blobs: Digest[];
}

export const SBOM_TYPE = 'application/spdx+json';

export interface ServeFixture {
  dir: string;
  /** distribution's registry holding the source images (the reference). */
  registry: RunningRegistry;
  archiveDir: string;
  /** The archive chunks extracted with `tar`: an OCI layout. */
  layoutDir: string;
  ociApp: ServedImage;
  ociMulti: ServedImage;
  dockerApp: ServedImage;
  dockerMulti: ServedImage;
  /** Mirrored as `conf/pinned@sha256:…`: `serve` and a push tag it with the digest's hex. */
  pinned: ServedImage;
  /** An SBOM (OCI artifact) whose subject is `ociApp`. */
  sbom: { digest: Digest; size: number };
  /** Every repository `_catalog` lists, sorted. */
  repositories: string[];
  close(): Promise<void>;
}

const OCI_APP_TAGS = ['1.0', '1.1', '1.2', '1.3', '1.4'];

export async function buildServeFixture(): Promise<ServeFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'mm-serve-fixture-'));
  const registry = await startRegistry();
  try {
    const sourceDir = join(dir, 'source');
    const builder = new LayoutBuilder(sourceDir);
    const layer = (name: string): Promise<Layer> =>
      tarLayer([
        { path: 'etc/', type: 'directory' },
        { path: `etc/${name}.txt`, content: `meshmirror serve fixture: ${name}\n` },
      ]);

    // One manifest under several tags (for tag pagination): the same layers and config give the same digest.
    const appLayers = [await layer('oci-app')];
    const ociAppBuilt = await builder.addImage(`conf/oci-app:${OCI_APP_TAGS[0]!}`, appLayers, { cmd: ['/bin/true'] });
    for (const tag of OCI_APP_TAGS.slice(1)) await builder.addImage(`conf/oci-app:${tag}`, appLayers, { cmd: ['/bin/true'] });
    const ociMultiBuilt = await builder.addIndex('conf/oci-multi:2.0', [
      { architecture: 'amd64', layers: [await layer('oci-multi-amd64')] },
      { architecture: 'arm64', variant: 'v8', layers: [await layer('oci-multi-arm64')] },
    ]);
    const pinnedBuilt = await builder.addImage('conf/pinned:source', [await layer('pinned')]);
    const sbomBuilt = await builder.addReferrer(ociAppBuilt, SBOM_TYPE, [{ mediaType: SBOM_TYPE, bytes: Buffer.from('{"spdxVersion":"SPDX-2.3","name":"oci-app"}') }]);
    // distribution 2.8 has no referrers API: the SBOM is found through the subject's tag schema index.
    await builder.addReferrersTag('conf/oci-app', ociAppBuilt, [sbomBuilt]);
    await builder.finish();
    const docker = new DockerImageWriter(sourceDir);
    const dockerApp = await docker.manifest('amd64', undefined, await layer('docker-app'));
    const dockerArm = await docker.manifest('arm64', 'v8', await layer('docker-multi-arm64'));
    const dockerAmd = await docker.manifest('amd64', undefined, await layer('docker-multi-amd64'));
    const dockerList = await docker.list([
      { ...dockerArm, platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } },
      { ...dockerAmd, platform: { architecture: 'amd64', os: 'linux' } },
    ]);
    await docker.name('conf/docker-app:1.0', dockerApp);
    await docker.name('conf/docker-multi:2.0', dockerList);
    await pushLayout(sourceDir, registry.url);

    const config = await writeImageSetConfig(join(dir, 'isc.yaml'), {
      architectures: ['amd64', 'arm64'],
      additionalImages: [
        ...OCI_APP_TAGS.map((tag) => `${registry.host}/conf/oci-app:${tag}`),
        `${registry.host}/conf/oci-multi:2.0`,
        `${registry.host}/conf/docker-app:1.0`,
        `${registry.host}/conf/docker-multi:2.0`,
        `${registry.host}/conf/pinned@${pinnedBuilt.digest}`,
      ],
    });
    const archiveDir = join(dir, 'archive');
    const mirrored = await runMeshmirror(mirrorArgs(config, archiveDir, join(dir, 'cache')));
    if (mirrored.code !== 0) throw new Error(`meshmirror mirror failed (${mirrored.code}): ${mirrored.stderr}`);
    const layoutDir = join(dir, 'layout');
    await extractChunks(archiveDir, layoutDir);

    const oci = (repository: string, tags: string[], built: BuiltImage): ServedImage => ({
      repository,
      tags,
      digest: built.digest,
      mediaType: built.mediaType,
      size: built.size,
      platforms: new Map(built.children.map((child, i) => [['amd64', 'arm64/v8'][i] ?? '?', { digest: child.digest, mediaType: child.mediaType }])),
      blobs: [...built.blobs.keys()],
    });
    return {
      dir,
      registry,
      archiveDir,
      layoutDir,
      ociApp: oci('conf/oci-app', OCI_APP_TAGS, ociAppBuilt),
      ociMulti: oci('conf/oci-multi', ['2.0'], ociMultiBuilt),
      pinned: oci('conf/pinned', [digestHex(pinnedBuilt.digest)], pinnedBuilt),
      dockerApp: { repository: 'conf/docker-app', tags: ['1.0'], ...dockerApp, platforms: new Map(), blobs: dockerApp.blobs },
      dockerMulti: {
        repository: 'conf/docker-multi',
        tags: ['2.0'],
        ...dockerList,
        platforms: new Map([
          ['arm64/v8', { digest: dockerArm.digest, mediaType: dockerArm.mediaType }],
          ['amd64', { digest: dockerAmd.digest, mediaType: dockerAmd.mediaType }],
        ]),
        blobs: [...dockerArm.blobs, ...dockerAmd.blobs],
      },
      sbom: { digest: sbomBuilt.digest, size: sbomBuilt.size },
      repositories: ['conf/docker-app', 'conf/docker-multi', 'conf/oci-app', 'conf/oci-multi', 'conf/pinned'],
      async close() {
        await registry.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await registry.stop();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

interface WrittenManifest {
  digest: Digest;
  mediaType: string;
  size: number;
  blobs: Digest[];
}

/** Docker schema 2 manifests and manifest lists written into an OCI layout's blobs and index.json. */
class DockerImageWriter {
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
  }

  async manifest(architecture: string, variant: string | undefined, layer: Layer): Promise<WrittenManifest> {
    const config = await this.#blob(
      JSON.stringify({
        created: '1970-01-01T00:00:00Z',
        architecture,
        ...(variant === undefined ? {} : { variant }),
        os: 'linux',
        config: { Cmd: ['/bin/true'] },
        rootfs: { type: 'layers', diff_ids: [layer.diffId] },
        history: [{ created: '1970-01-01T00:00:00Z', created_by: 'meshmirror serve fixture' }],
      }),
    );
    await this.#blob(layer.bytes);
    const manifest = await this.#blob(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.DockerManifest,
        config: { mediaType: MediaType.DockerConfig, digest: config.digest, size: config.size },
        layers: [{ mediaType: MediaType.DockerLayerGzip, digest: layer.digest, size: layer.bytes.length }],
      }),
    );
    return { ...manifest, mediaType: MediaType.DockerManifest, blobs: [config.digest, layer.digest] };
  }

  async list(manifests: Array<WrittenManifest & { platform: Record<string, string> }>): Promise<Omit<WrittenManifest, 'blobs'>> {
    const list = await this.#blob(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.DockerManifestList,
        manifests: manifests.map((m) => ({ mediaType: m.mediaType, digest: m.digest, size: m.size, platform: m.platform })),
      }),
    );
    return { ...list, mediaType: MediaType.DockerManifestList };
  }

  /** Adds an index.json entry named `name` (after LayoutBuilder.finish wrote the file). */
  async name(name: string, manifest: { digest: Digest; mediaType: string; size: number }): Promise<void> {
    const file = join(this.#dir, 'index.json');
    const index = JSON.parse(await readFile(file, 'utf8')) as { manifests: unknown[] };
    index.manifests.push({ mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size, annotations: { [REF_NAME_ANNOTATION]: name } });
    await writeFile(file, JSON.stringify(index));
  }

  async #blob(content: string | Uint8Array): Promise<{ digest: Digest; size: number }> {
    const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    const digest = sha256Digest(bytes);
    await writeFile(join(this.#dir, 'blobs', 'sha256', digestHex(digest)), bytes);
    return { digest, size: bytes.length };
  }
}

export interface ServeProcess {
  /** `http://…` or `https://…` as the command printed it. */
  url: string;
  /** `127.0.0.1:PORT` */
  host: string;
  child: ChildProcess;
  /** What the command wrote to stderr so far (its logs). */
  stderr(): string;
  stop(): Promise<void>;
}

/**
 * Starts the real `meshmirror serve DIR` (any extra flags) on a free loopback port; resolves once it
 * prints its address, rejects with its stderr when it exits first.
 */
export async function startServeProcess(dir: string, extra: string[] = []): Promise<ServeProcess> {
  const child = spawn(process.execPath, [...CLI_NODE_FLAGS, CLI_ENTRY, 'serve', dir, '--listen', '127.0.0.1:0', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (): void => {
      const match = /serving .* at (https?:\/\/\S+)/.exec(stdout);
      if (match?.[1] !== undefined) {
        child.stdout.off('data', onData);
        resolve(match[1]);
      }
    };
    child.stdout.on('data', onData);
    void exited.then((code) => reject(new Error(`meshmirror serve exited early (${code}): ${stderr}`)));
  });
  return {
    url,
    host: new URL(url).host,
    child,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Runs `meshmirror serve` expecting it to refuse to start: its exit code and stderr. */
export async function serveRefusal(dir: string, extra: string[]): Promise<{ code: number | null; stderr: string }> {
  const { child, result } = spawnMeshmirror(['serve', dir, '--listen', '127.0.0.1:0', ...extra]);
  // A serve that starts after all would run until stopped: the test then fails on its exit code.
  const timer = setTimeout(() => child.kill('SIGTERM'), 20_000);
  try {
    const { code, stderr } = await result;
    return { code, stderr };
  } finally {
    clearTimeout(timer);
  }
}
