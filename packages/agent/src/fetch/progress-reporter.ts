import type { Digest, PieceEvent } from '@meshmirror/shared';

/**
 * Turns per-chunk byte counts into `progress` events at most every `intervalMs`, so a fast link
 * does not flood the coordinator with an event per 64 KiB chunk. Negative counts (a restart
 * discarded bytes) are sent at once, after whatever positive count was pending.
 */
export class ProgressReporter {
  readonly #digest: Digest;
  readonly #offset: number;
  readonly #intervalMs: number;
  readonly #emit: (event: PieceEvent) => void;
  readonly #now: () => number;
  #pending = 0;
  #lastEmit: number;

  constructor(options: { digest: Digest; offset: number; intervalMs: number; emit: (event: PieceEvent) => void; now?: () => number }) {
    this.#digest = options.digest;
    this.#offset = options.offset;
    this.#intervalMs = options.intervalMs;
    this.#emit = options.emit;
    this.#now = options.now ?? Date.now;
    this.#lastEmit = this.#now();
  }

  add(bytes: number): void {
    if (bytes < 0) {
      this.flush();
      this.#send(bytes);
      return;
    }
    this.#pending += bytes;
    if (this.#now() - this.#lastEmit >= this.#intervalMs) this.flush();
  }

  flush(): void {
    if (this.#pending === 0) return;
    const bytes = this.#pending;
    this.#pending = 0;
    this.#send(bytes);
  }

  #send(bytes: number): void {
    this.#lastEmit = this.#now();
    this.#emit({ type: 'progress', digest: this.#digest, offset: this.#offset, bytes });
  }
}
