import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, MeshmirrorError } from '../errors.ts';
import { loadImageSetConfig, parseImageSetConfig, type ConfigProblem } from './load-imageset.ts';

const EXAMPLE = fileURLToPath(new URL('../../../../examples/imageset-config.yaml', import.meta.url));

const V2_FULL = `kind: ImageSetConfiguration
apiVersion: mirror.openshift.io/v2alpha1
archiveSize: 4
mirror:
  platform:
    architectures: [amd64, arm64]
    graph: true
    kubeVirtContainer: true
    releaseImageRepo: openshift-release-dev/ocp-release
    releaseComponentRepo: openshift-release-dev/ocp-v4.0-art-dev
    channels:
    - name: stable-4.18
      minVersion: 4.18.1
      maxVersion: 4.18.5
      shortestPath: true
    - name: 4-stable
      type: okd
      full: true
    release: quay.io/openshift-release-dev/ocp-release:4.18.1-x86_64
  operators:
  - catalog: registry.redhat.io/redhat/redhat-operator-index:v4.18
    targetCatalog: my-org/redhat-operator-index
    targetTag: v4.18-mirror
    skipDependencies: true
    targetCatalogSourceTemplate: ./cs-template.yaml
    packages:
    - name: elasticsearch-operator
      defaultChannel: stable-v0
      channels:
      - name: stable-v0
        minVersion: 5.6.0
        maxVersion: 6.0.0
    - name: aws-load-balancer-operator
      bundles:
      - name: aws-load-balancer-operator.v1.1.0
      selectors:
      - matchExpressions:
        - key: tier
          operator: In
          values: [frontend]
        matchLabels:
          version: "1.2.3"
    - name: 3scale-operator
      minVersion: 0.10.0
  - catalog: oci:///srv/catalogs/my-index
    full: true
  additionalImages:
  - name: registry.redhat.io/ubi9/ubi:latest
  - name: quay.io/example/my-image@sha256:${'a'.repeat(64)}
    targetRepo: custom-namespace/my-image
    targetTag: custom-tag
  blockedImages:
  - name: docker.io/library/alpine
  - name: ".*blocked-image.*"
  helm:
    repositories:
    - name: podinfo
      url: https://stefanprodan.github.io/podinfo
      charts:
      - name: podinfo
        version: 5.0.0
        imagePaths: ["{.spec.template.spec.custom[*].image}"]
        valuesFiles: [./values-for-mirroring.yaml]
        values:
          replicas: 2
    local:
    - name: my-chart
      path: /charts/my-chart-1.0.0.tgz
meshmirror:
  imageTimeout: 90m
  stallTimeout: 2m
  connectTimeout: 15
  headersTimeout: 1m
  retryTimes: 10
  retryDelay: 30s
  parallelImages: 8
  parallelLayers: 12
  srcTlsVerify: false
  destTlsVerify: true
  pieceSize: 64MiB
`;

const V1_WITH_STORAGE = `kind: ImageSetConfiguration
apiVersion: mirror.openshift.io/v1alpha2
storageConfig:
  registry:
    imageURL: registry.example.com/mirror/oc-mirror-metadata
    skipTLS: false
mirror:
  platform:
    channels:
    - name: stable-4.16
      type: ocp
  operators:
  - catalog: registry.redhat.io/redhat/redhat-operator-index:v4.16
    targetName: my-index
    packages:
    - name: rhacs-operator
      minBundle: rhacs-operator.v3.67.0
`;

