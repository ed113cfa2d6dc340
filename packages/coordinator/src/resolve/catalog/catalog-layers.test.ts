import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync, zstdCompressSync } from 'node:zlib';
import tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { MeshmirrorError, sha256Digest } from '@meshmirror/shared';
import { buildConfigsLayer, readConfigsFromLayers } from './catalog-layers.ts';

interface Entry {
  path: string;
  content?: string | Buffer;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  linkname?: string;
}

/** A real tar stream, as image builders write one. */
async function tarBytes(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    pack.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
    pack.once('end', () => resolve(Buffer.concat(chunks)));
    pack.once('error', reject);
  });
  for (const entry of entries) {
    const type = entry.type ?? 'file';
    const header = {
      name: entry.path,
      type,
      mode: type === 'directory' ? 0o755 : 0o644,
      mtime: new Date(1_700_000_000_000),
      ...(entry.linkname === undefined ? {} : { linkname: entry.linkname }),
    };
    await new Promise<void>((resolve, reject) => {
      const callback = (err?: Error | null): void => (err ? reject(err) : resolve());
      if (type === 'file') pack.entry(header, typeof entry.content === 'string' ? Buffer.from(entry.content) : (entry.content ?? Buffer.alloc(0)), callback);
      else pack.entry(header, callback);
    });
  }
  pack.finalize();
  return done;
}

interface TestLayer {
  digest: string;
  open: () => Promise<Readable>;
  /** How many times the layer was opened. */
  opened: () => number;
}

/** A layer served in small chunks (the first one a single byte), as a network stream would be. */
function layer(bytes: Buffer): TestLayer {
  let opened = 0;
  return {
    digest: sha256Digest(bytes),
    open: async () => {
      opened++;
      const chunks = [bytes.subarray(0, 1)];
      for (let offset = 1; offset < bytes.length; offset += 64 * 1024) chunks.push(bytes.subarray(offset, offset + 64 * 1024));
      return Readable.from(chunks, { objectMode: false });
    },
    opened: () => opened,
  };
}

const gzLayer = async (entries: Entry[]): Promise<TestLayer> => layer(gzipSync(await tarBytes(entries)));

/** Deterministic filler, so a big non-catalog file must be streamed past, not kept. */
function filler(size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let offset = 0, n = 0; offset < size; offset += 32, n++) createHash('sha256').update(String(n)).digest().copy(out, offset);
  return out;
}

const A_JSON = '{"schema":"olm.package","name":"a"}\n';
const B_YAML = 'schema: olm.package\nname: b\n';
const C_JSON = '{"schema":"olm.package","name":"c"}\n';

/** The base catalog image layer: opm, a configs folder with packages a and b, and noise. */
const bottomEntries = (): Entry[] => [
  { path: 'bin/', type: 'directory' },
  { path: 'bin/opm', content: filler(3 * 1024 * 1024) },
  { path: 'configs/', type: 'directory' },
  { path: 'configs/a/', type: 'directory' },
  { path: 'configs/a/catalog.json', content: A_JSON },
  { path: 'configs/b/', type: 'directory' },
  { path: 'configs/b/catalog.yaml', content: B_YAML },
  { path: 'configs/b/README.md', content: '# not a catalog file\n' },
  { path: 'etc/catalog.json', content: '{"outside":"configs"}' },
];

let bottomGzip: Promise<Buffer> | undefined;
/** The base layer, gzip-compressed once per file: the 3 MiB of filler take a moment to build. */
async function bottomLayer(): Promise<TestLayer> {
  bottomGzip ??= tarBytes(bottomEntries()).then((bytes) => gzipSync(bytes));
  return layer(await bottomGzip);
}

