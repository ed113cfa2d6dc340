/**
 * Table-driven tests of catalog selection over a small hand-written catalog. Every expectation was
 * worked out by hand from the graph below, not produced by the code under test.
 *
 *   alpha-operator (default channel: stable)
 *     stable: 1.0.0 <- 1.1.0 <- 1.2.0 <- 1.3.0 <- 1.4.0          (head 1.4.0)
 *                                 ^-- 1.2.5 (replaces 1.2.0; skipped by 1.3.0, so off the chain)
 *     fast:   1.3.0 <- 1.4.0 <- 1.5.0                             (head 1.5.0)
 *   beta-operator (default channel: stable)
 *     stable: 0.1.0 <- 0.2.0                                      (head 0.2.0)
 *   gamma-operator (default channel: candidate), never listed below
 *     candidate: 2.0.0
 */
import { describe, expect, it } from 'vitest';
import { ImageSetConfigV2Alpha1Schema, sha256Digest, type OperatorCatalogConfig } from '@meshmirror/shared';
import { buildDeclarativeConfig, type DeclarativeConfig } from './declarative-config.ts';
import { filterCatalog, renderPackageFiles, type CatalogProblem } from './filter-catalog.ts';

const CATALOG = 'registry.example.com/redhat/redhat-operator-index:v4.18';

const image = (repository: string, seed: string): string => `registry.example.com/${repository}@${sha256Digest(seed)}`;
const OPERATOR_OLD = image('alpha/operator', 'operator-old');
const OPERATOR_NEW = image('alpha/operator', 'operator-new');
const PROXY = image('openshift/kube-rbac-proxy', 'proxy');
const BETA_MANAGER = image('beta/manager', 'beta-manager');
const bundleImage = (name: string): string => image('bundles', name);

function bundle(pkg: string, version: string, relatedImages?: Array<{ name?: string; image: string }>) {
  const name = `${pkg.split('-')[0]}.v${version}`;
  return {
    schema: 'olm.bundle',
    name,
    package: pkg,
    image: bundleImage(name),
    properties: [{ type: 'olm.package', value: { packageName: pkg, version } }],
    ...(relatedImages === undefined ? {} : { relatedImages }),
  };
}

const alphaOld = (version: string) => bundle('alpha-operator', version, [{ name: 'operator', image: OPERATOR_OLD }]);

