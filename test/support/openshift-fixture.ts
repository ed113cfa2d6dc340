/**
 * OpenShift content in its real formats, generated at test time and pushed into a test registry:
 * release payloads (with `release-manifests/image-references` and `release-metadata`) whose
 * components are real images, a Cincinnati update-graph service and graph-data tarball on a local
 * HTTP server, a file-based operator catalog (`/configs`, JSON streams and multi-doc YAML, a
 * whiteout) whose bundles and related images are real images, and the additional/base images of
 * the user's example ImageSetConfiguration. See /work/shared/FORMATS.md for the formats.
 *
 * Everything is deterministic. Component, bundle, operand and plain images never embed a host, so
 * their digests are the same on every run; payloads, the catalog and the graph embed
 * `componentHost` (default: the registry's `host:port`), so their digests are the same for the same
 * host.
 *
 * Where things live (repositories in the registry):
 * - components: `openshift-release-dev/ocp-v4.0-art-dev:c-<component>-<n>`, referenced by digest;
 * - payloads: `openshift-release-dev/ocp-release:<version>-x86_64`;
 * - catalog: `redhat/redhat-operator-index:v4.19`; bundles `<ns>/<name>-bundle:v<version>`;
 * - additional image `ubi9/ubi:latest` (an amd64+arm64 index), graph base `ubi9/ubi-micro:latest`.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { stringify as yamlStringify } from 'yaml';
import type { Digest } from '@meshmirror/shared';
import { LayoutBuilder, randomLayer, tarLayer, type BuiltImage, type Layer, type TarEntry } from './oci-image-builder.ts';
import { pushLayout, type PushedImage } from './push-layout.ts';

export const EXAMPLE_CONFIG_PATH = '/work/shared/examples/imageset-config.yaml';

const KiB = 1024;
export const COMPONENT_REPO = 'openshift-release-dev/ocp-v4.0-art-dev';
export const RELEASE_REPO = 'openshift-release-dev/ocp-release';
export const CATALOG_NAME = 'redhat/redhat-operator-index:v4.19';
export const UBI_NAME = 'ubi9/ubi:latest';
export const GRAPH_BASE_NAME = 'ubi9/ubi-micro:latest';
export const CATALOG_CONFIGS_LABEL = 'operators.operatorframework.io.index.configs.v1';
export const CHANNELS_METADATA = 'io.openshift.upgrades.graph.release.channels';
export const MANIFESTREF_METADATA = 'io.openshift.upgrades.graph.release.manifestref';

/** Every release in the fixture, oldest first. */
export const RELEASE_VERSIONS = ['4.18.20', '4.19.0', '4.19.1', '4.19.2', '4.19.3', '4.19.5', '4.19.8', '4.19.10', '4.19.11'] as const;

/** Channel → member versions (what a node's `io.openshift.upgrades.graph.release.channels` lists). */
export const DEFAULT_CHANNELS: Readonly<Record<string, readonly string[]>> = {
  'candidate-4.18': ['4.18.20'],
  'fast-4.18': ['4.18.20'],
  'stable-4.18': ['4.18.20'],
  'candidate-4.19': ['4.19.0', '4.19.1', '4.19.2', '4.19.3', '4.19.5', '4.19.8', '4.19.10', '4.19.11'],
  'fast-4.19': ['4.19.0', '4.19.1', '4.19.2', '4.19.3', '4.19.5', '4.19.8', '4.19.10', '4.19.11'],
  'stable-4.19': ['4.19.0', '4.19.2', '4.19.3', '4.19.5', '4.19.8', '4.19.10'],
};

/**
 * Unconditional update edges `[from, to]`. In stable-4.19 the only shortest path from 4.19.2 to
 * 4.19.10 is 4.19.2 → 4.19.8 → 4.19.10, while the range holds 4.19.2, .3, .5, .8 and .10.
 */
export const EDGES: ReadonlyArray<readonly [string, string]> = [
  ['4.18.20', '4.19.3'],
  ['4.19.0', '4.19.1'],
  ['4.19.0', '4.19.2'],
  ['4.19.0', '4.19.3'],
  ['4.19.1', '4.19.2'],
  ['4.19.1', '4.19.3'],
  ['4.19.2', '4.19.3'],
  ['4.19.2', '4.19.5'],
  ['4.19.2', '4.19.8'],
  ['4.19.3', '4.19.5'],
  ['4.19.3', '4.19.8'],
  ['4.19.5', '4.19.8'],
  ['4.19.8', '4.19.10'],
  ['4.19.8', '4.19.11'],
  ['4.19.10', '4.19.11'],
];

export interface ConditionalEdgeGroup {
  edges: Array<{ from: string; to: string }>;
  risks: Array<{ url: string; name: string; message: string; matchingRules: Array<Record<string, unknown>> }>;
}

/** Conditional edges (none of them shortens 4.19.2 → 4.19.10). */
export const CONDITIONAL_EDGES: readonly ConditionalEdgeGroup[] = [
  {
    edges: [
      { from: '4.19.0', to: '4.19.5' },
      { from: '4.19.1', to: '4.19.5' },
    ],
    risks: [
      {
        url: 'https://issues.redhat.com/browse/OCPBUGS-00001',
        name: 'OVNNodeRestartDrain',
        message: 'Nodes using OVN-Kubernetes may drain slowly during the update.',
        matchingRules: [{ type: 'PromQL', promql: { promql: 'group(cluster_infrastructure_provider{_id="",type="Azure"})' } }],
      },
    ],
  },
  {
    edges: [
      { from: '4.19.0', to: '4.19.8' },
      { from: '4.19.5', to: '4.19.11' },
    ],
    risks: [
      {
        url: 'https://issues.redhat.com/browse/OCPBUGS-00002',
        name: 'AzureDiskDetach',
        message: 'Clusters may fail to detach disks during the update.',
        matchingRules: [{ type: 'Always' }],
      },
    ],
  },
];

