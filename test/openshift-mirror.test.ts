/**
 * OpenShift content end to end: the user's own example configuration, with `registry.redhat.io`
 * pointed at a real registry holding release payloads, component images, an operator catalog and
 * its bundles in the real formats (test/support/openshift-fixture.ts), an update-graph service and a
 * graph-data tarball. Everything the registry serves goes through a counting proxy. What meshmirror
 * writes is read back with skopeo and the real `tar`.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { withFarm } from './support/agents.ts';
import { runMeshmirror } from './support/cli.ts';
import { startFaultProxy, type FaultProxy } from './support/fault-proxy.ts';
import { archiveContent, diskToMirrorArgs, extractChunks, mirrorArgs, mirrorToMirrorArgs } from './support/mirror-fixture.ts';
import { startOpenShiftFixture, type OpenShiftFixture } from './support/openshift-fixture.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';
import { skopeoCopy, skopeoInspectDigest } from './support/skopeo.ts';

const execFileAsync = promisify(execFile);

let dir: string;
let registry: RunningRegistry;
let target: RunningRegistry;
let proxy: FaultProxy;
let fx: OpenShiftFixture;
let config: string;

interface Outcome {
  source: string;
  kind: string;
  origin: string;
  state: string;
  code?: string;
  reason?: string;
}
interface Summary {
  images: { requested: number; archived: number; failed: number };
  outcomes: Outcome[];
  bytes: { unique: number; held: number; fetched: number };
  resumed: boolean;
}

/** The example's selection: stable-4.19 from 4.19.2 to 4.19.10 (4.19.1 and 4.19.11 are not in stable). */
const EXAMPLE_VERSIONS = ['4.19.2', '4.19.3', '4.19.5', '4.19.8', '4.19.10'];
/** Each channel's head of the three listed packages (oc-mirror v2: a package without channels keeps every channel's head). */
const EXAMPLE_BUNDLES = ['cluster-logging.v6.1.3', 'cluster-logging.v6.2.3', 'compliance-operator.v1.7.0', 'web-terminal.v1.12.1'];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-openshift-'));
  registry = await startRegistry();
  target = await startRegistry();
  proxy = await startFaultProxy(registry.url);
  // The content names its images on the proxy's host, so every byte meshmirror reads is counted.
  fx = await startOpenShiftFixture({ registryUrl: registry.url, dir: join(dir, 'fixture'), componentHost: proxy.host });
  config = await fx.writeExampleConfig(join(dir, 'imageset-config.yaml'));
}, 120_000);

afterAll(async () => {
  await fx?.close();
  await proxy?.close();
  await registry?.stop();
  await target?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** The CLI with the fixture's release signature store and key (`OCP_SIGNATURE_URL`, `OCP_SIGNATURE_VERIFICATION_PK`). */
function run(args: string[]) {
  return runMeshmirror(args, { env: fx.signatureEnv });
}

function openshiftArgs(): string[] {
  return ['--update-url', fx.graphUrl, '--graph-data-url', fx.graphDataUrl, '--graph-base-image', fx.graphBaseImage];
}

/** `binaryData` of the release signatures' ConfigMap in `resources`, checked for the cluster's name, namespace and label. */
async function signatureConfigMap(resources: string): Promise<Record<string, string>> {
  const configMap = JSON.parse(await readFile(join(resources, 'signature-configmap.json'), 'utf8')) as {
    kind: string;
    metadata: { name: string; namespace: string; labels: Record<string, string> };
    binaryData: Record<string, string>;
  };
  expect(configMap).toMatchObject({
    kind: 'ConfigMap',
    metadata: { name: 'mirrored-release-signatures', namespace: 'openshift-config-managed', labels: { 'release.openshift.io/verification-signatures': '' } },
  });
  return configMap.binaryData;
}

/** What that ConfigMap must hold for these releases: base64 of every signature served, `sha256-<hex>-<n>`. */
async function expectedSignatures(versions: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const release of releasesOf(versions)) {
    const served = await fx.signaturesServed(release.payloadDigest);
    served.forEach((bytes, i) => (out[`${release.payloadDigest.replace(':', '-')}-${i + 1}`] = Buffer.from(bytes).toString('base64')));
  }
  return out;
}

function releasesOf(versions: string[]) {
  return versions.map((v) => {
    const release = fx.releases.find((r) => r.version === v);
    if (release === undefined) throw new Error(`fixture has no release ${v}`);
    return release;
  });
}

function bundlesOf(names: string[]) {
  const all = [...fx.catalog.packages.values()].flatMap((p) => p.bundles);
  return names.map((n) => {
    const bundle = all.find((b) => b.name === n);
    if (bundle === undefined) throw new Error(`fixture has no bundle ${n}`);
    return bundle;
  });
}

/** Blob GETs per digest that the proxy answered with a body. */
function blobFetchesByDigest(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const entry of proxy.stats().log) {
    const match = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(entry.path);
    if (entry.method !== 'GET' || match === null || (entry.status !== 200 && entry.status !== 206)) continue;
    counts.set(match[1]!, (counts.get(match[1]!) ?? 0) + 1);
  }
  return counts;
}

