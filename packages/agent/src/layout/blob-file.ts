/**
 * Reading a blob's bytes out of a file (a blob file of an OCI layout, or a region of an archive
 * chunk), shared by the layout and archive readers.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { addAbortSignal, pipeline, Readable } from 'node:stream';
import { MeshmirrorError, throwIfAborted, type ByteRange, type BlobRef } from '@meshmirror/shared';
import { createVerifyingStream } from '../archive/verifying-stream.ts';

const READ_CHUNK_BYTES = 256 * 1024;

/** An inclusive byte range inside a blob; `end` is `start - 1` for an empty blob. */
export interface ResolvedRange {
  start: number;
  end: number;
  /** The range covers the whole blob, so its digest can be checked while reading. */
  whole: boolean;
}

/** Applies `ByteRange` defaults and refuses a range outside the blob (code `MM_USAGE`). */
export function resolveByteRange(size: number, range: ByteRange | undefined, where: string): ResolvedRange {
  const start = range?.start ?? 0;
  const end = range?.end ?? size - 1;
  const valid = Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && end >= start - 1 && end < size;
  // An empty range is only meaningful for reading an empty blob whole.
  if (!valid || (end === start - 1 && size !== 0)) {
    throw new MeshmirrorError('MM_USAGE', `byte range ${start}-${end} is outside ${where} (${size} bytes)`, {
      data: { start, end, size },
    });
  }
  return { start, end, whole: start === 0 && end === size - 1 };
}

export interface OpenFileRegionOptions {
  /** Path of the file that holds the blob. */
  path: string;
  /** Where the blob's first byte is in the file (0 for a blob file, the data offset for a tar entry). */
  blobOffset: number;
  range: ResolvedRange;
  /** When set, the bytes are checked against it (only for whole-blob reads). */
  verify?: BlobRef;
  /** For messages: the blob's file and entry. */
  where: string;
  /** Refuse to follow a symbolic link at `path` (blob files of a layout). */
  noFollow?: boolean;
  signal?: AbortSignal | undefined;
}

/**
 * Opens a stream of a byte range of a file. A whole-blob read is checked against the blob's digest
 * and size as it streams, holding back the last bytes until the digest matches: a consumer never
 * receives a complete wrong blob.
 */
export async function openFileRegion(options: OpenFileRegionOptions): Promise<Readable> {
  const { range, signal } = options;
  throwIfAborted(signal);
  let source: Readable;
  if (range.end < range.start) {
    source = Readable.from([]);
  } else {
    const handle = await openForReading(options.path, options.noFollow === true, options.where);
    source = handle.createReadStream({
      start: options.blobOffset + range.start,
      end: options.blobOffset + range.end,
      highWaterMark: READ_CHUNK_BYTES,
    });
  }
  if (signal !== undefined) addAbortSignal(signal, source);
  if (!range.whole || options.verify === undefined) return source;
  const verifier = createVerifyingStream(options.verify.digest, options.verify.size, options.where);
  // Errors surface on the verifier, which is what the caller reads.
  return pipeline(source, verifier, () => undefined);
}

async function openForReading(path: string, noFollow: boolean, where: string): Promise<FileHandle> {
  const flags = constants.O_RDONLY | (noFollow ? constants.O_NOFOLLOW : 0);
  try {
    return await open(path, flags);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new MeshmirrorError('MM_NOT_FOUND', `${where} is gone`, { cause });
    if (code === 'ELOOP') throw new MeshmirrorError('MM_ARCHIVE_INVALID', `${where} is a symbolic link; refusing to follow it`, { cause });
    throw cause;
  }
}
