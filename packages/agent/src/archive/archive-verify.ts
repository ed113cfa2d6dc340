/**
 * `meshmirror verify DIR`: checks an archive before it is carried across the air gap, with no
 * network. Unlike opening it (which stops at the first fault), every chunk is walked and every
 * problem is reported: a missing or foreign chunk, a damaged tar header or chunk manifest, a blob
 * whose bytes do not match its digest, and an image of `run.json` that needs a manifest or blob the
 * archive does not hold intact (a differential archive counts the blobs its receipt's target holds).
 */
import { availableParallelism } from 'node:os';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import {
  differentialBasis,
  createDigester,
  describeError,
  digestHex,
  digestOf,
  errorCode,
  MeshmirrorError,
  parseManifest,
  parseRunMetadata,
  throwIfAborted,
  type AbortOptions,
  type Descriptor,
  type Digest,
  type RunMetadata,
  type WrittenBlob,
} from '@meshmirror/shared';
import { indexChunk, listChunkFiles, MAX_LAYOUT_JSON_BYTES, readJsonEntry, type IndexedChunk } from './archive-reader.ts';
import { backgroundHashPool, HashPool, type RangeHash } from '../io/hash-pool.ts';
import { BLOB_ENTRY_PREFIX, chunkFileName, RUN_METADATA_ENTRY, type ChunkManifest } from './chunk-manifest.ts';

/** One thing wrong with an archive, located as precisely as it can be. */
export interface ArchiveProblem {
  chunk?: string;
  entry?: string;
  digest?: Digest;
  /** The `run.json` image it costs. */
  image?: string;
  problem: string;
}

export interface ArchiveVerification {
  dir: string;
  chunks: number;
  /** Blobs read and checked against their digests, and their bytes. */
  blobs: number;
  bytes: number;
  /** Images of `run.json` checked for completeness. */
  images: number;
  /** A differential archive: what it was made against (whose target holds the blobs it leaves out). */
  differential?: { basis: string; omittedBlobs: number; omittedBytes: number };
  problems: ArchiveProblem[];
}

/** Bytes read at once while hashing here: one buffer for the whole archive, so memory stays flat. */
const READ_BYTES = 1024 * 1024;

/** Blobs of this size and more are hashed in a worker thread; below it the round trip costs more than it saves. */
const POOL_MIN_BYTES = 1024 * 1024;

/**
 * Hashes each large blob entry in a worker thread as soon as the archive writer has written it, while
 * the run goes on, so that `verifyArchive` at the end of the run reads back only what it has not
 * seen yet: on two cores the read-back then overlaps the fetch instead of following it. An entry is
 * never written again once complete (see `onBlobWritten`), so its hash now is its hash in the
 * finished archive; the layout (headers, manifests, `index.json`, `run.json`, completeness) is still
 * read and checked at the end. A hash that cannot be taken (the chunk renamed meanwhile) is simply
 * taken again at the end.
 */
export class VerifyAhead {
  readonly #pool = backgroundHashPool();
  readonly #closed = new AbortController();
  readonly #hashes = new Map<string, Promise<RangeHash | undefined>>();

  /** For `onBlobWritten`. */
  readonly note = (blob: WrittenBlob): void => {
    if (blob.size < POOL_MIN_BYTES) return;
    // The chunk may be renamed into place before the worker gets to it: then it is read there.
    const hash = (path: string): Promise<RangeHash> => this.#pool.hashFileRange(path, blob.offset, blob.size, this.#closed.signal);
    this.#hashes.set(
      aheadKey(blob.chunk, blob),
      hash(blob.path)
        .catch(() => hash(join(dirname(blob.path), blob.chunk)))
        .catch(() => undefined),
    );
  };

  /** For `verifyArchive`'s `ahead`: what the entry hashed to when it was written, if it was hashed. */
  readonly lookup = (chunk: string, blob: BlobAt): Promise<RangeHash | undefined> => this.#hashes.get(aheadKey(chunk, blob)) ?? Promise.resolve(undefined);

  /** Stops its hashes in the shared worker; one still under way is then not had (a later lookup gets none). */
  close(): Promise<void> {
    this.#closed.abort();
    return Promise.resolve();
  }
}

type BlobAt = Pick<WrittenBlob, 'digest' | 'size' | 'offset'>;

function aheadKey(chunk: string, blob: BlobAt): string {
  return `${chunk}\0${blob.offset}\0${blob.size}\0${blob.digest}`;
}

export interface VerifyArchiveOptions extends AbortOptions {
  /** Hashes taken as the archive was written (`VerifyAhead.lookup`), used instead of reading those entries again. */
  ahead?: (chunk: string, blob: BlobAt) => Promise<RangeHash | undefined>;
}

/** Where an intact blob's bytes are. */
interface HeldAt {
  path: string;
  offset: number;
  size: number;
}

/** A problem as one line: where (chunk, entry, image, digest), then what. */
export function formatProblem(p: ArchiveProblem): string {
  const where = [p.chunk, p.entry === undefined ? undefined : `entry ${p.entry}`, p.image === undefined ? undefined : `image ${p.image}`, p.digest].filter(
    (s): s is string => s !== undefined,
  );
  return `${where.join(' ')}: ${p.problem}`;
}

