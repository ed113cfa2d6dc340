import { describe, expect, it } from 'vitest';
import { MeshmirrorError } from '@meshmirror/shared';
import { buildDeclarativeConfig, parseCatalogFile } from './declarative-config.ts';

const pkg = { schema: 'olm.package', name: 'foo', defaultChannel: 'stable' };
const channel = {
  schema: 'olm.channel',
  name: 'stable',
  package: 'foo',
  entries: [{ name: 'foo.v1.0.0' }, { name: 'foo.v1.1.0', replaces: 'foo.v1.0.0', skipRange: '<1.1.0' }],
};
const bundle = (version: string, extra: Record<string, unknown> = {}) => ({
  schema: 'olm.bundle',
  name: `foo.v${version}`,
  package: 'foo',
  image: `quay.io/foo/bundle:v${version}`,
  properties: [
    { type: 'olm.package', value: { packageName: 'foo', version } },
    { type: 'olm.gvk', value: { group: 'foo.io', kind: 'Foo', version: 'v1' } },
  ],
  relatedImages: [{ name: 'operator', image: 'quay.io/foo/operator@sha256:' + 'a'.repeat(64) }, { image: `quay.io/foo/bundle:v${version}` }],
  ...extra,
});

function thrown(fn: () => unknown): MeshmirrorError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MeshmirrorError);
    return err as MeshmirrorError;
  }
  throw new Error('expected an error');
}

describe('parseCatalogFile', () => {
  it('reads a JSON stream of concatenated objects, whatever the whitespace between them', () => {
    const text = `${JSON.stringify(pkg, null, 2)}\n${JSON.stringify(channel)}${JSON.stringify(bundle('1.0.0'))}\n\n`;
    const objects = parseCatalogFile(text, 'foo/catalog.json');
    expect(objects.map((o) => o.kind)).toEqual(['package', 'channel', 'bundle']);
    expect(objects[1]?.object).toEqual(channel);
  });

  it('reads a file holding a single object', () => {
    expect(parseCatalogFile(JSON.stringify(pkg), 'foo/index.json')).toEqual([{ kind: 'package', object: pkg }]);
  });

  it('is not confused by braces and escaped quotes inside strings', () => {
    const tricky = { ...pkg, description: 'a "quoted" {brace} [bracket] \\ and }{' };
    const objects = parseCatalogFile(`${JSON.stringify(tricky)}${JSON.stringify(channel)}`, 'foo/catalog.json');
    expect(objects[0]?.object).toEqual(tricky);
    expect(objects).toHaveLength(2);
  });

  it('keeps unknown fields and their order, so objects are re-emitted as read', () => {
    const text = '{"schema":"olm.package","zeta":1,"name":"foo","icon":{"base64data":"AA==","mediatype":"image/png"},"alpha":[true]}';
    const [only] = parseCatalogFile(text, 'foo/catalog.json');
    expect(JSON.stringify(only?.object)).toBe(text);
  });

  it('reads multi-document YAML and skips empty documents', () => {
    const text = [
      '---',
      'schema: olm.package',
      'name: foo',
      'defaultChannel: stable',
      '---',
      '---',
      'schema: olm.channel',
      'package: foo',
      'name: stable',
      'entries:',
      '  - name: foo.v1.0.0',
      '---',
      'schema: olm.deprecations',
      'package: foo',
      'entries: []',
      '',
    ].join('\n');
    const objects = parseCatalogFile(text, 'foo/catalog.yaml');
    expect(objects.map((o) => o.kind)).toEqual(['package', 'channel', 'other']);
    expect(objects[2]?.object).toEqual({ schema: 'olm.deprecations', package: 'foo', entries: [] });
    expect(parseCatalogFile('schema: olm.package\nname: bar\n', 'bar.yml')[0]?.object).toEqual({ schema: 'olm.package', name: 'bar' });
  });

  it('names the file, the object and the field in validation errors', () => {
    const bad = { schema: 'olm.channel', name: 'stable', package: 'foo', entries: [{ name: 'foo.v1.0.0' }, { replaces: 'foo.v1.0.0' }] };
    const err = thrown(() => parseCatalogFile(`${JSON.stringify(pkg)}\n${JSON.stringify(bad)}`, 'foo/catalog.json'));
    expect(err.code).toBe('MM_MANIFEST_INVALID');
    expect(err.message).toMatch(/^foo\/catalog\.json object 2 \(olm\.channel "stable"\): entries\[1\]\.name: /);
  });

  it('rejects a bundle without an image field and an object without a schema', () => {
    const { image: _image, ...noImage } = bundle('1.0.0');
    expect(thrown(() => parseCatalogFile(JSON.stringify(noImage), 'x.json')).message).toMatch(/x\.json object 1 \(olm\.bundle "foo\.v1\.0\.0"\): image: /);
    expect(thrown(() => parseCatalogFile('{"name":"x"}', 'x.json')).message).toBe('x.json object 1 ("x"): no "schema" field');
  });

  it('rejects arrays, stray values, unclosed objects and bad JSON, naming the line', () => {
    expect(thrown(() => parseCatalogFile('[{"schema":"olm.package","name":"foo"}]', 'a.json')).message).toMatch(/^a\.json:1: object 1: .*an array/);
    expect(thrown(() => parseCatalogFile(`${JSON.stringify(pkg)}\n\n42`, 'a.json')).message).toMatch(/^a\.json:3: object 2: expected a JSON object/);
    expect(thrown(() => parseCatalogFile(`${JSON.stringify(pkg)}\n{"schema": "olm.package"`, 'a.json')).message).toMatch(/^a\.json:2: object 2 is not closed/);
    expect(thrown(() => parseCatalogFile('{"schema": olm.package}', 'a.json')).message).toMatch(/^a\.json:1: object 1 is not valid JSON/);
    expect(thrown(() => parseCatalogFile('schema: [', 'a.yaml')).message).toMatch(/^a\.yaml: document 1 is not valid YAML/);
    expect(thrown(() => parseCatalogFile('{}', 'a.txt')).message).toMatch(/not a catalog file/);
  });

  it('accepts a byte order mark', () => {
    expect(parseCatalogFile(`\uFEFF${JSON.stringify(pkg)}`, 'a.json')).toHaveLength(1);
  });
});