/** The problems a ConfigError reports, or a failure when the text is accepted. */
function problemsOf(text: string, file = 'isc.yaml'): { message: string; problems: ConfigProblem[] } {
  try {
    parseImageSetConfig(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const configError = err as ConfigError;
    return { message: configError.message, problems: (configError.data['problems'] as ConfigProblem[] | undefined) ?? [] };
  }
  throw new Error('expected the configuration to be refused');
}

function v2(mirror: string, extra = ''): string {
  return `kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\n${extra}mirror:\n${mirror}`;
}

describe('the user example', () => {
  it('validates unchanged, trailing spaces and v1alpha2 included', async () => {
    const text = await readFile(EXAMPLE, 'utf8');
    // The fixture must stay as the user wrote it.
    expect(text).toContain('maxVersion: 4.19.10 \n');
    expect(text).toContain('apiVersion: mirror.openshift.io/v1alpha2');

    const config = await loadImageSetConfig(EXAMPLE);
    expect(config.apiVersion).toBe('mirror.openshift.io/v1alpha2');
    expect(config.archiveSize).toBe(8);
    expect(config.mirror.platform?.graph).toBe(true);
    expect(config.mirror.platform?.architectures).toEqual(['amd64']);
    expect(config.mirror.platform?.channels).toEqual([
      { name: 'stable-4.19', type: 'ocp', minVersion: '4.19.2', maxVersion: '4.19.10', shortestPath: false, full: false },
    ]);
    expect(config.mirror.operators).toHaveLength(1);
    expect(config.mirror.operators[0]?.catalog).toBe('registry.redhat.io/redhat/redhat-operator-index:v4.19');
    expect(config.mirror.operators[0]?.packages.map((p) => p.name)).toEqual(['web-terminal', 'cluster-logging', 'compliance-operator']);
    expect(config.mirror.additionalImages).toEqual([{ name: 'registry.redhat.io/ubi9/ubi:latest' }]);
    expect(config.mirror.blockedImages).toEqual([]);
    expect(config.meshmirror).toBeUndefined();
  });
});

describe('parseImageSetConfig', () => {
  it('accepts every field of a v2alpha1 file', () => {
    const config = parseImageSetConfig(V2_FULL, 'full.yaml');
    expect(config.archiveSize).toBe(4);
    expect(config.mirror.platform?.channels[1]).toEqual({ name: '4-stable', type: 'okd', full: true, shortestPath: false });
    expect(config.mirror.operators[0]?.packages[1]?.selectors[0]?.matchLabels).toEqual({ version: '1.2.3' });
    expect(config.mirror.operators[1]?.catalog).toBe('oci:///srv/catalogs/my-index');
    expect(config.mirror.additionalImages[1]).toMatchObject({ targetRepo: 'custom-namespace/my-image', targetTag: 'custom-tag' });
    expect(config.mirror.helm?.repositories[0]?.charts[0]?.values).toEqual({ replicas: 2 });
    expect(config.meshmirror).toEqual({
      imageTimeoutMs: 90 * 60_000,
      stallTimeoutMs: 120_000,
      connectTimeoutMs: 15_000,
      headersTimeoutMs: 60_000,
      retryTimes: 10,
      retryDelayMs: 30_000,
      parallelImages: 8,
      parallelLayers: 12,
      srcTlsVerify: false,
      destTlsVerify: true,
      pieceSizeBytes: 64 * 1024 * 1024,
    });
  });

  it('accepts a v1alpha2 file with the fields only oc-mirror v1 had', () => {
    const config = parseImageSetConfig(V1_WITH_STORAGE, 'v1.yaml');
    expect(config.storageConfig?.registry).toEqual({ imageURL: 'registry.example.com/mirror/oc-mirror-metadata', skipTLS: false });
    expect(config.mirror.operators[0]?.targetName).toBe('my-index');
    expect(config.mirror.operators[0]?.packages[0]?.minBundle).toBe('rhacs-operator.v3.67.0');
  });

  it('refuses storageConfig in v2alpha1, saying it belongs to v1alpha2', () => {
    const text = V1_WITH_STORAGE.replace('v1alpha2', 'v2alpha1');
    const { message, problems } = problemsOf(text, 'v2.yaml');
    expect(problems.map((p) => p.path)).toEqual(['storageConfig', 'mirror.operators[0].targetName', 'mirror.operators[0].packages[0].minBundle']);
    expect(message.split('\n')[0]).toBe(
      'v2.yaml:3:1: storageConfig: only valid with apiVersion mirror.openshift.io/v1alpha2 (oc-mirror v1); ' +
        'oc-mirror v2 and meshmirror keep their metadata in the cache and workspace folders: remove it',
    );
  });

  it('keeps version fields as written, though YAML reads 4.10 as a number', () => {
    const config = parseImageSetConfig(
      v2(`  platform:
    channels:
    - name: stable-4.10
      minVersion: 4.10.3
  operators:
  - catalog: registry.redhat.io/redhat/redhat-operator-index:v4.10
    targetTag: 4.10
    packages:
    - name: p
      minVersion: 4.10
      maxVersion: 5
    - name: q
      channels:
      - name: stable
        minVersion: 1.20
  additionalImages:
  - name: quay.io/a/b:1.0
    targetTag: 1.0
`),
      'isc.yaml',
    );
    const operator = config.mirror.operators[0];
    expect(operator?.targetTag).toBe('4.10');
    expect(operator?.packages[0]?.minVersion).toBe('4.10');
    expect(operator?.packages[0]?.maxVersion).toBe('5');
    expect(operator?.packages[1]?.channels[0]?.minVersion).toBe('1.20');
    expect(config.mirror.additionalImages[0]?.targetTag).toBe('1.0');
  });

  it('keeps typed values where numbers are meant', () => {
    const config = parseImageSetConfig(v2('  additionalImages: []\n', 'archiveSize: 0.05\nmeshmirror:\n  retryTimes: 3\n  imageTimeout: 90\n'), 'isc.yaml');
    expect(config.archiveSize).toBe(0.05);
    expect(config.meshmirror).toEqual({ retryTimes: 3, imageTimeoutMs: 90_000 });
  });

  it('reads an empty value as an absent field, as oc-mirror does', () => {
    const config = parseImageSetConfig(v2('  additionalImages:\n  operators:\n'), 'isc.yaml');
    expect(config.mirror.additionalImages).toEqual([]);
    expect(config.mirror.operators).toEqual([]);
  });

  it('reports an unknown field with its path, inside arrays too', () => {
    const { message, problems } = problemsOf(
      v2(`  additionalImages:
  - name: registry.redhat.io/ubi9/ubi:latest
  - nam: registry.redhat.io/ubi9/ubi-minimal:latest
`),
      'imageset-config.yaml',
    );
    expect(problems).toContainEqual({
      path: 'mirror.additionalImages[1].nam',
      line: 6,
      col: 5,
      message: 'unknown field "nam" (did you mean "name"?)',
    });
    expect(message).toContain('imageset-config.yaml:6:5: mirror.additionalImages[1].nam: unknown field "nam"');
    // The required field the typo left out is reported too.
    expect(problems.map((p) => p.path)).toContain('mirror.additionalImages[1].name');
  });

  it('reports unknown fields deep in operator packages, one line each', () => {
    const { message, problems } = problemsOf(
      v2(`  operators:
  - catalog: registry.redhat.io/redhat/redhat-operator-index:v4.19
    packages:
    - name: web-terminal
      channels:
      - name: fast
        minversion: 1.0.0
        headsOnly: true
`),
    );
    expect(problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'mirror.operators[0].packages[0].channels[0].minversion: unknown field "minversion" (did you mean "minVersion"?)',
      'mirror.operators[0].packages[0].channels[0].headsOnly: unknown field "headsOnly"',
    ]);
    expect(message.split('\n')).toHaveLength(2);
  });

  it('refuses unknown top-level fields and says which', () => {
    const { problems } = problemsOf(v2('  additionalImages: []\n', 'mirrors: {}\n'));
    expect(problems).toEqual([{ path: 'mirrors', line: 3, col: 1, message: 'unknown field "mirrors" (did you mean "mirror"?)' }]);
  });

  it('reports malformed YAML as file:line:col on one line', () => {
    const { message } = problemsOf(`kind: ImageSetConfiguration
apiVersion: mirror.openshift.io/v2alpha1
mirror:
  additionalImages:
  - name: quay.io/a/b:1
   targetTag: x
`);
    expect(message).toMatch(/^isc\.yaml:6:\d+: invalid YAML: \S.*$/);
    expect(message).not.toContain('\n');
  });

  it('reports duplicate keys as a YAML error', () => {
    const { message } = problemsOf(v2('  additionalImages:\n  - name: quay.io/a/b:1\n    name: quay.io/a/c:1\n'));
    expect(message).toMatch(/^isc\.yaml:6:5: invalid YAML: .*unique/);
  });

  it('reports an empty file and a file with several documents', () => {
    expect(problemsOf('').message).toBe('isc.yaml: the file is empty');
    expect(problemsOf('# nothing here\n').message).toBe('isc.yaml: the file is empty');
    expect(problemsOf('a: 1\n---\nb: 2\n').message).toBe('isc.yaml:2:1: invalid YAML: the file holds more than one YAML document');
  });

  it('names the field and reason of a bad image reference', () => {
    const { message, problems } = problemsOf(
      v2(`  additionalImages:
  - name: quay.io/a/b:1
  - name: quay.io/a/c:2
  - name: quay.io/a/d:3
  - name: quay.io/My/Image:latest
`),
      'imageset-config.yaml',
    );
    expect(message).toBe(
      'imageset-config.yaml:8:5: mirror.additionalImages[3].name: invalid image reference "quay.io/My/Image:latest": ' +
        'repository component "My" must be lower-case letters, digits and separators',
    );
    expect(problems).toHaveLength(1);
  });

  it('checks catalogs, release images and blocked images', () => {
    const { problems } = problemsOf(
      v2(`  platform:
    release: quay.io/openshift-release-dev/ocp-release@sha256:short
  operators:
  - catalog: registry.redhat.io/redhat/Redhat-operator-index:v4.19
  blockedImages:
  - name: "[unclosed"
`),
    );
    expect(problems.map((p) => p.path)).toEqual(['mirror.platform.release', 'mirror.operators[0].catalog', 'mirror.blockedImages[0].name']);
    expect(problems[0]?.message).toContain('is not a sha256 digest');
    expect(problems[2]?.message).toContain('not a regular expression either');
  });

  it('accepts archiveSize fractions and refuses 0 or text', () => {
    expect(parseImageSetConfig(v2('  additionalImages: []\n', 'archiveSize: 0.05\n'), 'isc.yaml').archiveSize).toBe(0.05);
    expect(parseImageSetConfig(v2('  additionalImages: []\n'), 'isc.yaml').archiveSize).toBe(500);
    expect(problemsOf(v2('  additionalImages: []\n', 'archiveSize: 0\n'), 'imageset-config.yaml').message).toBe(
      'imageset-config.yaml:3:1: archiveSize: expected a number of GiB > 0, got 0',
    );
    expect(problemsOf(v2('  additionalImages: []\n', 'archiveSize: big\n'), 'imageset-config.yaml').message).toBe(
      'imageset-config.yaml:3:1: archiveSize: expected a number of GiB > 0, got "big"',
    );
    expect(problemsOf(v2('  additionalImages: []\n', 'archiveSize: abc\n')).problems[0]?.message).toBe('expected a number of GiB > 0, got "abc"');
  });

  it('explains a wrong or missing apiVersion and kind', () => {
    expect(problemsOf('kind: ImageSetConfiguration\nmirror: {}\n').message).toBe(
      'isc.yaml:1:1: apiVersion: required field is missing (expected mirror.openshift.io/v2alpha1 or mirror.openshift.io/v1alpha2)',
    );
    expect(problemsOf('kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v1alpha1\nmirror: {}\n').message).toContain(
      "isc.yaml:2:1: apiVersion: mirror.openshift.io/v1alpha1 is oc-mirror's first format",
    );
    expect(problemsOf('kind: DeleteImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\nmirror: {}\n').message).toBe(
      'isc.yaml:1:1: kind: expected ImageSetConfiguration, got "DeleteImageSetConfiguration"',
    );
    expect(problemsOf('kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\n').message).toBe(
      'isc.yaml:1:1: mirror: required field is missing (expected a mapping)',
    );
  });

  it('checks release versions and channel rules', () => {
    const { problems } = problemsOf(
      v2(`  platform:
    architectures: [x86_64]
    channels:
    - name: stable-4.19
      minVersion: 4.19
    - name: stable-4.18
      minVersion: 4.18.10
      maxVersion: 4.18.2
    - name: stable-4.19
      type: ocp4
`),
    );
    expect(problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'mirror.platform.architectures[0]: expected one of amd64, arm64, ppc64le, s390x, multi, got "x86_64"',
      'mirror.platform.channels[0].minVersion: expected a release version like 4.19.2, got "4.19"',
      'mirror.platform.channels[1].maxVersion: maxVersion 4.18.2 is older than minVersion 4.18.10',
      'mirror.platform.channels[2].type: expected one of "ocp", "okd", got "ocp4"',
    ]);
    // The duplicate check over all channels runs once every channel is well formed.
    const duplicates = problemsOf(v2('  platform:\n    channels:\n    - name: stable-4.18\n    - name: eus-4.18\n    - name: stable-4.18\n')).problems;
    expect(duplicates.map((p) => `${p.line}:${p.col}: ${p.path}: ${p.message}`)).toEqual([
      '8:7: mirror.platform.channels[2].name: channel "stable-4.18" is already listed at channels[0]',
    ]);
  });

  it('refuses version ranges that oc-mirror refuses', () => {
    const { problems } = problemsOf(
      v2(`  operators:
  - catalog: registry.redhat.io/redhat/redhat-operator-index:v4.19
    packages:
    - name: a
      minVersion: 1.0.0
      channels: [{name: stable}]
  - catalog: registry.redhat.io/redhat/certified-operator-index:v4.19
    full: true
    packages:
    - name: b
      channels: [{name: stable, maxVersion: 2.0.0}]
`),
    );
    expect(problems.map((p) => p.path)).toEqual(['mirror.operators[0].packages[0].minVersion', 'mirror.operators[1].packages[0].channels[0].maxVersion']);
  });

  it('checks the meshmirror block and names the field', () => {
    const { problems } = problemsOf(
      v2('  additionalImages: []\n', 'meshmirror:\n  imageTimeout: 90x\n  parallelImages: 0\n  retryTimes: -1\n  pieceSize: 64\n  stallTimeout: 0\n  retries: 3\n'),
    );
    expect(problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'meshmirror.imageTimeout: invalid duration "90x": expected seconds or a Go duration such as "90s", "30m", "1h30m" or "500ms"',
      'meshmirror.parallelImages: expected a whole number of at least 1, got 0',
      'meshmirror.retryTimes: expected a whole number of at least 0, got -1',
      'meshmirror.pieceSize: must be at least 1MiB, got 64 (bare numbers are bytes; write e.g. "64MiB")',
      'meshmirror.stallTimeout: must be longer than 0, got 0',
      'meshmirror.retries: unknown field "retries"',
    ]);
  });

  it('lists a few problems and counts the rest', () => {
    const images = Array.from({ length: 8 }, (_, i) => `  - name: quay.io/a/B${i}:1\n`).join('');
    const { message, problems } = problemsOf(v2(`  additionalImages:\n${images}`));
    expect(problems).toHaveLength(8);
    const lines = message.split('\n');
    expect(lines).toHaveLength(6);
    expect(lines[0]).toMatch(/^isc\.yaml:5:5: mirror\.additionalImages\[0\]\.name: invalid image reference/);
    expect(lines[5]).toBe('isc.yaml: ... and 3 more problems');
  });
});

