/**
 * The catalog's `/configs` folder as the image's layers build it, and the one layer that replaces
 * it in the filtered catalog image.
 *
 * Reading applies the layers bottom first with the OCI whiteout rules, keeping only the catalog
 * files under the configs folder in memory (text, kilobytes to a few megabytes each); every other
 * byte of the image streams past. Writing produces a byte-for-byte reproducible gzip tar, so a
 * filtered catalog made twice from the same input has the same digest.
 */
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import tar from 'tar-stream';
import { MeshmirrorError, sha256Digest, throwIfAborted, type Digest } from '@meshmirror/shared';
import { normalize, scanLayer } from '../layer-files.ts';

const gzipAsync = promisify(gzip);

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_WHITEOUT = '.wh..wh..opq';
const CATALOG_FILE = /\.(json|ya?ml)$/i;

export interface ReadConfigsOptions {
  signal?: AbortSignal;
  /** A catalog file larger than this is an error; the default is scanLayer's. */
  maxFileBytes?: number;
}

/**
 * The catalog files (`.json`, `.yaml`, `.yml`) under `configsDir` (`/configs`, as the catalog's
 * `operators.operatorframework.io.index.configs.v1` label names it) in the image made of `layers`,
 * bottom layer first. Paths are relative to `configsDir`, sorted. Only regular files are read:
 * symlinks and hardlinks under the folder are skipped (they still hide what was below them).
 */
export async function readConfigsFromLayers(
  layers: Array<{ digest: string; open: () => Promise<Readable> }>,
  configsDir: string,
  options: ReadConfigsOptions = {},
): Promise<Array<{ path: string; text: string }>> {
  const dir = normalize(configsDir);
  const isUnder = (path: string, parent: string): boolean => parent === '' || path === parent || path.startsWith(`${parent}/`);
  // Only paths inside the configs folder, or above it (a whiteout of `configs` itself), can change
  // what this function returns.
  const matters = (path: string): boolean => isUnder(path, dir) || isUnder(dir, path);

  const view = new Map<string, string>();
  for (const layer of layers) {
    throwIfAborted(options.signal);
    // What this layer does to the layers below it, applied once the layer has been read: an
    // upper layer's whiteouts hide lower files only, never its own, whatever the entry order.
    const hidden: Array<{ path: string; self: boolean; below: boolean }> = [];
    const added = new Map<string, string>();
    await scanLayer(await layer.open(), {
      where: `layer ${layer.digest}`,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.maxFileBytes === undefined ? {} : { maxFileBytes: options.maxFileBytes }),
      onEntry: (entry) => {
        const slash = entry.path.lastIndexOf('/');
        const parent = slash === -1 ? '' : entry.path.slice(0, slash);
        const base = entry.path.slice(slash + 1);
        if (base === OPAQUE_WHITEOUT) {
          if (matters(parent)) hidden.push({ path: parent, self: false, below: true });
        } else if (base.startsWith(WHITEOUT_PREFIX)) {
          const target = `${parent === '' ? '' : `${parent}/`}${base.slice(WHITEOUT_PREFIX.length)}`;
          if (matters(target)) hidden.push({ path: target, self: true, below: true });
        } else if (matters(entry.path)) {
          // A directory merges with a lower directory but replaces a lower file; anything else
          // (file, link, device) replaces whatever was at that path, folder contents included.
          hidden.push({ path: entry.path, self: true, below: entry.type !== 'directory' });
        }
      },
      want: (entry) => isUnder(entry.path, dir) && entry.path !== dir && CATALOG_FILE.test(entry.path) && !isWhiteout(entry.path),
      onFile: (entry, bytes) => {
        added.set(entry.path, bytes.toString('utf8'));
      },
    });
    for (const { path, self, below } of hidden) {
      for (const existing of [...view.keys()]) {
        if ((self && existing === path) || (below && existing !== path && isUnder(existing, path))) view.delete(existing);
      }
    }
    for (const [path, text] of added) view.set(path, text);
  }

  const prefix = dir === '' ? '' : `${dir}/`;
  return [...view].map(([path, text]) => ({ path: path.slice(prefix.length), text })).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