/** Release component → the versions where its image changes (it stays identical in between). */
const COMPONENTS: ReadonlyArray<{ name: string; changes: 'every' | string[]; size: number; oseBase: boolean; repo: string }> = [
  { name: 'cluster-version-operator', changes: 'every', size: 24 * KiB, oseBase: true, repo: 'cluster-version-operator' },
  { name: 'etcd', changes: ['4.18.20', '4.19.0', '4.19.3', '4.19.8'], size: 48 * KiB, oseBase: false, repo: 'etcd' },
  { name: 'cli', changes: ['4.18.20', '4.19.0', '4.19.2', '4.19.5', '4.19.10'], size: 32 * KiB, oseBase: true, repo: 'oc' },
  { name: 'installer', changes: ['4.18.20', '4.19.0', '4.19.3', '4.19.8', '4.19.11'], size: 40 * KiB, oseBase: true, repo: 'installer' },
  { name: 'machine-os-content', changes: ['4.18.20', '4.19.0', '4.19.5', '4.19.11'], size: 64 * KiB, oseBase: false, repo: 'os' },
  { name: 'console', changes: ['4.18.20', '4.19.0', '4.19.2', '4.19.8'], size: 16 * KiB, oseBase: true, repo: 'console' },
  { name: 'must-gather', changes: ['4.18.20', '4.19.0'], size: 16 * KiB, oseBase: true, repo: 'must-gather' },
  { name: 'haproxy-router', changes: ['4.18.20', '4.19.0'], size: 24 * KiB, oseBase: false, repo: 'router' },
];

/** The payload whose `release-manifests` sit in a middle layer, under a later layer. */
export const MIDDLE_LAYER_RELEASE = '4.19.5';
/** The release whose manifests layer is zstd-compressed. */
export const ZSTD_RELEASE = '4.19.8';

// ---------------------------------------------------------------------------------------------
// Public types

export interface ReleaseComponent {
  /** The image-references tag name, e.g. `etcd`. */
  name: string;
  digest: Digest;
  /** `<host>/openshift-release-dev/ocp-v4.0-art-dev@sha256:…`, as image-references names it. */
  ref: string;
  /** The throwaway tag it was pushed under, e.g. `c-etcd-2`. */
  tag: string;
}

export interface FixtureRelease {
  version: string;
  payloadDigest: Digest;
  /** `<host>/openshift-release-dev/ocp-release@sha256:…` (the graph node's `payload`). */
  payloadRef: string;
  /** `<host>/openshift-release-dev/ocp-release:<version>-x86_64`. */
  payloadTagRef: string;
  components: ReleaseComponent[];
  /** Channels the release belongs to, sorted. */
  channels: string[];
  /** release-metadata `previous`: versions with an edge into this one, oldest first. */
  previous: string[];
  /** release-metadata `metadata.url` and the graph node's `url`. */
  url: string;
  /** Index (0 = bottom) of the payload layer holding `release-manifests/image-references`. */
  manifestsLayer: number;
  /**
   * The KubeVirt container disk the payload's `0000_50_installer_coreos-bootimages.yaml` names for
   * x86_64 (`architectures.x86_64.images.kubevirt["digest-ref"]`); not in image-references.
   */
  kubeVirt: { digest: Digest; ref: string };
  layerCount: number;
}

export interface CatalogBundle {
  /** e.g. `web-terminal.v1.12.1`. */
  name: string;
  version: string;
  /** `<host>/<ns>/<name>-bundle@sha256:…`. */
  image: string;
  /** Every relatedImages `image` of the bundle (the bundle image first), by digest. */
  relatedImages: string[];
  /** Channels whose entries list this bundle. */
  channels: string[];
}

export interface CatalogPackage {
  name: string;
  defaultChannel: string;
  /** Channel → entry names, oldest first; the channel head (replaced or skipped by no one) last. */
  channels: Map<string, string[]>;
  /** Oldest first. */
  bundles: CatalogBundle[];
  /** `catalog.json` (JSON stream) or `catalog.yaml` (multi-document YAML). */
  file: string;
}

export interface FixtureCatalog {
  /** `<host>/redhat/redhat-operator-index:v4.19`. */
  ref: string;
  digest: Digest;
  packages: Map<string, CatalogPackage>;
  /** The bundle that a lower layer adds in `configs/web-terminal/stale.json` and the top layer whites out; its image was never pushed. */
  staleBundle: { name: string; image: string };
}

export interface FixtureGraph {
  channels: Map<string, string[]>;
  edges: Array<[string, string]>;
  conditionalEdges: ConditionalEdgeGroup[];
}

export interface OpenShiftContentOptions {
  /** The OCI layout folder to write (created when missing). */
  dir: string;
  /** Host (`host:port`) written into image-references, graph payloads and catalog image references. */
  componentHost: string;
  /** Channel → versions (each one of RELEASE_VERSIONS). Default DEFAULT_CHANNELS. */
  channels?: Record<string, readonly string[]>;
}

export interface OpenShiftContent {
  layoutDir: string;
  componentHost: string;
  releases: FixtureRelease[];
  catalog: FixtureCatalog;
  graph: FixtureGraph;
  /** `<host>/ubi9/ubi:latest` (an OCI index: amd64 and arm64). */
  ubi: string;
  ubiDigest: Digest;
  /** `<host>/ubi9/ubi-micro:latest`. */
  graphBaseImage: string;
  graphBaseDigest: Digest;
  /** The Cincinnati graph JSON for a channel and architecture, as the server answers it. */
  graphFor(channel: string, arch: string): CincinnatiGraph;
  /** The graph-data tarball (gzip tar) the server answers `/graph-data` with. */
  graphData: Uint8Array;
  /** Every image written, named (`repository:tag`) or not, by manifest digest. */
  imagesByDigest: Map<Digest, BuiltImage>;
  /** Named images by `repository:tag`. */
  imagesByName: ReadonlyMap<string, BuiltImage>;
  /** Total bytes of the distinct blobs in the layout (layers, configs, manifests). */
  layoutBytes: number;
}

export interface CincinnatiNode {
  version: string;
  payload: string;
  metadata: Record<string, string>;
}

export interface CincinnatiGraph {
  version: 1;
  nodes: CincinnatiNode[];
  edges: Array<[number, number]>;
  conditionalEdges: ConditionalEdgeGroup[];
}

export interface StartOpenShiftFixtureOptions {
  /** `http://127.0.0.1:PORT` of the registry to push into (the caller starts and stops it). */
  registryUrl: string;
  /** Work folder; the OCI layout goes to `<dir>/openshift-layout`. */
  dir: string;
  /** Host written into the content. Default: the registry's `host:port`. */
  componentHost?: string;
  /** Channel → versions. Default DEFAULT_CHANNELS. */
  channels?: Record<string, readonly string[]>;
}

/**
 * How the fixture's signature store signs a release: `good` (the fixture's key, this payload's
 * digest), `other-key` (a key nobody trusts), `other-digest` (the right key, another payload's digest).
 */
