/** Plans for planner tests: blobs numbered from 1, all from one source repository. */
import type { Digest, RepositoryLocation } from '@meshmirror/shared';
import type { MirrorPlan, PlanBlob } from './plan.ts';

export const source: RepositoryLocation = { registry: 'registry.example.com', repository: 'team/app' };

export function digest(n: number): Digest {
  return `sha256:${n.toString(16).padStart(64, '0')}`;
}

export function planOf(sizes: number[]): MirrorPlan {
  const blobs = new Map<Digest, PlanBlob>(sizes.map((size, i) => [digest(i + 1), { digest: digest(i + 1), size, sources: [source], images: [0] }]));
  return { images: [], blobs, uniqueBytes: sizes.reduce((a, b) => a + b, 0) };
}
