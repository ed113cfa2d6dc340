/**
 * oc-mirror's delete workflow against a real registry (distribution, deletes enabled): two releases
 * of the OpenShift fixture (test/support/openshift-fixture.ts), an operator and a multi-arch
 * additional image are mirrored into a target, a delete of the older release and the additional
 * image is generated, read, applied and applied again; what stays is pulled with skopeo, and
 * distribution's garbage collector then frees exactly the blobs only the deleted images used.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ANONYMOUS_CREDENTIALS, createRegistryClient, RegistryError, type Digest, type HttpRegistryClient } from '@meshmirror/shared';
import { runMeshmirror } from './support/cli.ts';
import { mirrorToMirrorArgs } from './support/mirror-fixture.ts';
import { GRAPH_BASE_NAME, startOpenShiftFixture, UBI_NAME, type FixtureRelease, type OpenShiftFixture } from './support/openshift-fixture.ts';
import { garbageCollect, startRegistry, type RunningRegistry } from './support/registry.ts';
import { skopeoCopy, skopeoInspectDigest } from './support/skopeo.ts';

let dir: string;
let source: RunningRegistry;
let target: RunningRegistry;
let storage: string;
let fx: OpenShiftFixture;
let older: FixtureRelease;
let newer: FixtureRelease;

const PREFIX = 'mirror';
const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';

interface DeleteOutcome {
  imageReference: string;
  state: 'deleted' | 'absent' | 'kept' | 'failed';
  digest?: string;
  keptBy?: string;
  children?: { deleted: number; kept: number };
  reason?: string;
}
interface DeleteSummary {
  items: { total: number; deleted: number; absent: number; kept: number; failed: number };
  manifestsDeleted: number;
  outcomes: DeleteOutcome[];
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-delete-'));
  storage = join(dir, 'target-storage');
  await mkdir(storage);
  source = await startRegistry();
  // Its own storage folder: it outlives the registry, which is stopped for the garbage collector.
  target = await startRegistry({ storageDir: storage });
  fx = await startOpenShiftFixture({ registryUrl: source.url, dir: join(dir, 'fixture') });
  older = fx.releases.find((r) => r.version === '4.19.2')!;
  newer = fx.releases.find((r) => r.version === '4.19.3')!;
}, 180_000);

afterAll(async () => {
  await fx?.close();
  await source?.stop();
  await target?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function run(args: string[]) {
  return runMeshmirror(args, { env: fx.signatureEnv });
}

/** Status of a GET on the target's API. */
async function status(path: string, registry = target): Promise<number> {
  const response = await fetch(`${registry.url}/v2/${path}`, { headers: { accept: ACCEPT } });
  await response.arrayBuffer();
  return response.status;
}

/** The fixture's image by manifest digest: its config and layer digests. */
function blobsOf(digest: Digest): Digest[] {
  const image = fx.imagesByDigest.get(digest);
  if (image === undefined) throw new Error(`fixture has no image ${digest}`);
  return [...image.blobs.keys()];
}

