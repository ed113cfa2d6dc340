import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { clusterResources, writeClusterResources, type ClusterResourceFile, type MirroredImage, type MirrorCategory } from './cluster-resources.ts';

const HEX_A = '0123456789abcdef'.repeat(4);
const HEX_B = 'fedcba9876543210'.repeat(4);
const CREATED_AT = new Date('2024-01-15T10:30:00Z');
const ANNOTATIONS = { createdBy: 'meshmirror', createdAt: 'Mon, 15 Jan 2024 10:30:00 GMT' };

type Entry = { source: string; mirrors: string[] };

/** Every YAML document of a file, as plain objects; fails on a parse error. */
function documents(file: ClusterResourceFile | undefined): Array<Record<string, any>> {
  expect(file).toBeDefined();
  return parseAllDocuments((file as ClusterResourceFile).content).map((doc) => {
    expect(doc.errors).toEqual([]);
    return doc.toJS() as Record<string, any>;
  });
}

function fileNamed(files: ClusterResourceFile[], name: string): ClusterResourceFile | undefined {
  return files.find((f) => f.name === name);
}

function mirrorSet(kind: 'idms' | 'itms', category: MirrorCategory, entries: Entry[]): Record<string, unknown> {
  return {
    apiVersion: 'config.openshift.io/v1',
    kind: kind === 'idms' ? 'ImageDigestMirrorSet' : 'ImageTagMirrorSet',
    metadata: { name: `${kind}-${category}-0`, annotations: ANNOTATIONS },
    spec: { [kind === 'idms' ? 'imageDigestMirrors' : 'imageTagMirrors']: entries },
  };
}

