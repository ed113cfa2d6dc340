/**
 * The archive as an image sink (mirror to disk): blobs go into the current tar chunk the moment the
 * writer holds them, so writing overlaps the network; manifests go last, children before the index
 * that names them; `finish` writes `run.json` and the index with every image whose blobs and
 * manifests all made it, and reports the rest. A held blob or manifest whose stored copy fails
 * verification is evicted, for the supply to fetch (or the sink to store) again.
 */
import {
  describeError,
  errorCode,
  throwIfAborted,
  type ArchiveResult,
  type ArchiveSession,
  type Digest,
  type LocalAgent,
  type Logger,
  type RunDescription,
  type WrittenBlob,
} from '@meshmirror/shared';
import type { FailedImage, ResolvedImage } from '../resolve/image-set.ts';
import { ArchiveFeed } from './archive-feed.ts';

export interface ArchiveSinkOptions {
  agent: LocalAgent;
  /** The archive folder. */
  dir: string;
  chunkSizeBytes: number;
  /** `--strict-archive`: no chunk above `chunkSizeBytes`. */
  strict?: boolean;
  logger: Logger;
  signal?: AbortSignal;
  /** Called as each blob's entry is complete in its chunk (see `StartArchiveOptions`). */
  onBlobWritten?: (blob: WrittenBlob) => void;
}

export interface ArchiveOutcome {
  archived: ResolvedImage[];
  failed: FailedImage[];
  archive: Pick<ArchiveResult, 'chunks' | 'warnings'>;
  /** Manifests whose stored copy failed verification and were stored again from the bytes in hand. */
  repairedManifests: number;
}

type Failure = { code: string; message: string };

export class ArchiveSink {
  readonly #o: ArchiveSinkOptions;
  readonly #session: ArchiveSession;
  readonly #feed: ArchiveFeed;
  readonly #failures = new Map<Digest, Failure>();