/** The catalog as three files, the way `opm render` splits a catalog: one per package. */
const CATALOG_FILES = [
  {
    path: 'alpha-operator/catalog.json',
    objects: [
      { schema: 'olm.package', name: 'alpha-operator', defaultChannel: 'stable', description: 'Alpha' },
      {
        schema: 'olm.channel',
        name: 'stable',
        package: 'alpha-operator',
        entries: [
          { name: 'alpha.v1.0.0' },
          { name: 'alpha.v1.1.0', replaces: 'alpha.v1.0.0' },
          { name: 'alpha.v1.2.0', replaces: 'alpha.v1.1.0' },
          { name: 'alpha.v1.2.5', replaces: 'alpha.v1.2.0' },
          { name: 'alpha.v1.3.0', replaces: 'alpha.v1.2.0', skips: ['alpha.v1.2.5'] },
          { name: 'alpha.v1.4.0', replaces: 'alpha.v1.3.0', skipRange: '>=1.0.0 <1.4.0' },
        ],
      },
      {
        schema: 'olm.channel',
        name: 'fast',
        package: 'alpha-operator',
        entries: [{ name: 'alpha.v1.3.0' }, { name: 'alpha.v1.4.0', replaces: 'alpha.v1.3.0' }, { name: 'alpha.v1.5.0', replaces: 'alpha.v1.4.0' }],
      },
      alphaOld('1.0.0'),
      alphaOld('1.1.0'),
      alphaOld('1.2.0'),
      alphaOld('1.2.5'),
      bundle('alpha-operator', '1.3.0', [{ name: 'operator', image: OPERATOR_NEW }]),
      // Lists its own bundle image, without a name, as most bundles do.
      bundle('alpha-operator', '1.4.0', [{ image: bundleImage('alpha.v1.4.0') }, { name: 'operator', image: OPERATOR_NEW }, { name: 'kube-rbac-proxy', image: PROXY }]),
      // Does not list its bundle image, which must be mirrored anyway.
      bundle('alpha-operator', '1.5.0', [
        { name: 'operator', image: OPERATOR_NEW },
        { name: 'kube-rbac-proxy', image: PROXY },
      ]),
      {
        schema: 'olm.deprecations',
        package: 'alpha-operator',
        entries: [
          { reference: { schema: 'olm.package' }, message: 'alpha is being replaced by beta' },
          { reference: { schema: 'olm.channel', name: 'fast' }, message: 'fast is going away' },
          { reference: { schema: 'olm.bundle', name: 'alpha.v1.0.0' }, message: '1.0.0 has a CVE' },
        ],
      },
    ],
  },
  {
    path: 'beta-operator/catalog.json',
    objects: [
      { schema: 'olm.package', name: 'beta-operator', defaultChannel: 'stable' },
      { schema: 'olm.channel', name: 'stable', package: 'beta-operator', entries: [{ name: 'beta.v0.1.0' }, { name: 'beta.v0.2.0', replaces: 'beta.v0.1.0' }] },
      bundle('beta-operator', '0.1.0', [{ name: 'manager', image: BETA_MANAGER }]),
      bundle('beta-operator', '0.2.0', [
        { name: 'bundle', image: bundleImage('beta.v0.2.0') },
        { name: 'manager', image: BETA_MANAGER },
        { name: 'proxy', image: PROXY },
      ]),
    ],
  },
  {
    path: 'gamma-operator/catalog.json',
    objects: [
      { schema: 'olm.package', name: 'gamma-operator', defaultChannel: 'candidate' },
      { schema: 'olm.channel', name: 'candidate', package: 'gamma-operator', entries: [{ name: 'gamma.v2.0.0' }] },
      bundle('gamma-operator', '2.0.0'),
    ],
  },
];

function loadCatalog(): DeclarativeConfig {
  return buildDeclarativeConfig(CATALOG_FILES.map((f) => ({ path: f.path, text: f.objects.map((o) => JSON.stringify(o)).join('\n') })));
}

/** The operator entry as the real ImageSetConfiguration schema reads it, defaults included. */
function operatorConfig(entry: Record<string, unknown>): OperatorCatalogConfig {
  const parsed = ImageSetConfigV2Alpha1Schema.parse({
    kind: 'ImageSetConfiguration',
    apiVersion: 'mirror.openshift.io/v2alpha1',
    mirror: { operators: [{ catalog: CATALOG, ...entry }] },
  });
  return parsed.mirror.operators[0]!;
}

interface Case {
  name: string;
  /** `mirror.operators[0]` without `catalog`. */
  operator: Record<string, unknown>;
  bundles: string[];
  /** package → channel → kept entries, in channel order. */
  channels?: Record<string, Record<string, string[]>>;
  /** package → default channel of the filtered package. */
  defaultChannels?: Record<string, string>;
  problems?: CatalogProblem[];
}

