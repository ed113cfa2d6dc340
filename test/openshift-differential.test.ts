/**
 * A site that mirrors every few weeks: releases 4.19.2..4.19.5 and two operators are mirrored to
 * disk and pushed; a month later 4.19.2..4.19.10, with the operators moved on, is mirrored with
 * `--since-receipt`. The second archive carries exactly the config and layer blobs the first set
 * lacked (computed from the fixture's own images), and pushed onto the target every
 * image reads back at its source digest. A receipt made by `meshmirror receipt` gives the same.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openArchive } from '@meshmirror/agent';
import type { Digest } from '@meshmirror/shared';
import { runMeshmirror } from './support/cli.ts';
import { diskToMirrorArgs, mirrorArgs } from './support/mirror-fixture.ts';
import { startOpenShiftFixture, type OpenShiftFixture } from './support/openshift-fixture.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';
import { skopeoInspectDigest } from './support/skopeo.ts';

interface Summary {
  images: { requested: number; archived?: number; pushed?: number; failed: number };
  outcomes: Array<{ source: string; state: string; digest?: Digest }>;
  bytes: { fetched: number; uploaded: number };
  differential?: { omittedBlobs: number; omittedBytes: number };
  files: { receipt?: string };
}

let dir: string;
let registry: RunningRegistry;
let target: RunningRegistry;
let fx: OpenShiftFixture;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-openshift-diff-'));
  [registry, target] = await Promise.all([startRegistry(), startRegistry()]);
  fx = await startOpenShiftFixture({ registryUrl: registry.url, dir: join(dir, 'fixture') });
}, 120_000);

afterAll(async () => {
  await fx?.close();
  await Promise.all([registry?.stop(), target?.stop()]);
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, maxVersion: string, compliance: string): Promise<string> {
  const path = join(dir, name);
  const lines = [
    'kind: ImageSetConfiguration',
    'apiVersion: mirror.openshift.io/v2alpha1',
    'mirror:',
    '  platform:',
    '    channels:',
    '      - name: stable-4.19',
    '        minVersion: 4.19.2',
    `        maxVersion: ${maxVersion}`,
    '  operators:',
    `    - catalog: ${fx.catalog.ref}`,
    '      packages:',
    '        - name: web-terminal',
    '        - name: compliance-operator',
    `          maxVersion: ${compliance}`,
  ];
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
}

const openshiftArgs = (): string[] => ['--update-url', fx.graphUrl, '--graph-data-url', fx.graphDataUrl];
const run = (args: string[]) => runMeshmirror(args, { env: fx.signatureEnv });

/** Config and layer blobs (with sizes) of the fixture's images among the outcomes: what came from upstream. */
function upstreamBlobs(summary: Summary): Map<Digest, number> {
  const blobs = new Map<Digest, number>();
  for (const o of summary.outcomes) {
    const image = o.digest === undefined ? undefined : fx.imagesByDigest.get(o.digest);
    for (const [digest, size] of image?.blobs ?? []) blobs.set(digest, size);
  }
  return blobs;
}