  private constructor(options: ArchiveSinkOptions, session: ArchiveSession) {
    this.#o = options;
    this.#session = session;
    const log = options.logger;
    // Blobs go to the archive in the order they are held; the feed keeps the ones the writer has
    // not reached yet as small records instead of a queued promise each.
    this.#feed = new ArchiveFeed({
      session,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      onFailure: (digest, err) => {
        log.error({ digest, code: errorCode(err), err: describeError(err) }, 'blob could not be archived');
        this.#failures.set(digest, { code: errorCode(err), message: `cannot archive: ${describeError(err)}` });
      },
    });
  }

  /**
   * Stores the images' manifests (small, already in hand) and the empty blobs in the writer's store,
   * and opens the archive.
   */
  static async open(images: ResolvedImage[], emptyBlobs: Digest[], options: ArchiveSinkOptions): Promise<ArchiveSink> {
    const { agent, signal } = options;
    const abortable = signal === undefined ? {} : { signal };
    for (const image of images) for (const m of image.manifests) await agent.putBlob(m.digest, m.bytes, abortable);
    for (const digest of emptyBlobs) await agent.putBlob(digest, new Uint8Array(0), abortable);
    const session = await agent.startArchive({
      dir: options.dir,
      chunkSizeBytes: options.chunkSizeBytes,
      ...(options.strict === true ? { strict: true } : {}),
      ...(options.onBlobWritten === undefined ? {} : { onBlobWritten: options.onBlobWritten }),
      ...abortable,
    });
    const sink = new ArchiveSink(options, session);
    for (const digest of emptyBlobs) sink.add(digest, 0);
    return sink;
  }

  /** The writer holds the blob (`verified`: it checked it just now): into the archive it goes. */
  add(digest: Digest, size: number, verified = false): void {
    this.#feed.add(digest, size, verified);
  }

  /**
   * Held blobs (of `planned`) that failed verification as they were archived: disk corruption, a
   * crash that lost written data. They are evicted and returned, to be fetched again, instead of
   * failing this run and every later one.
   */
  async evictCorrupt(planned: ReadonlySet<Digest> | ReadonlyMap<Digest, unknown>): Promise<Digest[]> {
    await this.#feed.settled();
    const corrupt = [...this.#failures].filter(([digest, f]) => isCorruption(f.code) && planned.has(digest)).map(([d]) => d);
    if (corrupt.length === 0) return [];
    this.#o.logger.warn({ blobs: corrupt }, 'held blobs failed verification; evicting and fetching them again');
    await this.#o.agent.evict(corrupt, this.#abortable());
    for (const digest of corrupt) this.#failures.delete(digest);
    return corrupt;
  }

  /**
   * Every image whose blobs all arrived (none in `failedBlobs`) and were archived gets its manifests
   * archived and goes into the index; the others join `failed` with the blob or manifest at fault.
   */
  async finish(
    images: ResolvedImage[],
    failedBlobs: ReadonlyMap<Digest, Failure>,
    failed: FailedImage[],
    metadata: (archived: ResolvedImage[], failed: FailedImage[]) => Promise<RunDescription>,
  ): Promise<ArchiveOutcome> {
    const { signal } = this.#o;
    await this.#feed.settled();
    const archived: ResolvedImage[] = [];
    failed = [...failed];
    for (const image of images) {
      const bad = image.blobs.find((b) => failedBlobs.has(b.digest) || this.#failures.has(b.digest));
      if (bad === undefined) {
        archived.push(image);
        continue;
      }
      const why = failedBlobs.get(bad.digest) ?? this.#failures.get(bad.digest);
      failed.push({ ...image, code: why?.code ?? 'UNKNOWN', reason: `blob ${bad.digest} (${bad.size} bytes): ${why?.message ?? 'not fetched'}` });
    }
    throwIfAborted(signal);

    // Manifests last: children before the index that names them. One whose stored copy fails
    // verification is stored again from the bytes in hand.
    const manifests = archived.flatMap((image) => [...image.manifests.slice(1), ...image.manifests.slice(0, 1)]);
    for (const m of manifests) this.add(m.digest, m.bytes.byteLength);
    await this.#feed.settled();
    const badManifests = manifests.filter((m) => isCorruption(this.#failures.get(m.digest)?.code));
    if (badManifests.length > 0) {
      await this.#o.agent.evict(
        badManifests.map((m) => m.digest),
        this.#abortable(),
      );
      for (const m of badManifests) {
        this.#failures.delete(m.digest);
        await this.#o.agent.putBlob(m.digest, m.bytes, this.#abortable());
        this.add(m.digest, m.bytes.byteLength);
      }
      await this.#feed.settled();
    }
    for (const image of [...archived]) {
      const bad = image.manifests.find((m) => this.#failures.has(m.digest));
      if (bad === undefined) continue;
      const why = this.#failures.get(bad.digest)!;
      archived.splice(archived.indexOf(image), 1);
      failed.push({ ...image, code: why.code, reason: `manifest ${bad.digest}: ${why.message}` });
    }

    if (archived.length === 0) {
      await this.#session.abort();
      return { archived, failed, archive: { chunks: [], warnings: ['no image could be archived; no archive was written'] }, repairedManifests: badManifests.length };
    }
    const result = await this.#session.finish(
      {
        // One entry per source: a release component tagged by several releases is one image.
        images: [...new Map(archived.map((i) => [i.source, { name: i.source, descriptor: i.descriptor }])).values()],
        metadata: await metadata(archived, failed),
      },
      this.#abortable(),
    );
    return { archived, failed, archive: { chunks: result.chunks, warnings: result.warnings }, repairedManifests: badManifests.length };
  }

  /** Drops the unfinished archive (nothing partial is left in the folder). */
  async abort(): Promise<void> {
    await this.#session.abort();
  }

  #abortable(): { signal?: AbortSignal } {
    return this.#o.signal === undefined ? {} : { signal: this.#o.signal };
  }
}

/** Codes that mean the store's copy of a blob is not what its digest says. */
function isCorruption(code: string | undefined): boolean {
  return code === 'MM_DIGEST_MISMATCH' || code === 'MM_SIZE_MISMATCH';
}
