/**
 * A few worker threads that sha256 byte ranges of files, so that checking a large archive keeps
 * every core busy instead of one. The main thread only hands out ranges and collects digests.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { abortError, countHashedBytes, MeshmirrorError, type Digest } from '@meshmirror/shared';

/** Bytes a worker reads at once, into the one buffer it keeps, so memory stays flat however large the range. */
const BLOCK_BYTES = 1024 * 1024;

/**
 * The worker as source text, not a module file: the CLI also runs from an esbuild bundle, where no
 * worker file would sit next to this one. Reads are synchronous because the worker has nothing else
 * to do meanwhile. The file is opened as verify's reader opens chunk files (`'r'`).
 */
const WORKER_SOURCE = `
const { parentPort } = process.getBuiltinModule('node:worker_threads');
const { openSync, readSync, closeSync } = process.getBuiltinModule('node:fs');
const { createHash } = process.getBuiltinModule('node:crypto');
const buffer = Buffer.allocUnsafe(${BLOCK_BYTES});
parentPort.on('message', ({ path, offset, size }) => {
  let fd;
  try {
    fd = openSync(path, 'r');
    const hash = createHash('sha256');
    let at = 0;
    while (at < size) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, size - at), offset + at);
      if (n === 0) break;
      hash.update(buffer.subarray(0, n));
      at += n;
    }
    parentPort.postMessage({ digest: 'sha256:' + hash.digest('hex'), bytesRead: at });
  } catch (err) {
    parentPort.postMessage({ error: { message: String(err?.message ?? err), code: err?.code } });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
});
`;

export interface HashPoolOptions {
  /** Worker threads at most; by default two, or one on a single core (the main thread has work of its own). */
  workers?: number;
  /**
   * A worker with nothing to do for this long ends (its thread and descriptors go with it); the next
   * hash starts a new one, in about 80 ms. Default 2 s: a long-lived process holds no thread between
   * runs, and during a run blobs complete far more often than that.
   */
  idleMs?: number;
}

const DEFAULT_IDLE_MS = 2_000;

export interface RangeHash {
  digest: Digest;
  /** Less than the size asked for when the file ends first; the digest is of what was read. */
  bytesRead: number;
}

interface Job {
  path: string;
  offset: number;
  size: number;
  signal: AbortSignal | undefined;
  resolve: (hash: RangeHash) => void;
  reject: (error: unknown) => void;
  onAbort: () => void;
}

type WorkerReply = RangeHash | { error: { message: string; code?: string } };

/**
 * Workers start on first need and are terminated by `close()`. An idle worker is unref'd, so a
 * process that forgets to close the pool still exits; a busy one is ref'd, so a pending hash keeps
 * the process alive until its digest arrives.
 */
export class HashPool {
  /** How many ranges are hashed at once; more wait their turn. */
  readonly size: number;
  readonly #idleMs: number;
  readonly #idle: Worker[] = [];
  /** When each idle worker ends unless it is given work first. */
  readonly #retiring = new Map<Worker, NodeJS.Timeout>();
  readonly #busy = new Map<Worker, Job>();
  readonly #queue: Job[] = [];
  /** Workers terminated by an abort, until they are gone: `close()` waits for them too. */
  readonly #ending = new Set<Promise<unknown>>();
  #closed = false;

  constructor(options: HashPoolOptions = {}) {
    this.size = Math.max(1, options.workers ?? Math.min(2, availableParallelism()));
    this.#idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
  }

  /** Worker threads running now, busy or idle. */
  get workers(): number {
    return this.#idle.length + this.#busy.size;
  }