describe('clusterResources: scope of one mirrored image', () => {
  interface Case {
    name: string;
    category: MirrorCategory;
    source: string;
    destination: string;
    /** The file it must land in; the other mirror-set file must not be written. */
    kind: 'idms' | 'itms';
    entry: Entry;
  }

  it.each<Case>([
    {
      name: 'by tag, no prefix: namespace scope',
      category: 'generic',
      source: 'quay.io/ns/app:1.0',
      destination: 'mirror.example.com/ns/app:1.0',
      kind: 'itms',
      entry: { source: 'quay.io/ns', mirrors: ['mirror.example.com/ns'] },
    },
    {
      name: 'by tag, nested prefix: namespace scope keeps the prefix',
      category: 'generic',
      source: 'quay.io/ns/app:1.0',
      destination: 'mirror.example.com/team/ocp/ns/app:1.0',
      kind: 'itms',
      entry: { source: 'quay.io/ns', mirrors: ['mirror.example.com/team/ocp/ns'] },
    },
    {
      name: 'by digest only, nested prefix: IDMS, namespace scope',
      category: 'operator',
      source: `registry.redhat.io/rhacs/collector@sha256:${HEX_A}`,
      destination: `mirror.example.com/team/ocp/rhacs/collector:${HEX_A}`,
      kind: 'idms',
      entry: { source: 'registry.redhat.io/rhacs', mirrors: ['mirror.example.com/team/ocp/rhacs'] },
    },
    {
      name: 'deep source path: namespace is everything but the last component',
      category: 'generic',
      source: 'quay.io/a/b/c:1',
      destination: 'localhost:5000/mirror/a/b/c:1',
      kind: 'itms',
      entry: { source: 'quay.io/a/b', mirrors: ['localhost:5000/mirror/a/b'] },
    },
    {
      name: 'single-component source path, no prefix: registry alone on both sides',
      category: 'generic',
      source: 'registry.k8s.io/pause:3.9',
      destination: 'mirror.example.com/pause:3.9',
      kind: 'itms',
      entry: { source: 'registry.k8s.io', mirrors: ['mirror.example.com'] },
    },
    {
      name: 'single-component source path, with prefix: registry alone for the source',
      category: 'generic',
      source: 'registry.k8s.io/pause:3.9',
      destination: 'mirror.example.com/team/pause:3.9',
      kind: 'itms',
      entry: { source: 'registry.k8s.io', mirrors: ['mirror.example.com/team'] },
    },
    {
      name: 'docker.io official image: library namespace',
      category: 'generic',
      source: 'docker.io/library/nginx:1',
      destination: 'mirror.example.com/library/nginx:1',
      kind: 'itms',
      entry: { source: 'docker.io/library', mirrors: ['mirror.example.com/library'] },
    },
    {
      name: 'docker.io short name is expanded before scoping',
      category: 'generic',
      source: 'nginx:1',
      destination: 'mirror.example.com/hub/library/nginx:1',
      kind: 'itms',
      entry: { source: 'docker.io/library', mirrors: ['mirror.example.com/hub/library'] },
    },
    {
      name: 'targetRepo elsewhere: full repositories on both sides',
      category: 'generic',
      source: 'quay.io/a/b:1',
      destination: 'mirror.example.com/custom-namespace/my-image:1',
      kind: 'itms',
      entry: { source: 'quay.io/a/b', mirrors: ['mirror.example.com/custom-namespace/my-image'] },
    },
    {
      name: 'targetRepo with the same last component but another namespace: full repositories',
      category: 'generic',
      source: 'quay.io/a/b:1',
      destination: 'mirror.example.com/x/b:1',
      kind: 'itms',
      entry: { source: 'quay.io/a/b', mirrors: ['mirror.example.com/x/b'] },
    },
    {
      name: 'targetRepo ending with the source path: namespace scope',
      category: 'generic',
      source: 'quay.io/a/b:1',
      destination: 'mirror.example.com/other/a/b:1',
      kind: 'itms',
      entry: { source: 'quay.io/a', mirrors: ['mirror.example.com/other/a'] },
    },
    {
      // 'k8s/kube-pause' ends with the string 'pause' but not with the path component 'pause':
      // a registry-wide registry.k8s.io → mirror.example.com/k8s mirror would send pause to k8s/pause.
      name: 'destination path ending with the source path only inside a component: full repositories',
      category: 'generic',
      source: 'registry.k8s.io/pause:3.9',
      destination: 'mirror.example.com/k8s/kube-pause:3.9',
      kind: 'itms',
      entry: { source: 'registry.k8s.io/pause', mirrors: ['mirror.example.com/k8s/kube-pause'] },
    },
    {
      name: 'partial last component of a nested path: full repositories',
      category: 'generic',
      source: 'quay.io/a/bar:1',
      destination: 'mirror.example.com/ns/xa/bar:1',
      kind: 'itms',
      entry: { source: 'quay.io/a/bar', mirrors: ['mirror.example.com/ns/xa/bar'] },
    },
    {
      name: 'by tag and digest: counts as by tag',
      category: 'generic',
      source: `quay.io/ns/app:1.0@sha256:${HEX_A}`,
      destination: 'mirror.example.com/ns/app:1.0',
      kind: 'itms',
      entry: { source: 'quay.io/ns', mirrors: ['mirror.example.com/ns'] },
    },
    {
      name: 'operator by tag: ITMS operator set',
      category: 'operator',
      source: 'registry.redhat.io/rhacs/main:4.5',
      destination: 'mirror.example.com/rhacs/main:4.5',
      kind: 'itms',
      entry: { source: 'registry.redhat.io/rhacs', mirrors: ['mirror.example.com/rhacs'] },
    },
    {
      name: 'release by digest: IDMS only',
      category: 'release',
      source: `quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:${HEX_B}`,
      destination: `mirror.example.com/ocp/openshift-release-dev/ocp-v4.0-art-dev:${HEX_B}`,
      kind: 'idms',
      entry: { source: 'quay.io/openshift-release-dev', mirrors: ['mirror.example.com/ocp/openshift-release-dev'] },
    },
  ])('$name', (c) => {
    const files = clusterResources([{ category: c.category, source: c.source, destination: c.destination }], { createdAt: CREATED_AT });
    expect(files.map((f) => f.name)).toEqual([`${c.kind}-oc-mirror.yaml`]);
    expect(documents(files[0])).toEqual([mirrorSet(c.kind, c.category, [c.entry])]);
  });
});