function isWhiteout(path: string): boolean {
  return path.slice(path.lastIndexOf('/') + 1).startsWith(WHITEOUT_PREFIX);
}

export interface ConfigsLayer {
  /** The gzip-compressed tar. */
  bytes: Uint8Array;
  /** sha256 of `bytes`: the layer's digest in the manifest. */
  digest: Digest;
  /** sha256 of the uncompressed tar: the layer's entry in the config's `rootfs.diff_ids`. */
  diffId: Digest;
  size: number;
}

const EPOCH = new Date(0);

/**
 * A layer holding `files` (paths relative to `configsDir`) under `configsDir`, and hiding the
 * folder's previous content: the layer starts the folder with an opaque whiteout, so packages that
 * the filter dropped do not show through from the original layers. Reproducible: entries sorted,
 * mtime 0, uid/gid 0 without names, modes 0644/0755, and a gzip header without name or time.
 */
export async function buildConfigsLayer(
  files: Array<{ path: string; content: string }>,
  configsDir: string,
  options: { /** Image paths the layer deletes (whiteouts), e.g. opm's cache of the unfiltered catalog. */ remove?: string[] } = {},
): Promise<ConfigsLayer> {
  const dir = normalize(configsDir);
  const entries = new Map<string, { type: 'directory' } | { type: 'file'; content: Buffer }>();
  const addParents = (path: string): void => {
    for (let slash = path.indexOf('/'); slash !== -1; slash = path.indexOf('/', slash + 1)) entries.set(path.slice(0, slash), { type: 'directory' });
  };
  for (const file of files) {
    const relative = file.path;
    if (relative === '' || relative.startsWith('/') || relative.split('/').some((part) => part === '' || part === '.' || part === '..')) {
      throw new MeshmirrorError('MM_MANIFEST_INVALID', `catalog file path "${relative}" is not a plain relative path`, { data: { path: relative } });
    }
    const path = dir === '' ? relative : `${dir}/${relative}`;
    if (entries.has(path)) throw new MeshmirrorError('MM_MANIFEST_INVALID', `catalog file "${relative}" is given twice`, { data: { path: relative } });
    addParents(path);
    entries.set(path, { type: 'file', content: Buffer.from(file.content, 'utf8') });
  }
  if (dir !== '') {
    addParents(`${dir}/`);
    entries.set(`${dir}/${OPAQUE_WHITEOUT}`, { type: 'file', content: Buffer.alloc(0) });
  }
  for (const removed of options.remove ?? []) {
    const path = normalize(removed);
    const name = path.split('/').pop() ?? '';
    if (path === '' || path.split('/').some((part) => part === '.' || part === '..')) continue;
    const whiteout = `${path.slice(0, path.length - name.length)}.wh.${name}`;
    addParents(whiteout);
    entries.set(whiteout, { type: 'file', content: Buffer.alloc(0) });
  }

  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const packed = new Promise<Buffer>((resolve, reject) => {
    pack.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
    pack.once('end', () => resolve(Buffer.concat(chunks)));
    pack.once('error', reject);
  });
  // Code-unit order puts every folder before its content (a parent path is a prefix of its children's).
  for (const path of [...entries.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    const entry = entries.get(path)!;
    const header = { mtime: EPOCH, uid: 0, gid: 0, uname: '', gname: '' };
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null): void => (err ? reject(err) : resolve());
      // Folder names end in `/` in the tars that docker, buildah and GNU tar write; tar-stream does not add it.
      if (entry.type === 'directory') pack.entry({ ...header, name: `${path}/`, type: 'directory', mode: 0o755 }, done);
      else pack.entry({ ...header, name: path, type: 'file', mode: 0o644, size: entry.content.length }, entry.content, done);
    });
  }
  pack.finalize();
  const uncompressed = await packed;
  // zlib writes no file name and a zero mtime into the gzip header, so equal tars give equal bytes.
  const bytes = new Uint8Array(await gzipAsync(uncompressed));
  return { bytes, digest: sha256Digest(bytes), diffId: sha256Digest(uncompressed), size: bytes.byteLength };
}
