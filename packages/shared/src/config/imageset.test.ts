import { describe, expect, it } from 'vitest';
import { formatConfigPath, IMAGESET_API_V1ALPHA2, IMAGESET_API_V2ALPHA1, ImageSetConfigSchema, unknownFieldMessage, unsupportedImageSetContent } from './imageset.ts';

const base = { kind: 'ImageSetConfiguration', apiVersion: IMAGESET_API_V2ALPHA1 };

describe('ImageSetConfigSchema', () => {
  it('fills in oc-mirror defaults', () => {
    const config = ImageSetConfigSchema.parse({
      ...base,
      mirror: { platform: { channels: [{ name: 'stable-4.19' }] }, operators: [{ catalog: 'registry.redhat.io/redhat/redhat-operator-index:v4.19' }] },
    });
    expect(config.archiveSize).toBe(500);
    expect(config.mirror.platform).toEqual({
      channels: [{ name: 'stable-4.19', type: 'ocp', shortestPath: false, full: false }],
      graph: false,
      architectures: ['amd64'],
      kubeVirtContainer: false,
    });
    expect(config.mirror.operators[0]).toEqual({
      catalog: 'registry.redhat.io/redhat/redhat-operator-index:v4.19',
      full: false,
      skipDependencies: false,
      includeDependencies: false,
      packages: [],
    });
    expect(config.mirror.additionalImages).toEqual([]);
    expect(config.mirror.blockedImages).toEqual([]);
  });

  it('reads an empty architectures list as amd64, as oc-mirror does, and accepts multi', () => {
    const parse = (architectures: string[]) => ImageSetConfigSchema.parse({ ...base, mirror: { platform: { architectures } } }).mirror.platform?.architectures;
    expect(parse([])).toEqual(['amd64']);
    expect(parse(['multi'])).toEqual(['multi']);
    expect(parse(['arm64', 's390x', 'ppc64le'])).toEqual(['arm64', 's390x', 'ppc64le']);
  });

  it('reads platform.platforms as the release architectures, and refuses both forms or a platform with no payload', () => {
    const parse = (platform: Record<string, unknown>) => ImageSetConfigSchema.safeParse({ ...base, mirror: { platform } });
    expect(parse({}).data?.mirror.platform?.architectures).toEqual(['amd64']);
    const arm = { os: 'linux', architecture: 'arm64' };
    expect(parse({ platforms: [arm, { os: 'linux', architecture: 's390x' }, arm] }).data?.mirror.platform?.architectures).toEqual(['arm64', 's390x']);
    expect(parse({ platforms: [arm], architectures: ['amd64'] }).error?.issues.map((i) => formatConfigPath(i.path))).toEqual(['mirror.platform.platforms']);
    const bad = parse({
      platforms: [
        { os: 'windows', architecture: 'amd64' },
        { os: 'linux', architecture: 'riscv64' },
      ],
    });
    expect(bad.error?.issues.map((i) => [formatConfigPath(i.path), i.message])).toEqual([
      ['mirror.platform.platforms[0]', expect.stringContaining('not windows/amd64')],
      ['mirror.platform.platforms[1]', expect.stringContaining('not linux/riscv64')],
    ]);
  });

  it('takes platforms on additional images, operator catalogs and charts, each entry with os and architecture', () => {
    const arm = [{ os: 'linux', architecture: 'arm64' }];
    const config = ImageSetConfigSchema.parse({
      ...base,
      mirror: {
        additionalImages: [{ name: 'quay.io/a/b:1', platforms: arm }],
        operators: [{ catalog: 'quay.io/a/index:v1', platforms: arm }],
        helm: { local: [{ name: 'c', path: '/c.tgz', platforms: arm }] },
      },
    });
    expect(config.mirror.additionalImages[0]?.platforms).toEqual(arm);
    expect(config.mirror.operators[0]?.platforms).toEqual(arm);
    expect(config.mirror.helm?.local[0]?.platforms).toEqual(arm);
    const missing = ImageSetConfigSchema.safeParse({ ...base, mirror: { additionalImages: [{ name: 'quay.io/a/b:1', platforms: [{ os: 'linux' }] }] } });
    expect(missing.error?.issues.map((i) => formatConfigPath(i.path))).toEqual(['mirror.additionalImages[0].platforms[0].architecture']);
  });

  it('refuses unknown fields when used on its own, with their path', () => {
    const result = ImageSetConfigSchema.safeParse({ ...base, mirror: { additionalImages: [{ name: 'quay.io/a/b:1', nam: 'x' }] } });
    expect(result.success).toBe(false);
    expect(result.error?.issues).toEqual([expect.objectContaining({ code: 'unrecognized_keys', keys: ['nam'], path: ['mirror', 'additionalImages', 0] })]);
  });

  it('keeps v1-only fields to v1alpha2', () => {
    const withStorage = { mirror: {}, storageConfig: { local: { path: '/var/oc-mirror' } } };
    expect(ImageSetConfigSchema.parse({ ...base, apiVersion: IMAGESET_API_V1ALPHA2, ...withStorage }).storageConfig).toEqual({
      local: { path: '/var/oc-mirror' },
    });
    const v2 = ImageSetConfigSchema.safeParse({ ...base, ...withStorage });
    expect(v2.error?.issues[0]).toMatchObject({ path: ['storageConfig'], message: expect.stringContaining('only valid with apiVersion mirror.openshift.io/v1alpha2') });
  });

  it('refuses a minVersion together with a v1 minBundle', () => {
    const result = ImageSetConfigSchema.safeParse({
      ...base,
      apiVersion: IMAGESET_API_V1ALPHA2,
      mirror: { operators: [{ catalog: 'quay.io/a/index:1', packages: [{ name: 'p', minVersion: '1.0.0', minBundle: 'p.v1.0.0' }] }] },
    });
    expect(result.error?.issues).toEqual([
      expect.objectContaining({ path: ['mirror', 'operators', 0, 'packages', 0, 'minBundle'], message: 'minVersion and minBundle cannot both be set' }),
    ]);
  });

  it('checks destination paths and tags', () => {
    const result = ImageSetConfigSchema.safeParse({
      ...base,
      mirror: {
        operators: [{ catalog: 'quay.io/a/index:1', targetCatalog: 'My-Org/index:v1', targetTag: 'bad tag' }],
        additionalImages: [{ name: 'quay.io/a/b:1', targetRepo: 'ok/path', targetTag: 'v1.0' }],
      },
    });
    expect(result.error?.issues.map((i) => formatConfigPath(i.path))).toEqual(['mirror.operators[0].targetCatalog', 'mirror.operators[0].targetTag']);
  });

  it('requires helm repositories to be http(s) or oci:// URLs and local charts to have a path', () => {
    const result = ImageSetConfigSchema.safeParse({
      ...base,
      mirror: {
        helm: {
          repositories: [
            { name: 'r', url: 'ftp://example.com/charts' },
            { name: 'o', url: 'oci://' },
            { name: 'ok', url: 'oci://ghcr.io/stefanprodan/charts' },
            { name: 'ok2', url: 'https://stefanprodan.github.io/podinfo/' },
          ],
          local: [{ name: 'c' }],
        },
      },
    });
    expect(result.error?.issues.map((i) => formatConfigPath(i.path))).toEqual([
      'mirror.helm.repositories[0].url',
      'mirror.helm.repositories[1].url',
      'mirror.helm.local[0].path',
    ]);
  });
});

