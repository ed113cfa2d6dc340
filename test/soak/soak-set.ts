/**
 * The soak's image set: as many images as it takes to reach a byte total, so a rate-limited farm
 * spends the whole soak on one run. The shape mixes what a long run meets: a base layer every image
 * shares, group layers shared by a few, small and medium layers of each image's own, a large layer
 * (several pieces) in every tenth image and a multi-arch index in every sixth.
 */
import type { SampleImage, SampleLayer, SamplePlatform } from '../../packages/coordinator/src/demo/sample-image-set.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Images that share a group layer. */
const GROUP = 8;
/** Repositories the images are spread over. */
const REPOSITORIES = 20;

/** A number in [0, span) fixed by the seed (FNV-1a). */
function spread(seed: string, span: number): number {
  let h = 2166136261;
  for (let i = 0; i < seed.length; i += 1) h = Math.imul(h ^ seed.charCodeAt(i), 16777619);
  return (h >>> 0) % span;
}

function layer(seed: string, min: number, span: number): SampleLayer {
  return { seed, size: min + spread(seed, span) };
}

/** The i-th image of the set; the same i always gives the same layers. */
export function soakImage(i: number): SampleImage {
  const base = { seed: 'soak/base-amd64', size: 3 * MiB };
  const amd64: SampleLayer[] = [
    base,
    { seed: `soak/group-${Math.floor(i / GROUP)}`, size: MiB + MiB / 2 },
    layer(`soak/${i}/own-0`, 128 * KiB, 2 * MiB),
    layer(`soak/${i}/own-1`, 64 * KiB, 512 * KiB),
  ];
  if (i % 10 === 9) amd64.push(layer(`soak/${i}/large`, 16 * MiB, 24 * MiB));
  const platforms: SamplePlatform[] = [{ architecture: 'amd64', layers: amd64 }];
  if (i % 6 === 5) {
    platforms.push({ architecture: 'arm64', variant: 'v8', layers: [{ seed: 'soak/base-arm64', size: 2 * MiB }, layer(`soak/${i}/arm64`, 256 * KiB, MiB)] });
  }
  return { name: `soak/r${String(i % REPOSITORIES).padStart(2, '0')}:v${i}`, platforms };
}

/** Images until their distinct layers add up to at least `layerBytes` (configs come on top). */
export function soakImages(layerBytes: number): SampleImage[] {
  const images: SampleImage[] = [];
  const seen = new Set<string>();
  let total = 0;
  for (let i = 0; total < layerBytes; i += 1) {
    const image = soakImage(i);
    for (const l of image.platforms.flatMap((p) => p.layers)) {
      if (seen.has(l.seed)) continue;
      seen.add(l.seed);
      total += l.size;
    }
    images.push(image);
  }
  return images;
}