export type FixtureSignature = 'good' | 'other-key' | 'other-digest';

export interface OpenShiftFixture extends OpenShiftContent {
  /** `host:port` of the registry pushed into. */
  registryHost: string;
  /** `http://127.0.0.1:P/signatures/`: the release signature store (`OCP_SIGNATURE_URL`). */
  signatureUrl: string;
  /** The environment that points meshmirror at the fixture's signature store and trusts its key. */
  signatureEnv: Record<string, string>;
  /** What the store serves for a release (by version) from now on; default one `good` signature each. */
  setSignatures(version: string, kinds: FixtureSignature[]): void;
  /** The bytes the store serves for a payload digest, in order. */
  signaturesServed(digest: Digest): Promise<Uint8Array[]>;
  pushed: PushedImage[];
  /** `http://127.0.0.1:P/graph` (Cincinnati: `?channel=…&arch=…`, `Accept: application/json`). */
  graphUrl: string;
  /** `http://127.0.0.1:P/graph-data` (gzip tar). */
  graphDataUrl: string;
  /** Requests the graph endpoint has received (including rejected ones). */
  graphRequests(): number;
  graphDataRequests(): number;
  /**
   * Writes the user's example ImageSetConfiguration with `registry.redhat.io` replaced by `host`
   * (default `componentHost`) and nothing else changed; returns `path`.
   */
  writeExampleConfig(path: string, host?: string): Promise<string>;
  /** Sum of the distinct config and layer blob sizes of the images (tag or digest references, any host). */
  uniqueBytesOf(refs: string[]): Promise<number>;
  /** Stops the HTTP server (the registry belongs to the caller). */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Building

export async function buildOpenShiftContent(options: OpenShiftContentOptions): Promise<OpenShiftContent> {
  const host = options.componentHost;
  const channels = channelMap(options.channels ?? DEFAULT_CHANNELS);
  await mkdir(options.dir, { recursive: true });
  const builder = new LayoutBuilder(options.dir);
  const imagesByDigest = new Map<Digest, BuiltImage>();
  const add = async (name: string | undefined, layers: Layer[], config?: Parameters<LayoutBuilder['addImage']>[2]): Promise<BuiltImage> => {
    const image = await builder.addImage(name, layers, config);
    imagesByDigest.set(image.digest, image);
    return image;
  };

  const releases = await buildReleases(host, channels, add);
  const catalog = await buildCatalog(host, add);

  const ubiIndex = await builder.addIndex(
    UBI_NAME,
    await Promise.all(
      ['amd64', 'arm64'].map(async (architecture) => ({
        architecture,
        layers: [await randomLayer(`ubi9-${architecture}`, 64 * KiB), await osReleaseLayer('Red Hat Enterprise Linux 9.6 (Plow)', true)],
        labels: { name: 'ubi9', version: '9.6', architecture, 'com.redhat.component': 'ubi9-container' },
      })),
    ),
  );
  imagesByDigest.set(ubiIndex.digest, ubiIndex);
  for (const child of ubiIndex.children) imagesByDigest.set(child.digest, child);
  const micro = await add(GRAPH_BASE_NAME, [await randomLayer('ubi9-micro', 24 * KiB), await osReleaseLayer('Red Hat Enterprise Linux 9.6 (Plow)', false)], {
    labels: { name: 'ubi9/ubi-micro', version: '9.6', 'com.redhat.component': 'ubi9-micro-container' },
  });

  await builder.finish();

  const graph: FixtureGraph = {
    channels,
    edges: EDGES.map(([from, to]) => [from, to] as [string, string]),
    conditionalEdges: structuredClone(CONDITIONAL_EDGES) as ConditionalEdgeGroup[],
  };
  const graphData = await graphDataTarball(channels);
  return {
    layoutDir: options.dir,
    componentHost: host,
    releases,
    catalog,
    graph,
    ubi: `${host}/${UBI_NAME}`,
    ubiDigest: ubiIndex.digest,
    graphBaseImage: `${host}/${GRAPH_BASE_NAME}`,
    graphBaseDigest: micro.digest,
    graphFor: (channel, arch) => cincinnatiGraph(releases, graph, channel, arch),
    graphData,
    imagesByDigest,
    imagesByName: builder.images,
    layoutBytes: builder.bytesWritten,
  };
}

type AddImage = (name: string | undefined, layers: Layer[], config?: Parameters<LayoutBuilder['addImage']>[2]) => Promise<BuiltImage>;

function channelMap(channels: Record<string, readonly string[]>): Map<string, string[]> {
  const known = new Set<string>(RELEASE_VERSIONS);
  const map = new Map<string, string[]>();
  for (const [name, versions] of Object.entries(channels)) {
    for (const version of versions) if (!known.has(version)) throw new Error(`channel ${name}: ${version} is not a fixture release`);
    map.set(name, [...versions].sort(compareVersions));
  }
  return map;
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map(Number);
  const pb = b.split(/[.-]/).map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function hex(seed: string, length: number): string {
  return createHash('sha256').update(seed).digest('hex').slice(0, length);
}

function errataUrl(version: string): string {
  const index = RELEASE_VERSIONS.indexOf(version as (typeof RELEASE_VERSIONS)[number]);
  return `https://access.redhat.com/errata/RHBA-2025:${(11200 + index * 137).toString()}`;
}

async function osReleaseLayer(pretty: string, withRepos: boolean): Promise<Layer> {
  const entries: TarEntry[] = [
    { path: 'etc/', type: 'directory' },
    { path: 'etc/os-release', content: `NAME="Red Hat Enterprise Linux"\nVERSION="9.6 (Plow)"\nID="rhel"\nPRETTY_NAME="${pretty}"\n` },
    { path: 'etc/redhat-release', type: 'symlink', linkname: 'os-release' },
  ];
  if (withRepos) {
    entries.push({ path: 'etc/yum.repos.d/', type: 'directory' });
    entries.push({ path: 'etc/yum.repos.d/ubi.repo', content: '[ubi-9-baseos-rpms]\nname = Red Hat Universal Base Image 9 (RPMs) - BaseOS\nenabled = 1\n' });
  }
  return tarLayer(entries);
}

// --- releases ---------------------------------------------------------------------------------

async function buildReleases(host: string, channels: Map<string, string[]>, add: AddImage): Promise<FixtureRelease[]> {
  const rhelBase = await randomLayer('rhel9-base', 64 * KiB);
  const oseBase = await randomLayer('ose-base-4.19', 32 * KiB);

  // Each component generation is built once and reused by every release until the next change.
  const generations = new Map<string, { digest: Digest; tag: string; layers: Layer[]; commit: string }>();
  const componentFor = async (component: (typeof COMPONENTS)[number], version: string) => {
    const changes = component.changes === 'every' ? [...RELEASE_VERSIONS] : component.changes;
    const since = changes.filter((v) => compareVersions(v, version) <= 0).at(-1) ?? changes[0]!;
    const n = changes.indexOf(since) + 1;
    const key = `${component.name}@${since}`;
    let generation = generations.get(key);
    if (generation === undefined) {
      const top = await randomLayer(`component ${key}`, component.size);
      const layers = component.oseBase ? [rhelBase, oseBase, top] : [rhelBase, top];
      const commit = hex(`commit ${key}`, 40);
      const tag = `c-${component.name}-${n}`;
      const image = await add(`${COMPONENT_REPO}:${tag}`, layers, {
        labels: {
          'io.openshift.build.commit.id': commit,
          'io.openshift.build.source-location': `https://github.com/openshift/${component.repo}`,
          'io.openshift.build.name': component.name,
        },
      });
      generation = { digest: image.digest, tag, layers, commit };
      generations.set(key, generation);
    }
    return generation;
  };

  const releases: FixtureRelease[] = [];
  for (const version of RELEASE_VERSIONS) {
    const components: ReleaseComponent[] = [];
    const tags: unknown[] = [];
    let cvoLayers: Layer[] = [];
    for (const component of COMPONENTS) {
      const generation = await componentFor(component, version);
      if (component.name === 'cluster-version-operator') cvoLayers = generation.layers;
      const ref = `${host}/${COMPONENT_REPO}@${generation.digest}`;
      components.push({ name: component.name, digest: generation.digest, ref, tag: generation.tag });
      tags.push({
        name: component.name,
        annotations: {
          'io.openshift.build.commit.id': generation.commit,
          'io.openshift.build.commit.ref': '',
          'io.openshift.build.source-location': `https://github.com/openshift/${component.repo}`,
        },
        from: { kind: 'DockerImage', name: ref },
        generation: null,
        importPolicy: {},
        referencePolicy: { type: '' },
      });
    }
    const previous = EDGES.filter(([, to]) => to === version)
      .map(([from]) => from)
      .sort(compareVersions);
    const url = errataUrl(version);
    const imageReferences = {
      kind: 'ImageStream',
      apiVersion: 'image.openshift.io/v1',
      metadata: {
        name: version,
        creationTimestamp: null,
        annotations: { 'release.openshift.io/from-image-stream': `ocp/4.19-art-latest-${version}` },
      },
      spec: { lookupPolicy: { local: false }, tags },
      status: { dockerImageRepository: '' },
    };
    const releaseMetadata = { kind: 'cincinnati-metadata-v0', version, previous, metadata: { url } };
    // The installer's boot images (the real file's shape): the CoreOS stream names the KubeVirt container disk.
    const kubeVirtImage = await add(`${COMPONENT_REPO}:c-kubevirt-${version}`, [await randomLayer(`kubevirt ${version}`, 16 * KiB)]);
    const kubeVirtRef = `${host}/${COMPONENT_REPO}@${kubeVirtImage.digest}`;
    const coreosStream = {
      stream: 'rhcos-4.19',
      metadata: { 'last-modified': '2026-01-01T00:00:00Z', generator: 'fixture' },
      architectures: {
        x86_64: {
          artifacts: {},
          images: { kubevirt: { release: `419.96.${version}`, image: 'quay.io/openshift-release-dev/ocp-v4.0-art-dev', 'digest-ref': kubeVirtRef } },
        },
        aarch64: { artifacts: {}, images: {} },
      },
    };
    // One payload's manifests layer is zstd-compressed (`tar+zstd`), as newer builds write them.
    const manifests = await tarLayer(
      [
        { path: 'release-manifests/', type: 'directory' },
        {
          path: 'release-manifests/0000_00_cluster-version-operator_00_namespace.yaml',
          content: yamlStringify({
            apiVersion: 'v1',
            kind: 'Namespace',
            metadata: { name: 'openshift-cluster-version', annotations: { 'include.release.openshift.io/self-managed-high-availability': 'true' } },
          }),
        },
        { path: 'release-manifests/image-references', content: `${JSON.stringify(imageReferences, null, 2)}\n` },
        {
          path: 'release-manifests/0000_03_config-operator_01_proxies.crd.yaml',
          content: yamlStringify({
            apiVersion: 'apiextensions.k8s.io/v1',
            kind: 'CustomResourceDefinition',
            metadata: { name: 'proxies.config.openshift.io' },
            spec: { group: 'config.openshift.io', names: { kind: 'Proxy', plural: 'proxies' }, scope: 'Cluster' },
          }),
        },
        { path: 'release-manifests/release-metadata', content: `${JSON.stringify(releaseMetadata, null, 2)}\n` },
        {
          path: 'release-manifests/0000_50_installer_coreos-bootimages.yaml',
          content: yamlStringify({
            apiVersion: 'v1',
            kind: 'ConfigMap',
            metadata: { name: 'coreos-bootimages', namespace: 'openshift-machine-config-operator' },
            data: { releaseVersion: version, stream: JSON.stringify(coreosStream) },
          }),
        },
      ],
      { zstd: version === ZSTD_RELEASE },
    );
    const layers = [...cvoLayers, manifests];
    const manifestsLayer = layers.length - 1;
    if (version === MIDDLE_LAYER_RELEASE) {
      layers.push(
        await tarLayer([
          { path: 'etc/', type: 'directory' },
          { path: 'etc/cvo-hotfix.txt', content: `hotfix for ${version}\n` },
          { path: 'release-manifests/', type: 'directory' },
          {
            path: 'release-manifests/0000_99_hotfix_configmap.yaml',
            content: yamlStringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'hotfix', namespace: 'openshift-config' } }),
          },
        ]),
      );
    }
    const payload = await add(`${RELEASE_REPO}:${version}-x86_64`, layers, {
      labels: { 'io.openshift.release': version },
      entrypoint: ['/usr/bin/cluster-version-operator'],
    });
    const memberOf = [...channels.entries()].filter(([, versions]) => versions.includes(version)).map(([name]) => name);
    releases.push({
      version,
      payloadDigest: payload.digest,
      payloadRef: `${host}/${RELEASE_REPO}@${payload.digest}`,
      payloadTagRef: `${host}/${RELEASE_REPO}:${version}-x86_64`,
      components,
      channels: memberOf.sort(),
      previous,
      url,
      manifestsLayer,
      layerCount: layers.length,
      kubeVirt: { digest: kubeVirtImage.digest, ref: kubeVirtRef },
    });
  }
  return releases;
}

