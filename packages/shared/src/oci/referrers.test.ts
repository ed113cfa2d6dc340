import { describe, expect, it } from 'vitest';
import { sha256Digest } from './digest.ts';
import { MediaType } from './media-types.ts';
import { mergeReferrersIndex, referrerEntry, referrersTag } from './referrers.ts';

const subject = sha256Digest(Buffer.from('subject'));
const empty = { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256Digest(Buffer.from('{}')), size: 2 };

function manifest(body: Record<string, unknown>) {
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: empty, layers: [], ...body }));
  return { digest: sha256Digest(bytes), mediaType: MediaType.OciManifest, bytes };
}

describe('referrers', () => {
  it('tags the referrers index of a digest sha256-<hex>', () => {
    expect(referrersTag(subject)).toBe(`sha256-${subject.slice('sha256:'.length)}`);
  });

  it("describes a referrer by its artifactType, else its config's media type, with its annotations", () => {
    const sbom = manifest({ artifactType: 'application/spdx+json', subject: { mediaType: MediaType.OciManifest, digest: subject, size: 7 }, annotations: { a: 'b' } });
    expect(referrerEntry(sbom, 'sbom')).toEqual({
      subject,
      descriptor: {
        mediaType: MediaType.OciManifest,
        digest: sbom.digest,
        size: sbom.bytes.byteLength,
        artifactType: 'application/spdx+json',
        annotations: { a: 'b' },
      },
    });
    const old = manifest({ config: { ...empty, mediaType: 'application/vnd.example.sig' }, subject: { mediaType: MediaType.OciManifest, digest: subject, size: 7 } });
    expect(referrerEntry(old, 'old')?.descriptor.artifactType).toBe('application/vnd.example.sig');
    expect(referrerEntry(manifest({}), 'plain')).toBeUndefined();
  });

  it('merges new referrers into a tag index, keeping what it listed, and writes nothing when none is new', () => {
    const a = { mediaType: MediaType.OciManifest, digest: sha256Digest(Buffer.from('a')), size: 1, artifactType: 'x' };
    const b = { mediaType: MediaType.OciManifest, digest: sha256Digest(Buffer.from('b')), size: 1 };
    expect(mergeReferrersIndex([a], [a])).toBeUndefined();
    const merged = mergeReferrersIndex([a], [b, a, b]);
    expect(JSON.parse(Buffer.from(merged ?? []).toString('utf8'))).toEqual({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [a, b] });
  });
});
