/**
 * Reads a folder of archive chunks (`mirror_*.tar`) without extracting them: each chunk's tar
 * headers are walked (seeking past blob data) to find its entries and its chunk manifest, and blob
 * bytes are served straight from the tar files at their offsets.
 *
 * Checks on open: every entry is a regular file or folder with a safe name (no absolute paths, no
 * `..`, no links), blob entries are named by a sha256 digest, the chunk manifest agrees with the
 * tar entries (name, size, offset inside the file), all chunks come from one archive (one
 * `startArchive` session or `writeArchive` call) and none is missing. Blob content is checked whenever a blob is read whole (see `ImageFolder`).
 */
import { open, readdir, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import {
  imageIndexSchema,
  MeshmirrorError,
  parseDigest,
  parseRunMetadata,
  REF_NAME_ANNOTATION,
  throwIfAborted,
  type AbortOptions,
  type ByteRange,
  type Digest,
  type RunMetadata,
} from '@meshmirror/shared';
import type { FolderImage, ImageFolder } from '@meshmirror/shared';
import { openFileRegion, resolveByteRange } from '../layout/blob-file.ts';
import {
  BLOB_ENTRY_PREFIX,
  CHUNK_FILE_RE,
  CHUNK_MANIFEST_ENTRY_RE,
  chunkFileName,
  parseChunkManifest,
  INDEX_JSON_ENTRY,
  OCI_LAYOUT_ENTRY,
  RUN_METADATA_ENTRY,
  type ChunkManifest,
} from './chunk-manifest.ts';
import { archiveEntryError, indexTarEntries, type TarEntry } from './tar-index.ts';

/** Limits for the JSON entries read whole: metadata, never blob data. */
export const MAX_LAYOUT_JSON_BYTES = 64 * 1024 * 1024;
const MAX_CHUNK_MANIFEST_BYTES = 512 * 1024 * 1024;

export interface ArchiveChunkInfo {
  /** File name, e.g. `mirror_000001.tar`. */
  file: string;
  chunk: number;
  bytes: number;
  /** Blob entries in the chunk. */
  blobs: number;
}

/** Where a blob's bytes are: a chunk file, the tar entry, and the data's offset in the file. */
export interface ArchiveBlobLocation {
  file: string;
  entry: string;
  offset: number;
  size: number;
}

export interface ArchiveReader extends ImageFolder {
  readonly kind: 'archive';
  readonly archiveId: string;
  readonly chunks: ArchiveChunkInfo[];
  /** `meshmirror/run.json` from the last chunk, in the current version's shape whatever version wrote it. */
  runMetadata(options?: AbortOptions): Promise<RunMetadata>;
  locateBlob(digest: Digest): ArchiveBlobLocation | undefined;
  /**
   * Bytes `start..end` (inclusive) of a blob straight from its chunk, not checked: for a consumer
   * that hashes what it reads itself (the uploader).
   */
  openUnverified(digest: Digest, start: number, end: number, options?: AbortOptions): Promise<Readable>;
}

/** A chunk whose tar headers and chunk manifest were read and agree. */
export interface IndexedChunk {
  info: ArchiveChunkInfo;
  path: string;
  manifest: ChunkManifest;
  files: Map<string, TarEntry>;
}

/** Opens a folder of archive chunks; fails with `MM_ARCHIVE_INVALID` naming the chunk and entry. */
export async function openArchive(dir: string, options: AbortOptions = {}): Promise<ArchiveReader> {
  const { signal } = options;
  throwIfAborted(signal);
  const root = resolve(dir);
  const files = await listChunkFiles(root);

  const chunks: IndexedChunk[] = [];
  for (const file of files) {
    throwIfAborted(signal);
    chunks.push(await indexChunk(join(root, file.name), file.name, file.chunk, signal));
  }
  checkChunkSet(chunks);

  const last = chunks[chunks.length - 1];
  if (last === undefined) throw new MeshmirrorError('MM_NOT_FOUND', `${root} holds no archive chunks`);
  // An archive crosses the air gap, so it may come from an older meshmirror (mapped to the current
  // shape) or a newer one (refused, saying so, rather than misread).
  const runMetadata = parseRunMetadata(await readJsonEntry(last, RUN_METADATA_ENTRY, MAX_LAYOUT_JSON_BYTES));
  if (!runMetadata.success) throw archiveEntryError(last.info.file, RUN_METADATA_ENTRY, runMetadata.problem);
  const archiveId = last.manifest.archiveId;
  if (runMetadata.data.archive.archiveId !== archiveId) {
    throw archiveEntryError(last.info.file, RUN_METADATA_ENTRY, 'belongs to another archive than the chunk holding it');
  }
  if (runMetadata.data.archive.chunkCount !== chunks.length) {
    throw new MeshmirrorError('MM_ARCHIVE_INVALID', `${root}: the archive was written as ${runMetadata.data.archive.chunkCount} chunks but ${chunks.length} are here`);
  }
  await readJsonEntry(last, OCI_LAYOUT_ENTRY, MAX_LAYOUT_JSON_BYTES);
  const index = imageIndexSchema.safeParse(await readJsonEntry(last, INDEX_JSON_ENTRY, MAX_LAYOUT_JSON_BYTES));
  if (!index.success) {
    const issue = index.error.issues[0];
    throw archiveEntryError(last.info.file, INDEX_JSON_ENTRY, `is not an OCI image index at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? ''}`);
  }
  const images: FolderImage[] = index.data.manifests.map((descriptor) => {
    const name = descriptor.annotations?.[REF_NAME_ANNOTATION];
    return name === undefined ? { descriptor } : { name, descriptor };
  });

  const blobs = new Map<Digest, ArchiveBlobLocation & { path: string }>();
  for (const chunk of chunks) {
    for (const blob of chunk.manifest.blobs) {
      const entry = `${BLOB_ENTRY_PREFIX}${blob.digest.slice('sha256:'.length)}`;
      if (!blobs.has(blob.digest)) {
        blobs.set(blob.digest, { file: chunk.info.file, entry, offset: blob.offset, size: blob.size, path: chunk.path });
      }
    }
  }

  const where = (location: ArchiveBlobLocation): string => `${location.file} entry ${location.entry}`;

  async function blobSize(digest: Digest, sizeOptions: AbortOptions = {}): Promise<number | undefined> {
    throwIfAborted(sizeOptions.signal);
    return blobs.get(parseDigest(digest, 'blob digest'))?.size;
  }

  async function openBlob(digest: Digest, range: ByteRange & AbortOptions = {}): Promise<Readable> {
    throwIfAborted(range.signal);
    const location = blobs.get(parseDigest(digest, 'blob digest'));
    if (location === undefined) throw new MeshmirrorError('MM_NOT_FOUND', `blob ${digest} is not in the archive in ${root}`, { data: { digest } });
    return await openFileRegion({
      path: location.path,
      blobOffset: location.offset,
      range: resolveByteRange(location.size, range, where(location)),
      verify: { digest, size: location.size },
      where: where(location),
      signal: range.signal,
    });
  }

  async function openUnverified(digest: Digest, start: number, end: number, rangeOptions: AbortOptions = {}): Promise<Readable> {
    const location = blobs.get(digest);
    if (location === undefined) throw new MeshmirrorError('MM_NOT_FOUND', `blob ${digest} is not in the archive in ${root}`, { data: { digest } });
    const range = resolveByteRange(location.size, { start, end }, where(location));
    return await openFileRegion({
      path: location.path,
      blobOffset: location.offset,
      range: { ...range, whole: false },
      where: where(location),
      signal: rangeOptions.signal,
    });
  }

  return {
    kind: 'archive',
    dir: root,
    openUnverified,
    archiveId,
    chunks: chunks.map((chunk) => chunk.info),
    images: async (imageOptions: AbortOptions = {}) => {
      throwIfAborted(imageOptions.signal);
      return images.map((image) => ({ ...image }));
    },
    runMetadata: async (metadataOptions: AbortOptions = {}) => {
      throwIfAborted(metadataOptions.signal);
      return structuredClone(runMetadata.data);
    },
    locateBlob: (digest: Digest) => {
      const location = blobs.get(digest);
      return location === undefined ? undefined : { file: location.file, entry: location.entry, offset: location.offset, size: location.size };
    },
    blobSize,
    openBlob,
  };
}

/** The chunk files (`mirror_NNNNNN.tar`) in `root`, by number; `MM_NOT_FOUND` when there are none. */
export async function listChunkFiles(root: string): Promise<Array<{ name: string; chunk: number }>> {
  const files = (await readdir(root))
    .map((name) => ({ name, match: CHUNK_FILE_RE.exec(name) }))
    .flatMap((f) => (f.match === null ? [] : [{ name: f.name, chunk: Number(f.match[1]) }]))
    .sort((a, b) => a.chunk - b.chunk);
  if (files.length === 0) throw new MeshmirrorError('MM_NOT_FOUND', `${root} holds no archive chunks (mirror_*.tar)`);
  return files;
}

/** Walks a chunk's tar headers and checks its chunk manifest against them; `MM_ARCHIVE_INVALID` naming chunk and entry. */
export async function indexChunk(path: string, file: string, chunkNumber: number, signal?: AbortSignal): Promise<IndexedChunk> {
  const handle = await open(path, 'r');
  try {
    const { size: fileSize } = await handle.stat();
    const entries = await indexTarEntries(handle, fileSize, file, signal);
    const files = new Map<string, TarEntry>();
    const byOffset = new Map<number, TarEntry>();
    let manifestEntry: TarEntry | undefined;
    for (const entry of entries) {
      if (entry.type === 'directory') continue;
      if (files.has(entry.name)) throw archiveEntryError(file, entry.name, 'appears twice in the chunk');
      files.set(entry.name, entry);
      byOffset.set(entry.dataOffset, entry);
      if (entry.name.startsWith(BLOB_ENTRY_PREFIX)) {
        const hex = entry.name.slice(BLOB_ENTRY_PREFIX.length);
        if (!/^[a-f0-9]{64}$/.test(hex)) throw archiveEntryError(file, entry.name, 'is under blobs/sha256/ but its name is not a sha256 digest');
      }
      const manifestMatch = CHUNK_MANIFEST_ENTRY_RE.exec(entry.name);
      if (manifestMatch !== null) {
        if (Number(manifestMatch[1]) !== chunkNumber) {
          throw archiveEntryError(file, entry.name, `is the manifest of chunk ${Number(manifestMatch[1])}, but the file is chunk ${chunkNumber} (renamed?)`);
        }
        manifestEntry = entry;
      }
    }
    if (manifestEntry === undefined) {
      throw archiveEntryError(file, undefined, 'has no meshmirror/chunk-*.json entry; it is not a meshmirror archive chunk');
    }
    const parsed = parseChunkManifest(parseJsonEntry(await readEntry(handle, manifestEntry, file, MAX_CHUNK_MANIFEST_BYTES), file, manifestEntry.name));
    if (!parsed.success) throw archiveEntryError(file, manifestEntry.name, parsed.problem);
    const manifest = parsed.data;
    if (manifest.chunk !== chunkNumber) throw archiveEntryError(file, manifestEntry.name, `says chunk ${manifest.chunk}, the file is chunk ${chunkNumber}`);
    for (const blob of manifest.blobs) {
      if (blob.offset + blob.size > fileSize) {
        throw archiveEntryError(file, manifestEntry.name, `lists ${blob.digest} at offset ${blob.offset} (+${blob.size} bytes), outside the file (${fileSize} bytes)`);
      }
      const expected = `${BLOB_ENTRY_PREFIX}${blob.digest.slice('sha256:'.length)}`;
      const atOffset = byOffset.get(blob.offset);
      if (atOffset === undefined || atOffset.name !== expected || atOffset.size !== blob.size) {
        const found = atOffset === undefined ? 'no entry starts there' : `the entry there is "${atOffset.name}" (${atOffset.size} bytes)`;
        throw archiveEntryError(file, manifestEntry.name, `lists ${blob.digest} (${blob.size} bytes) at offset ${blob.offset}, but ${found}`);
      }
    }
    const blobEntries = [...files.keys()].filter((name) => name.startsWith(BLOB_ENTRY_PREFIX)).length;
    if (blobEntries !== manifest.blobs.length) {
      throw archiveEntryError(file, manifestEntry.name, `lists ${manifest.blobs.length} blobs, the chunk holds ${blobEntries}`);
    }
    return { info: { file, chunk: chunkNumber, bytes: fileSize, blobs: manifest.blobs.length }, path, manifest, files };
  } finally {
    await handle.close();
  }
}

/** Chunks must be numbered 1..N with none missing, all from one archive, layout files in the last. */
function checkChunkSet(chunks: IndexedChunk[]): void {
  chunks.forEach((chunk, index) => {
    if (chunk.info.chunk !== index + 1) {
      throw new MeshmirrorError('MM_ARCHIVE_INVALID', `${chunkFileName(index + 1)} is missing (found ${chunk.info.file})`, {
        data: { file: chunkFileName(index + 1) },
      });
    }
  });
  const last = chunks[chunks.length - 1];
  if (last === undefined) return;
  const strangers = chunks.filter((chunk) => chunk.manifest.archiveId !== last.manifest.archiveId).map((chunk) => chunk.info.file);
  if (strangers.length > 0) {
    throw new MeshmirrorError(
      'MM_ARCHIVE_INVALID',
      `${strangers.join(', ')} belong(s) to another archive than ${last.info.file} ` + '(chunks left from an earlier, interrupted run?); write the archive again',
      { data: { files: strangers } },
    );
  }
  for (const name of [OCI_LAYOUT_ENTRY, INDEX_JSON_ENTRY, RUN_METADATA_ENTRY]) {
    if (!last.files.has(name)) {
      throw archiveEntryError(last.info.file, name, 'is missing from the last chunk (is a later chunk missing?)');
    }
    for (const chunk of chunks) {
      if (chunk !== last && chunk.files.has(name)) throw archiveEntryError(chunk.info.file, name, 'appears in a chunk other than the last');
    }
  }
}

export async function readJsonEntry(chunk: IndexedChunk, name: string, limit: number): Promise<unknown> {
  const entry = chunk.files.get(name);
  if (entry === undefined) throw archiveEntryError(chunk.info.file, name, 'is missing');
  const handle = await open(chunk.path, 'r');
  try {
    return parseJsonEntry(await readEntry(handle, entry, chunk.info.file, limit), chunk.info.file, name);
  } finally {
    await handle.close();
  }
}

async function readEntry(handle: FileHandle, entry: TarEntry, file: string, limit: number): Promise<Buffer> {
  if (entry.size > limit) throw archiveEntryError(file, entry.name, `is ${entry.size} bytes, more than the ${limit} allowed`);
  const buffer = Buffer.alloc(entry.size);
  let filled = 0;
  while (filled < entry.size) {
    const { bytesRead } = await handle.read(buffer, filled, entry.size - filled, entry.dataOffset + filled);
    if (bytesRead === 0) throw archiveEntryError(file, entry.name, 'is truncated');
    filled += bytesRead;
  }
  return buffer;
}

function parseJsonEntry(data: Buffer, file: string, name: string): unknown {
  try {
    return JSON.parse(data.toString('utf8')) as unknown;
  } catch (cause) {
    throw new MeshmirrorError('MM_ARCHIVE_INVALID', `${file}: entry "${name}" is not valid JSON`, { cause, data: { file, entry: name } });
  }
}