describe('loadImageSetConfig', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a file', async () => {
    const file = join(dir, 'v2.yaml');
    await writeFile(file, V2_FULL);
    const config = await loadImageSetConfig(file);
    expect(config.mirror.additionalImages).toHaveLength(2);
  });

  it('names the file when it cannot be read', async () => {
    const missing = join(dir, 'missing.yaml');
    const err = await loadImageSetConfig(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MeshmirrorError);
    expect(err).toMatchObject({ code: 'MM_CONFIG_UNREADABLE', message: `${missing}: cannot read: no such file` });
    await expect(loadImageSetConfig(dir)).rejects.toMatchObject({ code: 'MM_CONFIG_UNREADABLE', message: `${dir}: cannot read: is a directory` });
  });

  it('names the file in validation errors', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, v2('  additionalImages:\n  - name: quay.io/a/b:1\n    nam: x\n'));
    await expect(loadImageSetConfig(file)).rejects.toMatchObject({
      code: 'MM_CONFIG_INVALID',
      file,
      path: 'mirror.additionalImages[0].nam',
      message: `${file}:6:5: mirror.additionalImages[0].nam: unknown field "nam" (did you mean "name"?)`,
    });
  });

  it('stops when aborted', async () => {
    const file = join(dir, 'v2.yaml');
    await expect(loadImageSetConfig(file, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
  });
});
