import { describe, expect, it } from 'vitest';
import { sha256Digest } from './digest.ts';
import { digestTag, mirroredName } from './mirror-name.ts';
import { parseImageReference } from './reference.ts';

const DIGEST = sha256Digest('manifest');
const HEX = DIGEST.slice('sha256:'.length);

describe('mirroredName', () => {
  it('keeps the source repository and tag', () => {
    expect(mirroredName({ ref: parseImageReference('quay.io/team/app:1.2') }, DIGEST)).toEqual({ repository: 'team/app', tag: '1.2' });
    expect(mirroredName({ ref: parseImageReference('alpine') }, DIGEST)).toEqual({ repository: 'library/alpine', tag: 'latest' });
  });

  it('tags an image named only by digest with the 64 hex of the archived digest', () => {
    const ref = parseImageReference(`quay.io/team/app@${sha256Digest('source')}`);
    expect(mirroredName({ ref }, DIGEST)).toEqual({ repository: 'team/app', tag: HEX });
    expect(digestTag(DIGEST)).toBe(HEX);
    expect(HEX).toMatch(/^[0-9a-f]{64}$/);
  });

  it('keeps only the tag of a name with tag and digest', () => {
    expect(mirroredName({ ref: parseImageReference(`quay.io/team/app:1.2@${sha256Digest('source')}`) }, DIGEST)).toEqual({ repository: 'team/app', tag: '1.2' });
  });

  it('lets targetRepo and targetTag win, without slashes at the ends', () => {
    const ref = parseImageReference(`quay.io/openshift-release-dev/ocp-release@${sha256Digest('source')}`);
    expect(mirroredName({ ref, targetRepo: '/openshift/release-images/', targetTag: '4.16.3-x86_64' }, DIGEST)).toEqual({
      repository: 'openshift/release-images',
      tag: '4.16.3-x86_64',
    });
  });

  it('gives a referrer no tag', () => {
    const ref = parseImageReference(`quay.io/team/app@${sha256Digest('sbom')}`);
    expect(mirroredName({ ref, role: 'referrer' }, DIGEST)).toEqual({ repository: 'team/app' });
  });
});
