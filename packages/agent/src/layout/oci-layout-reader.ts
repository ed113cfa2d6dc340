/**
 * Reads an OCI image layout folder (`oci-layout`, `index.json`, `blobs/sha256/…`) as a
 * `BlobReader`. Nothing outside the folder is ever read: digests are validated before they become
 * paths, and symbolic links are refused (for `blobs`, `blobs/sha256` and every blob file).
 */
import { lstat, open } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import {
  digestHex,
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
import { INDEX_JSON_ENTRY, OCI_LAYOUT_ENTRY, RUN_METADATA_ENTRY } from '../archive/chunk-manifest.ts';
import { openFileRegion, resolveByteRange } from './blob-file.ts';
import type { FolderImage, ImageFolder } from '@meshmirror/shared';

/** index.json and oci-layout are metadata; anything this large is not a layout we wrote or can trust. */
const MAX_METADATA_BYTES = 64 * 1024 * 1024;

export interface OciLayoutReader extends ImageFolder {
  readonly kind: 'layout';
  /**
   * `meshmirror/run.json` when the layout is an extracted meshmirror archive, else undefined; fails
   * with `MM_ARCHIVE_INVALID` when the file is there but unreadable or not run metadata.
   */
  runMetadata(options?: AbortOptions): Promise<RunMetadata | undefined>;
}

/** Opens an OCI image layout; fails with `MM_ARCHIVE_INVALID` naming the file when it is malformed. */
export async function openOciLayout(dir: string, options: AbortOptions = {}): Promise<OciLayoutReader> {
  throwIfAborted(options.signal);
  const root = resolve(dir);
  const layoutText = await readMetadataFile(root, OCI_LAYOUT_ENTRY);
  const layout = parseJson(layoutText, join(root, OCI_LAYOUT_ENTRY));
  const version = typeof layout === 'object' && layout !== null && 'imageLayoutVersion' in layout ? layout.imageLayoutVersion : undefined;
  if (typeof version !== 'string' || !version.startsWith('1.')) {
    throw invalid(`${join(root, OCI_LAYOUT_ENTRY)}: unsupported imageLayoutVersion ${JSON.stringify(version)}`);
  }
  const indexPath = join(root, INDEX_JSON_ENTRY);
  const parsed = imageIndexSchema.safeParse(parseJson(await readMetadataFile(root, INDEX_JSON_ENTRY), indexPath));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalid(`${indexPath}: not an OCI image index at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? ''}`);
  }
  const images: FolderImage[] = parsed.data.manifests.map((descriptor) => {
    const name = descriptor.annotations?.[REF_NAME_ANNOTATION];
    return name === undefined ? { descriptor } : { name, descriptor };
  });
  for (const sub of ['blobs', join('blobs', 'sha256')]) {
    const info = await lstat(join(root, sub)).catch(() => undefined);
    if (info !== undefined && !info.isDirectory()) {
      throw invalid(`${join(root, sub)} is ${info.isSymbolicLink() ? 'a symbolic link' : 'not a folder'}; refusing to read blobs through it`);
    }
  }

  const blobPath = (digest: Digest): string => join(root, 'blobs', 'sha256', digestHex(digest));
  const where = (digest: Digest): string => `blobs/sha256/${digestHex(digest)} in ${root}`;

  async function blobSize(digest: Digest, sizeOptions: AbortOptions = {}): Promise<number | undefined> {
    throwIfAborted(sizeOptions.signal);
    parseDigest(digest, 'blob digest');
    const info = await lstat(blobPath(digest)).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
      throw error;
    });
    if (info === undefined) return undefined;
    if (info.isSymbolicLink()) throw invalid(`${where(digest)} is a symbolic link; refusing to follow it`);
    if (!info.isFile()) throw invalid(`${where(digest)} is not a regular file`);
    return info.size;
  }

  async function openBlob(digest: Digest, range: ByteRange & AbortOptions = {}): Promise<Readable> {
    const size = await blobSize(digest, range);
    if (size === undefined) throw new MeshmirrorError('MM_NOT_FOUND', `blob ${digest} is not in ${root}`, { data: { digest } });
    return await openFileRegion({
      path: blobPath(digest),
      blobOffset: 0,
      range: resolveByteRange(size, range, where(digest)),
      verify: { digest, size },
      where: where(digest),
      noFollow: true,
      signal: range.signal,
    });
  }

  return {
    kind: 'layout',
    dir: root,
    images: async (imageOptions: AbortOptions = {}) => {
      throwIfAborted(imageOptions.signal);
      return images.map((image) => ({ ...image }));
    },
    blobSize,
    openBlob,
    runMetadata: async (metadataOptions: AbortOptions = {}) => {
      throwIfAborted(metadataOptions.signal);
      const folder = await lstat(join(root, dirname(RUN_METADATA_ENTRY))).catch(() => undefined);
      if (folder === undefined) return undefined;
      if (!folder.isDirectory()) throw invalid(`${join(root, dirname(RUN_METADATA_ENTRY))} is not a folder; refusing to read run metadata through it`);
      const exists = await lstat(join(root, RUN_METADATA_ENTRY)).catch(() => undefined);
      if (exists === undefined) return undefined;
      const path = join(root, RUN_METADATA_ENTRY);
      const parsed = parseRunMetadata(parseJson(await readMetadataFile(root, RUN_METADATA_ENTRY), path));
      if (!parsed.success) throw invalid(`${path}: ${parsed.problem}`);
      return parsed.data;
    },
  };
}

async function readMetadataFile(root: string, name: string): Promise<string> {
  const path = join(root, name);
  const info = await lstat(path).catch((cause: unknown) => {
    throw invalid(`${root} is not an OCI image layout: ${name} is missing`, cause);
  });
  if (info.isSymbolicLink()) throw invalid(`${path} is a symbolic link; refusing to follow it`);
  if (!info.isFile()) throw invalid(`${path} is not a regular file`);
  if (info.size > MAX_METADATA_BYTES) throw invalid(`${path} is ${info.size} bytes, more than the ${MAX_METADATA_BYTES} allowed`);
  const handle = await open(path, 'r');
  try {
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw invalid(`${path} is not valid JSON`, cause);
  }
}

function invalid(message: string, cause?: unknown): MeshmirrorError {
  return new MeshmirrorError('MM_ARCHIVE_INVALID', message, cause === undefined ? {} : { cause });
}
