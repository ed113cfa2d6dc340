import { describe, expect, it } from 'vitest';
import { MediaType, parseImageReference, type DeleteImageItem, type Digest } from '@meshmirror/shared';
import type { ImageKind, ImageRole, ResolvedImage } from '../resolve/image-set.ts';
import { parseDockerDestination } from '../push/push-targets.ts';
import { deleteItemsFor } from './delete-items.ts';
import { itemsOutsideDestination, underDestination } from './delete-images.ts';

const d = (c: string): Digest => `sha256:${c.repeat(64)}`;
const hex = (c: string): string => c.repeat(64);

function image(
  source: string,
  kind: ImageKind,
  digest: Digest,
  extra: { role?: ImageRole; targetRepo?: string; targetTag?: string; children?: Digest[] } = {},
): ResolvedImage {
  const children = extra.children ?? [];
  return {
    kind,
    source,
    ref: parseImageReference(source),
    origin: 'test',
    ...(extra.role === undefined ? {} : { role: extra.role }),
    ...(extra.targetRepo === undefined ? {} : { targetRepo: extra.targetRepo }),
    ...(extra.targetTag === undefined ? {} : { targetTag: extra.targetTag }),
    descriptor: { mediaType: children.length > 0 ? MediaType.OciIndex : MediaType.OciManifest, digest, size: 1 },
    manifests: [digest, ...children].map((m, i) => ({
      digest: m,
      mediaType: i === 0 && children.length > 0 ? MediaType.OciIndex : MediaType.OciManifest,
      bytes: new Uint8Array(),
    })),
    blobs: [],
    platforms: [],
    skippedPlatforms: [],
  };
}

const IMAGES: ResolvedImage[] = [
  image('quay.io/openshift-release-dev/ocp-release@sha256:' + hex('1'), 'release', d('1'), {
    role: 'release-payload',
    targetRepo: 'openshift/release-images',
    targetTag: '4.19.2-x86_64',
  }),
  image('quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:' + hex('2'), 'release', d('2'), { targetRepo: 'openshift/release', targetTag: '4.19.2-x86_64-etcd' }),
  image('registry.example.com/ubi9/ubi:latest', 'additional', d('3'), { children: [d('4'), d('5')] }),
  image('registry.redhat.io/redhat/redhat-operator-index:v4.19', 'operator', d('6'), { role: 'catalog' }),
  image('registry.redhat.io/web-terminal/bundle@sha256:' + hex('7'), 'operator', d('7')),
  image('registry.redhat.io/web-terminal/operator@sha256:' + hex('8'), 'operator', d('8')),
  image('registry.example.com/charts/podinfo:6.5.0', 'helm', d('9'), { role: 'helm-chart' }),
  image('openshift/graph-image:latest', 'release', d('a'), { role: 'graph' }),
  // What a mirror run with signatures would also have: never listed for its own sake.
  image('registry.example.com/ubi9/ubi:sha256-' + hex('3') + '.sig', 'additional', d('b'), { role: 'signature' }),
];