describe('clusterResources: mirror sets', () => {
  it('writes nothing for no images', () => {
    expect(clusterResources([], { createdAt: CREATED_AT })).toEqual([]);
  });

  it('puts a release image by tag in both the IDMS and the ITMS', () => {
    const files = clusterResources(
      [
        {
          category: 'release',
          source: 'quay.io/openshift-release-dev/ocp-release:4.15.0-x86_64',
          destination: 'mirror.example.com/ocp/openshift-release-dev/ocp-release:4.15.0-x86_64',
        },
      ],
      { createdAt: CREATED_AT },
    );
    const entry = { source: 'quay.io/openshift-release-dev', mirrors: ['mirror.example.com/ocp/openshift-release-dev'] };
    expect(files.map((f) => f.name)).toEqual(['idms-oc-mirror.yaml', 'itms-oc-mirror.yaml']);
    expect(documents(fileNamed(files, 'idms-oc-mirror.yaml'))).toEqual([mirrorSet('idms', 'release', [entry])]);
    expect(documents(fileNamed(files, 'itms-oc-mirror.yaml'))).toEqual([mirrorSet('itms', 'release', [entry])]);
  });

  it('lists a source once per set, with each distinct mirror once, in first-seen order', () => {
    const images: MirroredImage[] = [
      // Two repositories in one namespace: one namespace entry.
      { category: 'operator', source: `registry.redhat.io/rhacs/main@sha256:${HEX_A}`, destination: `m.example.com/rhacs/main:${HEX_A}` },
      { category: 'operator', source: `registry.redhat.io/rhacs/collector@sha256:${HEX_B}`, destination: `m.example.com/rhacs/collector:${HEX_B}` },
      // One source repository pushed to two places: two mirrors, the repeat listed once.
      { category: 'generic', source: 'quay.io/a/b:1', destination: 'm.example.com/x/b:1' },
      { category: 'generic', source: 'quay.io/a/b:2', destination: 'm.example.com/y/b:2' },
      { category: 'generic', source: 'quay.io/a/b:3', destination: 'm.example.com/x/b:3' },
      { category: 'generic', source: 'quay.io/c/d:1', destination: 'm.example.com/c/d:1' },
    ];
    const files = clusterResources(images, { createdAt: CREATED_AT });
    expect(files.map((f) => f.name)).toEqual(['idms-oc-mirror.yaml', 'itms-oc-mirror.yaml']);
    expect(documents(fileNamed(files, 'idms-oc-mirror.yaml'))).toEqual([
      mirrorSet('idms', 'operator', [{ source: 'registry.redhat.io/rhacs', mirrors: ['m.example.com/rhacs'] }]),
    ]);
    expect(documents(fileNamed(files, 'itms-oc-mirror.yaml'))).toEqual([
      mirrorSet('itms', 'generic', [
        { source: 'quay.io/a/b', mirrors: ['m.example.com/x/b', 'm.example.com/y/b'] },
        { source: 'quay.io/c', mirrors: ['m.example.com/c'] },
      ]),
    ]);
  });

  it('keeps one document per category, release then operator then generic, each after ---', () => {
    const images: MirroredImage[] = [
      { category: 'generic', source: `quay.io/g/app@sha256:${HEX_A}`, destination: `m.example.com/g/app:${HEX_A}` },
      { category: 'operator', source: 'registry.redhat.io/op/bundle:v1', destination: 'm.example.com/op/bundle:v1' },
      {
        category: 'release',
        source: `quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:${HEX_B}`,
        destination: `m.example.com/openshift-release-dev/ocp-v4.0-art-dev:${HEX_B}`,
      },
      { category: 'operator', source: `registry.redhat.io/op/operator@sha256:${HEX_B}`, destination: `m.example.com/op/operator:${HEX_B}` },
      { category: 'generic', source: 'docker.io/library/nginx:1', destination: 'm.example.com/library/nginx:1' },
    ];
    const files = clusterResources(images, { createdAt: CREATED_AT });
    expect(files.map((f) => f.name)).toEqual(['idms-oc-mirror.yaml', 'itms-oc-mirror.yaml']);

    const idms = fileNamed(files, 'idms-oc-mirror.yaml') as ClusterResourceFile;
    expect(idms.content.startsWith('---\n')).toBe(true);
    expect(idms.content.match(/^---$/gm)).toHaveLength(3);
    expect(documents(idms)).toEqual([
      mirrorSet('idms', 'release', [{ source: 'quay.io/openshift-release-dev', mirrors: ['m.example.com/openshift-release-dev'] }]),
      mirrorSet('idms', 'operator', [{ source: 'registry.redhat.io/op', mirrors: ['m.example.com/op'] }]),
      mirrorSet('idms', 'generic', [{ source: 'quay.io/g', mirrors: ['m.example.com/g'] }]),
    ]);

    const itms = fileNamed(files, 'itms-oc-mirror.yaml') as ClusterResourceFile;
    expect(itms.content.startsWith('---\n')).toBe(true);
    expect(itms.content.match(/^---$/gm)).toHaveLength(2);
    expect(documents(itms)).toEqual([
      mirrorSet('itms', 'operator', [{ source: 'registry.redhat.io/op', mirrors: ['m.example.com/op'] }]),
      mirrorSet('itms', 'generic', [{ source: 'docker.io/library', mirrors: ['m.example.com/library'] }]),
    ]);
  });

  it('stamps the current time when no createdAt is given', () => {
    const before = Date.now();
    const files = clusterResources([{ category: 'generic', source: 'quay.io/a/b:1', destination: 'm.example.com/a/b:1' }]);
    const createdAt = Date.parse(documents(files[0])[0]?.['metadata']?.['annotations']?.['createdAt'] as string);
    // toUTCString has whole seconds.
    expect(createdAt).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(createdAt).toBeLessThanOrEqual(Date.now());
  });
});