describe('delete, the way oc-mirror does it', () => {
  it('generates the list of the older release, deletes it without touching what stays, re-runs, and the garbage collector frees what only it used', async () => {
    const host = fx.registryHost;
    const isc = join(dir, 'isc.yaml');
    await writeFile(
      isc,
      `kind: ImageSetConfiguration
apiVersion: mirror.openshift.io/v2alpha1
mirror:
  platform:
    channels:
      - name: stable-4.19
        minVersion: 4.19.2
        maxVersion: 4.19.3
  operators:
    - catalog: ${host}/redhat/redhat-operator-index:v4.19
      packages:
        - name: web-terminal
  additionalImages:
    - name: ${host}/${UBI_NAME}
`,
    );
    const destination = `${target.host}/${PREFIX}`;
    const mirrored = await run(mirrorToMirrorArgs(isc, join(dir, 'ws'), destination, join(dir, 'cache'), '--update-url', fx.graphUrl));
    expect(mirrored.code, mirrored.stderr).toBe(0);
    const pushed = (JSON.parse(mirrored.stdout) as { outcomes: Array<{ kind: string; state: string; target?: string; digest?: string }> }).outcomes;
    expect(pushed.every((o) => o.state === 'pushed')).toBe(true);

    // --- step 1: the list ---
    const disc = join(dir, 'delete-isc.yaml');
    await writeFile(
      disc,
      `kind: DeleteImageSetConfiguration
apiVersion: mirror.openshift.io/v2alpha1
delete:
  platform:
    channels:
      - name: stable-4.19
        minVersion: 4.19.2
        maxVersion: 4.19.2
  additionalImages:
    - name: ${host}/${UBI_NAME}
`,
    );
    const generated = await run([
      'delete',
      '--generate',
      '-c',
      disc,
      '--workspace',
      `file://${join(dir, 'ws')}`,
      '--delete-id',
      'older',
      `docker://${destination}`,
      '--cache-dir',
      join(dir, 'cache'),
      '--src-tls-verify=false',
      '--update-url',
      fx.graphUrl,
      '--output',
      'json',
      '--v2',
    ]);
    expect(generated.code, generated.stderr).toBe(0);
    const listFile = join(dir, 'ws', 'working-dir', 'delete', 'delete-images-older.yaml');
    expect((JSON.parse(generated.stdout) as { files: { deleteImages: string } }).files.deleteImages).toBe(listFile);
    const text = await readFile(listFile, 'utf8');
    const list = parseYaml(text) as { kind: string; apiVersion: string; items: Array<{ imageName: string; imageReference: string; type: string }> };
    const base = `docker://${destination}`;
    const components = [...older.components].sort((a, b) => (a.name < b.name ? -1 : 1));
    expect(list.kind).toBe('DeleteImageList');
    expect(list.apiVersion).toBe('mirror.openshift.io/v2alpha1');
    // Sorted by imageReference ('-' before ':'): the payload, its components, then ubi.
    expect(list.items).toEqual([
      {
        imageName: expect.stringContaining(older.payloadDigest),
        imageReference: `${base}/openshift/release-images:4.19.2-x86_64`,
        type: 'ocpRelease',
      },
      ...components.map((c) => ({ imageName: c.ref, imageReference: `${base}/openshift/release:4.19.2-x86_64-${c.name}`, type: 'ocpReleaseContent' })),
      { imageName: `${host}/${UBI_NAME}`, imageReference: `${base}/${UBI_NAME}`, type: 'generic' },
    ]);
    const saved = parseYaml(await readFile(join(dir, 'ws', 'working-dir', 'delete', 'delete-imageset-config-older.yaml'), 'utf8')) as Record<string, unknown>;
    expect(saved).toEqual({
      kind: 'DeleteImageSetConfiguration',
      apiVersion: 'mirror.openshift.io/v2alpha1',
      delete: (parseYaml(await readFile(disc, 'utf8')) as { delete: unknown }).delete,
    });

    // A list naming anything outside the destination deletes nothing at all.
    const stray = join(dir, 'stray.yaml');
    await writeFile(stray, text.replace(`${base}/${UBI_NAME}`, `docker://${source.host}/${UBI_NAME}`));
    const refused = await run(['delete', '--delete-yaml-file', stray, `docker://${destination}`, '--dest-tls-verify=false']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`1 item does not lie under docker://${destination}, so nothing was deleted: docker://${source.host}/${UBI_NAME}`);
    expect(await status(`${PREFIX}/openshift/release-images/manifests/4.19.2-x86_64`)).toBe(200);
    const neither = await run(['delete', `docker://${destination}`]);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toContain('delete needs one of --generate');

    // --- step 2: delete ---
    // The index as the mirror pushed it: cut down to amd64, the platform the configuration mirrors.
    const ubiIndex = (await (await fetch(`${target.url}/v2/${PREFIX}/ubi9/ubi/manifests/latest`, { headers: { accept: ACCEPT } })).json()) as {
      manifests: Array<{ digest: Digest }>;
    };
    const ubiChildren = ubiIndex.manifests.map((m) => m.digest);
    const ubiPushed = pushed.find((o) => o.target?.endsWith(`/${PREFIX}/${UBI_NAME}`))!;
    expect(ubiChildren).toHaveLength(1);
    const deleteArgs = ['delete', '--delete-yaml-file', listFile, `docker://${destination}`, '--dest-tls-verify=false'];
    const deleted = await run([...deleteArgs, '--output', 'json']);
    expect(deleted.code, deleted.stderr).toBe(0);
    const summary = JSON.parse(deleted.stdout) as DeleteSummary;
    const outcome = (ref: string) => summary.outcomes.find((o) => o.imageReference === ref)!;
    // Components 4.19.3 did not change are the same manifests under 4.19.3's tags: they stay.
    const shared = older.components.filter((c) => newer.components.some((n) => n.name === c.name && n.digest === c.digest));
    const unique = older.components.filter((c) => !shared.includes(c));
    expect(shared.length).toBeGreaterThan(0);
    expect(unique.length).toBeGreaterThan(0);
    for (const c of shared) {
      expect(outcome(`${base}/openshift/release:4.19.2-x86_64-${c.name}`)).toMatchObject({
        state: 'kept',
        digest: c.digest,
        keptBy: `${PREFIX}/openshift/release:4.19.3-x86_64-${c.name}`,
      });
    }
    for (const c of unique) expect(outcome(`${base}/openshift/release:4.19.2-x86_64-${c.name}`)).toMatchObject({ state: 'deleted', digest: c.digest });
    expect(outcome(`${base}/openshift/release-images:4.19.2-x86_64`)).toMatchObject({ state: 'deleted', digest: older.payloadDigest });
    expect(outcome(`${base}/${UBI_NAME}`)).toMatchObject({ state: 'deleted', digest: ubiPushed.digest, children: { deleted: 1, kept: 0 } });
    expect(summary.items).toEqual({ total: list.items.length, deleted: unique.length + 2, absent: 0, kept: shared.length, failed: 0 });
    expect(summary.manifestsDeleted).toBe(unique.length + 2 + ubiChildren.length);

    // Gone: by tag and by digest, the index's children too.
    expect(await status(`${PREFIX}/openshift/release-images/manifests/4.19.2-x86_64`)).toBe(404);
    expect(await status(`${PREFIX}/openshift/release-images/manifests/${older.payloadDigest}`)).toBe(404);
    for (const c of unique) expect(await status(`${PREFIX}/openshift/release/manifests/4.19.2-x86_64-${c.name}`)).toBe(404);
    expect(await status(`${PREFIX}/ubi9/ubi/manifests/latest`)).toBe(404);
    for (const child of ubiChildren) expect(await status(`${PREFIX}/ubi9/ubi/manifests/${child}`)).toBe(404);
    // Kept: the shared tags of the older release still answer, with the newer release's manifest.
    for (const c of shared) expect(await status(`${PREFIX}/openshift/release/manifests/4.19.2-x86_64-${c.name}`)).toBe(200);

    // --- the same command again: nothing left to do, and it says so ---
    const again = await run(deleteArgs);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(`already gone: ${base}/openshift/release-images:4.19.2-x86_64`);
    expect(again.stdout).toContain(`already gone: ${base}/${UBI_NAME}`);
    expect(again.stdout).toMatch(new RegExp(`${list.items.length} items, 0 deleted, ${unique.length + 2} already gone, ${shared.length} kept, 0 failed`));

    // --- the registry's garbage collector, with the registry stopped ---
    await target.stop();
    const collected = await garbageCollect(storage);
    expect(collected).toMatch(/blobs? eligible for deletion/);
    target = await startRegistry({ storageDir: storage });
    const repo = `${PREFIX}/openshift/release`;
    const cvo = unique.find((c) => c.name === 'cluster-version-operator')!;
    const keptLayers = new Set(newer.components.flatMap((c) => blobsOf(c.digest)));
    // A layer only the deleted release used is freed; one the kept release shares stays.
    const onlyOlder = blobsOf(cvo.digest).filter((b) => !keptLayers.has(b));
    const sharedLayers = blobsOf(cvo.digest).filter((b) => keptLayers.has(b));
    expect(onlyOlder.length).toBeGreaterThan(0);
    expect(sharedLayers.length).toBeGreaterThan(0);
    for (const b of onlyOlder) expect(await status(`${repo}/blobs/${b}`)).toBe(404);
    for (const b of sharedLayers) expect(await status(`${repo}/blobs/${b}`)).toBe(200);
    // The payload's own manifest blob and the multi-arch image's layers (its children went with it) are freed too.
    expect(await status(`${PREFIX}/openshift/release-images/blobs/${older.payloadDigest}`)).toBe(404);
    for (const child of ubiChildren) for (const b of blobsOf(child)) expect(await status(`${PREFIX}/ubi9/ubi/blobs/${b}`)).toBe(404);

    // What stays still pulls, by tag and by digest: the newer release, its components (shared ones
    // too), the catalog and the operator's images.
    const at = `docker://${target.host}/${PREFIX}`;
    expect(await skopeoInspectDigest(`${at}/openshift/release-images:4.19.3-x86_64`)).toBe(newer.payloadDigest);
    await skopeoCopy(`${at}/openshift/release-images@${newer.payloadDigest}`, `oci:${join(dir, 'pull-payload')}:p`);
    for (const c of newer.components) {
      expect(await skopeoInspectDigest(`${at}/openshift/release:4.19.3-x86_64-${c.name}`)).toBe(c.digest);
      await skopeoCopy(`${at}/openshift/release@${c.digest}`, `oci:${join(dir, `pull-${c.name}`)}:c`);
    }
    const operatorImages = pushed.filter((o) => o.kind === 'operator');
    expect(operatorImages.length).toBeGreaterThan(1);
    for (const o of operatorImages) {
      // The registry is back on another port.
      await skopeoCopy(`docker://${o.target!.replace(/^[^/]+/, target.host)}`, `oci:${join(dir, 'pull-operator')}:${o.digest!.slice(7, 19)}`);
    }
  }, 300_000);
});

