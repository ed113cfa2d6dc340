/**
 * Signatures travel with their images: a source registry holds cosign-style `sha256-<hex>.sig` tags
 * for a single-arch image and for each child of an index (not the index, as Red Hat signs them), and
 * an unsigned image; the single-arch image also has two OCI referrers (an SBOM and a signature),
 * listed by the referrers tag schema because the registry (distribution 2.8) has no referrers API.
 * Mirror to disk archives them all as images of the set, disk to mirror and mirror to mirror put
 * them next to their images in the target (skopeo reads the tags back with the source digests; the
 * referrers are listed under the subject's `sha256-<hex>` tag with their `subject` kept), `serve`
 * answers the referrers API for its archive, and `--remove-signatures` leaves all of it out.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaType, sha256Digest, type Digest } from '@meshmirror/shared';
import { withFarm } from './support/agents.ts';
import { startFaultProxy } from './support/fault-proxy.ts';
import { runMeshmirror, startServe } from './support/cli.ts';
import { archiveContent, diskToMirrorArgs, mirrorArgs, mirrorToMirrorArgs, writeImageSetConfig } from './support/mirror-fixture.ts';
import { LayoutBuilder, randomLayer, type BuiltImage, type Layer } from './support/oci-image-builder.ts';
import { pushLayout } from './support/push-layout.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';
import { SkopeoError, skopeoInspectDigest } from './support/skopeo.ts';

const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';

/** A cosign signature payload for `digest`, as the layer of its `.sig` image. */
function simpleSigningLayer(repository: string, digest: Digest): Layer {
  const bytes = Buffer.from(
    JSON.stringify({
      critical: { identity: { 'docker-reference': repository }, image: { 'docker-manifest-digest': digest }, type: 'cosign container image signature' },
      optional: null,
    }),
  );
  return { bytes, digest: sha256Digest(bytes), diffId: sha256Digest(bytes), mediaType: SIMPLE_SIGNING };
}

const sigTag = (digest: Digest): string => `sha256-${digest.slice('sha256:'.length)}.sig`;

interface SummaryJson {
  images: { requested: number; archived?: number; pushed?: number; failed: number };
  signatures: { sigstore: { found: number; mirrored: number; missing: number; failed: number }; referrers: { found: number; mirrored: number; failed: number } };
  outcomes: Array<{ source: string; state: string }>;
}

/**
 * The digests a registry lists as referrers of `subject` in `repository` (the referrers API when
 * `api`, else the `sha256-<hex>` tag index), each checked to be held by digest with `subject` kept;
 * undefined when nothing lists any.
 */
async function listedReferrers(registryUrl: string, repository: string, subject: Digest, api = false): Promise<Digest[] | undefined> {
  const path = api ? `referrers/${subject}` : `manifests/${subject.replace(':', '-')}`;
  const listing = await fetch(`${registryUrl}/v2/${repository}/${path}`, { headers: { accept: MediaType.OciIndex } });
  if (listing.status === 404) return undefined;
  expect(listing.status, path).toBe(200);
  const digests = ((await listing.json()) as { manifests: Array<{ digest: Digest }> }).manifests.map((m) => m.digest).sort();
  for (const digest of digests) {
    const held = await fetch(`${registryUrl}/v2/${repository}/manifests/${digest}`, { headers: { accept: MediaType.OciManifest } });
    expect(held.status, `${repository}@${digest}`).toBe(200);
    const bytes = Buffer.from(await held.arrayBuffer());
    expect(sha256Digest(bytes)).toBe(digest);
    expect((JSON.parse(bytes.toString('utf8')) as { subject?: { digest: string } }).subject?.digest).toBe(subject);
  }
  return digests;
}

