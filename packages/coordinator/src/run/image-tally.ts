import type { Digest } from '@meshmirror/shared';
import type { MirrorPlan } from '../plan/plan.ts';
import type { ProgressReporter } from '../report/progress.ts';

/**
 * Counts images done and failed for the progress line while their blobs arrive: an image is done
 * when none of its blobs is still pending, and failed as soon as one of them fails.
 */
export class ImageTally {
  readonly #plan: MirrorPlan;
  readonly #progress: ProgressReporter | undefined;
  readonly #alreadyFailed: number;
  /** Per image of the plan, its blobs still pending. */
  readonly #blobsLeft: number[];
  readonly #pending: Set<Digest>;
  readonly #failed = new Set<number>();
  #done: number;

  constructor(plan: MirrorPlan, pending: Iterable<Digest>, alreadyFailed: number, progress?: ProgressReporter) {
    this.#plan = plan;
    this.#progress = progress;
    this.#alreadyFailed = alreadyFailed;
    this.#pending = new Set(pending);
    this.#blobsLeft = plan.images.map((image) => image.blobs.filter((b) => this.#pending.has(b.digest)).length);
    this.#done = this.#blobsLeft.filter((n) => n === 0).length;
    progress?.update({ imagesDone: this.#done, imagesFailed: alreadyFailed });
  }

  /** A pending blob is held (`ok`) or cannot be had; a blob told twice counts once. */
  blobEnded(digest: Digest, ok: boolean): void {
    if (!this.#pending.delete(digest)) return;
    for (const index of this.#plan.blobs.get(digest)?.images ?? []) {
      const left = (this.#blobsLeft[index] ?? 1) - 1;
      this.#blobsLeft[index] = left;
      if (!ok) this.#failed.add(index);
      if (left === 0 && !this.#failed.has(index)) this.#done += 1;
    }
    this.#progress?.update({ imagesDone: this.#done, imagesFailed: this.#alreadyFailed + this.#failed.size });
  }
}
