/**
 * The files meshmirror adds to an archive beside the OCI image layout: a manifest per chunk
 * (`meshmirror/chunk-NNNNNN.json`, the chunk's own blobs with their data offsets inside the tar) and
 * the run metadata in the last chunk (`meshmirror/run.json`, whose schema lives in shared:
 * `runMetadataSchema`). One zod schema each is the truth for the writer and the reader.
 */
import { z } from 'zod';
import { isDigest } from '@meshmirror/shared';

/** Chunk files are `mirror_000001.tar`, `mirror_000002.tar`, … */
export const CHUNK_FILE_RE = /^mirror_(\d{6,})\.tar$/;

export function chunkFileName(chunk: number): string {
  return `mirror_${String(chunk).padStart(6, '0')}.tar`;
}

/** The tar entry name of a chunk's own manifest. */
export function chunkManifestEntryName(chunk: number): string {
  return `meshmirror/chunk-${String(chunk).padStart(6, '0')}.json`;
}

export const CHUNK_MANIFEST_ENTRY_RE = /^meshmirror\/chunk-(\d{6,})\.json$/;
export const RUN_METADATA_ENTRY = 'meshmirror/run.json';
export const OCI_LAYOUT_ENTRY = 'oci-layout';
export const INDEX_JSON_ENTRY = 'index.json';
export const BLOB_ENTRY_PREFIX = 'blobs/sha256/';

const digestSchema = z.string().refine(isDigest, 'must be a sha256 digest');
const byteCount = z.number().int().nonnegative().refine(Number.isSafeInteger, 'must be a safe integer');

export const chunkBlobSchema = z.object({
  digest: digestSchema,
  size: byteCount,
  /** Byte offset of the blob's first data byte inside this chunk's tar file. */
  offset: byteCount,
});
export type ChunkBlob = z.infer<typeof chunkBlobSchema>;

/**
 * The chunk manifest format this build writes. A chunk written before manifests carried a version
 * has the same shape and is read as it is; one from a newer meshmirror is refused, saying so.
 */
export const CHUNK_MANIFEST_VERSION = 1;

export const chunkManifestSchema = z
  .object({
    /** Absent in chunks written before the format was versioned (the same shape as version 1). */
    schemaVersion: z.literal(CHUNK_MANIFEST_VERSION).optional(),
    /** 1-based chunk number; matches the file name. */
    chunk: z.number().int().positive(),
    /**
     * Random id shared by every chunk of one archive (one `startArchive` session; `writeArchive`
     * runs one), so a reader can tell a chunk left over from an earlier run (a crash between
     * renames) from one of this archive. The manifest carries no chunk total: the number of chunks
     * is known only when the archive is finished, and `run.json` in the last chunk has it.
     */
    archiveId: z.string().min(1),
    blobs: z.array(chunkBlobSchema),
  })
  .loose();
export type ChunkManifest = z.infer<typeof chunkManifestSchema>;

/**
 * Reads a chunk manifest (its parsed JSON) of any version this build knows; on failure, `problem`
 * says why in words that follow the entry's name.
 */
export function parseChunkManifest(value: unknown): { success: true; data: ChunkManifest } | { success: false; problem: string } {
  const version = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)['schemaVersion'] : undefined;
  if (typeof version === 'number' && Number.isInteger(version) && version > CHUNK_MANIFEST_VERSION) {
    return {
      success: false,
      problem: `was written by a newer meshmirror (chunk manifest version ${version}; this build reads up to ${CHUNK_MANIFEST_VERSION}); use a meshmirror at least as new as the one that wrote the archive`,
    };
  }
  const parsed = chunkManifestSchema.safeParse(value);
  if (parsed.success) return { success: true, data: parsed.data };
  const issue = parsed.error.issues[0];
  return { success: false, problem: `is not a chunk manifest at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? ''}` };
}

/** Compact JSON, so the writer can compute entry sizes exactly before writing. */
export function encodeJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}
