import { describe, expect, it } from 'vitest';
import { sha256Digest } from './digest.ts';
import { MediaType } from './media-types.ts';
import { stripSparseIndex } from './sparse-index.ts';

const child = (arch: string) => ({ mediaType: MediaType.OciManifest, digest: sha256Digest(arch), size: 10, platform: { os: 'linux', architecture: arch } });

describe('stripSparseIndex', () => {
  const index = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [child('amd64'), child('arm64')], annotations: { a: 'b' } };
  const bytes = new TextEncoder().encode(JSON.stringify(index));
  const top = { digest: sha256Digest(bytes), mediaType: MediaType.OciIndex, bytes };

  it('keeps every other field and the kept children in order, with the digest of the new bytes', () => {
    const kept = stripSparseIndex(top, (d) => d === child('arm64').digest)!;
    const parsed = JSON.parse(Buffer.from(kept.bytes).toString('utf8')) as typeof index;
    expect(parsed).toEqual({ ...index, manifests: [child('arm64')] });
    expect(kept.digest).toBe(sha256Digest(kept.bytes));
    expect(kept.mediaType).toBe(MediaType.OciIndex);
  });

  it('leaves an index with every child, and a manifest, alone', () => {
    expect(stripSparseIndex(top, () => true)).toBeUndefined();
    expect(stripSparseIndex({ ...top, mediaType: MediaType.OciManifest }, () => false)).toBeUndefined();
  });
});