/**
 * The files under `/configs` of an image in an OCI layout, layers applied bottom to top with OCI
 * whiteouts, each layer unpacked by the real `tar`.
 */
async function configsOf(layout: string, work: string): Promise<Map<string, string>> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const blob = (digest: string): string => join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));
  const manifest = JSON.parse(await readFile(blob(index.manifests[0]!.digest), 'utf8')) as { layers: Array<{ digest: string }> };
  const files = new Map<string, string>();
  for (const [i, layer] of manifest.layers.entries()) {
    const into = join(work, `layer-${i}`);
    await mkdir(into, { recursive: true });
    await execFileAsync('tar', ['-xzf', blob(layer.digest), '-C', into]);
    const entries = await listFiles(into, '');
    // Whiteouts hide what lower layers put there; this layer's own files then apply.
    for (const path of entries) {
      const name = path.split('/').pop()!;
      const parent = path.slice(0, -name.length);
      if (name === '.wh..wh..opq') {
        for (const key of [...files.keys()]) if (key.startsWith(parent)) files.delete(key);
      } else if (name.startsWith('.wh.')) {
        const hidden = parent + name.slice('.wh.'.length);
        for (const key of [...files.keys()]) if (key === hidden || key.startsWith(`${hidden}/`)) files.delete(key);
      }
    }
    for (const path of entries) {
      if (path.split('/').pop()!.startsWith('.wh.')) continue;
      files.set(path, await readFile(join(into, path), 'utf8').catch(() => ''));
    }
  }
  return new Map([...files].filter(([path]) => path.startsWith('configs/')));
}

async function listFiles(root: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(root, prefix), { withFileTypes: true })) {
    const path = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) out.push(...(await listFiles(root, path)));
    else out.push(path);
  }
  return out;
}