const cases: Case[] = [
  {
    name: 'no packages listed: every channel head of every package',
    operator: {},
    bundles: ['alpha.v1.4.0', 'alpha.v1.5.0', 'beta.v0.2.0', 'gamma.v2.0.0'],
    channels: {
      'alpha-operator': { fast: ['alpha.v1.5.0'], stable: ['alpha.v1.4.0'] },
      'beta-operator': { stable: ['beta.v0.2.0'] },
      'gamma-operator': { candidate: ['gamma.v2.0.0'] },
    },
    defaultChannels: { 'alpha-operator': 'stable', 'beta-operator': 'stable', 'gamma-operator': 'candidate' },
  },
  {
    name: 'full with no packages listed: every bundle of every channel',
    operator: { full: true },
    bundles: [
      'alpha.v1.0.0',
      'alpha.v1.1.0',
      'alpha.v1.2.0',
      'alpha.v1.2.5',
      'alpha.v1.3.0',
      'alpha.v1.4.0',
      'alpha.v1.5.0',
      'beta.v0.1.0',
      'beta.v0.2.0',
      'gamma.v2.0.0',
    ],
    channels: {
      'alpha-operator': {
        fast: ['alpha.v1.3.0', 'alpha.v1.4.0', 'alpha.v1.5.0'],
        stable: ['alpha.v1.0.0', 'alpha.v1.1.0', 'alpha.v1.2.0', 'alpha.v1.2.5', 'alpha.v1.3.0', 'alpha.v1.4.0'],
      },
    },
  },
  {
    name: 'package listed without channels: the head of each of its channels',
    operator: { packages: [{ name: 'alpha-operator' }] },
    bundles: ['alpha.v1.4.0', 'alpha.v1.5.0'],
    channels: { 'alpha-operator': { fast: ['alpha.v1.5.0'], stable: ['alpha.v1.4.0'] } },
    defaultChannels: { 'alpha-operator': 'stable' },
  },
  {
    name: 'full with a package listed: every bundle of that package only',
    operator: { full: true, packages: [{ name: 'beta-operator' }] },
    bundles: ['beta.v0.1.0', 'beta.v0.2.0'],
  },
  {
    name: 'channel listed: its head only',
    operator: { packages: [{ name: 'alpha-operator', channels: [{ name: 'stable' }] }] },
    bundles: ['alpha.v1.4.0'],
    channels: { 'alpha-operator': { stable: ['alpha.v1.4.0'] } },
    defaultChannels: { 'alpha-operator': 'stable' },
  },
  {
    name: 'channel minVersion: from min up to the head, with the skipped 1.2.5',
    operator: { packages: [{ name: 'alpha-operator', channels: [{ name: 'stable', minVersion: '1.2.0' }] }] },
    bundles: ['alpha.v1.2.0', 'alpha.v1.2.5', 'alpha.v1.3.0', 'alpha.v1.4.0'],
    channels: { 'alpha-operator': { stable: ['alpha.v1.2.0', 'alpha.v1.2.5', 'alpha.v1.3.0', 'alpha.v1.4.0'] } },
  },
  {
    name: 'channel maxVersion: from the lowest up to max, head excluded',
    operator: { packages: [{ name: 'alpha-operator', channels: [{ name: 'stable', maxVersion: '1.2.0' }] }] },
    bundles: ['alpha.v1.0.0', 'alpha.v1.1.0', 'alpha.v1.2.0'],
    channels: { 'alpha-operator': { stable: ['alpha.v1.0.0', 'alpha.v1.1.0', 'alpha.v1.2.0'] } },
  },
  {
    name: 'channel minVersion and maxVersion',
    operator: { packages: [{ name: 'alpha-operator', channels: [{ name: 'stable', minVersion: '1.1.0', maxVersion: '1.3.0' }] }] },
    bundles: ['alpha.v1.1.0', 'alpha.v1.2.0', 'alpha.v1.2.5', 'alpha.v1.3.0'],
  },
  {
    name: 'maxVersion below the head of a non-default channel, with defaultChannel set',
    operator: { packages: [{ name: 'alpha-operator', defaultChannel: 'fast', channels: [{ name: 'fast', maxVersion: '1.4.0' }] }] },
    bundles: ['alpha.v1.3.0', 'alpha.v1.4.0'],
    channels: { 'alpha-operator': { fast: ['alpha.v1.3.0', 'alpha.v1.4.0'] } },
    defaultChannels: { 'alpha-operator': 'fast' },
  },
  {
    name: 'bounds in short form and with a prerelease: 1.4 is 1.4.0, and 1.5.0-rc.1 is below 1.5.0',
    operator: { packages: [{ name: 'alpha-operator', defaultChannel: 'fast', channels: [{ name: 'fast', minVersion: '1.4', maxVersion: '1.5.0-rc.1' }] }] },
    bundles: ['alpha.v1.4.0'],
  },
  {
    name: 'a bound that is not a version is a problem',
    operator: { packages: [{ name: 'alpha-operator', channels: [{ name: 'stable', minVersion: 'latest' }] }] },
    bundles: [],
    problems: [{ package: 'alpha-operator', channel: 'stable', message: 'minVersion "latest" of package "alpha-operator" is not a version' }],
  },
  {
    name: 'package-level minVersion and maxVersion apply to every channel',
    operator: { packages: [{ name: 'alpha-operator', minVersion: '1.3.0', maxVersion: '1.4.0' }] },
    bundles: ['alpha.v1.3.0', 'alpha.v1.4.0'],
    channels: { 'alpha-operator': { fast: ['alpha.v1.3.0', 'alpha.v1.4.0'], stable: ['alpha.v1.3.0', 'alpha.v1.4.0'] } },
    defaultChannels: { 'alpha-operator': 'stable' },
  },
  {
    name: 'packages[].bundles: exactly those, in the channels that hold them',
    operator: { packages: [{ name: 'alpha-operator', bundles: [{ name: 'alpha.v1.2.5' }, { name: 'alpha.v1.5.0' }] }] },
    bundles: ['alpha.v1.2.5', 'alpha.v1.5.0'],
    channels: { 'alpha-operator': { fast: ['alpha.v1.5.0'], stable: ['alpha.v1.2.5'] } },
    defaultChannels: { 'alpha-operator': 'stable' },
  },
  {
    name: 'a listed bundle that is not in the package is a problem',
    operator: { packages: [{ name: 'beta-operator', bundles: [{ name: 'beta.v0.1.0' }, { name: 'beta.v9.0.0' }] }] },
    bundles: ['beta.v0.1.0'],
    problems: [{ package: 'beta-operator', bundle: 'beta.v9.0.0', message: `bundle "beta.v9.0.0" is not in package "beta-operator" of catalog ${CATALOG}` }],
  },
  {
    name: 'a missing package is a problem; the others are still selected',
    operator: { packages: [{ name: 'nope-operator' }, { name: 'beta-operator' }] },
    bundles: ['beta.v0.2.0'],
    problems: [{ package: 'nope-operator', message: `package "nope-operator" is not in catalog ${CATALOG}` }],
  },
  {
    name: 'a missing channel is a problem naming package and channel; the other channel is kept',
    operator: { packages: [{ name: 'alpha-operator', channels: [{ name: 'stable' }, { name: 'preview' }] }] },
    bundles: ['alpha.v1.4.0'],
    problems: [{ package: 'alpha-operator', channel: 'preview', message: `channel "preview" is not in package "alpha-operator" of catalog ${CATALOG}` }],
  },
  {
    name: 'a range that keeps nothing is a problem; the package is dropped, the others are not',
    operator: { packages: [{ name: 'alpha-operator', channels: [{ name: 'stable', minVersion: '9.0.0' }] }, { name: 'beta-operator' }] },
    bundles: ['beta.v0.2.0'],
    problems: [
      {
        package: 'alpha-operator',
        channel: 'stable',
        message: 'no bundle of channel "stable" of package "alpha-operator" is within minVersion 9.0.0 (head alpha.v1.4.0)',
      },
    ],
  },
  {
    name: 'default channel filtered out: a problem, and the first kept channel becomes the default',
    operator: { packages: [{ name: 'alpha-operator', channels: [{ name: 'fast' }] }] },
    bundles: ['alpha.v1.5.0'],
    defaultChannels: { 'alpha-operator': 'fast' },
    problems: [
      {
        package: 'alpha-operator',
        channel: 'stable',
        message: 'default channel "stable" of package "alpha-operator" is not selected; set packages[].defaultChannel',
      },
    ],
  },
  {
    name: 'packages[].defaultChannel that is not selected is a problem',
    operator: { packages: [{ name: 'alpha-operator', defaultChannel: 'stable', channels: [{ name: 'fast' }] }] },
    bundles: ['alpha.v1.5.0'],
    defaultChannels: { 'alpha-operator': 'fast' },
    problems: [
      {
        package: 'alpha-operator',
        channel: 'stable',
        message: 'defaultChannel "stable" set for package "alpha-operator" is not among its selected channels (fast)',
      },
    ],
  },
  {
    name: 'a package listed twice: both selections are kept',
    operator: {
      packages: [
        { name: 'alpha-operator', channels: [{ name: 'stable' }] },
        { name: 'alpha-operator', channels: [{ name: 'stable', maxVersion: '1.0.0' }] },
      ],
    },
    bundles: ['alpha.v1.0.0', 'alpha.v1.4.0'],
    channels: { 'alpha-operator': { stable: ['alpha.v1.0.0', 'alpha.v1.4.0'] } },
  },
];