describe("the registry client's delete side", () => {
  let client: HttpRegistryClient;
  beforeAll(() => {
    client = createRegistryClient({
      credentials: ANONYMOUS_CREDENTIALS,
      tlsVerify: false,
      connectTimeoutMs: 2_000,
      headersTimeoutMs: 5_000,
      stallTimeoutMs: 5_000,
      retry: { retries: 2, baseDelayMs: 20, maxDelayMs: 100, factor: 2, jitter: 0 },
    });
  });
  afterAll(async () => {
    await client?.close();
  });

  it('lists every tag of a repository, and none of one it does not know', async () => {
    const [repository, tag] = GRAPH_BASE_NAME.split(':') as [string, string];
    const location = { registry: source.host, repository };
    const manifest = await client.getManifest(location, tag);
    const tags = Array.from({ length: 20 }, (_, i) => `t${i}`);
    await Promise.all(tags.map((t) => client.putManifest(location, t, manifest)));
    // distribution 2.8 sends every tag in one answer (no `Link`); the pages are tested in packages/shared/src/registry/list-tags.test.ts.
    expect((await client.listTags(location)).sort()).toEqual([...tags, tag].sort());
    expect(await client.listTags({ registry: source.host, repository: 'no/such/repository' })).toEqual([]);
  });

  it('reports a manifest already gone as absent, and a registry that refuses deletes with the setting to change', async () => {
    const missing: Digest = `sha256:${'0'.repeat(64)}`;
    expect(await client.deleteManifest({ registry: source.host, repository: 'ubi9/ubi' }, missing)).toBe('absent');
    const readOnly = await startRegistry({ config: { storage: { delete: { enabled: false } } } });
    try {
      const refused = await client.deleteManifest({ registry: readOnly.host, repository: 'ubi9/ubi' }, missing).catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(RegistryError);
      expect((refused as RegistryError).status).toBe(405);
      expect((refused as Error).message).toContain('does not allow deleting manifests (distribution: storage.delete.enabled: true)');
    } finally {
      await readOnly.stop();
    }
  });
});