// --- update graph -----------------------------------------------------------------------------

function cincinnatiGraph(releases: FixtureRelease[], graph: FixtureGraph, channel: string, arch: string): CincinnatiGraph {
  const members = arch === 'amd64' ? new Set(graph.channels.get(channel) ?? []) : new Set<string>();
  // Cincinnati returns nodes in no particular order: a fixed order by hash, not by version.
  const nodes = releases
    .filter((release) => members.has(release.version))
    .sort((a, b) => hex(`node ${a.version}`, 16).localeCompare(hex(`node ${b.version}`, 16)))
    .map((release) => ({
      version: release.version,
      payload: release.payloadRef,
      metadata: {
        [CHANNELS_METADATA]: release.channels.join(','),
        [MANIFESTREF_METADATA]: release.payloadDigest,
        url: release.url,
      },
    }));
  const indexOf = new Map(nodes.map((node, index) => [node.version, index]));
  const edges: Array<[number, number]> = [];
  for (const [from, to] of graph.edges) {
    const a = indexOf.get(from);
    const b = indexOf.get(to);
    if (a !== undefined && b !== undefined) edges.push([a, b]);
  }
  const conditionalEdges = graph.conditionalEdges
    .map((group) => ({ ...group, edges: group.edges.filter((edge) => indexOf.has(edge.from) && indexOf.has(edge.to)) }))
    .filter((group) => group.edges.length > 0);
  return { version: 1, nodes, edges, conditionalEdges };
}

