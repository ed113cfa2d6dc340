/**
 * The OpenShift fixture (test/support/openshift-fixture.ts) checked with independent tools: skopeo
 * reads what was pushed, the real `tar` unpacks layers, and the update-graph server is asked over
 * HTTP like oc-mirror asks Cincinnati.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync, zstdDecompressSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import {
  buildOpenShiftContent,
  CATALOG_CONFIGS_LABEL,
  CHANNELS_METADATA,
  DEFAULT_CHANNELS,
  EXAMPLE_CONFIG_PATH,
  MANIFESTREF_METADATA,
  MIDDLE_LAYER_RELEASE,
  ZSTD_RELEASE,
  RELEASE_VERSIONS,
  startOpenShiftFixture,
  type CincinnatiGraph,
  type OpenShiftFixture,
} from './support/openshift-fixture.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';
import { skopeoCopy, skopeoInspectDigest } from './support/skopeo.ts';

const execFileAsync = promisify(execFile);

let dir: string;
let registry: RunningRegistry;
let fixture: OpenShiftFixture;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-openshift-fixture-'));
  registry = await startRegistry();
  fixture = await startOpenShiftFixture({ registryUrl: registry.url, dir });
});

afterAll(async () => {
  await fixture?.close();
  await registry?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

interface OciManifest {
  config: { digest: string };
  layers: Array<{ digest: string; mediaType: string }>;
}

/** Reads an image from an OCI layout skopeo wrote: its manifest and config. */
async function readLayoutImage(layout: string, name: string): Promise<{ manifest: OciManifest; config: Record<string, any> }> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
  const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === name);
  if (entry === undefined) throw new Error(`${layout} has no ${name}`);
  const blob = (digest: string): string => join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));
  const manifest = JSON.parse(await readFile(blob(entry.digest), 'utf8')) as OciManifest;
  const config = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8')) as Record<string, any>;
  return { manifest, config };
}

function blobPath(layout: string, digest: string): string {
  return join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));
}

/** A layer's tar bytes: gunzipped or zstd-decompressed by Node, told by the first bytes. */
async function tarOf(file: string): Promise<string> {
  const bytes = await readFile(file);
  const zstd = bytes[0] === 0x28 && bytes[1] === 0xb5 && bytes[2] === 0x2f && bytes[3] === 0xfd;
  const raw = zstd ? zstdDecompressSync(bytes) : bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes) : bytes;
  const out = `${file}.tar`;
  await writeFile(out, raw);
  return out;
}

/** Unpacks a layer (gzip, zstd or plain) into `into` with the real tar. */
async function untar(file: string, into: string): Promise<void> {
  await mkdir(into, { recursive: true });
  await execFileAsync('tar', ['-xf', await tarOf(file), '-C', into]);
}

async function listTar(file: string): Promise<string[]> {
  const { stdout } = await execFileAsync('tar', ['-tf', await tarOf(file)]);
  return stdout.split('\n').filter((line) => line !== '');
}

/** Applies OCI whiteouts left by the last unpacked layer: `.wh.NAME` removes NAME and itself. */
async function applyWhiteouts(root: string): Promise<void> {
  for (const entry of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (!entry.name.startsWith('.wh.')) continue;
    const parent = entry.parentPath;
    await rm(join(parent, entry.name.slice('.wh.'.length)), { recursive: true, force: true });
    await rm(join(parent, entry.name), { force: true });
  }
}

/** Parses a stream of concatenated JSON objects (a file-based catalog's catalog.json). */
function parseJsonStream(text: string): Array<Record<string, any>> {
  const objects: Array<Record<string, any>> = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') {
      if (depth++ === 0) start = i;
    } else if (c === '}' && --depth === 0) objects.push(JSON.parse(text.slice(start, i + 1)) as Record<string, any>);
  }
  return objects;
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const index = next++;
        results[index] = await fn(items[index]!);
      }
    }),
  );
  return results;
}

