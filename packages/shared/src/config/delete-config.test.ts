import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.ts';
import { loadDeleteImageList, parseDeleteImageList, renderDeleteImageList, type DeleteImageItem } from './delete-image-list.ts';
import { DeleteImageSetConfigSchema, imageSetOfDelete } from './imageset.ts';
import { loadDeleteImageSetConfig, parseConfigText } from './load-imageset.ts';

const DISC = `kind: DeleteImageSetConfiguration
apiVersion: mirror.openshift.io/v2alpha1
delete:
  platform:
    channels:
      - name: stable-4.19
        minVersion: 4.19.2
        maxVersion: 4.19.2
  operators:
    - catalog: registry.redhat.io/redhat/redhat-operator-index:v4.19
      packages:
        - name: web-terminal
  additionalImages:
    - name: registry.redhat.io/ubi9/ubi:latest
`;

function parseDisc(text: string) {
  return parseConfigText(text, 'disc.yaml', DeleteImageSetConfigSchema);
}

/** The message of the ConfigError that `parse` throws. */
function problemOf(parse: () => unknown): string {
  try {
    parse();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('DeleteImageSetConfiguration', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-disc-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads delete: as an ImageSetConfiguration reads mirror:, and mirrors the same content', () => {
    const config = imageSetOfDelete(parseDisc(DISC));
    expect(config.kind).toBe('ImageSetConfiguration');
    expect(config.mirror.platform?.channels).toEqual([
      { name: 'stable-4.19', type: 'ocp', minVersion: '4.19.2', maxVersion: '4.19.2', shortestPath: false, full: false },
    ]);
    expect(config.mirror.platform?.architectures).toEqual(['amd64']);
    expect(config.mirror.operators.map((o) => [o.catalog, o.packages.map((p) => p.name)])).toEqual([
      ['registry.redhat.io/redhat/redhat-operator-index:v4.19', ['web-terminal']],
    ]);
    expect(config.mirror.additionalImages).toEqual([{ name: 'registry.redhat.io/ubi9/ubi:latest' }]);
    expect(config.mirror.blockedImages).toEqual([]);
  });

  it('takes any apiVersion, as oc-mirror does (its own examples say v1alpha2)', () => {
    expect(() => parseDisc(DISC.replace('v2alpha1', 'v1alpha2'))).not.toThrow();
  });

  it('refuses a mirror: key, naming the field and the file', async () => {
    const file = join(dir, 'with-mirror.yaml');
    await writeFile(file, `${DISC}mirror:\n  additionalImages:\n    - name: registry.redhat.io/ubi9/ubi:latest\n`);
    await expect(loadDeleteImageSetConfig(file)).rejects.toThrow(
      `${file}:15:1: mirror: not allowed in a DeleteImageSetConfiguration: list what to delete under delete:`,
    );
  });

  it.each<[string, string, string]>([
    [
      'an unknown field',
      DISC.replace('  additionalImages:', '  additionalImage:'),
      'disc.yaml:13:3: delete.additionalImage: unknown field "additionalImage" (did you mean "additionalImages"?)',
    ],
    ['an unknown field deeper down', DISC.replace('minVersion: 4.19.2', 'minVerion: 4.19.2'), 'delete.platform.channels[0].minVerion: unknown field "minVerion"'],
    ['blockedImages', `${DISC}  blockedImages:\n    - name: registry.redhat.io/ubi9/ubi:latest\n`, 'delete.blockedImages: not part of a DeleteImageSetConfiguration'],
    ['no delete: at all', 'kind: DeleteImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\n', 'disc.yaml:1:1: delete: required field is missing'],
    [
      'an ImageSetConfiguration',
      DISC.replace('kind: DeleteImageSetConfiguration', 'kind: ImageSetConfiguration'),
      'kind: expected DeleteImageSetConfiguration, got "ImageSetConfiguration" (delete reads what to delete from a DeleteImageSetConfiguration, under delete:)',
    ],
    [
      'a catalog listed twice',
      DISC.replace('  additionalImages:', '    - catalog: registry.redhat.io/redhat/redhat-operator-index:v4.19\n  additionalImages:'),
      'disc.yaml:13:7: delete.operators[1].catalog: catalog "registry.redhat.io/redhat/redhat-operator-index:v4.19" is already listed at operators[0]',
    ],
    [
      'a release channel listed twice (as ocp and okd)',
      DISC.replace('  operators:', '      - name: stable-4.19\n        type: okd\n  operators:'),
      'delete.platform.channels[1].name: release channel "stable-4.19" is already listed at channels[0]',
    ],
    ['a bad image reference', DISC.replace('ubi9/ubi:latest', 'UBI9/ubi:latest'), 'delete.additionalImages[0].name:'],
  ])('refuses %s, naming the field', (_name, text, message) => {
    expect(problemOf(() => parseDisc(text))).toContain(message);
  });
});