describe('clusterResources: catalogs', () => {
  interface Case {
    name: string;
    destination: string;
    /** `<lastPathComponent>-<suffix>` with dots turned to '-'. */
    resourceName: string;
  }

  it.each<Case>([
    {
      name: 'short tag with dots',
      destination: 'mirror.example.com/ocp/redhat/redhat-operator-index:v4.15',
      resourceName: 'redhat-operator-index-v4-15',
    },
    {
      name: 'tag cut to 12 characters',
      destination: 'mirror.example.com/redhat/certified-operator-index:v4.15.0-202401150000',
      resourceName: 'certified-operator-index-v4-15-0-2024',
    },
    {
      name: 'upper case and underscore in the tag',
      destination: 'mirror.example.com/redhat/community-operator-index:Release_2024.06.01',
      resourceName: 'community-operator-index-release-2024',
    },
    {
      name: 'dots in the repository name',
      destination: 'localhost:5000/catalogs/my.catalog:v1',
      resourceName: 'my-catalog-v1',
    },
    {
      name: 'single-component repository',
      destination: 'mirror.example.com/index:latest',
      resourceName: 'index-latest',
    },
    {
      name: 'by digest only: first 12 hex of the digest',
      destination: `mirror.example.com/ns/my-index@sha256:${HEX_A}`,
      resourceName: 'my-index-0123456789ab',
    },
    {
      name: 'by tag and digest: the tag',
      destination: `mirror.example.com/ns/my-index:v2@sha256:${HEX_B}`,
      resourceName: 'my-index-v2',
    },
  ])('$name', (c) => {
    const files = clusterResources([{ category: 'operator', source: 'registry.redhat.io/redhat/some-index:v4.15', destination: c.destination, catalog: true }], {
      createdAt: CREATED_AT,
    });
    expect(files.map((f) => f.name)).toEqual([`cs-${c.resourceName}.yaml`, `cc-${c.resourceName}.yaml`]);
    expect(documents(files[0])).toEqual([
      {
        apiVersion: 'operators.coreos.com/v1alpha1',
        kind: 'CatalogSource',
        metadata: { name: `cs-${c.resourceName}`, namespace: 'openshift-marketplace', annotations: ANNOTATIONS },
        spec: { image: c.destination, sourceType: 'grpc' },
      },
    ]);
    expect(documents(files[1])).toEqual([
      {
        apiVersion: 'olm.operatorframework.io/v1',
        kind: 'ClusterCatalog',
        metadata: { name: `cc-${c.resourceName}`, annotations: ANNOTATIONS },
        spec: { source: { type: 'Image', image: { ref: c.destination } } },
      },
    ]);
  });

  it('gives catalogs no mirror-set entry, and writes mirror sets before catalog files', () => {
    const files = clusterResources(
      [
        {
          category: 'operator',
          source: 'registry.redhat.io/redhat/redhat-operator-index:v4.15',
          destination: 'm.example.com/redhat/redhat-operator-index:v4.15',
          catalog: true,
        },
        { category: 'operator', source: `registry.redhat.io/rhacs/main@sha256:${HEX_A}`, destination: `m.example.com/rhacs/main:${HEX_A}` },
        {
          category: 'operator',
          source: 'registry.redhat.io/redhat/certified-operator-index:v4.15',
          destination: 'm.example.com/redhat/certified-operator-index:v4.15',
          catalog: true,
        },
      ],
      { createdAt: CREATED_AT },
    );
    expect(files.map((f) => f.name)).toEqual([
      'idms-oc-mirror.yaml',
      'cs-redhat-operator-index-v4-15.yaml',
      'cc-redhat-operator-index-v4-15.yaml',
      'cs-certified-operator-index-v4-15.yaml',
      'cc-certified-operator-index-v4-15.yaml',
    ]);
    expect(documents(fileNamed(files, 'idms-oc-mirror.yaml'))).toEqual([
      mirrorSet('idms', 'operator', [{ source: 'registry.redhat.io/rhacs', mirrors: ['m.example.com/rhacs'] }]),
    ]);
  });

  it('writes only catalog files when every image is a catalog', () => {
    const files = clusterResources([{ category: 'operator', source: `quay.io/ns/idx@sha256:${HEX_A}`, destination: 'm.example.com/ns/idx:v1', catalog: true }], {
      createdAt: CREATED_AT,
    });
    expect(files.map((f) => f.name)).toEqual(['cs-idx-v1.yaml', 'cc-idx-v1.yaml']);
  });
});