describe('filterCatalog', () => {
  it.each(cases)('$name', (c) => {
    const result = filterCatalog(loadCatalog(), operatorConfig(c.operator), CATALOG);
    expect(result.bundles.map((b) => b.name)).toEqual(c.bundles);
    expect(result.problems).toEqual(c.problems ?? []);
    for (const [pkg, channels] of Object.entries(c.channels ?? {})) {
      const kept = result.config.packages.get(pkg);
      expect(Object.fromEntries([...(kept?.channels ?? [])].map(([name, ch]) => [name, ch.entries.map((e) => e.name)]))).toEqual(channels);
    }
    for (const [pkg, channel] of Object.entries(c.defaultChannels ?? {})) {
      expect(result.config.packages.get(pkg)?.defaultChannel).toBe(channel);
      expect(result.config.packages.get(pkg)?.packageObject).toMatchObject({ defaultChannel: channel });
    }
    // The kept bundles are exactly the bundles of the filtered config.
    expect([...result.config.packages.values()].flatMap((p) => [...p.bundles.keys()])).toEqual(c.bundles);
  });

  it('lists each related image once, bundle images included even when the bundle does not list them', () => {
    const result = filterCatalog(loadCatalog(), operatorConfig({}), CATALOG);
    expect(result.relatedImages).toEqual([
      { image: bundleImage('alpha.v1.4.0'), name: '', bundle: 'alpha.v1.4.0', package: 'alpha-operator' },
      { image: OPERATOR_NEW, name: 'operator', bundle: 'alpha.v1.4.0', package: 'alpha-operator' },
      { image: PROXY, name: 'kube-rbac-proxy', bundle: 'alpha.v1.4.0', package: 'alpha-operator' },
      { image: bundleImage('alpha.v1.5.0'), name: '', bundle: 'alpha.v1.5.0', package: 'alpha-operator' },
      { image: bundleImage('beta.v0.2.0'), name: 'bundle', bundle: 'beta.v0.2.0', package: 'beta-operator' },
      { image: BETA_MANAGER, name: 'manager', bundle: 'beta.v0.2.0', package: 'beta-operator' },
      { image: bundleImage('gamma.v2.0.0'), name: '', bundle: 'gamma.v2.0.0', package: 'gamma-operator' },
    ]);
    expect(result.relatedImages.some((r) => r.image === OPERATOR_OLD)).toBe(false);
  });

  it('leaves the catalog it filters untouched', () => {
    const catalog = loadCatalog();
    filterCatalog(catalog, operatorConfig({ packages: [{ name: 'alpha-operator', channels: [{ name: 'fast' }] }] }), CATALOG);
    const alpha = catalog.packages.get('alpha-operator');
    expect(alpha?.packageObject.defaultChannel).toBe('stable');
    expect(alpha?.channels.get('fast')?.object.entries).toHaveLength(3);
    expect(alpha?.others[0]).toMatchObject({ entries: [{}, {}, {}] });
  });
});