const ITEMS: DeleteImageItem[] = [
  { imageName: 'quay.io/a/b@sha256:' + 'b'.repeat(64), imageReference: 'docker://mirror.example.com:5000/m/a/b:' + 'b'.repeat(64), type: 'operatorRelatedImage' },
  {
    imageName: 'quay.io/openshift-release-dev/ocp-release:4.19.2-x86_64',
    imageReference: 'docker://mirror.example.com:5000/m/openshift/release-images:4.19.2-x86_64',
    type: 'ocpRelease',
  },
  {
    imageName: 'quay.io/x/etcd@sha256:' + 'c'.repeat(64),
    imageReference: 'docker://mirror.example.com:5000/m/openshift/release:4.19.2-x86_64-etcd',
    type: 'ocpReleaseContent',
  },
  { imageName: 'again', imageReference: 'docker://mirror.example.com:5000/m/openshift/release-images:4.19.2-x86_64', type: 'ocpRelease' },
];

describe('DeleteImageList', () => {
  it("writes oc-mirror's file: kind, apiVersion, items sorted by imageReference, one per reference", () => {
    const text = renderDeleteImageList(ITEMS);
    expect(text).toBe(
      [
        'kind: DeleteImageList',
        'apiVersion: mirror.openshift.io/v2alpha1',
        'items:',
        `  - imageName: quay.io/a/b@sha256:${'b'.repeat(64)}`,
        `    imageReference: docker://mirror.example.com:5000/m/a/b:${'b'.repeat(64)}`,
        '    type: operatorRelatedImage',
        // '-' sorts before ':', as in oc-mirror (Go compares bytes).
        '  - imageName: quay.io/openshift-release-dev/ocp-release:4.19.2-x86_64',
        '    imageReference: docker://mirror.example.com:5000/m/openshift/release-images:4.19.2-x86_64',
        '    type: ocpRelease',
        '  - imageName: quay.io/x/etcd@sha256:' + 'c'.repeat(64),
        '    imageReference: docker://mirror.example.com:5000/m/openshift/release:4.19.2-x86_64-etcd',
        '    type: ocpReleaseContent',
        '',
      ].join('\n'),
    );
    expect(parseDeleteImageList(text, 'list.yaml').items).toEqual([ITEMS[0], ITEMS[1], ITEMS[2]]);
  });

  it("reads oc-mirror's own example file", () => {
    const text = `apiVersion: mirror.openshift.io/v2alpha1
kind: DeleteImageList
items: 
  - imageName: quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:c32a883a6ca7b2e7a58b9dd99a5e8d056bdbbc9d79d8486b2e4c7e07c3dc4512
    imageReference: docker://localhost:5000/myregistry/openshift/release:4.15.12-x86_64-agent-installer-api-server
    type: ocpReleaseContent
`;
    expect(parseDeleteImageList(text, 'x.yaml').items).toHaveLength(1);
  });

  it('an empty list has no items', () => {
    expect(parseDeleteImageList('kind: DeleteImageList\napiVersion: mirror.openshift.io/v2alpha1\nitems:\n', 'x.yaml').items).toEqual([]);
  });

  it.each<[string, (text: string) => string, string]>([
    [
      'an unknown type',
      (t) => t.replace('type: ocpReleaseContent', 'type: ocpReleaseContents'),
      'list.yaml:12:5: items[2].type: expected one of ocpRelease, ocpReleaseContent,',
    ],
    [
      'a reference without docker://',
      (t) => t.replace('imageReference: docker://mirror.example.com:5000/m/openshift/release:', 'imageReference: mirror.example.com:5000/m/openshift/release:'),
      'list.yaml:11:5: items[2].imageReference: expected docker://HOST/REPOSITORY:TAG',
    ],
    [
      'a bad reference',
      (t) => t.replace('/m/openshift/release:4.19.2-x86_64-etcd', '/M/openshift/release:4.19.2-x86_64-etcd'),
      'items[2].imageReference: invalid image reference',
    ],
    ['a missing imageReference', (t) => t.replace(/ {4}imageReference: .*etcd\n/, ''), 'list.yaml:10:5: items[2].imageReference: required field is missing'],
    [
      'an unknown field',
      (t) => t.replace('    type: ocpRelease\n', '    type: ocpRelease\n    relatedBlobs: []\n'),
      'list.yaml:10:5: items[1].relatedBlobs: unknown field "relatedBlobs"',
    ],
    [
      'another kind',
      (t) => t.replace('kind: DeleteImageList', 'kind: DeleteImageSetConfiguration'),
      'list.yaml:1:1: kind: expected DeleteImageList, got "DeleteImageSetConfiguration"',
    ],
  ])('refuses %s, naming the field', (_name, edit, message) => {
    expect(problemOf(() => parseDeleteImageList(edit(renderDeleteImageList(ITEMS)), 'list.yaml'))).toContain(message);
  });

  it('names an unreadable file', async () => {
    await expect(loadDeleteImageList('/nonexistent/delete-images.yaml')).rejects.toThrow('/nonexistent/delete-images.yaml: cannot read');
  });
});