describe('readConfigsFromLayers', () => {
  it('reads the catalog files under the configs folder of a single layer, relative and sorted', async () => {
    const files = await readConfigsFromLayers([await bottomLayer()], '/configs');
    expect(files).toEqual([
      { path: 'a/catalog.json', text: A_JSON },
      { path: 'b/catalog.yaml', text: B_YAML },
    ]);
  });

  it('applies an upper layer: a whiteout deletes a folder, new files appear, links are skipped', async () => {
    const upper = await gzLayer([
      { path: 'configs/.wh.b', content: '' },
      { path: 'configs/c/', type: 'directory' },
      { path: 'configs/c/catalog.json', content: C_JSON },
      { path: 'configs/d/catalog.json', type: 'symlink', linkname: '../a/catalog.json' },
      { path: 'configs/e/catalog.json', type: 'link', linkname: 'configs/a/catalog.json' },
    ]);
    const files = await readConfigsFromLayers([await bottomLayer(), upper], '/configs');
    expect(files).toEqual([
      { path: 'a/catalog.json', text: A_JSON },
      { path: 'c/catalog.json', text: C_JSON },
    ]);
  });

  it('applies a whiteout of a single file and a replaced file, with ./-prefixed paths', async () => {
    const upper = await gzLayer([
      { path: './configs/b/.wh.catalog.yaml', content: '' },
      { path: './configs/a/catalog.json', content: C_JSON },
    ]);
    const files = await readConfigsFromLayers([await bottomLayer(), upper], 'configs/');
    expect(files).toEqual([{ path: 'a/catalog.json', text: C_JSON }]);
  });

  it('applies an opaque whiteout to the lower layers only, wherever it sits in the layer', async () => {
    const bottom = await bottomLayer();
    // The marker comes after the new file: it must still hide only what is below.
    const opaqueA = await gzLayer([
      { path: 'configs/a/new.json', content: C_JSON },
      { path: 'configs/a/.wh..wh..opq', content: '' },
    ]);
    expect(await readConfigsFromLayers([bottom, opaqueA], '/configs')).toEqual([
      { path: 'a/new.json', text: C_JSON },
      { path: 'b/catalog.yaml', text: B_YAML },
    ]);
    const opaqueConfigs = await gzLayer([
      { path: 'configs/.wh..wh..opq', content: '' },
      { path: 'configs/z/catalog.yml', content: B_YAML },
    ]);
    expect(await readConfigsFromLayers([bottom, opaqueConfigs], '/configs')).toEqual([{ path: 'z/catalog.yml', text: B_YAML }]);
    // A whiteout of the configs folder itself removes everything below it.
    const gone = await gzLayer([{ path: '.wh.configs', content: '' }]);
    expect(await readConfigsFromLayers([bottom, gone], '/configs')).toEqual([]);
  });

  it('reads uncompressed tar layers too', async () => {
    const files = await readConfigsFromLayers([layer(await tarBytes(bottomEntries()))], '/configs');
    expect(files.map((f) => f.path)).toEqual(['a/catalog.json', 'b/catalog.yaml']);
  });

  it('reads zstd-compressed layers (application/vnd.oci.image.layer.v1.tar+zstd)', async () => {
    const zstd = layer(zstdCompressSync(await tarBytes(bottomEntries())));
    const files = await readConfigsFromLayers([zstd], '/configs');
    expect(files.map((f) => f.path)).toEqual(['a/catalog.json', 'b/catalog.yaml']);
  });

  it('refuses a damaged zstd layer, naming its digest', async () => {
    const whole = zstdCompressSync(await tarBytes(bottomEntries()));
    const damaged = layer(Buffer.concat([whole.subarray(0, 8), Buffer.alloc(64, 0xff), whole.subarray(72)]));
    const failure = readConfigsFromLayers([await bottomLayer(), damaged], '/configs');
    await expect(failure).rejects.toBeInstanceOf(MeshmirrorError);
    await expect(failure).rejects.toMatchObject({ code: 'MM_MANIFEST_INVALID', message: expect.stringContaining(damaged.digest) });
  });

  it('keeps only catalog files in memory: a large file outside the configs folder is no problem', async () => {
    const files = await readConfigsFromLayers([await bottomLayer()], '/configs', { maxFileBytes: 1024 });
    expect(files).toHaveLength(2);
    const big = await gzLayer([{ path: 'configs/a/catalog.json', content: filler(4096) }]);
    await expect(readConfigsFromLayers([big], '/configs', { maxFileBytes: 1024 })).rejects.toMatchObject({
      code: 'MM_MANIFEST_INVALID',
      message: expect.stringMatching(/configs\/a\/catalog\.json is 4096 bytes, more than the 1024 allowed/),
    });
  });

  it('stops before opening a layer once aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const bottom = await bottomLayer();
    await expect(readConfigsFromLayers([bottom], '/configs', { signal: controller.signal })).rejects.toMatchObject({ code: 'MM_ABORTED' });
    expect(bottom.opened()).toBe(0);
  });
});

