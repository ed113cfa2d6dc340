/** Bytes gathered before one write: network reads are tens of KiB, a write per read costs a system call and a promise each. */
export const WRITE_BATCH_BYTES = 256 * 1024;

/**
 * Gathers small chunks into one buffer that goes to `sink` when full (or on `flush`), so a file sees
 * few large writes and the chunks' own buffers are released at once. The buffer is reused only
 * after `sink` has resolved, so `sink` may keep using what it was given until then.
 */
export class WriteBatch {
  readonly #buffer: Buffer;
  readonly #sink: (bytes: Buffer) => Promise<void>;
  #bytes = 0;

  /** `expectedBytes`: at most this many will come, so a small piece gets a small buffer. */
  constructor(sink: (bytes: Buffer) => Promise<void>, expectedBytes: number, capacity = WRITE_BATCH_BYTES) {
    this.#sink = sink;
    this.#buffer = Buffer.allocUnsafeSlow(Math.max(1, Math.min(capacity, expectedBytes)));
  }

  /** Bytes gathered and not yet handed to the sink. */
  get pending(): number {
    return this.#bytes;
  }

  /**
   * Copies `chunk` in, writing the batch out whenever it is full and more bytes are to come: a
   * full batch waits for the next push (or `flush`), so a caller that stops reading after its last
   * chunk does not wait on the disk first.
   */
  async push(chunk: Uint8Array): Promise<void> {
    let rest = chunk;
    while (rest.length > 0) {
      if (this.#bytes === this.#buffer.length) await this.flush();
      const taken = Math.min(rest.length, this.#buffer.length - this.#bytes);
      this.#buffer.set(rest.subarray(0, taken), this.#bytes);
      this.#bytes += taken;
      rest = rest.subarray(taken);
    }
  }

  /** Hands what is gathered to the sink; the batch is empty again even when the sink fails. */
  async flush(): Promise<void> {
    if (this.#bytes === 0) return;
    const bytes = this.#bytes;
    this.#bytes = 0;
    await this.#sink(this.#buffer.subarray(0, bytes));
  }
}
