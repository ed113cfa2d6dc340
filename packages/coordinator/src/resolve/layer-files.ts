/**
 * Walking the files of one image layer as a stream: gzip, zstd or plain tar, entries read one at a time,
 * only the wanted (small, text) files kept in memory. Everything else streams past.
 */
import type { Readable } from 'node:stream';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import tar from 'tar-stream';
import { MeshmirrorError } from '@meshmirror/shared';

export interface LayerEntry {
  /** Path inside the layer without a leading `./` or `/`. */
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'link' | 'other';
}

export interface ScanLayerOptions {
  /** Files for which `read` is true are handed to `onFile` whole. */
  want: (entry: LayerEntry) => boolean;
  /** Called with every entry; return `'stop'` to end the scan early (the rest of the layer is not read). */
  onEntry?: (entry: LayerEntry) => void | 'stop';
  /** Called with each wanted file's bytes; return `'stop'` to end the scan early. */
  onFile: (entry: LayerEntry, bytes: Buffer) => void | 'stop';
  /** A wanted file larger than this is an error (a catalog or release file is text, not megabytes of it). */
  maxFileBytes?: number;
  /** Names the layer in errors, e.g. `layer sha256:… of quay.io/…`. */
  where: string;
  signal?: AbortSignal;
}

const DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024;
const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/** Reads the layer until its end or until a callback says stop; the body is destroyed either way. */
export async function scanLayer(body: Readable, options: ScanLayerOptions): Promise<void> {
  const maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const head = await peek(body, 4);
  const extract = tar.extract();
  // Told by their first bytes, as image tools tell them: gzip, zstd (`tar+zstd` layers), or plain tar.
  const source = startsWith(head, GZIP_MAGIC) ? body.pipe(createGunzip()) : startsWith(head, ZSTD_MAGIC) ? body.pipe(createZstdDecompress()) : body;
  const fail = (err: Error): void => {
    extract.destroy(err);
  };
  source.on('error', fail);
  body.on('error', fail);
  source.pipe(extract);
  const onAbort = (): void => fail(new MeshmirrorError('MM_ABORTED', `${options.where}: aborted`));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const stream of extract) {
      const entry: LayerEntry = { path: normalize(stream.header.name), type: entryType(stream.header.type) };
      if (options.onEntry?.(entry) === 'stop') return;
      if (entry.type !== 'file' || !options.want(entry)) {
        stream.resume();
        continue;
      }
      if ((stream.header.size ?? 0) > maxFileBytes) {
        throw new MeshmirrorError('MM_MANIFEST_INVALID', `${options.where}: ${entry.path} is ${stream.header.size} bytes, more than the ${maxFileBytes} allowed`);
      }
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      if (options.onFile(entry, Buffer.concat(chunks)) === 'stop') return;
    }
  } catch (err) {
    if (err instanceof MeshmirrorError) throw err;
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `${options.where}: not a readable tar layer: ${(err as Error).message}`, { cause: err });
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    source.unpipe(extract);
    body.destroy();
    if (source !== body) source.destroy();
    extract.destroy();
  }
}

/** Tar paths as written by different tools: `./a/b`, `/a/b`, `a/b/` → `a/b`. */
export function normalize(name: string): string {
  return name.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
}

function entryType(type: string | null | undefined): LayerEntry['type'] {
  switch (type) {
    case 'file':
    case 'contiguous-file':
      return 'file';
    case 'directory':
      return 'directory';
    case 'symlink':
      return 'symlink';
    case 'link':
      return 'link';
    default:
      return 'other';
  }
}

function startsWith(bytes: Buffer, magic: number[]): boolean {
  return magic.every((b, i) => bytes[i] === b);
}

/** The first `n` bytes of a stream, put back so the stream still starts at byte 0. */
async function peek(body: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  while (length < n) {
    const chunk = body.read() as Buffer | null;
    if (chunk !== null) {
      chunks.push(chunk);
      length += chunk.length;
      continue;
    }
    if (body.readableEnded || body.destroyed) break;
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        body.off('readable', done);
        body.off('end', done);
        body.off('error', onError);
        resolve();
      };
      const onError = (err: Error): void => {
        body.off('readable', done);
        body.off('end', done);
        reject(err);
      };
      body.once('readable', done);
      body.once('end', done);
      body.once('error', onError);
    });
  }
  const head = Buffer.concat(chunks);
  if (head.length > 0) body.unshift(head);
  return head;
}
