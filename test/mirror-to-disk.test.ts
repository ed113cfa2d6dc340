import { existsSync } from 'node:fs';
import { cp, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openArchive } from '@meshmirror/agent';
import type { Digest } from '@meshmirror/shared';
import { runMeshmirror, startServe } from './support/cli.ts';
import { flipByte } from './support/flip-byte.ts';
import { extractChunks, listChunks, mirrorArgs, startMirrorFixture, type MirrorFixture } from './support/mirror-fixture.ts';
import { skopeoCopy, skopeoInspectDigest, skopeoInspectRaw } from './support/skopeo.ts';

const GiB = 1024 ** 3;

describe('mirror to disk against a real registry', () => {
  let fx: MirrorFixture;
  beforeAll(async () => {
    fx = await startMirrorFixture();
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('archives every image with the source digests, in chunks within archiveSize', async () => {
    const appDigest = fx.pushed.find((p) => p.name === 'sample/app:1.0')?.digest;
    expect(appDigest).toBeDefined();
    const names = fx.pushed.map((p) => fx.viaProxy(p.name));
    const byDigest = `${fx.proxy.host}/sample/app@${appDigest}`;
    const archiveSize = 0.01; // GiB: about 10.7 MB, smaller than the 24 MiB layer
    const config = await fx.writeConfig('all.yaml', { additionalImages: [...names, byDigest], archiveSize });
    const out = join(fx.dir, 'out-all');
    const result = await runMeshmirror(mirrorArgs(config, out, join(fx.dir, 'cache-all')));
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack traces
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.images).toMatchObject({ requested: names.length + 1, archived: names.length + 1, failed: 0 });
    // Read back from disk as `meshmirror verify` reads it, every image checked.
    expect(summary.archive.verification).toMatchObject({ intact: true, images: names.length + 1, problems: [] });
    expect(summary.archive.verification.blobs).toBeGreaterThan(10);

    const limit = Math.floor(archiveSize * GiB);
    const chunks = await listChunks(out);
    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks) {
      const reported = summary.archive.chunks.find((c: { file: string }) => c.file.endsWith(chunk.name));
      expect(reported, chunk.name).toBeDefined();
      // A chunk is within the limit unless it holds one blob that alone exceeds it.
      if (chunk.size > limit) expect(reported.blobs).toBe(1);
    }
    expect(summary.archive.warnings.join('\n')).toMatch(/larger than/i);

    const layout = join(fx.dir, 'layout-all');
    await extractChunks(out, layout);
    expect(JSON.parse(await readFile(join(layout, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8'));
    const refNames = index.manifests.map((m: { annotations: Record<string, string> }) => m.annotations['org.opencontainers.image.ref.name']);
    expect(refNames.sort()).toEqual([...names, byDigest].sort());

    // skopeo 1.9.3 reads OCI entries of an OCI layout and ignores Docker-format ones (their
    // digests must not change, so the archive keeps them as they are); it reads those through
    // `meshmirror serve` of the same extracted layout.
    const served = await startServe(layout);
    try {
      for (const pushed of fx.pushed) {
        const fromRegistry = await skopeoInspectDigest(`docker://${fx.direct(pushed.name)}`);
        const fromLayout =
          pushed.name === 'sample/docker:3.1'
            ? await skopeoInspectDigest(`docker://${served.host}/${pushed.name}`)
            : await skopeoInspectDigest(`oci:${layout}:${fx.viaProxy(pushed.name)}`);
        expect(fromLayout, pushed.name).toBe(fromRegistry);
        expect(fromLayout).toBe(pushed.digest);
      }
    } finally {
      await served.stop();
    }
    // Every blob of the layout is present and named by its own sha256.
    const blobs = await readdir(join(layout, 'blobs', 'sha256'));
    expect(blobs.length).toBeGreaterThan(10);
  });

  it('meshmirror verify passes the archive as written, and names the chunk, entry and digest of a flipped byte', async () => {
    const out = join(fx.dir, 'out-all');
    const intact = await runMeshmirror(['verify', out]);
    expect(intact.code, intact.stderr).toBe(0);
    expect(intact.stdout).toMatch(/: intact \(\d+ chunks, \d+ blobs/);

    const damaged = join(fx.dir, 'out-verify-damaged');
    await cp(out, damaged, { recursive: true });
    const reader = await openArchive(damaged);
    const manifest = JSON.parse(await readFile(join(fx.dir, 'layout-all', 'index.json'), 'utf8')) as { manifests: Array<{ digest: Digest }> };
    // The top manifest of the first image: a blob every verifier must read.
    const digest = manifest.manifests[0]!.digest;
    const where = reader.locateBlob(digest)!;
    await flipByte(join(damaged, where.file), where.offset + 5);
    const result = await runMeshmirror(['verify', damaged]);
    expect(result.code, result.stdout + result.stderr).toBe(3);
    expect(result.stdout).toContain(`${where.file} entry ${where.entry} ${digest}: the bytes hash to sha256:`);
    // And the image (or images) whose manifest it is.
    expect(result.stdout).toContain(`${digest}: the manifest is damaged in the archive`);
    expect(result.stdout).toMatch(/: [23] problems \(/);

    // --no-verify leaves the reading back out.
    const config = await fx.writeConfig('no-verify.yaml', { additionalImages: [fx.viaProxy('sample/base:1.0')] });
    const unchecked = await runMeshmirror(mirrorArgs(config, join(fx.dir, 'out-no-verify'), join(fx.dir, 'cache-all'), '--no-verify'));
    expect(unchecked.code, unchecked.stderr).toBe(0);
    expect(JSON.parse(unchecked.stdout).archive.verification).toBeUndefined();
  });

  it('--strict-archive refuses a blob larger than archiveSize before fetching any, and otherwise keeps every chunk within it', async () => {
    const big = fx.pushed.find((p) => p.name === 'sample/big:1.0')!;
    const archiveSize = 0.01; // GiB: about 10.7 MB, smaller than the 24 MiB layer
    const withBig = await fx.writeConfig('strict-big.yaml', { additionalImages: [fx.viaProxy('sample/app:1.0'), fx.viaProxy('sample/big:1.0')], archiveSize });
    const blobGets = (): number => fx.proxy.stats().log.filter((e) => e.method === 'GET' && e.path.includes('/blobs/')).length;
    const before = blobGets();
    const refused = await runMeshmirror(mirrorArgs(withBig, join(fx.dir, 'out-strict-big'), join(fx.dir, 'cache-strict-big'), '--strict-archive'));
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`archiveSize: 10.2 MiB cannot hold blob`);
    expect(refused.stderr).toContain(`of ${fx.viaProxy(big.name)}, and --strict-archive allows no chunk above archiveSize`);
    expect(blobGets() - before).toBe(0);
    expect(await listChunks(join(fx.dir, 'out-strict-big')).catch(() => [])).toEqual([]);

    const fits = await fx.writeConfig('strict-fits.yaml', {
      additionalImages: ['sample/base:1.0', 'sample/app:1.0', 'sample/multi:2.0', 'sample/docker:3.1'].map((n) => fx.viaProxy(n)),
      archiveSize: 0.003,
    });
    const out = join(fx.dir, 'out-strict-fits');
    const ok = await runMeshmirror(mirrorArgs(fits, out, join(fx.dir, 'cache-strict-fits'), '--strict-archive'));
    expect(ok.code, ok.stderr).toBe(0);
    const chunks = await listChunks(out);
    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks) expect(chunk.size, chunk.name).toBeLessThanOrEqual(Math.floor(0.003 * GiB));
  });

  it('keeps only the configured architectures of a multi-arch index, and honours blockedImages', async () => {
    const multi = fx.pushed.find((p) => p.name === 'sample/multi:2.0');
    expect(multi).toBeDefined();
    const config = await fx.writeConfig('arm.yaml', {
      additionalImages: [fx.viaProxy('sample/multi:2.0'), fx.viaProxy('sample/base:1.0')],
      blockedImages: [fx.viaProxy('sample/base')],
      architectures: ['arm64'],
    });
    const out = join(fx.dir, 'out-arm');
    const result = await runMeshmirror(mirrorArgs(config, out, join(fx.dir, 'cache-arm')));
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.images).toMatchObject({ requested: 1, blocked: 1, archived: 1 });
    // A sparse index is complete without the platforms left out.
    expect(summary.archive.verification).toMatchObject({ intact: true, images: 1, problems: [] });
    const layout = join(fx.dir, 'layout-arm');
    await extractChunks(out, layout);
    const indexBytes = await readFile(join(layout, 'blobs', 'sha256', multi!.digest.slice(7)));
    const children = JSON.parse(indexBytes.toString()).manifests as Array<{ digest: string; platform: { architecture: string } }>;
    for (const child of children) {
      const present = existsSync(join(layout, 'blobs', 'sha256', child.digest.slice(7)));
      expect(present, child.platform.architecture).toBe(child.platform.architecture === 'arm64');
    }
    expect(await skopeoInspectDigest(`oci:${layout}:${fx.viaProxy('sample/multi:2.0')}`)).toBe(multi!.digest);

    // Served from the archive, the tag gives the index of the platforms held, as a push of it does,
    // so `skopeo copy --all` works; by digest, the archived (sparse) index is still there.
    const served = await startServe(out);
    try {
      const tagged = JSON.parse((await skopeoInspectRaw(`docker://${served.host}/sample/multi:2.0`)).toString()) as { manifests: typeof children };
      expect(tagged.manifests.map((m) => m.platform.architecture)).toEqual(['arm64']);
      expect(tagged.manifests).toEqual(children.filter((m) => m.platform.architecture === 'arm64'));
      const copied = join(fx.dir, 'copied-arm');
      await skopeoCopy(`docker://${served.host}/sample/multi:2.0`, `oci:${copied}:multi`);
      // (skopeo rewrites Docker manifests as OCI ones for the layout: compared by platform, not digest.)
      const copiedIndex = JSON.parse((await skopeoInspectRaw(`oci:${copied}:multi`)).toString()) as { manifests: typeof children };
      expect(copiedIndex.manifests.map((m) => m.platform.architecture)).toEqual(['arm64']);
      expect((await skopeoInspectRaw(`docker://${served.host}/sample/multi@${multi!.digest}`)).equals(indexBytes)).toBe(true);
    } finally {
      await served.stop();
    }
  });

  it("an item's own platforms win over mirror.platform.architectures, and items naming the same image add up", async () => {
    const multi = fx.pushed.find((p) => p.name === 'sample/multi:2.0')!;
    const config = join(fx.dir, 'platforms.yaml');
    await writeFile(
      config,
      [
        'kind: ImageSetConfiguration',
        'apiVersion: mirror.openshift.io/v2alpha1',
        'mirror:',
        '  additionalImages:',
        `    - name: ${fx.viaProxy('sample/multi:2.0')}`,
        '      platforms: [{os: linux, architecture: arm64}]',
        `    - name: ${fx.viaProxy('sample/app:1.0')}`,
        '',
      ].join('\n'),
    );
    const layoutOf = async (name: string): Promise<string> => {
      const out = join(fx.dir, `out-${name}`);
      const result = await runMeshmirror(mirrorArgs(config, out, join(fx.dir, `cache-${name}`)));
      expect(result.code, result.stderr).toBe(0);
      const layout = join(fx.dir, `layout-${name}`);
      await extractChunks(out, layout);
      return layout;
    };
    const childrenHeld = async (layout: string): Promise<string[]> => {
      const index = JSON.parse((await readFile(join(layout, 'blobs', 'sha256', multi.digest.slice(7)))).toString()) as {
        manifests: Array<{ digest: string; platform: { architecture: string } }>;
      };
      return index.manifests.filter((m) => existsSync(join(layout, 'blobs', 'sha256', m.digest.slice(7)))).map((m) => m.platform.architecture);
    };
    // The default architectures (amd64) would keep the amd64 child; the item asks for arm64 only.
    expect(await childrenHeld(await layoutOf('platforms'))).toEqual(['arm64']);

    // Listed again without platforms, the image wants every platform.
    await writeFile(config, `${await readFile(config, 'utf8')}    - name: ${fx.viaProxy('sample/multi:2.0')}\n`);
    expect((await childrenHeld(await layoutOf('platforms-merged'))).sort()).toEqual(['amd64', 'arm64']);
  });

  it('--dry-run writes the mapping and the bytes to fetch, and fetches no blob', async () => {
    const config = await fx.writeConfig('dry.yaml', { additionalImages: [fx.viaProxy('sample/app:1.0'), fx.viaProxy('sample/base:1.0')] });
    const out = join(fx.dir, 'out-dry');
    fx.proxy.resetStats();
    const result = await runMeshmirror([...mirrorArgs(config, out, join(fx.dir, 'cache-dry')), '--dry-run']);
    expect(result.code, result.stderr).toBe(0);
    expect(fx.proxy.stats().blobBodyBytes).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.bytes.toFetch).toBe(summary.bytes.unique);
    expect(summary.bytes.unique).toBeGreaterThan(3 * 1024 * 1024);
    const mapping = await readFile(join(out, 'working-dir', 'dry-run', 'mapping.txt'), 'utf8');
    expect(mapping).toContain(`docker://${fx.viaProxy('sample/app:1.0')}=file://${out}/sample/app:1.0`);
    expect(await listChunks(out)).toEqual([]);
  });
});