describe('writeClusterResources', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'meshmirror-cluster-resources-'));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('creates the folder, writes each file and returns the paths in order', async () => {
    const dir = join(root, 'working-dir', 'cluster-resources');
    const files: ClusterResourceFile[] = [
      { name: 'idms-oc-mirror.yaml', content: '---\nkind: ImageDigestMirrorSet\n' },
      { name: 'cs-idx-v1.yaml', content: 'kind: CatalogSource\n' },
    ];
    const paths = await writeClusterResources(dir, files);
    expect(paths).toEqual([join(dir, 'idms-oc-mirror.yaml'), join(dir, 'cs-idx-v1.yaml')]);
    expect((await readdir(dir)).sort()).toEqual(['cs-idx-v1.yaml', 'idms-oc-mirror.yaml']);
    expect(await readFile(join(dir, 'idms-oc-mirror.yaml'), 'utf8')).toBe('---\nkind: ImageDigestMirrorSet\n');
    expect(await readFile(join(dir, 'cs-idx-v1.yaml'), 'utf8')).toBe('kind: CatalogSource\n');
  });

  it('writes what clusterResources produced, readable back as the same documents', async () => {
    const files = clusterResources(
      [
        { category: 'generic', source: 'quay.io/ns/app:1.0', destination: 'm.example.com/ns/app:1.0' },
        { category: 'operator', source: 'registry.redhat.io/redhat/idx:v4.15', destination: 'm.example.com/redhat/idx:v4.15', catalog: true },
      ],
      { createdAt: CREATED_AT },
    );
    const paths = await writeClusterResources(root, files);
    expect(paths).toEqual(['itms-oc-mirror.yaml', 'cs-idx-v4-15.yaml', 'cc-idx-v4-15.yaml'].map((n) => join(root, n)));
    const itms = await readFile(join(root, 'itms-oc-mirror.yaml'), 'utf8');
    expect(documents({ name: 'itms-oc-mirror.yaml', content: itms })).toEqual([
      mirrorSet('itms', 'generic', [{ source: 'quay.io/ns', mirrors: ['m.example.com/ns'] }]),
    ]);
  });

  it('writes nothing and creates no folder for an empty list', async () => {
    const dir = join(root, 'not-created');
    expect(await writeClusterResources(dir, [])).toEqual([]);
    await expect(stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