describe('buildConfigsLayer', () => {
  const files = [
    { path: 'b-operator/catalog.json', content: '{"schema":"olm.package","name":"b-operator"}\n' },
    { path: 'a-operator/catalog.json', content: '{"schema":"olm.package","name":"a-operator"}\n' },
  ];

  it('is byte-identical for identical input, with digests of the gzip and of the tar', async () => {
    const first = await buildConfigsLayer(files, '/configs');
    const second = await buildConfigsLayer([...files].reverse(), '/configs');
    expect(Buffer.from(second.bytes).equals(Buffer.from(first.bytes))).toBe(true);
    expect(second.digest).toBe(first.digest);
    expect(first.digest).toBe(sha256Digest(first.bytes));
    expect(first.diffId).toBe(sha256Digest(gunzipSync(first.bytes)));
    expect(first.size).toBe(first.bytes.byteLength);
    // gzip header: no FNAME/FCOMMENT flags, mtime 0.
    expect([...first.bytes.subarray(0, 8)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
    const changed = await buildConfigsLayer([{ ...files[0]!, content: `${files[0]!.content} ` }, files[1]!], '/configs');
    expect(changed.digest).not.toBe(first.digest);
  });

  it('is a tar that GNU tar lists: folders first, an opaque whiteout, root-owned, mtime 0', async () => {
    const built = await buildConfigsLayer(files, '/configs');
    const names = execFileSync('tar', ['-tzf', '-'], { input: built.bytes, encoding: 'utf8' }).trim().split('\n');
    expect(names).toEqual([
      'configs/',
      'configs/.wh..wh..opq',
      'configs/a-operator/',
      'configs/a-operator/catalog.json',
      'configs/b-operator/',
      'configs/b-operator/catalog.json',
    ]);
    const verbose = execFileSync('tar', ['-tvzf', '-', '--numeric-owner', '--utc'], { input: built.bytes, encoding: 'utf8' }).trim().split('\n');
    expect(verbose[0]).toMatch(/^drwxr-xr-x 0\/0 +0 1970-01-01 00:00 configs\/$/);
    expect(verbose[3]).toMatch(/^-rw-r--r-- 0\/0 +45 1970-01-01 00:00 configs\/a-operator\/catalog\.json$/);
  });

  it('replaces the configs folder when laid over the original image', async () => {
    const built = await buildConfigsLayer(files, '/configs');
    const result = await readConfigsFromLayers([await bottomLayer(), layer(Buffer.from(built.bytes))], '/configs');
    expect(result).toEqual([
      { path: 'a-operator/catalog.json', text: files[1]!.content },
      { path: 'b-operator/catalog.json', text: files[0]!.content },
    ]);
  });

  it('creates every folder of a nested configs folder and refuses unsafe paths', async () => {
    const built = await buildConfigsLayer([{ path: 'p/catalog.json', content: '{}' }], 'srv/catalog/configs');
    expect(execFileSync('tar', ['-tzf', '-'], { input: built.bytes, encoding: 'utf8' }).trim().split('\n')).toEqual([
      'srv/',
      'srv/catalog/',
      'srv/catalog/configs/',
      'srv/catalog/configs/.wh..wh..opq',
      'srv/catalog/configs/p/',
      'srv/catalog/configs/p/catalog.json',
    ]);
    await expect(buildConfigsLayer([{ path: '../etc/passwd', content: '' }], '/configs')).rejects.toMatchObject({ code: 'MM_MANIFEST_INVALID' });
    await expect(buildConfigsLayer([{ path: '/abs.json', content: '' }], '/configs')).rejects.toMatchObject({ code: 'MM_MANIFEST_INVALID' });
  });
});
