import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Libp2p } from '@libp2p/interface';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stat } from 'node:fs/promises';
import { digestHex, sha256Digest, silentLogger, SwarmKey, type Digest } from '@meshmirror/shared';
import { createBlobStore, type BlobStore } from '../store/blob-store.ts';
import { serveBlobs } from './blob-protocol.ts';
import { pullPiece } from './exchange.ts';
import { loadOrCreateIdentity } from './identity.ts';
import { startMeshNode } from './node.ts';

const KiB = 1024;

/** Bytes written into a (sparse) file so far. */
const writtenAt = (path: string): Promise<number> =>
  stat(path).then(
    (s) => s.blocks * 512,
    () => 0,
  );

/** Polls until `condition` holds (each turn yields to the event loop, which carries the transfer). */
async function until(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setImmediate(resolve));
}

describe('pulling a piece while its holder fetches it', () => {
  let dir: string;
  let holderStore: BlobStore;
  let writerStore: BlobStore;
  let holder: Libp2p;
  let writer: Libp2p;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-exchange-'));
    const key = SwarmKey.generate();
    holderStore = createBlobStore({ dir: join(dir, 'holder'), logger: silentLogger() });
    writerStore = createBlobStore({ dir: join(dir, 'writer'), logger: silentLogger() });
    await holderStore.open();
    await writerStore.open();
    holder = await startMeshNode({
      identity: await loadOrCreateIdentity(join(dir, 'holder-id')),
      swarmKey: key,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      allow: undefined,
      logger: silentLogger(),
    });
    await serveBlobs(holder, { source: holderStore, logger: silentLogger() });
    writer = await startMeshNode({ identity: await loadOrCreateIdentity(join(dir, 'writer-id')), swarmKey: key, listen: [], allow: undefined, logger: silentLogger() });
  });

  afterAll(async () => {
    await writer?.stop();
    await holder?.stop();
    await holderStore?.close();
    await writerStore?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('receives the bytes as the holder writes them', async () => {
    const data = randomBytes(600 * KiB);
    const digest: Digest = sha256Digest(data);
    const piece = { digest, blobSize: data.length, offset: 0, length: data.length };
    const fetching = await holderStore.openPiece(piece);
    await fetching.write(data.subarray(0, 200 * KiB));
    let resolveSha!: (sha256: Digest) => void;
    const sha256 = new Promise<Digest>((resolve) => (resolveSha = resolve));
    const address = holder.getMultiaddrs()[0]!;
    const pulling = pullPiece(writer, address, writerStore, piece, { from: 0, sha256 }, { stallMs: 10_000, live: true });
    // The first bytes reach the writer before the holder has the rest.
    await until(async () => (await writtenAt(join(dir, 'writer', 'partial', digestHex(digest)))) >= 200 * KiB);
    await fetching.write(data.subarray(200 * KiB));
    const { sha256: done } = await fetching.finish();
    resolveSha(done);
    expect(await pulling).toBe(data.length);
    await writerStore.completeBlob(digest, data.length);
    expect(await writerStore.has(digest)).toBe(true);
  });

  it('keeps every byte when the holder dies after sending them but before saying their hash, and what arrived when it dies before', async () => {
    const data = randomBytes(512 * KiB);
    const digest: Digest = sha256Digest(data);
    const piece = { digest, blobSize: data.length, offset: 0, length: data.length };
    const fetching = await holderStore.openPiece(piece);
    let rejectSha!: (err: Error) => void;
    const sha256 = new Promise<Digest>((_resolve, reject) => (rejectSha = reject));
    sha256.catch(() => undefined);
    const pulling = pullPiece(writer, holder.getMultiaddrs()[0]!, writerStore, piece, { from: 0, sha256 }, { stallMs: 10_000, live: true });
    await fetching.write(data);
    await fetching.finish();
    // All bytes are sent; the holder is gone before its fetch reports the hash.
    rejectSha(new Error('agent lost'));
    expect(await pulling).toBe(data.length);
    await writerStore.completeBlob(digest, data.length);
    expect(await writerStore.has(digest)).toBe(true);

    const other = randomBytes(512 * KiB);
    const otherDigest: Digest = sha256Digest(other);
    const otherPiece = { digest: otherDigest, blobSize: other.length, offset: 0, length: other.length };
    const cut = await holderStore.openPiece(otherPiece);
    await cut.write(other.subarray(0, 128 * KiB));
    const failed = pullPiece(
      writer,
      holder.getMultiaddrs()[0]!,
      writerStore,
      otherPiece,
      { from: 0, sha256: new Promise<Digest>(() => undefined) },
      {
        stallMs: 10_000,
        live: true,
      },
    ).catch((err: unknown) => err);
    // The holder's fetch stops short (it failed upstream) once the writer has the first 128 KiB: the
    // writer keeps them, and says so.
    await until(async () => (await writtenAt(join(dir, 'writer', 'partial', digestHex(otherDigest)))) >= 128 * KiB);
    await cut.commit();
    await cut.close();
    expect(await failed).toMatchObject({ code: 'MM_NETWORK', data: { committed: 128 * KiB } });
    expect((await writerStore.holdings([{ digest: otherDigest, size: other.length }]))[0]?.pieces[0]?.committed).toBe(128 * KiB);
  });

  it("takes the committed start of a copy its holder never finished, unchecked, and the blob's digest vouches for it", async () => {
    const data = randomBytes(768 * KiB);
    const digest: Digest = sha256Digest(data);
    // The holder was cut off 512 KiB into its piece of the whole blob; another host finished the rest.
    const cutOff = await holderStore.openPiece({ digest, blobSize: data.length, offset: 0, length: data.length });
    await cutOff.write(data.subarray(0, 512 * KiB));
    await cutOff.commit();
    await cutOff.close();
    const start = { digest, blobSize: data.length, offset: 0, length: 512 * KiB };
    expect(await pullPiece(writer, holder.getMultiaddrs()[0]!, writerStore, start, { from: 0, sha256: undefined }, { stallMs: 10_000 })).toBe(512 * KiB);
    const rest = await writerStore.openPiece({ digest, blobSize: data.length, offset: 512 * KiB, length: 256 * KiB });
    await rest.write(data.subarray(512 * KiB));
    await rest.finish();
    await writerStore.completeBlob(digest, data.length);
    expect(await writerStore.has(digest)).toBe(true);
    // Nothing past what the holder committed is served.
    const beyond = { digest, blobSize: data.length, offset: 0, length: 640 * KiB };
    const other = createBlobStore({ dir: join(dir, 'writer-2'), logger: silentLogger() });
    await other.open();
    try {
      await expect(pullPiece(writer, holder.getMultiaddrs()[0]!, other, beyond, { from: 0, sha256: undefined }, { stallMs: 10_000 })).rejects.toMatchObject({
        code: 'MM_NOT_FOUND',
      });
    } finally {
      await other.close();
    }
  });
});