/** Checks with skopeo that every reference exists with the digest it names. */
async function expectPushed(refs: Iterable<string>): Promise<void> {
  const unique = [...new Set(refs)];
  const digests = await mapLimit(unique, 8, (ref) => skopeoInspectDigest(`docker://${ref}`));
  unique.forEach((ref, index) => expect(digests[index], ref).toBe(ref.slice(ref.indexOf('@') + 1)));
}

describe('OpenShift fixture', () => {
  it('is deterministic and small', async () => {
    const again = await buildOpenShiftContent({ dir: join(dir, 'again'), componentHost: fixture.componentHost });
    const digests = (names: ReadonlyMap<string, { digest: string }>): Array<[string, string]> => [...names].map(([name, image]) => [name, image.digest]);
    expect(digests(again.imagesByName)).toEqual(digests(fixture.imagesByName));
    expect(fixture.layoutBytes).toBeLessThan(20 * 1024 * 1024);
    expect(fixture.pushed.length).toBe(fixture.imagesByName.size);
  });

  it('pushes release payloads whose image-references name pushed components', async () => {
    const layout = join(dir, 'payloads');
    for (const release of fixture.releases) {
      await skopeoCopy(`docker://${release.payloadTagRef}`, `oci:${layout}:${release.version}`);
    }
    const componentRefs: string[] = [];
    for (const release of fixture.releases) {
      const { manifest, config } = await readLayoutImage(layout, release.version);
      expect(config['config']['Labels']['io.openshift.release']).toBe(release.version);
      // gzip layers, but one payload's release manifests come in a zstd layer, which meshmirror must read as well.
      const zstd = release.version === ZSTD_RELEASE ? [release.manifestsLayer] : [];
      expect(
        manifest.layers.map((l, i) =>
          zstd.includes(i) ? l.mediaType === 'application/vnd.oci.image.layer.v1.tar+zstd' : l.mediaType === 'application/vnd.oci.image.layer.v1.tar+gzip',
        ),
      ).not.toContain(false);
      expect(config['rootfs']['diff_ids']).toHaveLength(manifest.layers.length);

      // Which layers hold release-manifests/image-references: exactly one, not always the top one.
      const holders: number[] = [];
      for (const [i, layer] of manifest.layers.entries()) {
        if ((await listTar(blobPath(layout, layer.digest))).includes('release-manifests/image-references')) holders.push(i);
      }
      expect(holders).toEqual([release.manifestsLayer]);
      if (release.version === MIDDLE_LAYER_RELEASE) expect(release.manifestsLayer).toBeLessThan(manifest.layers.length - 1);
      else expect(release.manifestsLayer).toBe(manifest.layers.length - 1);

      const root = join(dir, 'payload-root', release.version);
      await untar(blobPath(layout, manifest.layers[release.manifestsLayer]!.digest), root);
      const files = (await readdir(join(root, 'release-manifests'))).sort();
      expect(files).toContain('0000_00_cluster-version-operator_00_namespace.yaml');
      const stream = JSON.parse(await readFile(join(root, 'release-manifests', 'image-references'), 'utf8'));
      expect(stream).toMatchObject({ kind: 'ImageStream', apiVersion: 'image.openshift.io/v1', metadata: { name: release.version } });
      const tags = stream.spec.tags as Array<{ name: string; annotations: Record<string, string>; from: { kind: string; name: string } }>;
      expect(tags.map((t) => t.name)).toEqual(release.components.map((c) => c.name));
      for (const tag of tags) {
        expect(tag.from.kind).toBe('DockerImage');
        expect(tag.from.name).toMatch(new RegExp(`^${fixture.registryHost}/openshift-release-dev/ocp-v4\\.0-art-dev@sha256:[0-9a-f]{64}$`));
        expect(tag.annotations['io.openshift.build.commit.id']).toMatch(/^[0-9a-f]{40}$/);
        componentRefs.push(tag.from.name);
      }
      const metadata = JSON.parse(await readFile(join(root, 'release-manifests', 'release-metadata'), 'utf8'));
      expect(metadata).toEqual({ kind: 'cincinnati-metadata-v0', version: release.version, previous: release.previous, metadata: { url: release.url } });
    }
    await expectPushed(componentRefs);

    // Neighbouring releases share most components; all components share the base layer.
    const byVersion = new Map(fixture.releases.map((r) => [r.version, new Set(r.components.map((c) => c.digest))]));
    const shared = [...byVersion.get('4.19.2')!].filter((d) => byVersion.get('4.19.3')!.has(d));
    expect(shared.length).toBeGreaterThanOrEqual(3);
    expect(new Set(componentRefs).size).toBeLessThan(componentRefs.length / 2);
    const one = await fixture.uniqueBytesOf([fixture.releases[3]!.payloadRef]);
    const both = await fixture.uniqueBytesOf([fixture.releases[3]!.payloadRef, fixture.releases[4]!.payloadRef]);
    expect(both).toBeLessThan(2 * one);
  });

  it('pushes a file-based catalog whose /configs holds exactly five packages once whiteouts apply', async () => {
    const layout = join(dir, 'catalog');
    await skopeoCopy(`docker://${fixture.catalog.ref}`, `oci:${layout}:catalog`);
    expect(await skopeoInspectDigest(`docker://${fixture.catalog.ref}`)).toBe(fixture.catalog.digest);
    const { manifest, config } = await readLayoutImage(layout, 'catalog');
    expect(config['config']['Labels'][CATALOG_CONFIGS_LABEL]).toBe('/configs');

    const root = join(dir, 'catalog-root');
    let staleSeen = false;
    for (const layer of manifest.layers) {
      await untar(blobPath(layout, layer.digest), root);
      staleSeen ||= (await readdir(join(root, 'configs', 'web-terminal')).catch((): string[] => [])).includes('stale.json');
      await applyWhiteouts(root);
    }
    expect(staleSeen).toBe(true); // a lower layer has it ...
    expect(await readdir(join(root, 'configs', 'web-terminal'))).toEqual(['catalog.json']); // ... the top layer removes it
    expect((await readdir(join(root, 'configs'))).sort()).toEqual([
      'another-operator',
      'cluster-logging',
      'compliance-operator',
      'unselected-operator',
      'web-terminal',
    ]);
    expect(await readdir(join(root, 'tmp', 'cache'))).toContain('digest');

    const refs: string[] = [];
    for (const [name, pkg] of fixture.catalog.packages) {
      const text = await readFile(join(root, 'configs', name, pkg.file), 'utf8');
      const objects = pkg.file.endsWith('.yaml') ? parseAllDocuments(text).map((doc) => doc.toJS() as Record<string, any>) : parseJsonStream(text);
      const olmPackage = objects.filter((o) => o['schema'] === 'olm.package');
      expect(olmPackage).toEqual([expect.objectContaining({ name, defaultChannel: pkg.defaultChannel })]);
      const channels = objects.filter((o) => o['schema'] === 'olm.channel');
      expect(new Map(channels.map((c) => [c['name'], c['entries'].map((e: { name: string }) => e.name)]))).toEqual(pkg.channels);
      for (const channel of channels) {
        // The head (replaced or skipped by no other entry) is the last listed entry.
        const entries = channel['entries'] as Array<{ name: string; replaces?: string; skips?: string[] }>;
        const superseded = new Set(entries.flatMap((e) => [...(e.replaces === undefined ? [] : [e.replaces]), ...(e.skips ?? [])]));
        expect(entries.filter((e) => !superseded.has(e.name)).map((e) => e.name)).toEqual([pkg.channels.get(channel['name'])!.at(-1)]);
      }
      const bundles = objects.filter((o) => o['schema'] === 'olm.bundle');
      expect(bundles.map((b) => b['name'])).toEqual(pkg.bundles.map((b) => b.name));
      for (const [i, bundle] of bundles.entries()) {
        const expected = pkg.bundles[i]!;
        expect(bundle['package']).toBe(name);
        expect(bundle['image']).toBe(expected.image);
        expect(bundle['properties']).toContainEqual({ type: 'olm.package', value: { packageName: name, version: expected.version } });
        expect(bundle['properties'].some((p: { type: string }) => p.type === 'olm.gvk')).toBe(true);
        expect(bundle['relatedImages'].map((r: { image: string }) => r.image)).toEqual(expected.relatedImages);
        expect(bundle['relatedImages'].some((r: { name: string }) => r.name === '')).toBe(true);
        refs.push(expected.image, ...expected.relatedImages);
      }
    }
    expect(fixture.catalog.packages.get('cluster-logging')!.defaultChannel).toBe('stable-6.2');
    await expectPushed(refs);
  });

  it('serves a Cincinnati graph with only the requested channel’s nodes', async () => {
    const before = fixture.graphRequests();
    const ask = async (query: string, accept = 'application/json'): Promise<Response> =>
      fetch(`${fixture.graphUrl}${query}`, { headers: accept === '' ? {} : { accept } });

    const response = await ask('?channel=stable-4.19&arch=amd64');
    expect(response.status).toBe(200);
    const graph = (await response.json()) as CincinnatiGraph;
    const versions = graph.nodes.map((n) => n.version);
    expect([...versions].sort()).toEqual([...DEFAULT_CHANNELS['stable-4.19']!].sort());
    expect(versions).not.toEqual(DEFAULT_CHANNELS['stable-4.19']); // unsorted, as Cincinnati answers
    const edges = graph.edges.map(([a, b]) => `${graph.nodes[a]!.version}->${graph.nodes[b]!.version}`);
    expect(edges).toContain('4.19.2->4.19.8');
    expect(edges).not.toContain('4.19.0->4.19.1'); // 4.19.1 is not in stable-4.19
    expect(graph.conditionalEdges.length).toBeGreaterThan(0);
    for (const node of graph.nodes) {
      expect(node.metadata[CHANNELS_METADATA]!.split(',')).toContain('stable-4.19');
      const release = fixture.releases.find((r) => r.version === node.version)!;
      expect(node.payload).toBe(release.payloadRef);
      expect(node.metadata[MANIFESTREF_METADATA]).toBe(release.payloadDigest);
      expect(await skopeoInspectDigest(`docker://${release.payloadTagRef}`)).toBe(release.payloadDigest);
    }

    const fast = (await (await ask('?channel=fast-4.19&arch=amd64')).json()) as CincinnatiGraph;
    expect(fast.nodes.map((n) => n.version)).toEqual(expect.arrayContaining(['4.19.1', '4.19.11']));
    expect(((await (await ask('?channel=stable-4.19&arch=arm64')).json()) as CincinnatiGraph).nodes).toEqual([]);
    expect((await ask('?arch=amd64')).status).toBe(400);
    expect((await ask('?channel=stable-4.19&arch=amd64', '')).status).toBe(406);
    expect(fixture.graphRequests() - before).toBe(5);
    expect(RELEASE_VERSIONS.length).toBe(fixture.releases.length);

    const data = await fetch(fixture.graphDataUrl);
    expect(data.status).toBe(200);
    const tarball = join(dir, 'graph-data.tar.gz');
    await writeFile(tarball, Buffer.from(await data.arrayBuffer()));
    expect(await listTar(tarball)).toEqual(expect.arrayContaining(['channels/stable-4.19.yaml', 'blocked-edges/4.19.4.yaml']));
    expect(fixture.graphDataRequests()).toBe(1);
  });

  it('writes the example ImageSetConfiguration with only the hosts changed', async () => {
    const path = await fixture.writeExampleConfig(join(dir, 'imageset-config.yaml'));
    const written = await readFile(path, 'utf8');
    const original = await readFile(EXAMPLE_CONFIG_PATH, 'utf8');
    expect(written).not.toContain('registry.redhat.io');
    expect(written).toContain(`${fixture.registryHost}/redhat/redhat-operator-index:v4.19`);
    expect(written.split(fixture.registryHost).join('registry.redhat.io')).toBe(original);
    expect(await skopeoInspectDigest(`docker://${fixture.ubi}`)).toBe(fixture.ubiDigest);
    expect(await skopeoInspectDigest(`docker://${fixture.graphBaseImage}`)).toBe(fixture.graphBaseDigest);
  });
});