/** Reads every chunk of the archive in `dir` and reports everything wrong with it. */
export async function verifyArchive(dir: string, options: VerifyArchiveOptions = {}): Promise<ArchiveVerification> {
  const { signal } = options;
  const root = resolve(dir);
  const files = await listChunkFiles(root);
  const problems: ArchiveProblem[] = [];
  const fail = (problem: ArchiveProblem): void => void problems.push(problem);

  const chunks: IndexedChunk[] = [];
  for (const file of files) {
    throwIfAborted(signal);
    try {
      chunks.push(await indexChunk(join(root, file.name), file.name, file.chunk, signal));
    } catch (err) {
      if (signal?.aborted === true || errorCode(err) !== 'MM_ARCHIVE_INVALID') throw err;
      fail(entryProblem(err, file.name));
    }
  }

  const metadata = await readRunMetadata(chunks, fail);
  const chunkCount = metadata?.archive.chunkCount ?? files[files.length - 1]!.chunk;
  for (let n = 1; n <= chunkCount; n++) if (!files.some((f) => f.chunk === n)) fail({ chunk: chunkFileName(n), problem: 'is missing' });
  for (const f of files) if (f.chunk > chunkCount) fail({ chunk: f.name, problem: `is not part of this archive of ${chunkCount} chunks` });
  if (metadata !== undefined) {
    for (const c of chunks) {
      if (c.manifest.archiveId !== metadata.archive.archiveId) fail({ chunk: c.info.file, problem: 'belongs to another archive (left from an earlier run?)' });
    }
  }

  // Every blob is read whole and checked against its digest: a large one in a worker while this
  // thread goes on to the next, so results are kept in blob order and reported once all are in.
  const hashes = await hashBlobs(chunks, signal, options.ahead);
  const intact = new Map<Digest, HeldAt>();
  const damaged = new Set<Digest>();
  let bytes = 0;
  for (const { chunk, blob, bytesRead, digest } of hashes) {
    bytes += bytesRead;
    if (bytesRead === blob.size && digest === blob.digest) {
      intact.set(blob.digest, { path: chunk.path, offset: blob.offset, size: blob.size });
      continue;
    }
    damaged.add(blob.digest);
    const entry = `${BLOB_ENTRY_PREFIX}${digestHex(blob.digest)}`;
    const problem = bytesRead < blob.size ? `ends ${blob.size - bytesRead} bytes short of its ${blob.size}` : `the bytes hash to ${digest}`;
    fail({ chunk: chunk.info.file, entry, digest: blob.digest, problem });
  }

  // A differential archive is complete with the blobs the target it was made for holds.
  const elsewhere = new Set(metadata?.differential?.omitted.map((b) => b.digest));
  const images = metadata?.images.flatMap((i) => (i.status === 'archived' ? [i] : [])) ?? [];
  for (const image of images) {
    await checkImage(image, intact, damaged, elsewhere, fail);
  }
  const d = metadata?.differential;
  return {
    dir: root,
    chunks: files.length,
    blobs: intact.size + damaged.size,
    bytes,
    images: images.length,
    ...(d === undefined ? {} : { differential: { basis: differentialBasis(d), omittedBlobs: d.omitted.length, omittedBytes: d.omittedBytes } }),
    problems,
  };
}

type ChunkBlob = ChunkManifest['blobs'][number];

/** What one blob's bytes hash to, and how many of them there were. */
interface BlobHash extends RangeHash {
  chunk: IndexedChunk;
  blob: ChunkBlob;
}

/**
 * Hashes every blob of `chunks`, in their order. Blobs of `POOL_MIN_BYTES` and more go to a worker
 * thread while one is free, at most one per worker at a time (so memory stays flat however many
 * blobs there are); the others are hashed here, through one buffer, meanwhile. This thread is one of
 * the hashers, so the pool has one worker fewer than there are cores: each worker costs about
 * 16 MiB, and the first one takes ~80 ms to start, which this thread spends hashing.
 */
async function hashBlobs(chunks: IndexedChunk[], signal: AbortSignal | undefined, ahead: VerifyArchiveOptions['ahead']): Promise<BlobHash[]> {
  const hashes: BlobHash[] = [];
  const pool = new HashPool({ workers: Math.max(1, availableParallelism() - 1) });
  const inFlight = new Set<Promise<void>>();
  let failed: { error: unknown } | undefined;
  const check = (): void => {
    throwIfAborted(signal);
    if (failed !== undefined) throw failed.error;
  };
  const buffer = Buffer.allocUnsafe(READ_BYTES);
  try {
    for (const chunk of chunks) {
      const handle = await open(chunk.path, 'r');
      try {
        for (const blob of chunk.manifest.blobs) {
          check();
          const known = await ahead?.(chunk.info.file, blob);
          if (known !== undefined) {
            hashes.push({ chunk, blob, ...known });
            continue;
          }
          if (blob.size < POOL_MIN_BYTES || inFlight.size >= pool.size) {
            hashes.push({ chunk, blob, ...(await hashHere(handle, buffer, blob)) });
            continue;
          }
          // Its place is kept: the blobs after it may be done first.
          const at = hashes.length++;
          const hashed: Promise<void> = pool.hashFileRange(chunk.path, blob.offset, blob.size, signal).then(
            (hash) => void (hashes[at] = { chunk, blob, ...hash }),
            (error: unknown) => void (failed ??= { error }),
          );
          void hashed.finally(() => inFlight.delete(hashed));
          inFlight.add(hashed);
        }
      } finally {
        await handle.close();
      }
    }
    await Promise.all(inFlight);
    check();
    return hashes;
  } finally {
    await pool.close();
  }
}

