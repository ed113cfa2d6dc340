import { describe, expect, it } from 'vitest';
import { ImageSetConfigSchema, IMAGESET_API_V2ALPHA1 } from '@meshmirror/shared';
import { requestedImages } from './requested-images.ts';

const configWith = (additionalImages: unknown[]) =>
  ImageSetConfigSchema.parse({ kind: 'ImageSetConfiguration', apiVersion: IMAGESET_API_V2ALPHA1, mirror: { additionalImages } });
const arm = { os: 'linux', architecture: 'arm64' };
const s390x = { os: 'linux', architecture: 's390x' };

describe('requestedImages', () => {
  it("gives an additional image its item's platforms as os/arch", () => {
    const { images } = requestedImages(configWith([{ name: 'quay.io/a/b:1', platforms: [arm] }, { name: 'quay.io/a/c:1' }]));
    expect(images.map((i) => [i.source, i.platformFilter])).toEqual([
      ['quay.io/a/b:1', ['linux/arm64']],
      ['quay.io/a/c:1', undefined],
    ]);
  });

  it('adds up the platforms of items naming the same image; one without platforms wants them all', () => {
    expect(
      requestedImages(
        configWith([
          { name: 'quay.io/a/b:1', platforms: [arm] },
          { name: 'quay.io/a/b:1', platforms: [s390x, arm] },
        ]),
      ).images[0]?.platformFilter,
    ).toEqual(['linux/arm64', 'linux/s390x']);
    const all = requestedImages(configWith([{ name: 'quay.io/a/b:1', platforms: [arm] }, { name: 'quay.io/a/b:1' }]));
    expect(all.images).toHaveLength(1);
    expect(all.images[0]?.platformFilter).toBeUndefined();
  });
});