describe('renderPackageFiles', () => {
  const filterAlphaFast = () =>
    filterCatalog(
      loadCatalog(),
      operatorConfig({ packages: [{ name: 'alpha-operator', channels: [{ name: 'fast', minVersion: '1.4.0' }] }, { name: 'beta-operator' }] }),
      CATALOG,
    );

  it('writes one JSON stream per package that reads back as the filtered catalog', () => {
    const files = renderPackageFiles(filterAlphaFast().config);
    expect(files.map((f) => f.path)).toEqual(['alpha-operator/catalog.json', 'beta-operator/catalog.json']);
    const reread = buildDeclarativeConfig(files.map((f) => ({ path: f.path, text: f.content })));
    const alpha = reread.packages.get('alpha-operator');
    expect(alpha?.defaultChannel).toBe('fast');
    expect(alpha?.packageObject).toEqual({ schema: 'olm.package', name: 'alpha-operator', defaultChannel: 'fast', description: 'Alpha' });
    expect([...(alpha?.channels.keys() ?? [])]).toEqual(['fast']);
    // Kept entries keep their edges, even to bundles that are gone.
    expect(alpha?.channels.get('fast')?.entries).toEqual([
      { name: 'alpha.v1.4.0', replaces: 'alpha.v1.3.0' },
      { name: 'alpha.v1.5.0', replaces: 'alpha.v1.4.0' },
    ]);
    expect([...(alpha?.bundles.keys() ?? [])]).toEqual(['alpha.v1.4.0', 'alpha.v1.5.0']);
    // Deprecations of dropped bundles go; the package's and the kept channel's stay.
    expect(alpha?.others).toEqual([
      {
        schema: 'olm.deprecations',
        package: 'alpha-operator',
        entries: [
          { reference: { schema: 'olm.package' }, message: 'alpha is being replaced by beta' },
          { reference: { schema: 'olm.channel', name: 'fast' }, message: 'fast is going away' },
        ],
      },
    ]);
  });

  it('orders objects as package, channels, bundles, others, each pretty-printed', () => {
    const files = renderPackageFiles(filterCatalog(loadCatalog(), operatorConfig({ full: true, packages: [{ name: 'alpha-operator' }] }), CATALOG).config);
    const content = files[0]!.content;
    const objects = content
      .trimEnd()
      .split(/\n(?=\{)/)
      .map((text) => JSON.parse(text) as { schema: string; name?: string });
    expect(objects.map((o) => `${o.schema} ${o.name ?? ''}`.trim())).toEqual([
      'olm.package alpha-operator',
      'olm.channel fast',
      'olm.channel stable',
      'olm.bundle alpha.v1.0.0',
      'olm.bundle alpha.v1.1.0',
      'olm.bundle alpha.v1.2.0',
      'olm.bundle alpha.v1.2.5',
      'olm.bundle alpha.v1.3.0',
      'olm.bundle alpha.v1.4.0',
      'olm.bundle alpha.v1.5.0',
      'olm.deprecations',
    ]);
    expect(content.startsWith('{\n  "schema": "olm.package",\n  "name": "alpha-operator",\n')).toBe(true);
    expect(content.endsWith('}\n')).toBe(true);
  });

  it('gives the same bytes for the same input', () => {
    expect(renderPackageFiles(filterAlphaFast().config)).toEqual(renderPackageFiles(filterAlphaFast().config));
  });

  it('refuses a package name that would escape the configs folder', () => {
    const catalog = buildDeclarativeConfig([
      {
        path: 'evil.json',
        text: [
          { schema: 'olm.package', name: '../evil', defaultChannel: 'a' },
          { schema: 'olm.channel', name: 'a', package: '../evil', entries: [{ name: 'e.v1' }] },
          { ...bundle('../evil', '1.0.0'), name: 'e.v1' },
        ]
          .map((o) => JSON.stringify(o))
          .join('\n'),
      },
    ]);
    expect(() => renderPackageFiles(filterCatalog(catalog, operatorConfig({}), CATALOG).config)).toThrow(/cannot be used as a folder name/);
  });
});
