/**
 * Resolving is small requests: against a distant registry its round trips, not its bytes, set how
 * long a run waits before the first blob. A run looks up as many manifests at once as it fetches
 * blobs at once (`--parallel-images` × `--parallel-layers`), not `--parallel-images` alone.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy } from './support/fault-proxy.ts';
import { runMeshmirror } from './support/cli.ts';
import { mirrorArgs, writeImageSetConfig } from './support/mirror-fixture.ts';
import { LayoutBuilder, randomLayer } from './support/oci-image-builder.ts';
import { pushLayout } from './support/push-layout.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';

const IMAGES = 12;

/** The most requests of `spans` that were open at one moment. */
function mostAtOnce(spans: Array<{ at: number; finishedAt?: number }>): number {
  const edges = spans.flatMap((s) => [
    { t: s.at, d: 1 },
    { t: s.finishedAt ?? Infinity, d: -1 },
  ]);
  // An answer that ends as another request arrives frees its place first.
  edges.sort((a, b) => a.t - b.t || a.d - b.d);
  let open = 0;
  let most = 0;
  for (const e of edges) {
    open += e.d;
    most = Math.max(most, open);
  }
  return most;
}

describe('resolving', () => {
  let dir: string;
  let source: RunningRegistry;
  let names: string[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-lookups-'));
    source = await startRegistry();
    const layout = new LayoutBuilder(join(dir, 'layout'));
    names = [];
    for (let i = 0; i < IMAGES; i++) {
      const name = `lookups/app-${i}:1.0`;
      await layout.addImage(name, [await randomLayer(`lookups-${i}`, 2_000)]);
      names.push(name);
    }
    await layout.finish();
    await pushLayout(layout.dir, source.url);
  }, 120_000);

  afterAll(async () => {
    await source?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('looks up --parallel-images × --parallel-layers manifests at once, and no more', async () => {
    const proxy = await startFaultProxy(source.url);
    try {
      // Every tag is answered 1 s late, as by a distant registry: how many wait at once shows the limit.
      proxy.setRules([{ match: { method: 'GET', path: /\/manifests\/1\.0$/ }, fault: { kind: 'stall-after', bytes: 0, ms: 1000 } }]);
      const config = await writeImageSetConfig(join(dir, 'isc.yaml'), { additionalImages: names.map((n) => `${proxy.host}/${n}`) });
      const result = await runMeshmirror(
        mirrorArgs(config, join(dir, 'out'), join(dir, 'cache'), '--dry-run', '--remove-signatures', '--parallel-images', '2', '--parallel-layers', '3'),
      );
      expect(result.code, result.stderr).toBe(0);
      const tagLookups = proxy.stats().log.filter((e) => e.method === 'GET' && e.path.endsWith('/manifests/1.0'));
      expect(tagLookups).toHaveLength(IMAGES);
      const atOnce = mostAtOnce(tagLookups);
      console.log(`resolving: ${atOnce} of ${IMAGES} tag lookups at once with --parallel-images 2 --parallel-layers 3`);
      expect(atOnce).toBe(6);
    } finally {
      await proxy.close();
    }
  });
});