describe('a differential mirror of OpenShift content', () => {
  let first: Summary;
  let receiptFile: string;
  let config2: string;

  it('carries only the releases and operator content the target lacks, and every image reads back', async () => {
    const config1 = await writeConfig('first.yaml', '4.19.5', '1.6.1');
    const m2d1 = await run([...mirrorArgs(config1, join(dir, 'archive-1'), join(dir, 'cache-1')), ...openshiftArgs()]);
    expect(m2d1.code, m2d1.stderr).toBe(0);
    first = JSON.parse(m2d1.stdout) as Summary;
    const push1 = await run([...diskToMirrorArgs(config1, join(dir, 'archive-1'), `${target.host}/ocp`, join(dir, 'cache-push-1'))]);
    expect(push1.code, push1.stderr).toBe(0);
    receiptFile = (JSON.parse(push1.stdout) as Summary).files.receipt!;

    config2 = await writeConfig('second.yaml', '4.19.10', '1.7.0');
    const m2d2 = await run([...mirrorArgs(config2, join(dir, 'archive-2'), join(dir, 'cache-2'), '--since-receipt', receiptFile), ...openshiftArgs()]);
    expect(m2d2.code, m2d2.stderr).toBe(0);
    const second = JSON.parse(m2d2.stdout) as Summary;
    expect(second.images.failed).toBe(0);

    // From the fixture: the upstream bytes of the second set that the target did not have after the
    // first push: the first set's images, and the filtered catalog, which keeps the catalog's layers.
    const before = upstreamBlobs(first);
    for (const [digest, size] of fx.imagesByDigest.get(fx.catalog.digest)?.blobs ?? []) before.set(digest, size);
    const after = upstreamBlobs(second);
    const lacking = [...after].filter(([digest]) => !before.has(digest));
    const newBytes = lacking.reduce((n, [, size]) => n + size, 0);
    expect(newBytes).toBeGreaterThan(0);
    // The archive carries exactly those: every one of them, and none of what the target had.
    const reader = await openArchive(join(dir, 'archive-2'));
    const carried = [...new Set([...after.keys(), ...before.keys()])].filter((digest) => reader.locateBlob(digest) !== undefined);
    expect(carried.sort()).toEqual(lacking.map(([digest]) => digest).sort());
    expect(carried.reduce((n, digest) => n + (after.get(digest) ?? 0), 0)).toBe(newBytes);
    // Nothing the target had crossed the link again (payload layers read to resolve the new releases are among the new bytes).
    expect(second.bytes.fetched).toBeLessThanOrEqual(newBytes);
    const shared = [...after].filter(([digest]) => before.has(digest)).reduce((n, [, size]) => n + size, 0);
    expect(second.differential?.omittedBytes).toBeGreaterThanOrEqual(shared);

    const push2 = await run([...diskToMirrorArgs(config2, join(dir, 'archive-2'), `${target.host}/ocp`, join(dir, 'cache-push-2'))]);
    expect(push2.code, push2.stdout + push2.stderr).toBe(0);
    const pushed = JSON.parse(push2.stdout) as Summary;
    expect(pushed.images.failed).toBe(0);
    // Every upstream image of the set (payloads, components, bundles, operands) reads back at its source digest…
    const upstream = (pushed.outcomes as Array<{ digest?: Digest; target?: string }>).filter((o) => o.digest !== undefined && fx.imagesByDigest.has(o.digest));
    expect(upstream.length).toBeGreaterThan(40);
    for (const o of upstream) expect(await skopeoInspectDigest(`docker://${o.target ?? ''}`, { tlsVerify: false }), o.target).toBe(o.digest);
    // …and every release payload and component of 4.19.2..4.19.10 is where a cluster looks for it.
    for (const release of fx.releases.filter((r) => ['4.19.2', '4.19.3', '4.19.5', '4.19.8', '4.19.10'].includes(r.version))) {
      const payload = `docker://${target.host}/ocp/openshift/release-images:${release.version}-x86_64`;
      expect(await skopeoInspectDigest(payload, { tlsVerify: false }), release.version).toBe(release.payloadDigest);
      for (const c of release.components) {
        const ref = `docker://${target.host}/ocp/openshift/release:${release.version}-x86_64-${c.name}`;
        expect(await skopeoInspectDigest(ref, { tlsVerify: false }), `${release.version} ${c.name}`).toBe(c.digest);
      }
    }
  }, 300_000);

  it('a receipt made by meshmirror receipt is the push’s own, and gives the same second archive', async () => {
    const asked = join(dir, 'asked.json');
    const made = await run([
      'receipt',
      `docker://${target.host}/ocp`,
      '-c',
      join(dir, 'first.yaml'),
      '-o',
      asked,
      '--cache-dir',
      join(dir, 'cache-receipt'),
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      ...openshiftArgs(),
    ]);
    expect(made.code, made.stderr).toBe(0);
    // The push of the second archive added to the target since; the asked receipt is of the first set only.
    const pushReceipt = JSON.parse(await readFile(join(dir, 'archive-1', 'working-dir', 'receipt.json'), 'utf8')) as { repositories: unknown; sizes: unknown };
    const askedReceipt = JSON.parse(await readFile(asked, 'utf8')) as { repositories: unknown; sizes: unknown };
    expect(askedReceipt.repositories).toEqual(pushReceipt.repositories);
    expect(askedReceipt.sizes).toEqual(pushReceipt.sizes);

    const again = await run([...mirrorArgs(config2, join(dir, 'archive-2b'), join(dir, 'cache-2b'), '--since-receipt', asked), ...openshiftArgs()]);
    expect(again.code, again.stderr).toBe(0);
    const viaPush = JSON.parse(await readFile(join(dir, 'archive-2', 'working-dir', 'report.json'), 'utf8')) as Summary;
    expect((JSON.parse(again.stdout) as Summary).bytes.fetched).toBe(viaPush.bytes.fetched);
  }, 300_000);
});