describe('unsupportedImageSetContent', () => {
  it('lists what meshmirror reads but does not mirror', () => {
    const config = ImageSetConfigSchema.parse({
      ...base,
      apiVersion: IMAGESET_API_V1ALPHA2,
      storageConfig: { local: { path: '/x' } },
      mirror: { helm: { local: [{ name: 'c', path: '/charts/c.tgz' }] }, samples: [{ name: 'quay.io/a/sample:1' }] },
    });
    // Helm charts are mirrored: not a notice any more.
    expect(unsupportedImageSetContent(config).map((n) => n.path)).toEqual(['mirror.samples', 'storageConfig']);
  });

  it('is empty for a plain image set', () => {
    const config = ImageSetConfigSchema.parse({ ...base, mirror: { additionalImages: [{ name: 'quay.io/a/b:1' }], helm: {} } });
    expect(unsupportedImageSetContent(config)).toEqual([]);
  });
});

describe('messages', () => {
  it('suggests the field the user probably meant', () => {
    const known = ['name', 'targetRepo', 'targetTag'];
    expect(unknownFieldMessage('nam', known)).toBe('unknown field "nam" (did you mean "name"?)');
    expect(unknownFieldMessage('targetrepo', known)).toBe('unknown field "targetrepo" (did you mean "targetRepo"?)');
    expect(unknownFieldMessage('tag', known)).toBe('unknown field "tag"');
  });

  it('formats field paths as users read them', () => {
    expect(formatConfigPath(['mirror', 'additionalImages', 3, 'name'])).toBe('mirror.additionalImages[3].name');
    expect(formatConfigPath([])).toBe('');
  });
});
