/**
 * One fsync of a path shared by everyone who needs it at about the same time (group commit): a
 * caller always gets a sync that started after it called, so what it did before (a rename into a
 * folder) is durable once its promise resolves; the callers that arrive while a sync runs share the
 * next one. Many small blobs completing at once cost a few folder syncs instead of one each.
 */
export class GroupSync {
  readonly #syncOnce: () => Promise<void>;
  #running: Promise<void> | undefined;
  #queued: Promise<void> | undefined;

  constructor(syncOnce: () => Promise<void>) {
    this.#syncOnce = syncOnce;
  }

  sync(): Promise<void> {
    if (this.#queued !== undefined) return this.#queued;
    const running = this.#running;
    if (running === undefined) return this.#run();
    // The running sync may have started before this caller's change: the next one covers it.
    const queued = running
      .catch(() => undefined)
      .then(() => {
        this.#queued = undefined;
        return this.#run();
      });
    this.#queued = queued;
    return queued;
  }

  #run(): Promise<void> {
    const running: Promise<void> = this.#syncOnce().finally(() => {
      if (this.#running === running) this.#running = undefined;
    });
    this.#running = running;
    return running;
  }
}