describe('buildDeclarativeConfig', () => {
  const files = [
    { path: 'configs/foo/package.json', text: `${JSON.stringify(pkg)}\n${JSON.stringify(channel)}` },
    {
      path: 'configs/foo/bundles.yaml',
      text: [bundle('1.0.0'), bundle('1.1.0', { custom: 'kept' })].map((b) => `---\n${JSON.stringify(b)}`).join('\n'),
    },
    {
      path: 'configs/foo/deprecations.json',
      text: JSON.stringify({ schema: 'olm.deprecations', package: 'foo', entries: [{ reference: { schema: 'olm.bundle', name: 'foo.v1.0.0' }, message: 'old' }] }),
    },
    { path: 'configs/global.json', text: JSON.stringify({ schema: 'example.global', value: 1 }) },
  ];

  it('merges a package spread over several files', () => {
    const config = buildDeclarativeConfig(files);
    const foo = config.packages.get('foo');
    expect(foo?.defaultChannel).toBe('stable');
    expect(foo?.packageObject).toEqual(pkg);
    expect([...(foo?.channels.keys() ?? [])]).toEqual(['stable']);
    expect(foo?.channels.get('stable')?.entries.map((e) => e.name)).toEqual(['foo.v1.0.0', 'foo.v1.1.0']);
    expect([...(foo?.bundles.keys() ?? [])]).toEqual(['foo.v1.0.0', 'foo.v1.1.0']);
    expect(foo?.others).toEqual([
      { schema: 'olm.deprecations', package: 'foo', entries: [{ reference: { schema: 'olm.bundle', name: 'foo.v1.0.0' }, message: 'old' }] },
    ]);
    expect(config.others).toEqual([{ schema: 'example.global', value: 1 }]);
  });

  it('takes the version from the olm.package property and keeps related images with a name or not', () => {
    const b = buildDeclarativeConfig(files).packages.get('foo')?.bundles.get('foo.v1.1.0');
    expect(b?.version).toBe('1.1.0');
    expect(b?.image).toBe('quay.io/foo/bundle:v1.1.0');
    expect(b?.relatedImages).toEqual([
      { name: 'operator', image: 'quay.io/foo/operator@sha256:' + 'a'.repeat(64) },
      { name: '', image: 'quay.io/foo/bundle:v1.1.0' },
    ]);
    expect(b?.object).toMatchObject({ custom: 'kept' });
  });

  it('names both places of a duplicate bundle', () => {
    const err = thrown(() => buildDeclarativeConfig([...files, { path: 'configs/foo/again.json', text: JSON.stringify(bundle('1.0.0')) }]));
    expect(err.code).toBe('MM_MANIFEST_INVALID');
    expect(err.message).toBe(
      'bundle "foo.v1.0.0" of package "foo" is defined twice: configs/foo/bundles.yaml object 1 (olm.bundle "foo.v1.0.0") and configs/foo/again.json object 1 (olm.bundle "foo.v1.0.0")',
    );
  });

  it('rejects duplicate packages and channels, objects of unknown packages and entries that are not bundles', () => {
    expect(thrown(() => buildDeclarativeConfig([...files, { path: 'x.json', text: JSON.stringify(pkg) }])).message).toMatch(
      /^package "foo" is defined twice: configs\/foo\/package\.json object 1 .* and x\.json object 1/,
    );
    expect(thrown(() => buildDeclarativeConfig([...files, { path: 'x.json', text: JSON.stringify(channel) }])).message).toMatch(
      /^channel "stable" of package "foo" is defined twice/,
    );
    expect(thrown(() => buildDeclarativeConfig([...files, { path: 'x.json', text: JSON.stringify({ ...bundle('2.0.0'), package: 'bar' }) }])).message).toBe(
      'x.json object 1 (olm.bundle "foo.v2.0.0") belongs to package "bar", which has no olm.package object',
    );
    const ghost = { ...channel, name: 'fast', entries: [{ name: 'foo.v9.0.0' }] };
    expect(thrown(() => buildDeclarativeConfig([...files, { path: 'x.json', text: JSON.stringify(ghost) }])).message).toBe(
      'x.json object 1 (olm.channel "fast"): entry "foo.v9.0.0" is not a bundle of package "foo"',
    );
  });

  it('rejects a bundle without a version', () => {
    const noVersion = { ...bundle('2.0.0'), properties: [{ type: 'olm.gvk', value: {} }] };
    expect(thrown(() => buildDeclarativeConfig([...files, { path: 'x.json', text: JSON.stringify(noVersion) }])).message).toBe(
      'x.json object 1 (olm.bundle "foo.v2.0.0") has no olm.package property, so it has no version',
    );
  });
});