async function graphDataTarball(channels: Map<string, string[]>): Promise<Uint8Array> {
  const entries: TarEntry[] = [{ path: 'channels/', type: 'directory' }];
  for (const [name, versions] of [...channels.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const doc: Record<string, unknown> = { name, versions };
    const [kind, minor] = name.split('-') as [string, string];
    if (kind === 'fast') doc['feeder'] = { delay: 'PT0H', errata: 'public', filter: `${minor.replace('.', '\\.')}\\.[0-9]+(.*)$`, name: `candidate-${minor}` };
    if (kind === 'stable') doc['feeder'] = { delay: 'PT48H', filter: `${minor.replace('.', '\\.')}\\.[0-9]+(.*)$`, name: `fast-${minor}` };
    entries.push({ path: `channels/${name}.yaml`, content: yamlStringify(doc) });
  }
  entries.push({ path: 'blocked-edges/', type: 'directory' });
  entries.push({
    path: 'blocked-edges/4.19.4.yaml',
    content: yamlStringify({
      to: '4.19.4',
      from: '.*',
      url: 'https://issues.redhat.com/browse/OCPBUGS-00003',
      name: 'PulledRelease',
      message: '4.19.4 was pulled; update to a later release.',
      matchingRules: [{ type: 'Always' }],
    }),
  });
  entries.push({
    path: 'blocked-edges/4.19.5-OVNNodeRestartDrain.yaml',
    content: yamlStringify({
      to: '4.19.5',
      from: '4\\.19\\.[01]',
      url: 'https://issues.redhat.com/browse/OCPBUGS-00001',
      name: 'OVNNodeRestartDrain',
      message: 'Nodes using OVN-Kubernetes may drain slowly during the update.',
      matchingRules: [{ type: 'PromQL', promql: { promql: 'group(cluster_infrastructure_provider{_id="",type="Azure"})' } }],
    }),
  });
  entries.push({ path: 'build-suggestions/', type: 'directory' });
  entries.push({
    path: 'build-suggestions/4.19.yaml',
    content: yamlStringify({ default: { minor_min: '4.18.20', minor_max: '4.18.9999', minor_block_list: [], z_min: '4.19.0', z_max: '4.19.9999', z_block_list: [] } }),
  });
  entries.push({ path: 'version', content: '1.0.0\n' });
  return (await tarLayer(entries)).bytes;
}

// --- operator catalog -------------------------------------------------------------------------

interface ChannelEntryDef {
  version: string;
  replaces?: string;
  skips?: string[];
  skipRange?: string;
}

interface PackageDef {
  name: string;
  defaultChannel: string;
  format: 'json' | 'yaml';
  ns: string;
  bundleRepo: string;
  operatorRepo: string;
  gvk: { group: string; kind: string; version: string };
  channels: Array<{ name: string; entries: ChannelEntryDef[] }>;
  /** Related images besides the bundle and the operator: `repo:tag` (shared tags give shared images). */
  extras: (version: string) => Array<{ name: string; repoTag: string }>;
}

const KUBE_RBAC_PROXY = 'openshift4/ose-kube-rbac-proxy-rhel9:v4.19';

const PACKAGES: PackageDef[] = [
  {
    name: 'web-terminal',
    defaultChannel: 'fast',
    format: 'json',
    ns: 'web-terminal',
    bundleRepo: 'web-terminal/web-terminal-operator-bundle',
    operatorRepo: 'web-terminal/web-terminal-rhel9-operator',
    gvk: { group: 'web-terminal.redhat.com', kind: 'WebTerminal', version: 'v1alpha1' },
    channels: [
      {
        name: 'fast',
        entries: [{ version: '1.10.0' }, { version: '1.11.0', replaces: '1.10.0' }, { version: '1.12.1', replaces: '1.11.0', skipRange: '>=1.10.0 <1.12.1' }],
      },
    ],
    extras: (version) => [{ name: 'web_terminal_tooling', repoTag: `web-terminal/web-terminal-tooling-rhel9:${version === '1.10.0' ? '1.10' : '1.11'}` }],
  },
  {
    name: 'cluster-logging',
    defaultChannel: 'stable-6.2',
    format: 'json',
    ns: 'openshift-logging',
    bundleRepo: 'openshift-logging/cluster-logging-operator-bundle',
    operatorRepo: 'openshift-logging/cluster-logging-rhel9-operator',
    gvk: { group: 'observability.openshift.io', kind: 'ClusterLogForwarder', version: 'v1' },
    channels: [
      {
        name: 'stable-6.1',
        entries: [{ version: '6.1.0' }, { version: '6.1.1', replaces: '6.1.0' }, { version: '6.1.2', replaces: '6.1.1' }, { version: '6.1.3', replaces: '6.1.2' }],
      },
      {
        name: 'stable-6.2',
        entries: [
          { version: '6.2.0', skipRange: '>=6.1.0 <6.2.0' },
          { version: '6.2.1', replaces: '6.2.0' },
          { version: '6.2.2', replaces: '6.2.1' },
          // 6.2.2 was pulled: 6.2.3 replaces 6.2.1 and skips 6.2.2, so 6.2.2 is no head.
          { version: '6.2.3', replaces: '6.2.1', skips: ['6.2.2'] },
        ],
      },
    ],
    extras: (version) => [
      { name: 'vector', repoTag: `openshift-logging/vector-rhel9:v${version.split('.').slice(0, 2).join('.')}` },
      { name: 'kube-rbac-proxy', repoTag: KUBE_RBAC_PROXY },
    ],
  },
  {
    name: 'compliance-operator',
    defaultChannel: 'stable',
    format: 'yaml',
    ns: 'compliance',
    bundleRepo: 'compliance/openshift-compliance-operator-bundle',
    operatorRepo: 'compliance/openshift-compliance-rhel8-operator',
    gvk: { group: 'compliance.openshift.io', kind: 'ComplianceSuite', version: 'v1alpha1' },
    channels: [{ name: 'stable', entries: [{ version: '1.6.0' }, { version: '1.6.1', replaces: '1.6.0' }, { version: '1.7.0', replaces: '1.6.1' }] }],
    extras: (version) => [
      { name: 'content', repoTag: `compliance/openshift-compliance-content-rhel8:${version.startsWith('1.6.') ? '1.6' : '1.7'}` },
      { name: '', repoTag: KUBE_RBAC_PROXY },
    ],
  },
  {
    name: 'unselected-operator',
    defaultChannel: 'alpha',
    format: 'json',
    ns: 'example',
    bundleRepo: 'example/unselected-operator-bundle',
    operatorRepo: 'example/unselected-operator',
    gvk: { group: 'example.com', kind: 'Unselected', version: 'v1' },
    channels: [{ name: 'alpha', entries: [{ version: '0.1.0' }, { version: '0.2.0', replaces: '0.1.0' }] }],
    extras: () => [],
  },
  {
    name: 'another-operator',
    defaultChannel: 'stable',
    format: 'json',
    ns: 'example',
    bundleRepo: 'example/another-operator-bundle',
    operatorRepo: 'example/another-operator',
    gvk: { group: 'example.com', kind: 'Another', version: 'v1beta1' },
    channels: [{ name: 'stable', entries: [{ version: '2.0.0' }, { version: '2.1.0', replaces: '2.0.0' }] }],
    extras: () => [{ name: 'kube-rbac-proxy', repoTag: KUBE_RBAC_PROXY }],
  },
];

const ICON_SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8" fill="#e00"/></svg>';

async function buildCatalog(host: string, add: AddImage): Promise<FixtureCatalog> {
  const ubiMinimal = await randomLayer('ubi9-minimal-base', 32 * KiB);
  const plainImages = new Map<string, Digest>();
  const plainImage = async (repoTag: string): Promise<string> => {
    let digest = plainImages.get(repoTag);
    if (digest === undefined) {
      const image = await add(repoTag, [ubiMinimal, await randomLayer(`operand ${repoTag}`, 16 * KiB)], { labels: { name: repoTag.split(':')[0]! } });
      digest = image.digest;
      plainImages.set(repoTag, digest);
    }
    return `${host}/${repoTag.split(':')[0]!}@${digest}`;
  };

  const packages = new Map<string, CatalogPackage>();
  const files = new Map<string, string>();
  for (const def of PACKAGES) {
    const bundleName = (version: string): string => `${def.name}.v${version}`;
    const versions = [...new Set(def.channels.flatMap((channel) => channel.entries.map((entry) => entry.version)))].sort(compareVersions);
    const objects: Array<Record<string, unknown>> = [];
    const pkgObject: Record<string, unknown> = { schema: 'olm.package', name: def.name, defaultChannel: def.defaultChannel };
    if (def.name === 'web-terminal') pkgObject['icon'] = { base64data: Buffer.from(ICON_SVG).toString('base64'), mediatype: 'image/svg+xml' };
    pkgObject['description'] = `${def.name} (meshmirror test fixture)`;
    objects.push(pkgObject);
    const channels = new Map<string, string[]>();
    for (const channel of def.channels) {
      objects.push({
        schema: 'olm.channel',
        name: channel.name,
        package: def.name,
        entries: channel.entries.map((entry) => {
          const out: Record<string, unknown> = { name: bundleName(entry.version) };
          if (entry.replaces !== undefined) out['replaces'] = bundleName(entry.replaces);
          if (entry.skips !== undefined) out['skips'] = entry.skips.map(bundleName);
          if (entry.skipRange !== undefined) out['skipRange'] = entry.skipRange;
          return out;
        }),
      });
      channels.set(
        channel.name,
        channel.entries.map((entry) => bundleName(entry.version)),
      );
    }
    const bundles: CatalogBundle[] = [];
    for (const version of versions) {
      const name = bundleName(version);
      const inChannels = def.channels.filter((channel) => channel.entries.some((entry) => entry.version === version)).map((channel) => channel.name);
      const bundleImage = await add(`${def.bundleRepo}:v${version}`, [await bundleLayer(def, version, inChannels)], {
        labels: {
          'operators.operatorframework.io.bundle.mediatype.v1': 'registry+v1',
          'operators.operatorframework.io.bundle.manifests.v1': 'manifests/',
          'operators.operatorframework.io.bundle.metadata.v1': 'metadata/',
          'operators.operatorframework.io.bundle.package.v1': def.name,
          'operators.operatorframework.io.bundle.channels.v1': inChannels.join(','),
          'operators.operatorframework.io.bundle.channel.default.v1': def.defaultChannel,
        },
      });
      const image = `${host}/${def.bundleRepo}@${bundleImage.digest}`;
      const related: Array<{ name: string; image: string }> = [
        { name: '', image },
        { name: `${def.name.replace(/-operator$/, '')}-operator`, image: await plainImage(`${def.operatorRepo}:v${version}`) },
      ];
      for (const extra of def.extras(version)) related.push({ name: extra.name, image: await plainImage(extra.repoTag) });
      objects.push({
        schema: 'olm.bundle',
        name,
        package: def.name,
        image,
        properties: [
          { type: 'olm.gvk', value: def.gvk },
          { type: 'olm.package', value: { packageName: def.name, version } },
        ],
        relatedImages: related,
      });
      bundles.push({ name, version, image, relatedImages: related.map((r) => r.image), channels: inChannels });
    }
    const file = def.format === 'json' ? 'catalog.json' : 'catalog.yaml';
    files.set(`configs/${def.name}/${file}`, def.format === 'json' ? jsonStream(objects) : yamlStream(objects));
    packages.set(def.name, { name: def.name, defaultChannel: def.defaultChannel, channels, bundles, file });
  }

  // A bundle (and channel) that only a lower layer has; the top layer's whiteout removes it.
  const staleBundle = { name: 'web-terminal.v1.9.0', image: `${host}/web-terminal/web-terminal-operator-bundle@sha256:${hex('never pushed', 64)}` };
  const stale = jsonStream([
    { schema: 'olm.channel', name: 'candidate', package: 'web-terminal', entries: [{ name: staleBundle.name }] },
    {
      schema: 'olm.bundle',
      name: staleBundle.name,
      package: 'web-terminal',
      image: staleBundle.image,
      properties: [{ type: 'olm.package', value: { packageName: 'web-terminal', version: '1.9.0' } }],
      relatedImages: [{ name: '', image: staleBundle.image }],
    },
  ]);
  const file = (path: string): TarEntry => ({ path, content: files.get(path)! });
  const layers = [
    await randomLayer('opm-binary', 64 * KiB),
    await tarLayer([
      { path: 'configs/', type: 'directory' },
      { path: 'configs/web-terminal/', type: 'directory' },
      file('configs/web-terminal/catalog.json'),
      { path: 'configs/web-terminal/stale.json', content: stale },
      { path: 'configs/cluster-logging/', type: 'directory' },
      file('configs/cluster-logging/catalog.json'),
      { path: 'configs/unselected-operator/', type: 'directory' },
      file('configs/unselected-operator/catalog.json'),
    ]),
    await tarLayer([
      { path: 'configs/', type: 'directory' },
      { path: 'configs/compliance-operator/', type: 'directory' },
      file('configs/compliance-operator/catalog.yaml'),
      { path: 'configs/another-operator/', type: 'directory' },
      file('configs/another-operator/catalog.json'),
    ]),
    await tarLayer([
      { path: 'configs/', type: 'directory' },
      { path: 'configs/web-terminal/', type: 'directory' },
      { path: 'configs/web-terminal/.wh.stale.json' },
      { path: 'tmp/', type: 'directory', mode: 0o1777 },
      { path: 'tmp/cache/', type: 'directory' },
      { path: 'tmp/cache/digest', content: `${hex('catalog cache', 16)}\n` },
      { path: 'tmp/cache/pogreb.v1/', type: 'directory' },
      { path: 'tmp/cache/pogreb.v1/db/', type: 'directory' },
      { path: 'tmp/cache/pogreb.v1/db/00000.psg', content: hex('pogreb', 64) },
    ]),
  ];
  const catalog = await add(CATALOG_NAME, layers, {
    labels: { [CATALOG_CONFIGS_LABEL]: '/configs' },
    entrypoint: ['/bin/opm'],
    cmd: ['serve', '/configs', '--cache-dir=/tmp/cache'],
  });
  return { ref: `${host}/${CATALOG_NAME}`, digest: catalog.digest, packages, staleBundle };
}

function jsonStream(objects: unknown[]): string {
  return objects.map((object) => `${JSON.stringify(object, null, 4)}\n`).join('');
}

function yamlStream(objects: unknown[]): string {
  return objects.map((object) => `---\n${yamlStringify(object)}`).join('');
}

async function bundleLayer(def: PackageDef, version: string, channels: string[]): Promise<Layer> {
  const csvName = `${def.name}.v${version}`;
  const csv = {
    apiVersion: 'operators.coreos.com/v1alpha1',
    kind: 'ClusterServiceVersion',
    metadata: { name: csvName, namespace: 'placeholder', annotations: { containerImage: `${def.operatorRepo}:v${version}` } },
    spec: {
      version,
      displayName: def.name,
      customresourcedefinitions: { owned: [{ name: `${def.gvk.kind.toLowerCase()}s.${def.gvk.group}`, kind: def.gvk.kind, version: def.gvk.version }] },
      install: { strategy: 'deployment' },
    },
  };
  const annotations = {
    annotations: {
      'operators.operatorframework.io.bundle.mediatype.v1': 'registry+v1',
      'operators.operatorframework.io.bundle.manifests.v1': 'manifests/',
      'operators.operatorframework.io.bundle.metadata.v1': 'metadata/',
      'operators.operatorframework.io.bundle.package.v1': def.name,
      'operators.operatorframework.io.bundle.channels.v1': channels.join(','),
      'operators.operatorframework.io.bundle.channel.default.v1': def.defaultChannel,
    },
  };
  return tarLayer([
    { path: 'manifests/', type: 'directory' },
    { path: `manifests/${def.name}.clusterserviceversion.yaml`, content: yamlStringify(csv) },
    { path: 'metadata/', type: 'directory' },
    { path: 'metadata/annotations.yaml', content: yamlStringify(annotations) },
  ]);
}

// ---------------------------------------------------------------------------------------------
// Pushing and serving

export async function startOpenShiftFixture(options: StartOpenShiftFixtureOptions): Promise<OpenShiftFixture> {
  const registryHost = new URL(options.registryUrl).host;
  const componentHost = options.componentHost ?? registryHost;
  const content = await buildOpenShiftContent({
    dir: join(options.dir, 'openshift-layout'),
    componentHost,
    ...(options.channels === undefined ? {} : { channels: options.channels }),
  });
  const pushed = await pushInParallel(content.layoutDir, options.registryUrl, [...content.imagesByName.keys()]);

  // A throwaway release key (trusted through OCP_SIGNATURE_VERIFICATION_PK) and one nobody trusts.
  const newKey = (name: string) => openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name }], format: 'object' });
  const [releaseKey, strangerKey] = await Promise.all([newKey('meshmirror test release key'), newKey('someone else')]);
  const signatureKeyFile = join(options.dir, 'release-key.asc');
  await writeFile(signatureKeyFile, releaseKey.publicKey.armor());
  const signatureKinds = new Map<string, FixtureSignature[]>();
  const signed = new Map<string, Promise<Uint8Array>>();
  const sign = (digest: Digest, kind: FixtureSignature, n: number): Promise<Uint8Array> => {
    const key = `${digest} ${kind} ${n}`;
    const bytes = signed.get(key);
    if (bytes === undefined) {
      const other = content.releases.find((r) => r.payloadDigest !== digest)?.payloadDigest ?? digest;
      const claim = {
        critical: {
          type: 'atomic container signature',
          image: { 'docker-manifest-digest': kind === 'other-digest' ? other : digest },
          identity: { 'docker-reference': `quay.io/openshift-release-dev/ocp-release@${digest}` },
        },
        optional: { creator: `meshmirror test fixture (signature ${n})`, timestamp: 1_700_000_000 + n },
      };
      const made = openpgp
        .createMessage({ binary: Buffer.from(JSON.stringify(claim)) })
        .then((message) => openpgp.sign({ message, signingKeys: kind === 'other-key' ? strangerKey.privateKey : releaseKey.privateKey, format: 'binary' }))
        .then((out) => new Uint8Array(out));
      signed.set(key, made);
      return made;
    }
    return bytes;
  };
  const kindsOf = (digest: Digest): FixtureSignature[] => {
    const release = content.releases.find((r) => r.payloadDigest === digest);
    return release === undefined ? [] : (signatureKinds.get(release.version) ?? ['good']);
  };
  const answerSignature = async (res: ServerResponse, path: string): Promise<void> => {
    const m = /^\/signatures\/sha256=([0-9a-f]{64})\/signature-(\d+)$/.exec(path);
    const digest: Digest | undefined = m === null ? undefined : `sha256:${m[1]}`;
    const n = m === null ? 0 : Number(m[2]);
    const kind = digest === undefined ? undefined : kindsOf(digest)[n - 1];
    if (digest === undefined || kind === undefined) return send(res, 404, 'text/plain', 'not found\n');
    send(res, 200, 'application/octet-stream', Buffer.from(await sign(digest, kind, n)));
  };

  let graphCount = 0;
  let graphDataCount = 0;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://fixture');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n');
    if (url.pathname.startsWith('/signatures/')) {
      answerSignature(res, url.pathname).catch((err: unknown) => send(res, 500, 'text/plain', `${String(err)}\n`));
      return;
    }
    if (url.pathname === '/graph') {
      graphCount++;
      return answerGraph(req, res, url, content);
    }
    if (url.pathname === '/graph-data') {
      graphDataCount++;
      return send(res, 200, 'application/gzip', content.graphData);
    }
    return send(res, 404, 'text/plain', 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const bySpecifier = (ref: string): BuiltImage => {
    const at = ref.indexOf('@');
    if (at >= 0) {
      const image = content.imagesByDigest.get(ref.slice(at + 1) as Digest);
      if (image === undefined) throw new Error(`no fixture image has digest ${ref.slice(at + 1)}`);
      return image;
    }
    const slash = ref.indexOf('/');
    const first = ref.slice(0, slash);
    const name = slash > 0 && (first.includes('.') || first.includes(':') || first === 'localhost') ? ref.slice(slash + 1) : ref;
    const image = content.imagesByName.get(name.includes(':', name.lastIndexOf('/')) ? name : `${name}:latest`);
    if (image === undefined) throw new Error(`no fixture image named ${name}`);
    return image;
  };

  return {
    ...content,
    registryHost,
    pushed,
    graphUrl: `${base}/graph`,
    graphDataUrl: `${base}/graph-data`,
    signatureUrl: `${base}/signatures/`,
    signatureEnv: { OCP_SIGNATURE_URL: `${base}/signatures/`, OCP_SIGNATURE_VERIFICATION_PK: signatureKeyFile },
    setSignatures(version, kinds) {
      signatureKinds.set(version, kinds);
    },
    signaturesServed(digest) {
      return Promise.all(kindsOf(digest).map((kind, i) => sign(digest, kind, i + 1)));
    },
    graphRequests: () => graphCount,
    graphDataRequests: () => graphDataCount,
    async writeExampleConfig(path, host = componentHost) {
      const original = await readFile(EXAMPLE_CONFIG_PATH, 'utf8');
      await writeFile(path, original.replace(/registry\.redhat\.io(?=\/)/g, host));
      return path;
    },
    async uniqueBytesOf(refs) {
      const blobs = new Map<Digest, number>();
      for (const ref of refs) for (const [digest, size] of bySpecifier(ref).blobs) blobs.set(digest, size);
      let total = 0;
      for (const size of blobs.values()) total += size;
      return total;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Pushes the named images in a few parallel lanes (each lane pushes in order). */
async function pushInParallel(layoutDir: string, registryUrl: string, names: string[]): Promise<PushedImage[]> {
  const lanes = 4;
  const results: PushedImage[][] = [];
  await Promise.all(
    Array.from({ length: lanes }, async (_, lane) => {
      const mine = names.filter((_, index) => index % lanes === lane);
      results[lane] = await pushLayout(layoutDir, registryUrl, { images: mine });
    }),
  );
  const byName = new Map(results.flat().map((image) => [image.name, image]));
  return names.map((name) => byName.get(name)!);
}

function answerGraph(req: IncomingMessage, res: ServerResponse, url: URL, content: OpenShiftContent): void {
  const accept = req.headers.accept ?? '';
  if (!accept.split(',').some((type) => type.trim().split(';')[0] === 'application/json')) {
    return send(res, 406, 'application/json', JSON.stringify({ kind: 'invalid_content_type', value: 'requested content type is not application/json' }));
  }
  const channel = url.searchParams.get('channel');
  if (channel === null || channel === '') {
    return send(res, 400, 'application/json', JSON.stringify({ kind: 'missing_params', value: 'mandatory client parameters missing: channel' }));
  }
  const arch = url.searchParams.get('arch') ?? 'amd64';
  send(res, 200, 'application/json', JSON.stringify(content.graphFor(channel, arch)));
}

function send(res: ServerResponse, status: number, type: string, body: string | Uint8Array): void {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  res.writeHead(status, { 'content-type': type, 'content-length': bytes.length });
  res.end(res.req.method === 'HEAD' ? undefined : bytes);
}