describe('sigstore signatures', () => {
  let dir: string;
  let source: RunningRegistry;
  let target: RunningRegistry;
  let config: string;
  /** Every `.sig` tag pushed to the source: `repository:tag` → its manifest digest. */
  const signatures = new Map<string, Digest>();
  let archive: string;
  /** The single-arch image, and its two referrers' digests, sorted. */
  let subject: Digest;
  let referrers: Digest[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-signatures-'));
    [source, target] = await Promise.all([startRegistry(), startRegistry()]);
    const layout = new LayoutBuilder(join(dir, 'layout'));
    const base = await randomLayer('sig-base', 300_000);
    const signed = await layout.addImage('sample/signed:1.0', [base, await randomLayer('sig-top', 100_000)]);
    const multi = await layout.addIndex('sample/multi-signed:2.0', [
      { architecture: 'amd64', layers: [base, await randomLayer('sig-amd64', 80_000)] },
      { architecture: 'arm64', layers: [await randomLayer('sig-arm64', 90_000)] },
    ]);
    await layout.addImage('sample/unsigned:1.0', [base]);
    const sign = async (repository: string, image: BuiltImage): Promise<void> => {
      const name = `${repository}:${sigTag(image.digest)}`;
      const sig = await layout.addImage(name, [simpleSigningLayer(`${source.host}/${repository}`, image.digest)]);
      signatures.set(name, sig.digest);
    };
    await sign('sample/signed', signed);
    for (const child of multi.children) await sign('sample/multi-signed', child);
    subject = signed.digest;
    const spdx = Buffer.from(JSON.stringify({ spdxVersion: 'SPDX-2.3', name: 'sample/signed', packages: [] }));
    const sbom = await layout.addReferrer(signed, 'application/spdx+json', [{ mediaType: 'application/spdx+json', bytes: spdx }]);
    const signature = await layout.addReferrer(
      signed,
      'application/vnd.dev.cosign.artifact.sig.v1+json',
      [simpleSigningLayer(`${source.host}/sample/signed`, signed.digest)],
      {
        'dev.sigstore.cosign/signature': 'MEUCIQDfixture',
      },
    );
    await layout.addReferrersTag('sample/signed', signed, [sbom, signature]);
    referrers = [sbom.digest, signature.digest].sort();
    await layout.finish();
    await pushLayout(layout.dir, source.url);
    config = await writeImageSetConfig(join(dir, 'isc.yaml'), {
      additionalImages: ['sample/signed:1.0', 'sample/multi-signed:2.0', 'sample/unsigned:1.0'].map((n) => `${source.host}/${n}`),
    });
    archive = join(dir, 'archive');
  }, 120_000);

  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const inTarget = async (prefix: string, name: string): Promise<Digest | undefined> => {
    try {
      return await skopeoInspectDigest(`docker://${target.host}/${prefix}/${name}`, { tlsVerify: false });
    } catch (err) {
      if (err instanceof SkopeoError) return undefined;
      throw err;
    }
  };

  it('mirror to disk archives each signature found as an image of the set, and counts the unsigned ones', async () => {
    const result = await runMeshmirror(mirrorArgs(config, archive, join(dir, 'cache-m2d')));
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as SummaryJson;
    // The signed image's manifest and both children of the index are signed; the index and the unsigned image are not.
    expect(summary.signatures.sigstore).toEqual({ found: 3, mirrored: 3, missing: 2, failed: 0 });
    expect(summary.images).toMatchObject({ requested: 8, archived: 8, failed: 0 });
    const archived = summary.outcomes.filter((o) => o.state === 'archived').map((o) => o.source);
    for (const name of signatures.keys()) expect(archived).toContain(`${source.host}/${name}`);
    // The two referrers, found through the tag index, are images of the set named by digest.
    expect(summary.signatures.referrers).toEqual({ found: 2, mirrored: 2, failed: 0 });
    for (const digest of referrers) expect(archived).toContain(`${source.host}/sample/signed@${digest}`);

    // `serve` answers for them where a verifier looks: the same tag in the same repository, and the referrers API.
    const served = await startServe(archive);
    try {
      for (const [name, digest] of signatures) expect(await skopeoInspectDigest(`docker://${served.host}/${name}`), name).toBe(digest);
      expect(await listedReferrers(served.url, 'sample/signed', subject, true)).toEqual(referrers);
    } finally {
      await served.stop();
    }
  });

  it('looks for signature tags and referrers at once: referrers are asked for while no signature tag lookup has been answered', async () => {
    const proxy = await startFaultProxy(source.url);
    try {
      // Each signature tag lookup is answered 3 s late. Looked for one after the other, no referrers
      // lookup would go out before the first of these answers.
      proxy.setRules([{ match: { method: 'GET', path: /\/manifests\/sha256-[0-9a-f]{64}\.sig$/ }, fault: { kind: 'stall-after', bytes: 0, ms: 3000 } }]);
      const proxied = await writeImageSetConfig(join(dir, 'isc-proxied.yaml'), {
        additionalImages: ['sample/signed:1.0', 'sample/multi-signed:2.0', 'sample/unsigned:1.0'].map((n) => `${proxy.host}/${n}`),
      });
      const result = await runMeshmirror(mirrorArgs(proxied, join(dir, 'archive-proxied'), join(dir, 'cache-proxied'), '--dry-run'));
      expect(result.code, result.stderr).toBe(0);
      const summary = JSON.parse(result.stdout) as SummaryJson;
      expect(summary.signatures.sigstore).toMatchObject({ found: 3, missing: 2, failed: 0 });
      expect(summary.signatures.referrers).toMatchObject({ found: 2, failed: 0 });
      const { log } = proxy.stats();
      const signatureLookups = log.filter((e) => e.path.endsWith('.sig'));
      const referrerLookups = log.filter((e) => e.path.includes('/referrers/') || /\/manifests\/sha256-[0-9a-f]{64}$/.test(e.path));
      expect(signatureLookups).toHaveLength(5);
      expect(referrerLookups.length).toBeGreaterThan(0);
      const firstSignatureAnswer = Math.min(...signatureLookups.map((e) => e.finishedAt ?? Infinity));
      const firstReferrersLookup = Math.min(...referrerLookups.map((e) => e.at));
      expect(firstReferrersLookup).toBeLessThan(firstSignatureAnswer);
    } finally {
      await proxy.close();
    }
  });

  it('a dry run lists the signatures, and a farm of two agents writes the same archive as one host', async () => {
    const dry = await runMeshmirror(mirrorArgs(config, join(dir, 'out-dry'), join(dir, 'cache-dry'), '--dry-run'));
    expect(dry.code, dry.stderr).toBe(0);
    const planned = (JSON.parse(dry.stdout) as SummaryJson).outcomes.filter((o) => o.state === 'planned').map((o) => o.source);
    for (const name of signatures.keys()) expect(planned).toContain(`${source.host}/${name}`);
    for (const digest of referrers) expect(planned).toContain(`${source.host}/sample/signed@${digest}`);

    const out = join(dir, 'out-farm');
    await withFarm(dir, 'farm', 2, async ({ cache, args }) => {
      const farm = await runMeshmirror([...mirrorArgs(config, out, cache), ...args]);
      expect(farm.code, farm.stderr).toBe(0);
      expect((JSON.parse(farm.stdout) as SummaryJson).signatures).toMatchObject({
        sigstore: { found: 3, mirrored: 3, missing: 2, failed: 0 },
        referrers: { found: 2, mirrored: 2, failed: 0 },
      });
    });
    expect(await archiveContent(out, join(dir, 'layout-farm'))).toEqual(await archiveContent(archive, join(dir, 'layout-single')));
  });

  it('disk to mirror puts every signature next to its image, under the same tag and with the source digest', async () => {
    const result = await runMeshmirror(diskToMirrorArgs(config, archive, `${target.host}/d2m`, join(dir, 'cache-d2m')));
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as SummaryJson;
    expect(summary.signatures.sigstore).toMatchObject({ found: 3, mirrored: 3 });
    for (const [name, digest] of signatures) expect(await inTarget('d2m', name), name).toBe(digest);
    // The target has no referrers API: the referrers are listed by the subject's tag index.
    expect(summary.signatures.referrers).toEqual({ found: 2, mirrored: 2, failed: 0 });
    expect(await listedReferrers(target.url, 'd2m/sample/signed', subject)).toEqual(referrers);
  });

  it('mirror to mirror from a source with the referrers API (serve of the archive) lists them in a target without it', async () => {
    const served = await startServe(archive);
    try {
      const fromServe = await writeImageSetConfig(join(dir, 'isc-serve.yaml'), { additionalImages: [`${served.host}/sample/signed:1.0`] });
      const result = await runMeshmirror(mirrorToMirrorArgs(fromServe, join(dir, 'ws-api'), `${target.host}/api`, join(dir, 'cache-api')));
      expect(result.code, result.stderr).toBe(0);
      expect((JSON.parse(result.stdout) as SummaryJson).signatures.referrers).toEqual({ found: 2, mirrored: 2, failed: 0 });
    } finally {
      await served.stop();
    }
    expect(await listedReferrers(target.url, 'api/sample/signed', subject)).toEqual(referrers);
  });

  it('mirror to mirror does the same, and --remove-signatures leaves them out', async () => {
    const m2m = (prefix: string, ...extra: string[]) =>
      runMeshmirror(mirrorToMirrorArgs(config, join(dir, `ws-${prefix}`), `${target.host}/${prefix}`, join(dir, `cache-${prefix}`), ...extra));
    const withSignatures = await m2m('m2m');
    expect(withSignatures.code, withSignatures.stderr).toBe(0);
    expect((JSON.parse(withSignatures.stdout) as SummaryJson).signatures.sigstore).toEqual({ found: 3, mirrored: 3, missing: 2, failed: 0 });
    for (const [name, digest] of signatures) expect(await inTarget('m2m', name), name).toBe(digest);
    expect(await listedReferrers(target.url, 'm2m/sample/signed', subject)).toEqual(referrers);
    // Mirror to mirror leaves a receipt in its workspace too, and the referrers are in it.
    const receiptFile = (JSON.parse(withSignatures.stdout) as { files: { receipt: string } }).files.receipt;
    expect(receiptFile).toBe(join(dir, 'ws-m2m', 'working-dir', 'receipt.json'));
    const receipt = JSON.parse(await readFile(receiptFile, 'utf8')) as { repositories: Record<string, { manifests: string[] }> };
    expect(receipt.repositories['m2m/sample/signed']?.manifests).toEqual(expect.arrayContaining([subject, ...referrers]));

    const without = await m2m('plain', '--remove-signatures');
    expect(without.code, without.stderr).toBe(0);
    const summary = JSON.parse(without.stdout) as SummaryJson;
    expect(summary.signatures.sigstore).toEqual({ found: 0, mirrored: 0, missing: 0, failed: 0 });
    expect(summary.signatures.referrers).toEqual({ found: 0, mirrored: 0, failed: 0 });
    expect(summary.images).toMatchObject({ requested: 3, pushed: 3 });
    for (const name of signatures.keys()) expect(await inTarget('plain', name), name).toBeUndefined();
    expect(await listedReferrers(target.url, 'plain/sample/signed', subject)).toBeUndefined();
    expect(await inTarget('plain', 'sample/signed:1.0')).toBeDefined();
  });

  it("delete takes an image's referrers and the tag index that lists them with it, and leaves the others' alone", async () => {
    const mirrored = await runMeshmirror(mirrorToMirrorArgs(config, join(dir, 'ws-del'), `${target.host}/del`, join(dir, 'cache-del')));
    expect(mirrored.code, mirrored.stderr).toBe(0);
    expect(await listedReferrers(target.url, 'del/sample/signed', subject)).toEqual(referrers);
    const disc = join(dir, 'delete-isc.yaml');
    await writeFile(
      disc,
      [
        'kind: DeleteImageSetConfiguration',
        'apiVersion: mirror.openshift.io/v2alpha1',
        'delete:',
        '  additionalImages:',
        `    - name: ${source.host}/sample/signed:1.0`,
        '',
      ].join('\n'),
    );
    const workspace = join(dir, 'ws-del');
    const generated = await runMeshmirror([
      'delete',
      '--generate',
      '-c',
      disc,
      '--workspace',
      `file://${workspace}`,
      '--delete-signatures',
      `docker://${target.host}/del`,
      '--cache-dir',
      join(dir, 'cache-del'),
      '--src-tls-verify=false',
    ]);
    expect(generated.code, generated.stderr).toBe(0);
    const listFile = join(workspace, 'working-dir', 'delete', 'delete-images.yaml');
    const deleted = await runMeshmirror(['delete', '--delete-yaml-file', listFile, `docker://${target.host}/del`, '--dest-tls-verify=false', '--output', 'json']);
    expect(deleted.code, deleted.stderr).toBe(0);
    const summary = JSON.parse(deleted.stdout) as { outcomes: Array<{ imageReference: string; state: string; referrers?: number }> };
    const image = summary.outcomes.find((o) => o.imageReference.endsWith('/del/sample/signed:1.0'));
    // Its SBOM and signature, and the sha256-<hex> tag index that listed them.
    expect(image).toMatchObject({ state: 'deleted', referrers: 3 });
    const gone = async (reference: string): Promise<number> => (await fetch(`${target.url}/v2/del/sample/signed/manifests/${reference}`, { method: 'HEAD' })).status;
    expect(await gone(subject)).toBe(404);
    for (const digest of referrers) expect(await gone(digest), digest).toBe(404);
    expect(await gone(subject.replace(':', '-'))).toBe(404);
    // The sigstore .sig tag went as its own item (--delete-signatures); the images not listed stay, signatures and all.
    expect(await inTarget('del', `sample/signed:${sigTag(subject)}`)).toBeUndefined();
    expect(await inTarget('del', 'sample/multi-signed:2.0')).toBeDefined();
    for (const [name, digest] of signatures) if (name.startsWith('sample/multi-signed')) expect(await inTarget('del', name), name).toBe(digest);

    // Run again: everything is already gone, and nothing fails.
    const again = await runMeshmirror(['delete', '--delete-yaml-file', listFile, `docker://${target.host}/del`, '--dest-tls-verify=false', '--output', 'json']);
    expect(again.code, again.stderr).toBe(0);
  });
});
