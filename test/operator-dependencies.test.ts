/**
 * Operator dependencies end to end, opt-in: a file-based catalog (a real catalog image: `/configs`
 * and its label) where app-operator's bundle needs db-operator in `>=2.0.0 <3.0.0` (by package) and
 * the `cache.example.com/v1 Cache` API (which only cache-operator provides). Mirrored with
 * `--include-dependencies`, db-operator 2.4.0 (not 3.0.0, outside the range) and cache-operator are
 * archived and in the filtered catalog, each named as a dependency in its origin; without it,
 * neither is. The filtered catalog is read back through `serve` with `meshmirror list operators`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '@meshmirror/shared';
import { runMeshmirror, startServe } from './support/cli.ts';
import { mirrorArgs, writeImageSetConfig } from './support/mirror-fixture.ts';
import { LayoutBuilder, randomLayer, tarLayer } from './support/oci-image-builder.ts';
import { CATALOG_CONFIGS_LABEL } from './support/openshift-fixture.ts';
import { pushLayout } from './support/push-layout.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';

let dir: string;
let registry: RunningRegistry;
/** Bundle name → its bundle image digest. */
const bundleDigests = new Map<string, Digest>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-deps-'));
  registry = await startRegistry();
  const layout = new LayoutBuilder(join(dir, 'layout'));
  const objects: unknown[] = [];
  const pkg = (name: string, channels: Record<string, Array<{ name: string; replaces?: string }>>) => {
    objects.push({ schema: 'olm.package', name, defaultChannel: 'stable' });
    for (const [channel, entries] of Object.entries(channels)) objects.push({ schema: 'olm.channel', name: channel, package: name, entries });
  };
  const bundle = async (packageName: string, version: string, properties: unknown[] = []) => {
    const name = `${packageName.split('-')[0]}.v${version}`;
    const image = await layout.addImage(`deps/${packageName}-bundle:v${version}`, [await randomLayer(`bundle ${name}`, 4096)]);
    bundleDigests.set(name, image.digest);
    const ref = `${registry.host}/deps/${packageName}-bundle@${image.digest}`;
    objects.push({
      schema: 'olm.bundle',
      name,
      package: packageName,
      image: ref,
      properties: [{ type: 'olm.package', value: { packageName, version } }, ...properties],
      relatedImages: [{ name: '', image: ref }],
    });
  };
  pkg('app-operator', { stable: [{ name: 'app.v1.0.0' }] });
  await bundle('app-operator', '1.0.0', [
    { type: 'olm.package.required', value: { packageName: 'db-operator', versionRange: '>=2.0.0 <3.0.0' } },
    { type: 'olm.gvk.required', value: { group: 'cache.example.com', version: 'v1', kind: 'Cache' } },
  ]);
  pkg('db-operator', { stable: [{ name: 'db.v2.1.0' }, { name: 'db.v2.4.0', replaces: 'db.v2.1.0' }], fast: [{ name: 'db.v3.0.0' }] });
  for (const v of ['2.1.0', '2.4.0', '3.0.0']) await bundle('db-operator', v);
  pkg('cache-operator', { stable: [{ name: 'cache.v0.9.0' }] });
  await bundle('cache-operator', '0.9.0', [{ type: 'olm.gvk', value: { group: 'cache.example.com', version: 'v1', kind: 'Cache' } }]);
  const configs = await tarLayer([
    { path: 'configs/', type: 'directory' },
    { path: 'configs/catalog.json', content: objects.map((o) => JSON.stringify(o)).join('\n') },
  ]);
  await layout.addImage('deps/index:v1', [configs], { labels: { [CATALOG_CONFIGS_LABEL]: '/configs' } });
  await layout.finish();
  await pushLayout(layout.dir, registry.url);
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

interface Summary {
  images: { failed: number };
  outcomes: Array<{ source: string; origin: string; state: string }>;
}

async function mirror(name: string, ...extra: string[]): Promise<Summary> {
  const config = await writeImageSetConfig(join(dir, `${name}.yaml`), {
    additionalImages: [],
    extra: ['  operators:', `    - catalog: ${registry.host}/deps/index:v1`, '      packages:', '        - name: app-operator'].join('\n'),
  });
  const result = await runMeshmirror(mirrorArgs(config, join(dir, `out-${name}`), join(dir, `cache-${name}`), ...extra));
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Summary;
}

/** The packages, and their channels' heads, of the filtered catalog in an archive, read through `serve`. */
async function archivedCatalog(out: string): Promise<Record<string, string[]>> {
  const served = await startServe(out);
  try {
    const catalog = `${served.host}/deps/index:v1`;
    const listed = await runMeshmirror([
      'list',
      'operators',
      '--catalog',
      catalog,
      '--src-tls-verify=false',
      '--cache-dir',
      join(dir, 'cache-list'),
      '--output',
      'json',
    ]);
    expect(listed.code, listed.stderr).toBe(0);
    const packages = (JSON.parse(listed.stdout) as { packages: Array<{ name: string }> }).packages.map((p) => p.name);
    const heads: Record<string, string[]> = {};
    for (const name of packages) {
      const channels = await runMeshmirror([
        'list',
        'operators',
        '--catalog',
        catalog,
        '--package',
        name,
        '--src-tls-verify=false',
        '--cache-dir',
        join(dir, 'cache-list'),
        '--output',
        'json',
      ]);
      heads[name] = (JSON.parse(channels.stdout) as { channels: Array<{ head: string }> }).channels.map((c) => c.head);
    }
    return heads;
  } finally {
    await served.stop();
  }
}

describe('operator dependencies', () => {
  it('with --include-dependencies, the bundles app-operator needs are mirrored and in the filtered catalog, each saying why', async () => {
    const summary = await mirror('with', '--include-dependencies');
    expect(summary.images.failed).toBe(0);
    const bundleRef = (name: string, pkg: string) => `${registry.host}/deps/${pkg}-bundle@${bundleDigests.get(name)}`;
    const archived = new Map(summary.outcomes.filter((o) => o.state === 'archived').map((o) => [o.source, o.origin]));
    expect(archived.get(bundleRef('db.v2.4.0', 'db-operator'))).toContain('dependency of app.v1.0.0: package db-operator >=2.0.0 <3.0.0');
    expect(archived.get(bundleRef('cache.v0.9.0', 'cache-operator'))).toContain('dependency of app.v1.0.0: API cache.example.com/v1 Cache');
    expect(archived.has(bundleRef('db.v3.0.0', 'db-operator'))).toBe(false);
    expect(await archivedCatalog(join(dir, 'out-with'))).toEqual({ 'app-operator': ['app.v1.0.0'], 'cache-operator': ['cache.v0.9.0'], 'db-operator': ['db.v2.4.0'] });
  });

  it('without it, only app-operator is mirrored', async () => {
    const summary = await mirror('without');
    const archived = summary.outcomes.filter((o) => o.state === 'archived').map((o) => o.source);
    expect(archived.some((s) => s.includes('/deps/db-operator-bundle@') || s.includes('/deps/cache-operator-bundle@'))).toBe(false);
    expect(await archivedCatalog(join(dir, 'out-without'))).toEqual({ 'app-operator': ['app.v1.0.0'] });
  });
});
