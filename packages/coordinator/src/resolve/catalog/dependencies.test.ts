/**
 * Operator dependencies over a hand-written catalog, expectations worked out by hand:
 *
 *   app-operator  (stable: app.v1.0.0)        needs package db-operator >=2.0.0 <3.0.0 and API cache.example.com/v1 Cache
 *   db-operator   (stable: 1.5.0 <- 2.1.0 <- 2.4.0 (head); fast: 2.4.0 <- 3.0.0 (head))
 *   cache-operator (stable: 0.9.0 (head), provides cache.example.com/v1 Cache; needs package db-operator >=2.4.0)
 *   lonely-operator (stable: 1.0.0) needs package missing-operator
 */
import { describe, expect, it } from 'vitest';
import { ImageSetConfigV2Alpha1Schema, sha256Digest, type OperatorCatalogConfig } from '@meshmirror/shared';
import { buildDeclarativeConfig } from './declarative-config.ts';
import { filterCatalog } from './filter-catalog.ts';

const image = (name: string): string => `registry.example.com/bundles/${name}@${sha256Digest(name)}`;

function bundle(pkg: string, version: string, extra: Array<{ type: string; value: Record<string, unknown> }> = []) {
  const name = `${pkg.split('-')[0]}.v${version}`;
  return { schema: 'olm.bundle', name, package: pkg, image: image(name), properties: [{ type: 'olm.package', value: { packageName: pkg, version } }, ...extra] };
}

const objects = [
  { schema: 'olm.package', name: 'app-operator', defaultChannel: 'stable' },
  { schema: 'olm.channel', name: 'stable', package: 'app-operator', entries: [{ name: 'app.v1.0.0' }] },
  bundle('app-operator', '1.0.0', [
    { type: 'olm.package.required', value: { packageName: 'db-operator', versionRange: '>=2.0.0 <3.0.0' } },
    { type: 'olm.gvk.required', value: { group: 'cache.example.com', version: 'v1', kind: 'Cache' } },
  ]),
  { schema: 'olm.package', name: 'db-operator', defaultChannel: 'stable' },
  {
    schema: 'olm.channel',
    name: 'stable',
    package: 'db-operator',
    entries: [{ name: 'db.v1.5.0' }, { name: 'db.v2.1.0', replaces: 'db.v1.5.0' }, { name: 'db.v2.4.0', replaces: 'db.v2.1.0' }],
  },
  { schema: 'olm.channel', name: 'fast', package: 'db-operator', entries: [{ name: 'db.v2.4.0' }, { name: 'db.v3.0.0', replaces: 'db.v2.4.0' }] },
  bundle('db-operator', '1.5.0'),
  bundle('db-operator', '2.1.0'),
  bundle('db-operator', '2.4.0'),
  bundle('db-operator', '3.0.0'),
  { schema: 'olm.package', name: 'cache-operator', defaultChannel: 'stable' },
  { schema: 'olm.channel', name: 'stable', package: 'cache-operator', entries: [{ name: 'cache.v0.9.0' }] },
  bundle('cache-operator', '0.9.0', [
    { type: 'olm.gvk', value: { group: 'cache.example.com', version: 'v1', kind: 'Cache' } },
    { type: 'olm.package.required', value: { packageName: 'db-operator', versionRange: '>=2.4.0' } },
  ]),
  { schema: 'olm.package', name: 'lonely-operator', defaultChannel: 'stable' },
  { schema: 'olm.channel', name: 'stable', package: 'lonely-operator', entries: [{ name: 'lonely.v1.0.0' }] },
  bundle('lonely-operator', '1.0.0', [{ type: 'olm.package.required', value: { packageName: 'missing-operator', versionRange: '>=1.0.0' } }]),
];
const config = buildDeclarativeConfig([{ path: 'configs/catalog.json', text: objects.map((o) => JSON.stringify(o)).join('\n') }]);

function operator(packages: string[]): OperatorCatalogConfig {
  const parsed = ImageSetConfigV2Alpha1Schema.parse({
    kind: 'ImageSetConfiguration',
    apiVersion: 'mirror.openshift.io/v2alpha1',
    mirror: { operators: [{ catalog: 'registry.example.com/redhat/index:v1', packages: packages.map((name) => ({ name })) }] },
  });
  return parsed.mirror.operators[0]!;
}

const kept = (filtered: ReturnType<typeof filterCatalog>) => filtered.bundles.map((b) => b.name).sort();

describe('operator dependencies', () => {
  it('without the option, only what was asked for is kept', () => {
    expect(kept(filterCatalog(config, operator(['app-operator']), 'index'))).toEqual(['app.v1.0.0']);
  });

  it('adds the bundles that satisfy package ranges and required APIs, transitively, and says why', () => {
    const filtered = filterCatalog(config, operator(['app-operator']), 'index', { includeDependencies: true });
    // db 2.4.0: the head of db's default channel within >=2.0.0 <3.0.0 (3.0.0 is outside it);
    // cache 0.9.0: provides the Cache API; it needs db >=2.4.0, which 2.4.0 already satisfies.
    expect(kept(filtered)).toEqual(['app.v1.0.0', 'cache.v0.9.0', 'db.v2.4.0']);
    expect(filtered.dependencies).toEqual([
      { package: 'db-operator', channel: 'stable', bundle: 'db.v2.4.0', neededBy: 'app.v1.0.0', requirement: 'package db-operator >=2.0.0 <3.0.0' },
      { package: 'cache-operator', channel: 'stable', bundle: 'cache.v0.9.0', neededBy: 'app.v1.0.0', requirement: 'API cache.example.com/v1 Cache' },
    ]);
    expect(filtered.config.packages.get('db-operator')?.defaultChannel).toBe('stable');
    expect(filtered.problems).toEqual([]);
  });

  it('adds nothing for a requirement the selection satisfies already', () => {
    const filtered = filterCatalog(config, operator(['cache-operator', 'db-operator']), 'index', { includeDependencies: true });
    expect(filtered.dependencies).toEqual([]);
  });

  it('names a requirement no bundle of the catalog provides, and keeps the rest', () => {
    const filtered = filterCatalog(config, operator(['lonely-operator']), 'index', { includeDependencies: true });
    expect(kept(filtered)).toEqual(['lonely.v1.0.0']);
    expect(filtered.problems).toEqual([
      {
        package: 'lonely-operator',
        bundle: 'lonely.v1.0.0',
        message: 'bundle "lonely.v1.0.0" needs package missing-operator >=1.0.0, which no bundle of the catalog provides',
      },
    ]);
  });
});