/** One blob hashed on this thread: for a small one, a worker's round trip would cost more than the hashing. */
async function hashHere(handle: FileHandle, buffer: Buffer, blob: ChunkBlob): Promise<RangeHash> {
  const hash = createDigester();
  let at = 0;
  while (at < blob.size) {
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, blob.size - at), blob.offset + at);
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    at += bytesRead;
  }
  return { digest: digestOf(hash), bytesRead: at };
}

/** `run.json` from the chunk that holds it, or undefined (and a problem) when it cannot be read. */
async function readRunMetadata(chunks: IndexedChunk[], fail: (p: ArchiveProblem) => void): Promise<RunMetadata | undefined> {
  const holder = chunks.find((c) => c.files.has(RUN_METADATA_ENTRY));
  if (holder === undefined) {
    fail({ entry: RUN_METADATA_ENTRY, problem: 'is in no readable chunk: the images cannot be checked' });
    return undefined;
  }
  try {
    const parsed = parseRunMetadata(await readJsonEntry(holder, RUN_METADATA_ENTRY, MAX_LAYOUT_JSON_BYTES));
    if (parsed.success) return parsed.data;
    fail({ chunk: holder.info.file, entry: RUN_METADATA_ENTRY, problem: parsed.problem });
  } catch (err) {
    if (errorCode(err) !== 'MM_ARCHIVE_INVALID') throw err;
    fail(entryProblem(err, holder.info.file));
  }
  return undefined;
}

/**
 * An image is complete when its manifest, the children it kept and every config and layer they
 * name are held intact. A child of a sparse index (platforms left out at mirror time) may be absent.
 */
async function checkImage(
  image: { source: string; digest: Digest; mediaType: string; skippedPlatforms: string[] },
  intact: ReadonlyMap<Digest, HeldAt>,
  damaged: ReadonlySet<Digest>,
  elsewhere: ReadonlySet<Digest>,
  fail: (p: ArchiveProblem) => void,
): Promise<void> {
  const missing = (digest: Digest, what: string): void =>
    fail({ image: image.source, digest, problem: damaged.has(digest) ? `${what} is damaged in the archive` : `${what} is nowhere in the archive` });
  const readManifest = async (d: Pick<Descriptor, 'digest' | 'mediaType'>) => {
    const at = intact.get(d.digest);
    if (at === undefined) return undefined;
    const handle = await open(at.path, 'r');
    try {
      const body = Buffer.alloc(at.size);
      const { bytesRead } = await handle.read(body, 0, at.size, at.offset);
      return parseManifest(body.subarray(0, bytesRead), d.mediaType, `${image.source} ${d.digest}`);
    } finally {
      await handle.close();
    }
  };
  const check = async (d: Pick<Descriptor, 'digest' | 'mediaType'>, child: boolean): Promise<void> => {
    let parsed;
    try {
      parsed = await readManifest(d);
    } catch (err) {
      fail({ image: image.source, digest: d.digest, problem: describeError(err) });
      return;
    }
    if (parsed === undefined) {
      if (child && image.skippedPlatforms.length > 0 && !damaged.has(d.digest)) return;
      missing(d.digest, child ? 'a child manifest' : 'the manifest');
      return;
    }
    if (parsed.kind === 'index') {
      for (const c of parsed.index.manifests) await check(c, true);
      return;
    }
    for (const blob of [parsed.manifest.config, ...parsed.manifest.layers]) {
      if (!intact.has(blob.digest) && !elsewhere.has(blob.digest)) missing(blob.digest, blob === parsed.manifest.config ? 'its config' : 'a layer');
    }
  };
  await check({ digest: image.digest, mediaType: image.mediaType }, false);
}

function entryProblem(err: unknown, file: string): ArchiveProblem {
  const data = err instanceof MeshmirrorError ? err.data : {};
  const entry = typeof data['entry'] === 'string' ? data['entry'] : undefined;
  const chunk = typeof data['file'] === 'string' ? data['file'] : file;
  return { chunk, ...(entry === undefined ? {} : { entry }), problem: withoutLocation(describeError(err), chunk, entry) };
}

/** A reader's message without the chunk and entry it starts with: the problem line names them already. */
function withoutLocation(message: string, file: string, entry: string | undefined): string {
  for (const prefix of [entry === undefined ? undefined : `${file}: entry "${entry}" `, `${file}: `, `${file} `]) {
    if (prefix !== undefined && message.startsWith(prefix)) return message.slice(prefix.length);
  }
  return message;
}