  /** The sha256 of `size` bytes of `path` from `offset`, read in a worker thread. */
  hashFileRange(path: string, offset: number, size: number, signal?: AbortSignal): Promise<RangeHash> {
    if (this.#closed) return Promise.reject(closedError());
    if (signal?.aborted === true) return Promise.reject(abortError(signal));
    return new Promise<RangeHash>((resolve, reject) => {
      const job: Job = { path, offset, size, signal, resolve, reject, onAbort: () => this.#abort(job) };
      signal?.addEventListener('abort', job.onAbort, { once: true });
      this.#queue.push(job);
      this.#dispatch();
    });
  }

  /** Terminates every worker; hashes still pending reject with `MM_ABORTED`. */
  async close(): Promise<void> {
    this.#closed = true;
    const workers = [...this.#idle, ...this.#busy.keys()];
    for (const timer of this.#retiring.values()) clearTimeout(timer);
    this.#retiring.clear();
    for (const job of [...this.#queue, ...this.#busy.values()]) settle(job).reject(closedError());
    this.#queue.length = 0;
    this.#idle.length = 0;
    this.#busy.clear();
    await Promise.all([...workers.map((w) => w.terminate()), ...this.#ending]);
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      const worker = this.#idle.pop() ?? (this.#idle.length + this.#busy.size < this.size ? this.#spawn() : undefined);
      if (worker === undefined) return;
      clearTimeout(this.#retiring.get(worker));
      this.#retiring.delete(worker);
      const job = this.#queue.shift()!;
      this.#busy.set(worker, job);
      worker.ref();
      worker.postMessage({ path: job.path, offset: job.offset, size: job.size });
    }
  }

  #spawn(): Worker {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.on('message', (reply: WorkerReply) => this.#replied(worker, reply));
    worker.on('error', (error) => this.#lost(worker, error));
    worker.on('exit', (code) => this.#lost(worker, new Error(`hash worker exited with code ${code}`)));
    return worker;
  }

  #replied(worker: Worker, reply: WorkerReply): void {
    const job = this.#busy.get(worker);
    if (job === undefined) return;
    this.#busy.delete(worker);
    worker.unref();
    this.#idle.push(worker);
    this.#retireLater(worker);
    const { resolve, reject } = settle(job);
    if ('error' in reply) {
      reject(Object.assign(new Error(reply.error.message), reply.error));
    } else {
      countHashedBytes(reply.bytesRead);
      resolve(reply);
    }
    this.#dispatch();
  }

  /** Ends an idle worker after `idleMs` unless it is given work first. */
  #retireLater(worker: Worker): void {
    const timer = setTimeout(() => {
      this.#retiring.delete(worker);
      const idle = this.#idle.indexOf(worker);
      if (idle < 0) return;
      this.#idle.splice(idle, 1);
      const ending = worker.terminate().finally(() => this.#ending.delete(ending));
      this.#ending.add(ending);
    }, this.#idleMs);
    timer.unref();
    this.#retiring.set(worker, timer);
  }

  /** A worker that died on its own: its hash fails, and the next one in the queue gets a fresh worker. */
  #lost(worker: Worker, error: unknown): void {
    clearTimeout(this.#retiring.get(worker));
    this.#retiring.delete(worker);
    const job = this.#busy.get(worker);
    this.#busy.delete(worker);
    const idle = this.#idle.indexOf(worker);
    if (idle >= 0) this.#idle.splice(idle, 1);
    if (job !== undefined) settle(job).reject(error);
    if (!this.#closed) this.#dispatch();
  }

  /** A synchronous read loop cannot hear a message, so an aborted hash costs its worker. */
  #abort(job: Job): void {
    const queued = this.#queue.indexOf(job);
    if (queued >= 0) this.#queue.splice(queued, 1);
    for (const [worker, running] of this.#busy) {
      if (running !== job) continue;
      this.#busy.delete(worker);
      const ending = worker.terminate().finally(() => this.#ending.delete(ending));
      this.#ending.add(ending);
    }
    settle(job).reject(abortError(job.signal));
    this.#dispatch();
  }
}

let background: HashPool | undefined;

/**
 * The process's pool for hashes taken in the background of a run, by every user: the store's blobs
 * assembled from pieces and the archive's entries as they are written. One worker (about 16 MiB)
 * however many users there are. Never closed: its worker ends after `idleMs` without work, so a
 * long-lived agent holds no thread between runs. A user stops its own hashes with their signal.
 */
export function backgroundHashPool(): HashPool {
  background ??= new HashPool({ workers: 1 });
  return background;
}

/** The job's callbacks, once it stops listening for an abort. */
function settle(job: Job): Pick<Job, 'resolve' | 'reject'> {
  job.signal?.removeEventListener('abort', job.onAbort);
  return job;
}

function closedError(): MeshmirrorError {
  return new MeshmirrorError('MM_ABORTED', 'the hash pool is closed');
}
