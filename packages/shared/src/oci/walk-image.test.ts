import { describe, expect, it } from 'vitest';
import { sha256Digest, type Digest } from './digest.ts';
import type { Descriptor } from './manifest.ts';
import { MediaType } from './media-types.ts';
import { walkImage, type ManifestBytes } from './walk-image.ts';

function json(value: unknown): ManifestBytes & { text: string } {
  const text = JSON.stringify(value);
  const bytes = Buffer.from(text);
  const mediaType = (value as { mediaType: string }).mediaType;
  return { digest: sha256Digest(bytes), mediaType, bytes, text };
}

function blob(n: number, size: number): Descriptor {
  const digest: Digest = `sha256:${String(n).repeat(64).slice(0, 64)}`;
  return { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size };
}

function imageManifest(config: Descriptor, layers: Descriptor[]) {
  return json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: { ...config, mediaType: 'application/vnd.oci.image.config.v1+json' }, layers });
}

const shared = blob(1, 1_000);
const amd64 = imageManifest(blob(2, 10), [shared, blob(3, 30)]);
const arm64 = imageManifest(blob(4, 10), [shared, blob(5, 50)]);
const index = json({
  schemaVersion: 2,
  mediaType: MediaType.OciIndex,
  manifests: [
    { mediaType: MediaType.OciManifest, digest: amd64.digest, size: amd64.bytes.length, platform: { os: 'linux', architecture: 'amd64' } },
    { mediaType: MediaType.OciManifest, digest: arm64.digest, size: arm64.bytes.length, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ],
});
const byDigest = new Map([amd64, arm64].map((m) => [m.digest, m]));

describe('walkImage', () => {
  it('lists the config and layers of a single image manifest', async () => {
    const walked = await walkImage(amd64, 'r.example/app:1', { child: () => Promise.reject(new Error('no children')) });
    expect(walked.top.kind).toBe('image');
    expect(walked.children).toEqual([]);
    expect(walked.blobs).toEqual([
      { digest: blob(2, 10).digest, size: 10 },
      { digest: shared.digest, size: 1_000 },
      { digest: blob(3, 30).digest, size: 30 },
    ]);
  });

  it('follows the children of an index the caller keeps, names them by platform, and lists each shared blob once', async () => {
    const asked: string[] = [];
    const walked = await walkImage(index, 'r.example/app:1', {
      child: (d, where) => {
        asked.push(where);
        return Promise.resolve(byDigest.get(d.digest));
      },
    });
    expect(asked).toEqual(['r.example/app:1 (linux/amd64)', 'r.example/app:1 (linux/arm64/v8)']);
    expect(walked.children.map((c) => c.manifest.digest)).toEqual([amd64.digest, arm64.digest]);
    expect(walked.blobs.map((b) => b.digest)).toEqual([blob(2, 10).digest, shared.digest, blob(3, 30).digest, blob(4, 10).digest, blob(5, 50).digest]);
  });

  it('leaves out a child the caller does not read, and says which', async () => {
    const walked = await walkImage(index, 'r.example/app:1', {
      child: (d) => Promise.resolve(d.platform?.architecture === 'amd64' ? byDigest.get(d.digest) : undefined),
    });
    expect(walked.children.map((c) => c.descriptor.platform?.architecture)).toEqual(['amd64']);
    expect(walked.skipped.map((d) => d.platform?.architecture)).toEqual(['arm64']);
    expect(walked.blobs.map((b) => b.digest)).not.toContain(blob(5, 50).digest);
  });

  it('shows each blob with the manifest that names it, so a reader can refuse one it does not hold', async () => {
    const owners: string[] = [];
    await walkImage(index, 'r.example/app:1', {
      child: (d) => Promise.resolve(byDigest.get(d.digest)),
      onBlob: (d, owner) => {
        if (d.digest === shared.digest) owners.push(`${owner.where} ${owner.manifest.digest}`);
      },
    });
    expect(owners).toEqual([`r.example/app:1 (linux/amd64) ${amd64.digest}`, `r.example/app:1 (linux/arm64/v8) ${arm64.digest}`]);
  });

  it('refuses an index nested in an index, naming where', async () => {
    await expect(walkImage(index, 'r.example/app:1', { child: () => Promise.resolve(index) })).rejects.toMatchObject({
      code: 'MM_MANIFEST_INVALID',
      message: 'r.example/app:1 (linux/amd64): nested index is not supported',
    });
  });
});