/** Bundle names in a catalog file: a JSON stream of objects (or multi-document YAML, never written by us). */
function bundleNames(text: string): string[] {
  const names: string[] = [];
  // Top-level objects of the stream start at column 0.
  for (const part of text.split(/\n(?=\{)/)) {
    if (part.trim() === '') continue;
    const object = JSON.parse(part) as { schema?: string; name?: string };
    if (object.schema === 'olm.bundle' && object.name !== undefined) names.push(object.name);
  }
  return names;
}

describe("the user's example configuration", () => {
  it('mirrors to disk: every release in the range with its components, the graph image, the filtered catalog, its bundles and related images, the additional image', async () => {
    proxy.resetStats();
    const graphBefore = fx.graphRequests();
    const out = join(dir, 'out');
    const result = await run(mirrorArgs(config, out, join(dir, 'cache'), ...openshiftArgs()));
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as Summary;
    expect(summary.images.failed).toBe(0);
    expect(fx.graphRequests() - graphBefore).toBe(1); // one channel, one architecture

    const layout = join(dir, 'layout');
    await extractChunks(out, layout);
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
    const named = new Map(index.manifests.map((m) => [m.annotations['org.opencontainers.image.ref.name'], m.digest]));

    // Release payloads: exactly the selected versions, each with every component image.
    const releases = releasesOf(EXAMPLE_VERSIONS);
    const payloads = index.manifests.filter((m) => m.annotations['org.opencontainers.image.ref.name']?.includes('/openshift-release-dev/ocp-release@'));
    expect(payloads.map((m) => m.digest).sort()).toEqual(releases.map((r) => r.payloadDigest).sort());
    for (const release of releases) for (const component of release.components) expect(named.get(component.ref), component.ref).toBe(component.digest);
    const origins = summary.outcomes.filter((o) => o.kind === 'release').map((o) => o.origin);
    for (const v of EXAMPLE_VERSIONS) expect(origins).toContain(`mirror.platform.channels[0] (${v})`);
    expect(origins.some((o) => /\(4\.19\.(0|1|11)\)/.test(o))).toBe(false);

    // Bundles and every related image of each kept bundle, nothing of the others.
    const bundles = bundlesOf(EXAMPLE_BUNDLES);
    for (const bundle of bundles) for (const image of bundle.relatedImages) expect(named.has(image), image).toBe(true);
    const keptImages = new Set(bundles.flatMap((b) => b.relatedImages));
    const otherBundles = [...fx.catalog.packages.values()].flatMap((p) => p.bundles).filter((b) => !EXAMPLE_BUNDLES.includes(b.name));
    for (const bundle of otherBundles) expect(named.has(bundle.image), bundle.image).toBe(keptImages.has(bundle.image));

    // The additional image.
    expect(named.get(fx.ubi)).toBe(fx.ubiDigest);

    // The filtered catalog, read by skopeo: its /configs holds only the selected packages and bundles.
    const catalogLayout = join(dir, 'catalog-oci');
    await skopeoCopy(`oci:${layout}:${fx.catalog.ref}`, `oci:${catalogLayout}:catalog`);
    const configs = await configsOf(catalogLayout, join(dir, 'catalog-layers'));
    const packages = [...new Set([...configs.keys()].map((p) => p.split('/')[1]))].sort();
    expect(packages).toEqual(['cluster-logging', 'compliance-operator', 'web-terminal']);
    const kept = [...configs.values()].flatMap(bundleNames).sort();
    expect(kept).toEqual(EXAMPLE_BUNDLES);
    expect(named.get(fx.catalog.ref)).not.toBe(fx.catalog.digest); // a new image, not the original

    // The graph image: the base image's layers plus the graph data under /var/lib/cincinnati-graph-data.
    const graphLayout = join(dir, 'graph-oci');
    await skopeoCopy(`oci:${layout}:localhost/openshift/graph-image:latest`, `oci:${graphLayout}:graph`);
    const graphIndex = JSON.parse(await readFile(join(graphLayout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const graphManifest = JSON.parse(await readFile(join(graphLayout, 'blobs', 'sha256', graphIndex.manifests[0]!.digest.slice(7)), 'utf8')) as {
      layers: Array<{ digest: string }>;
    };
    const top = graphManifest.layers.at(-1)!.digest.slice(7);
    const { stdout: listing } = await execFileAsync('tar', ['-tzf', join(graphLayout, 'blobs', 'sha256', top)]);
    expect(listing).toContain('var/lib/cincinnati-graph-data/channels/stable-4.19.yaml');

    // Each blob crossed the upstream link once, the layers read during resolution included.
    const fetches = blobFetchesByDigest();
    expect([...fetches].filter(([, n]) => n > 1)).toEqual([]);
    // The layers read to resolve the set (payloads, catalog) are held when the plan is made and not
    // fetched again; only the original catalog and base image configs (a few KiB) are read on top.
    expect(summary.bytes.fetched + summary.bytes.held).toBe(summary.bytes.unique);
    expect(proxy.stats().blobBodyBytes).toBeGreaterThan(summary.bytes.fetched);
    expect(proxy.stats().blobBodyBytes).toBeLessThan(summary.bytes.unique + 64 * 1024);
  }, 120_000);

  it('pushes that archive into a registry: oc-mirror names, cluster resources for releases, the catalog and the update service', async () => {
    const out = join(dir, 'out');
    const dest = `docker://${target.host}/mirror`;
    const result = await run([
      'mirror',
      '-c',
      config,
      '--from',
      `file://${out}`,
      dest,
      '--cache-dir',
      join(dir, 'cache-push'),
      '--dest-tls-verify=false',
      '--output',
      'json',
    ]);
    expect(result.code, result.stderr).toBe(0);
    const release = releasesOf(['4.19.3'])[0]!;
    expect(await skopeoInspectDigest(`docker://${target.host}/mirror/openshift/release-images:4.19.3-x86_64`, { tlsVerify: false })).toBe(release.payloadDigest);
    const etcd = release.components.find((c) => c.name === 'etcd')!;
    expect(await skopeoInspectDigest(`docker://${target.host}/mirror/openshift/release:4.19.3-x86_64-etcd`, { tlsVerify: false })).toBe(etcd.digest);
    await skopeoInspectDigest(`docker://${target.host}/mirror/redhat/redhat-operator-index:v4.19`, { tlsVerify: false });
    await skopeoInspectDigest(`docker://${target.host}/mirror/openshift/graph-image:latest`, { tlsVerify: false });

    const resources = join(out, 'working-dir', 'cluster-resources');
    const files = (await readdir(resources)).sort();
    expect(files).toEqual([
      'cc-redhat-operator-index-v4-19.yaml',
      'cs-redhat-operator-index-v4-19.yaml',
      'idms-oc-mirror.yaml',
      'itms-oc-mirror.yaml',
      'signature-configmap.json',
      'signature-configmap.yaml',
      'updateService.yaml',
    ]);
    // Every release's signature, exactly the bytes the signature store served, where the cluster looks.
    expect(await signatureConfigMap(resources)).toEqual(await expectedSignatures(EXAMPLE_VERSIONS));
    const idms = await readFile(join(resources, 'idms-oc-mirror.yaml'), 'utf8');
    expect(idms).toContain(`source: ${proxy.host}/openshift-release-dev/ocp-v4.0-art-dev`);
    expect(idms).toContain(`${target.host}/mirror/openshift/release`);
    expect(idms).toContain('name: idms-operator-0');
    const cs = await readFile(join(resources, 'cs-redhat-operator-index-v4-19.yaml'), 'utf8');
    expect(cs).toContain(`image: ${target.host}/mirror/redhat/redhat-operator-index:v4.19`);
    const updateService = await readFile(join(resources, 'updateService.yaml'), 'utf8');
    expect(updateService).toContain(`graphDataImage: ${target.host}/mirror/openshift/graph-image:latest`);
    expect(updateService).toContain(`releases: ${target.host}/mirror/openshift/release-images`);
  }, 120_000);
});

/** A configuration for the fixture: platform and operator parts as YAML lines under `mirror:`. */
async function writeConfig(name: string, body: { channels?: string; operators?: string }): Promise<string> {
  const lines = ['kind: ImageSetConfiguration', 'apiVersion: mirror.openshift.io/v2alpha1', 'mirror:'];
  if (body.channels !== undefined)
    lines.push(
      '  platform:',
      '    channels:',
      ...body.channels
        .trim()
        .split('\n')
        .map((l) => `      ${l}`),
    );
  if (body.operators !== undefined) {
    lines.push(
      '  operators:',
      `    - catalog: ${fx.catalog.ref}`,
      ...body.operators
        .trim()
        .split('\n')
        .map((l) => `      ${l}`),
    );
  }
  const path = join(dir, `${name}.yaml`);
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
}

/** Release versions and bundles a summary selected (payload origins end in `(version)`, bundle origins name the bundle). */
function selectionOf(summary: Summary): { versions: string[]; bundles: string[] } {
  const versions = new Set<string>();
  const bundles = new Set<string>();
  for (const o of summary.outcomes) {
    const payload = /^mirror\.platform\.channels\[\d+\] \((\d+\.\d+\.\d+)\)$/.exec(o.origin);
    if (payload !== null) versions.add(payload[1]!);
    const bundle = /bundle ([^,)]+)/.exec(o.origin);
    if (bundle !== null && o.kind === 'operator') bundles.add(bundle[1]!);
  }
  const byVersion = (a: string, b: string): number => a.localeCompare(b, 'en', { numeric: true });
  return { versions: [...versions].sort(byVersion), bundles: [...bundles].sort(byVersion) };
}

describe('selection rules, checked against hand-worked expectations (dry runs over the fixture)', () => {
  // The fixture's stable-4.19 holds 4.19.0, .2, .3, .5, .8, .10 (4.19.1 and 4.19.11 are candidate/fast only);
  // fast-4.19 adds them. Edges include 4.19.2→4.19.8 and 4.19.8→4.19.10, so the shortest path skips .3 and .5.
  const rows: Array<{ rule: string; channels?: string; operators?: string; versions?: string[]; bundles?: string[]; failed?: RegExp[] }> = [
    { rule: 'no min and no max: the channel head only', channels: '- name: stable-4.19', versions: ['4.19.10'] },
    { rule: 'the head of another channel', channels: '- name: fast-4.19', versions: ['4.19.11'] },
    { rule: 'only minVersion: min up to the head', channels: '- name: stable-4.19\n  minVersion: 4.19.5', versions: ['4.19.5', '4.19.8', '4.19.10'] },
    { rule: 'only maxVersion: that version', channels: '- name: stable-4.19\n  maxVersion: 4.19.3', versions: ['4.19.3'] },
    {
      rule: 'min and max: everything in range',
      channels: '- name: stable-4.19\n  minVersion: 4.19.2\n  maxVersion: 4.19.8',
      versions: ['4.19.2', '4.19.3', '4.19.5', '4.19.8'],
    },
    {
      rule: 'shortestPath: a breadth-first path over the edges',
      channels: '- name: stable-4.19\n  minVersion: 4.19.2\n  maxVersion: 4.19.10\n  shortestPath: true',
      versions: ['4.19.2', '4.19.8', '4.19.10'],
    },
    { rule: 'full: the whole channel', channels: '- name: stable-4.19\n  full: true', versions: ['4.19.0', '4.19.2', '4.19.3', '4.19.5', '4.19.8', '4.19.10'] },
    {
      rule: 'several channels: the union',
      channels: '- name: stable-4.19\n  maxVersion: 4.19.3\n- name: fast-4.19\n  minVersion: 4.19.10',
      versions: ['4.19.3', '4.19.10', '4.19.11'],
    },
    {
      rule: 'a version the channel does not have: named in the error',
      channels: '- name: stable-4.19\n  minVersion: 4.19.1',
      versions: [],
      failed: [/4\.19\.1 is not in the channel/],
    },
    {
      rule: 'a package without channels: every channel head',
      operators: 'packages:\n  - name: cluster-logging',
      bundles: ['cluster-logging.v6.1.3', 'cluster-logging.v6.2.3'],
    },
    {
      rule: 'a channel with minVersion: the replaces chain from the head, skipped entries included',
      operators: 'packages:\n  - name: cluster-logging\n    channels:\n      - name: stable-6.2\n        minVersion: 6.2.1',
      bundles: ['cluster-logging.v6.2.1', 'cluster-logging.v6.2.2', 'cluster-logging.v6.2.3'],
    },
    {
      rule: 'a package-level maxVersion',
      operators: 'packages:\n  - name: compliance-operator\n    maxVersion: 1.6.1',
      bundles: ['compliance-operator.v1.6.0', 'compliance-operator.v1.6.1'],
    },
    {
      rule: 'full on the catalog: every bundle of the listed package',
      operators: 'full: true\npackages:\n  - name: web-terminal',
      bundles: ['web-terminal.v1.10.0', 'web-terminal.v1.11.0', 'web-terminal.v1.12.1'],
    },
    {
      rule: 'a channel that drops the default channel: an error that says to set defaultChannel',
      operators: 'packages:\n  - name: cluster-logging\n    channels:\n      - name: stable-6.1',
      bundles: ['cluster-logging.v6.1.3'],
      failed: [/default channel "stable-6\.2".*defaultChannel/],
    },
    {
      rule: 'defaultChannel set: no error',
      operators: 'packages:\n  - name: cluster-logging\n    defaultChannel: stable-6.1\n    channels:\n      - name: stable-6.1',
      bundles: ['cluster-logging.v6.1.3'],
    },
    {
      rule: 'a package the catalog does not have: named, the others still selected',
      operators: 'packages:\n  - name: no-such-operator\n  - name: compliance-operator',
      bundles: ['compliance-operator.v1.7.0'],
      failed: [/no-such-operator/],
    },
  ];
  it.each(rows)(
    '$rule',
    async (row) => {
      const name = `table-${rows.indexOf(row)}`;
      const config = await writeConfig(name, {
        ...(row.channels === undefined ? {} : { channels: row.channels }),
        ...(row.operators === undefined ? {} : { operators: row.operators }),
      });
      const result = await run([...mirrorArgs(config, join(dir, `${name}-out`), join(dir, `${name}-cache`), ...openshiftArgs()), '--dry-run']);
      expect(result.stderr).not.toMatch(/\n\s+at /); // never a stack trace
      const summary = JSON.parse(result.stdout) as Summary;
      const selection = selectionOf(summary);
      if (row.versions !== undefined) expect(selection.versions).toEqual(row.versions);
      if (row.bundles !== undefined) expect(selection.bundles).toEqual(row.bundles);
      const failures = summary.outcomes.filter((o) => o.state === 'failed');
      expect(failures.length).toBe(row.failed?.length ?? 0);
      for (const pattern of row.failed ?? []) expect(failures.map((f) => `${f.source} ${f.origin} ${f.reason ?? ''}`).join('\n')).toMatch(pattern);
      if (row.failed === undefined) expect(result.code, result.stderr).toBe(0);
      else expect(result.code).not.toBe(0);
    },
    60_000,
  );
});

describe('a release named directly (platform.release)', () => {
  it('mirrors that payload by tag, pinned to its digest, with every component named for its version', async () => {
    const release = releasesOf(['4.19.5'])[0]!; // its image-references sit in a middle layer
    const path = join(dir, 'direct.yaml');
    await writeFile(
      path,
      ['kind: ImageSetConfiguration', 'apiVersion: mirror.openshift.io/v2alpha1', 'mirror:', '  platform:', `    release: ${release.payloadTagRef}`, ''].join('\n'),
    );
    const out = join(dir, 'out-direct');
    const result = await run(mirrorArgs(path, out, join(dir, 'cache-direct')));
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as Summary;
    expect(summary.images.archived).toBe(1 + new Set(release.components.map((c) => c.name)).size);
    const components = summary.outcomes.filter((o) => o.origin.startsWith('mirror.platform.release component '));
    expect(components.map((c) => c.source).sort()).toEqual([...new Set(release.components.map((c) => c.ref))].sort());
    const metadata = join(dir, 'layout-direct');
    await extractChunks(out, metadata);
    const index = JSON.parse(await readFile(join(metadata, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
    expect(index.manifests.find((m) => m.annotations['org.opencontainers.image.ref.name'] === release.payloadTagRef)?.digest).toBe(release.payloadDigest);
  }, 60_000);
});

describe('failures in OpenShift content', () => {
  it('a bundle that cannot be fetched fails alone, named; the releases are archived; the re-run resumes without asking the update graph again', async () => {
    const out = join(dir, 'out-fail');
    const cache = join(dir, 'cache-fail');
    // The web-terminal bundle's manifest is gone upstream (404), every time.
    proxy.setRules([{ match: { method: 'GET', path: /^\/v2\/web-terminal\/web-terminal-operator-bundle\/manifests\// }, fault: { kind: 'status', status: 404 } }]);
    const graphBefore = fx.graphRequests();
    const first = await run(mirrorArgs(config, out, cache, ...openshiftArgs(), '--retry-times', '0'));
    proxy.setRules([]);
    expect(first.code, first.stderr).not.toBe(0);
    const summary = JSON.parse(first.stdout) as Summary;
    const failed = summary.outcomes.filter((o) => o.state === 'failed');
    expect(failed.map((f) => f.origin)).toEqual(['mirror.operators[0] (package web-terminal, bundle web-terminal.v1.12.1)']);
    const releases = summary.outcomes.filter((o) => o.kind === 'release');
    expect(releases.length).toBeGreaterThan(EXAMPLE_VERSIONS.length);
    expect(releases.every((o) => o.state === 'archived')).toBe(true);
    const errorsFile = (JSON.parse(first.stdout) as { files: { errors?: string } }).files.errors;
    expect(errorsFile).toBeDefined();
    expect(await readFile(errorsFile!, 'utf8')).toContain('web-terminal-operator-bundle');
    expect(fx.graphRequests() - graphBefore).toBe(1);

    const second = await run(mirrorArgs(config, out, cache, ...openshiftArgs()));
    expect(second.code, second.stderr).toBe(0);
    const resumed = JSON.parse(second.stdout) as Summary;
    expect(resumed.resumed).toBe(true);
    expect(resumed.images.failed).toBe(0);
    expect(fx.graphRequests() - graphBefore).toBe(1); // the graph of the first attempt, from the journal
  }, 120_000);
});

describe('mirror to mirror with the example configuration', () => {
  it('pushes every image straight into the target and writes the cluster resources', async () => {
    const workspace = join(dir, 'm2m');
    const result = await run([
      'mirror',
      '-c',
      config,
      '--workspace',
      `file://${workspace}`,
      `docker://${target.host}/m2m`,
      '--cache-dir',
      join(dir, 'cache-m2m'),
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      '--output',
      'json',
      ...openshiftArgs(),
    ]);
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as { images: { failed: number; pushed: number } };
    expect(summary.images.failed).toBe(0);
    const release = releasesOf(['4.19.10'])[0]!;
    expect(await skopeoInspectDigest(`docker://${target.host}/m2m/openshift/release-images:4.19.10-x86_64`, { tlsVerify: false })).toBe(release.payloadDigest);
    const catalogLayout = join(dir, 'm2m-catalog');
    await skopeoCopy(`docker://${target.host}/m2m/redhat/redhat-operator-index:v4.19`, `oci:${catalogLayout}:catalog`, { srcTlsVerify: false });
    const configs = await configsOf(catalogLayout, join(dir, 'm2m-catalog-layers'));
    expect([...new Set([...configs.keys()].map((p) => p.split('/')[1]))].sort()).toEqual(['cluster-logging', 'compliance-operator', 'web-terminal']);
    const files = (await readdir(join(workspace, 'working-dir', 'cluster-resources'))).sort();
    expect(files).toContain('updateService.yaml');
    expect(files).toContain('cs-redhat-operator-index-v4-19.yaml');
    expect(await signatureConfigMap(join(workspace, 'working-dir', 'cluster-resources'))).toEqual(await expectedSignatures(EXAMPLE_VERSIONS));
  }, 120_000);
});

describe('release signatures', () => {
  afterAll(() => {
    for (const v of EXAMPLE_VERSIONS) fx.setSignatures(v, ['good']);
  });

  const m2m = (name: string, ...extra: string[]) =>
    run(mirrorToMirrorArgs(config, join(dir, name), `${target.host}/${name}`, join(dir, `cache-${name}`), ...openshiftArgs(), ...extra));

  it('carries exactly the valid ones; a release without, or with one by another key or for another digest, fails by name', async () => {
    // 4.19.2 two signatures; 4.19.3 none; 4.19.5 one by a key nobody trusts; 4.19.8 one that signs
    // another payload; 4.19.10 one, as every release before.
    fx.setSignatures('4.19.2', ['good', 'good']);
    fx.setSignatures('4.19.3', []);
    fx.setSignatures('4.19.5', ['other-key']);
    fx.setSignatures('4.19.8', ['good', 'other-digest']);
    const out = join(dir, 'out-signatures');
    const first = await run(mirrorArgs(config, out, join(dir, 'cache-signatures'), ...openshiftArgs()));
    expect(first.code, first.stderr).not.toBe(0);
    const summary = JSON.parse(first.stdout) as Summary & { files: { errors?: string } };
    const failed = summary.outcomes.filter((o) => o.state === 'failed');
    const payloadOf = (v: string) => releasesOf([v])[0]!.payloadRef;
    expect(failed.map((f) => [f.source, f.code]).sort()).toEqual(
      [
        [payloadOf('4.19.3'), 'MM_SIGNATURE_MISSING'],
        [payloadOf('4.19.5'), 'MM_SIGNATURE_INVALID'],
        [payloadOf('4.19.8'), 'MM_SIGNATURE_INVALID'],
      ].sort(),
    );
    const errors = await readFile(summary.files.errors!, 'utf8');
    expect(errors).toMatch(/4\.19\.3.*no signature/);
    expect(errors).toMatch(/4\.19\.5.*not signed by a trusted key/);
    expect(errors).toMatch(/4\.19\.8.*signature-2.*signs sha256:[0-9a-f]{64}, not this release's/);
    // Everything else, the failed releases' components included, is archived.
    expect(summary.images.archived).toBe(summary.images.requested - 3);
    expect((summary as unknown as { signatures: { release: unknown } }).signatures.release).toEqual({ releases: 2, signatures: 3, missing: 1, invalid: 2 });
    expect(first.stderr + first.stdout).not.toContain('BEGIN PGP');

    // The archive carries the signatures across: disk to mirror writes them for the cluster.
    const push = await run(diskToMirrorArgs(config, out, `${target.host}/signed`, join(dir, 'cache-signed-push')));
    expect(push.stdout).toContain('"pushed"');
    expect(await signatureConfigMap(join(out, 'working-dir', 'cluster-resources'))).toEqual(await expectedSignatures(['4.19.2', '4.19.10']));

    // Mirror to mirror: the same releases fail, the same signatures land.
    const direct = await m2m('m2m-signed');
    expect(direct.code).not.toBe(0);
    const directSummary = JSON.parse(direct.stdout) as { outcomes: Outcome[] };
    expect(
      directSummary.outcomes
        .filter((o) => o.state === 'failed')
        .map((o) => o.source)
        .sort(),
    ).toEqual(['4.19.3', '4.19.5', '4.19.8'].map(payloadOf).sort());
    expect(await signatureConfigMap(join(dir, 'm2m-signed', 'working-dir', 'cluster-resources'))).toEqual(await expectedSignatures(['4.19.2', '4.19.10']));
  }, 180_000);

  it('--remove-signatures mirrors every release without looking for signatures, and writes no ConfigMap', async () => {
    fx.setSignatures('4.19.3', []);
    const result = await m2m('m2m-unsigned', '--remove-signatures');
    expect(result.code, result.stderr).toBe(0);
    const files = await readdir(join(dir, 'm2m-unsigned', 'working-dir', 'cluster-resources'));
    expect(files.filter((f) => f.startsWith('signature-'))).toEqual([]);
    const release = releasesOf(['4.19.3'])[0]!;
    expect(await skopeoInspectDigest(`docker://${target.host}/m2m-unsigned/openshift/release-images:4.19.3-x86_64`, { tlsVerify: false })).toBe(release.payloadDigest);
  }, 120_000);
});

describe('targetCatalogSourceTemplate', () => {
  it("starts the catalog's CatalogSource from the user's template, and a bad template stops the run before anything is fetched, naming field and file", async () => {
    const template = join(dir, 'cs-template.yaml');
    await writeFile(
      template,
      [
        'apiVersion: operators.coreos.com/v1alpha1',
        'kind: CatalogSource',
        'metadata:',
        '  name: ignored',
        '  namespace: ignored-too',
        '  creationTimestamp: null',
        '  labels: { team: platform }',
        '  annotations: { note: kept }',
        'spec:',
        '  displayName: Mirrored operators',
        '  publisher: Platform team',
        '  priority: -100',
        '  updateStrategy: { registryPoll: { interval: 30m } }',
        '  grpcPodConfig: { securityContextConfig: restricted }',
        'status: { connectionState: { lastObservedState: READY } }',
        '',
      ].join('\n'),
    );
    const config = await writeConfig('template', { operators: `targetCatalogSourceTemplate: ${template}\npackages:\n  - name: web-terminal` });
    const workspace = join(dir, 'ws-template');
    const result = await run(mirrorToMirrorArgs(config, workspace, `${target.host}/tpl`, join(dir, 'cache-template'), ...openshiftArgs()));
    expect(result.code, result.stderr).toBe(0);
    const cs = parseYaml(await readFile(join(workspace, 'working-dir', 'cluster-resources', 'cs-redhat-operator-index-v4-19.yaml'), 'utf8')) as {
      metadata: Record<string, unknown>;
      spec: Record<string, unknown>;
      status?: unknown;
    };
    expect(cs.metadata).toMatchObject({ name: 'cs-redhat-operator-index-v4-19', namespace: 'openshift-marketplace', labels: { team: 'platform' } });
    expect(cs.metadata['annotations']).toMatchObject({ note: 'kept', createdBy: 'meshmirror' });
    expect(cs.metadata).not.toHaveProperty('creationTimestamp');
    expect(cs.status).toBeUndefined();
    expect(cs.spec).toEqual({
      displayName: 'Mirrored operators',
      publisher: 'Platform team',
      priority: -100,
      updateStrategy: { registryPoll: { interval: '30m' } },
      grpcPodConfig: { securityContextConfig: 'restricted' },
      sourceType: 'grpc',
      image: `${target.host}/tpl/redhat/redhat-operator-index:v4.19`,
    });

    await writeFile(template, 'apiVersion: operators.coreos.com/v1alpha1\nkind: CatalogSource\nspec:\n  configMap: my-catalog\n');
    const before = proxy.stats().requests;
    const bad = await run(mirrorToMirrorArgs(config, join(dir, 'ws-template-bad'), `${target.host}/tpl-bad`, join(dir, 'cache-template-bad'), ...openshiftArgs()));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`mirror.operators[0].targetCatalogSourceTemplate: ${template}: spec.configMap: a mirrored catalog is an image, not a ConfigMap`);
    expect(proxy.stats().requests).toBe(before);
  }, 120_000);
});

describe('kubeVirtContainer', () => {
  it("mirrors the KubeVirt container disk the payload's CoreOS stream names, as a release component, only when asked", async () => {
    const release = releasesOf(['4.19.3'])[0]!;
    const write = async (name: string, kubeVirt: boolean): Promise<string> => {
      const path = join(dir, `${name}.yaml`);
      const lines = [
        'kind: ImageSetConfiguration',
        'apiVersion: mirror.openshift.io/v2alpha1',
        'mirror:',
        '  platform:',
        ...(kubeVirt ? ['    kubeVirtContainer: true'] : []),
        '    channels:',
        '      - name: stable-4.19',
        '        minVersion: 4.19.3',
        '        maxVersion: 4.19.3',
      ];
      await writeFile(path, `${lines.join('\n')}\n`);
      return path;
    };
    const withDisk = await run(
      mirrorToMirrorArgs(await write('kubevirt', true), join(dir, 'ws-kubevirt'), `${target.host}/kv`, join(dir, 'cache-kubevirt'), ...openshiftArgs()),
    );
    expect(withDisk.code, withDisk.stderr).toBe(0);
    const summary = JSON.parse(withDisk.stdout) as Summary;
    expect(summary.outcomes.find((o) => o.source === release.kubeVirt.ref)).toMatchObject({
      state: 'pushed',
      origin: expect.stringContaining('component kube-virt-container'),
    });
    const tag = `docker://${target.host}/kv/openshift/release:4.19.3-x86_64-kube-virt-container`;
    expect(await skopeoInspectDigest(tag, { tlsVerify: false })).toBe(release.kubeVirt.digest);
    const idms = await readFile(join(dir, 'ws-kubevirt', 'working-dir', 'cluster-resources', 'idms-oc-mirror.yaml'), 'utf8');
    expect(idms).toContain(`- ${target.host}/kv/openshift/release`);

    const without = await run(
      mirrorToMirrorArgs(await write('no-kubevirt', false), join(dir, 'ws-no-kubevirt'), `${target.host}/nokv`, join(dir, 'cache-no-kubevirt'), ...openshiftArgs()),
    );
    expect(without.code, without.stderr).toBe(0);
    expect((JSON.parse(without.stdout) as Summary).outcomes.map((o) => o.source)).not.toContain(release.kubeVirt.ref);
  }, 120_000);
});

describe('a catalog in a local OCI layout (catalog: oci:///path)', () => {
  it('is filtered from the folder, its blobs imported rather than fetched, and mirrored by one host, a farm and disk to mirror', async () => {
    const layoutDir = join(dir, 'layouts', 'redhat-operator-index');
    await mkdir(join(dir, 'layouts'), { recursive: true });
    await skopeoCopy(`docker://${registry.host}/redhat/redhat-operator-index:v4.19`, `oci:${layoutDir}:v4.19`);
    const layoutIndex = JSON.parse(await readFile(join(layoutDir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const layoutBlobs = new Set(await readdir(join(layoutDir, 'blobs', 'sha256')));
    expect(layoutIndex.manifests).toHaveLength(1);
    const isc = join(dir, 'isc-layout.yaml');
    await writeFile(
      isc,
      [
        'kind: ImageSetConfiguration',
        'apiVersion: mirror.openshift.io/v2alpha1',
        'mirror:',
        '  operators:',
        `    - catalog: oci://${layoutDir}`,
        '      packages:',
        '        - name: web-terminal',
        '',
      ].join('\n'),
    );
    proxy.resetStats();
    const out = join(dir, 'out-layout');
    const single = await run(mirrorArgs(isc, out, join(dir, 'cache-layout')));
    expect(single.code, single.stderr).toBe(0);
    const summary = JSON.parse(single.stdout) as Summary;
    const archived = summary.outcomes.filter((o) => o.state === 'archived').map((o) => o.source);
    expect(archived).toContain('localhost/redhat-operator-index:v4.19');
    for (const image of bundlesOf(['web-terminal.v1.12.1']).flatMap((b) => b.relatedImages)) expect(archived).toContain(image);
    // Nothing of the catalog came from the registry: its blobs were in the folder.
    expect([...blobFetchesByDigest().keys()].filter((d) => layoutBlobs.has(d.slice('sha256:'.length)))).toEqual([]);

    // A farm: the agents are never asked for what only the coordinator's folder holds.
    const farmOut = join(dir, 'out-layout-farm');
    const farm = await withFarm(dir, 'layout', 2, ({ cache, args }) => run([...mirrorArgs(isc, farmOut, cache), ...args]));
    expect(farm.code, farm.stderr).toBe(0);
    expect(await archiveContent(farmOut, join(dir, 'layout-farm-x'))).toEqual(await archiveContent(out, join(dir, 'layout-single-x')));

    // Disk to mirror: the filtered catalog under the folder's name and the layout's tag.
    const pushed = await run(diskToMirrorArgs(isc, out, `${target.host}/layout`, join(dir, 'cache-layout-d2m')));
    expect(pushed.code, pushed.stderr).toBe(0);
    const catalogLayout = join(dir, 'layout-catalog-pushed');
    await skopeoCopy(`docker://${target.host}/layout/redhat-operator-index:v4.19`, `oci:${catalogLayout}:catalog`);
    const configs = await configsOf(catalogLayout, join(dir, 'layout-catalog-layers'));
    expect([...new Set([...configs.keys()].map((p) => p.split('/')[1]))]).toEqual(['web-terminal']);
  }, 180_000);
});