describe('deleteItemsFor', () => {
  const destination = parseDockerDestination('docker://mirror.example.com:5000/m');

  it("names every image where a push put it, with oc-mirror's type", () => {
    const items = deleteItemsFor(IMAGES, destination, { deleteSignatures: false, bundles: new Set([d('7')]) });
    expect(items).toEqual<DeleteImageItem[]>([
      { imageName: IMAGES[0]!.source, imageReference: 'docker://mirror.example.com:5000/m/openshift/release-images:4.19.2-x86_64', type: 'ocpRelease' },
      { imageName: IMAGES[1]!.source, imageReference: 'docker://mirror.example.com:5000/m/openshift/release:4.19.2-x86_64-etcd', type: 'ocpReleaseContent' },
      { imageName: IMAGES[2]!.source, imageReference: 'docker://mirror.example.com:5000/m/ubi9/ubi:latest', type: 'generic' },
      { imageName: IMAGES[3]!.source, imageReference: 'docker://mirror.example.com:5000/m/redhat/redhat-operator-index:v4.19', type: 'operatorCatalog' },
      { imageName: IMAGES[4]!.source, imageReference: `docker://mirror.example.com:5000/m/web-terminal/bundle:${hex('7')}`, type: 'operatorBundle' },
      { imageName: IMAGES[5]!.source, imageReference: `docker://mirror.example.com:5000/m/web-terminal/operator:${hex('8')}`, type: 'operatorRelatedImage' },
      { imageName: IMAGES[6]!.source, imageReference: 'docker://mirror.example.com:5000/m/charts/podinfo:6.5.0', type: 'helmImage' },
      { imageName: IMAGES[7]!.source, imageReference: 'docker://mirror.example.com:5000/m/openshift/graph-image:latest', type: 'cincinnatiGraph' },
    ]);
  });

  it('follows --max-nested-paths as the push did', () => {
    const flat = parseDockerDestination('docker://mirror.example.com:5000/m', { maxNestedPaths: 2 });
    const items = deleteItemsFor(IMAGES.slice(0, 2), flat, { deleteSignatures: false, bundles: new Set() });
    expect(items.map((i) => i.imageReference)).toEqual([
      'docker://mirror.example.com:5000/m/openshift-release-images:4.19.2-x86_64',
      'docker://mirror.example.com:5000/m/openshift-release:4.19.2-x86_64-etcd',
    ]);
  });

  it('--delete-signatures adds the .sig tags of each image, an index and each child, but none for catalogs and the graph', () => {
    const items = deleteItemsFor(IMAGES, destination, { deleteSignatures: true, bundles: new Set() });
    const signatures = items.filter((i) => i.imageReference.endsWith('.sig'));
    expect(signatures.map((i) => [i.imageReference, i.type])).toEqual([
      [`docker://mirror.example.com:5000/m/openshift/release-images:sha256-${hex('1')}.sig`, 'ocpRelease'],
      [`docker://mirror.example.com:5000/m/openshift/release:sha256-${hex('2')}.sig`, 'ocpReleaseContent'],
      [`docker://mirror.example.com:5000/m/ubi9/ubi:sha256-${hex('3')}.sig`, 'generic'],
      [`docker://mirror.example.com:5000/m/ubi9/ubi:sha256-${hex('4')}.sig`, 'generic'],
      [`docker://mirror.example.com:5000/m/ubi9/ubi:sha256-${hex('5')}.sig`, 'generic'],
      [`docker://mirror.example.com:5000/m/web-terminal/bundle:sha256-${hex('7')}.sig`, 'operatorRelatedImage'],
      [`docker://mirror.example.com:5000/m/web-terminal/operator:sha256-${hex('8')}.sig`, 'operatorRelatedImage'],
    ]);
    expect(signatures[0]!.imageName).toBe(`quay.io/openshift-release-dev/ocp-release:sha256-${hex('1')}.sig`);
  });

  it('one item per destination: an image named twice is listed once', () => {
    const twice = [IMAGES[2]!, { ...IMAGES[2]!, source: 'registry.example.com/ubi9/ubi:latest', origin: 'another' }];
    expect(deleteItemsFor(twice, destination, { deleteSignatures: false, bundles: new Set() })).toHaveLength(1);
  });
});

describe('which items lie under the destination', () => {
  it.each<[string, string, boolean]>([
    ['under the prefix', 'm/openshift/release', true],
    ['the prefix alone is no image of it', 'm', false],
    ['a sibling that starts alike', 'mm/openshift/release', false],
    ['another prefix', 'other/openshift/release', false],
  ])('%s: %s', (_name, repository, expected) => {
    expect(underDestination(repository, parseDockerDestination('docker://mirror.example.com:5000/m'))).toBe(expected);
  });

  it('takes the flattened form --max-nested-paths gives a deep prefix', () => {
    const destination = parseDockerDestination('docker://mirror.example.com:5000/a/b/c', { maxNestedPaths: 2 });
    expect(underDestination('a/b-c-openshift-release', destination)).toBe(true);
    expect(underDestination('a/b-d-openshift-release', destination)).toBe(false);
  });

  it('refuses items in another registry or outside the prefix, by name', () => {
    const items: DeleteImageItem[] = [
      { imageName: 'x', imageReference: 'docker://mirror.example.com:5000/m/ubi9/ubi:latest', type: 'generic' },
      { imageName: 'x', imageReference: 'docker://other.example.com:5000/m/ubi9/ubi:latest', type: 'generic' },
      { imageName: 'x', imageReference: 'docker://mirror.example.com:5000/n/ubi9/ubi:latest', type: 'generic' },
      { imageName: 'x', imageReference: 'docker://MIRROR.example.com:5000/m/ubi9/ubi:9.6', type: 'generic' },
    ];
    expect(itemsOutsideDestination(items, parseDockerDestination('docker://mirror.example.com:5000/m')).map((i) => i.imageReference)).toEqual([
      'docker://other.example.com:5000/m/ubi9/ubi:latest',
      'docker://mirror.example.com:5000/n/ubi9/ubi:latest',
    ]);
  });
});
