/** Bytes gathered before one write: network reads are tens of KiB, a write per read costs a system call and a promise each. */
export const WRITE_BATCH_BYTES = 256 * 1024;

/** A batch that gets no more bytes for this long is written out: a paused stream's bytes do not wait in memory. */
export const IDLE_FLUSH_MS = 10;

export interface WriteBatchOptions {
  capacity?: number;
  idleFlushMs?: number;
}

/**
 * Gathers small chunks into one buffer that goes to `sink` when full, when no chunk came for
 * `idleFlushMs`, or on `flush`, so a file sees few large writes and the chunks' own buffers are
 * released at once, while what a paused stream delivered still reaches the file (a reader following
 * it, a commit) within moments. The buffer is reused only after `sink` has resolved, so `sink` may
 * keep using what it was given until then.
 */
export class WriteBatch {
  readonly #buffer: Buffer;
  readonly #sink: (bytes: Buffer) => Promise<void>;
  readonly #idleFlushMs: number;
  #bytes = 0;
  /** Pushes and flushes (the idle timer's too) run one after another: none touches the buffer while the sink writes it. */
  #queue: Promise<unknown> = Promise.resolve();
  #idle: NodeJS.Timeout | undefined;
  /** Why a write started by the idle timer failed: the next push or flush fails with it. */
  #idleFailure: { error: unknown } | undefined;

  /** `expectedBytes`: at most this many will come, so a small piece gets a small buffer. */
  constructor(sink: (bytes: Buffer) => Promise<void>, expectedBytes: number, options: WriteBatchOptions = {}) {
    this.#sink = sink;
    this.#idleFlushMs = options.idleFlushMs ?? IDLE_FLUSH_MS;
    this.#buffer = Buffer.allocUnsafeSlow(Math.max(1, Math.min(options.capacity ?? WRITE_BATCH_BYTES, expectedBytes)));
  }

  /** Bytes gathered and not yet handed to the sink. */
  get pending(): number {
    return this.#bytes;
  }

  /**
   * Copies `chunk` in, writing the batch out whenever it is full and more bytes are to come: a
   * full batch waits for the next push, the idle timer or `flush`, so a caller that stops reading
   * after its last chunk does not wait on the disk first.
   */
  push(chunk: Uint8Array): Promise<void> {
    return this.#serial(async () => {
      this.#throwIdleFailure();
      let rest = chunk;
      while (rest.length > 0) {
        if (this.#bytes === this.#buffer.length) await this.#write();
        const taken = Math.min(rest.length, this.#buffer.length - this.#bytes);
        this.#buffer.set(rest.subarray(0, taken), this.#bytes);
        this.#bytes += taken;
        rest = rest.subarray(taken);
      }
      if (this.#bytes > 0) this.#armIdle();
    });
  }

  /** Hands what is gathered to the sink; the batch is empty again even when the sink fails. */
  flush(): Promise<void> {
    return this.#serial(async () => {
      this.#throwIdleFailure();
      await this.#write();
    });
  }

  async #write(): Promise<void> {
    clearTimeout(this.#idle);
    this.#idle = undefined;
    if (this.#bytes === 0) return;
    const bytes = this.#bytes;
    this.#bytes = 0;
    await this.#sink(this.#buffer.subarray(0, bytes));
  }

  #throwIdleFailure(): void {
    const failure = this.#idleFailure;
    this.#idleFailure = undefined;
    if (failure !== undefined) throw failure.error;
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(op, op);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  #armIdle(): void {
    if (this.#idle !== undefined) {
      this.#idle.refresh();
      return;
    }
    this.#idle = setTimeout(() => {
      this.#idle = undefined;
      this.#serial(() => this.#write()).catch((error: unknown) => {
        this.#idleFailure ??= { error };
      });
    }, this.#idleFlushMs);
    this.#idle.unref();
  }
}
