/**
 * A folder of images on local disk: an OCI image layout or a folder of archive chunks. Both are
 * read through the same `BlobReader` plus the list of named images from `index.json`.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MeshmirrorError, throwIfAborted, type AbortOptions } from '@meshmirror/shared';
import { openArchive, type ArchiveReader } from '../archive/archive-reader.ts';
import { CHUNK_FILE_RE, OCI_LAYOUT_ENTRY } from '../archive/chunk-manifest.ts';
import { openOciLayout, type OciLayoutReader } from './oci-layout-reader.ts';

export type { FolderImage, ImageFolder } from '@meshmirror/shared';

/**
 * Opens `dir` as an OCI image layout when it has an `oci-layout` file, else as a meshmirror archive
 * when it holds `mirror_*.tar` chunks.
 */
export async function openImageFolder(dir: string, options: AbortOptions = {}): Promise<OciLayoutReader | ArchiveReader> {
  throwIfAborted(options.signal);
  const info = await stat(dir).catch((cause: unknown) => {
    throw new MeshmirrorError('MM_NOT_FOUND', `${dir} does not exist or cannot be read`, { cause });
  });
  if (!info.isDirectory()) throw new MeshmirrorError('MM_USAGE', `${dir} is not a folder`);
  const names = await readdir(dir);
  if (names.includes(OCI_LAYOUT_ENTRY)) return await openOciLayout(dir, options);
  if (names.some((name) => CHUNK_FILE_RE.test(name))) return await openArchive(dir, options);
  throw new MeshmirrorError('MM_USAGE', `${dir} is neither an OCI image layout (no ${join(dir, OCI_LAYOUT_ENTRY)}) nor a meshmirror archive (no mirror_*.tar)`);
}
