import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  HostBackoff,
  sha256Digest,
  silentLogger,
  type LocalAgent,
  MediaType,
  type Digest,
  type PieceEvent,
  type PieceTask,
  type RepositoryLocation,
} from '@meshmirror/shared';
import { ScriptedRegistryClient } from './fetch/testing/scripted-registry-client.ts';
import { openArchive } from './archive/archive-reader.ts';
import { testRunDescription } from './archive/test-run-fixture.ts';
import { createInProcessAgent } from './in-process-agent.ts';
import { createBlobStore, type BlobStore } from './store/blob-store.ts';

const SOURCE: RepositoryLocation = { registry: 'registry.test', repository: 'team/app' };

function piecesOf(digest: Digest, size: number, pieceSize: number): PieceTask[] {
  const tasks: PieceTask[] = [];
  for (let offset = 0; offset < size; offset += pieceSize) {
    tasks.push({ digest, blobSize: size, offset, length: Math.min(pieceSize, size - offset), sources: [SOURCE] });
  }
  return tasks;
}

describe('in-process agent', () => {
  let dir: string;
  let store: BlobStore;
  let client: ScriptedRegistryClient;
  let agent: LocalAgent;
  let events: PieceEvent[];

  function blob(size: number): { data: Buffer; digest: Digest } {
    const data = randomBytes(size);
    const digest = sha256Digest(data);
    client.addBlob(SOURCE, digest, data);
    return { data, digest };
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-agent-'));
    store = createBlobStore({ dir, logger: silentLogger() });
    await store.open();
    client = new ScriptedRegistryClient();
    events = [];
    agent = createInProcessAgent({
      store,
      client,
      retry: { retries: 2, baseDelayMs: 1, maxDelayMs: 5, factor: 2, jitter: 0 },
      parallelLayers: 2,
      logger: silentLogger(),
      progressIntervalMs: 0,
    });
  });

  afterEach(async () => {
    await agent.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('fetches small and multi-piece blobs, verifies and holds them', async () => {
    const small = blob(10_000);
    const large = blob(2_500_000);
    const tasks = [...piecesOf(small.digest, 10_000, 1_000_000), ...piecesOf(large.digest, 2_500_000, 1_000_000)];
    // Paced bodies (2 ms per 64 KiB) stay open long enough for the pieces to overlap.
    client.script({ failAfter: 500_000, failWith: 'reset', chunkDelayMs: 2 }, ...Array.from({ length: 5 }, () => ({ chunkDelayMs: 2 })));
    await agent.fetchPieces(tasks, { onEvent: (e) => events.push(e) });

    const done = events.filter((e) => e.type === 'piece-done');
    expect(done.map((e) => [e.digest, e.offset]).sort()).toEqual(tasks.map((t) => [t.digest, t.offset]).sort());
    expect(events.filter((e) => e.type === 'piece-failed')).toEqual([]);
    expect(
      await agent.holdings([
        { digest: small.digest, size: 10_000 },
        { digest: large.digest, size: 2_500_000 },
      ]),
    ).toEqual([
      { digest: small.digest, held: true, pieces: [] },
      { digest: large.digest, held: true, pieces: [] },
    ]);
    expect((await buffer(await store.openBlob(large.digest))).equals(large.data)).toBe(true);
    expect(client.bytesServed).toBe(2_510_000);
    expect(client.maxOpenBodies).toBeLessThanOrEqual(2);
    expect(client.maxOpenBodies).toBeGreaterThan(1);
  });

  it('does not hold back blobs from a host that answers while another host is down', async () => {
    // One transfer at a time, and the down host's pieces come first: waiting for that host's turn
    // must not take the slot the other host's pieces need.
    const policy = { noProgressTimeoutMs: 60_000, baseDelayMs: 20, maxDelayMs: 50, factor: 2, jitter: 0 };
    const single = createInProcessAgent({
      store,
      client,
      retry: policy,
      backoff: new HostBackoff(policy),
      parallelLayers: 1,
      logger: silentLogger(),
      progressIntervalMs: 0,
    });
    const DOWN: RepositoryLocation = { registry: 'down.test', repository: 'team/base' };
    const shared = randomBytes(300_000);
    const sharedDigest = sha256Digest(shared);
    client.addBlob(DOWN, sharedDigest, shared);
    const other = blob(40_000);
    client.setDown('down.test', true);
    const order: string[] = [];
    let otherHeld: () => void = () => undefined;
    const otherHeldNow = new Promise<void>((resolve) => (otherHeld = resolve));
    const fetching = single.fetchPieces(
      [...piecesOf(sharedDigest, 300_000, 100_000).map((t) => ({ ...t, sources: [DOWN] })), ...piecesOf(other.digest, 40_000, 100_000)],
      {
        onEvent: (e) => {
          events.push(e);
          if (e.type === 'blob-held') order.push(e.digest === other.digest ? 'other' : 'shared');
          if (e.type === 'blob-held' && e.digest === other.digest) otherHeld();
        },
      },
    );
    await otherHeldNow;
    const retriesWhileDown = events.filter((e) => e.type === 'retry');
    client.setDown('down.test', false);
    await fetching;
    expect(order).toEqual(['other', 'shared']);
    expect(events.filter((e) => e.type === 'piece-failed')).toEqual([]);
    // The down host was probed, and its retries say which host and that it is unreachable.
    expect(retriesWhileDown.length).toBeGreaterThanOrEqual(1);
    expect(retriesWhileDown[0]).toMatchObject({ type: 'retry', host: 'down.test', unreachable: true });
  });

  it('reports a failed piece as an event and still finishes the other blobs', async () => {
    const good = blob(50_000);
    const absent = sha256Digest('nobody has this');
    await agent.fetchPieces(
      [
        { digest: absent, blobSize: 15, offset: 0, length: 15, sources: [SOURCE] },
        { digest: good.digest, blobSize: 50_000, offset: 0, length: 50_000, sources: [SOURCE] },
      ],
      { onEvent: (e) => events.push(e) },
    );
    expect(events.filter((e) => e.type === 'piece-failed')).toMatchObject([{ digest: absent, code: 'MM_REGISTRY' }]);
    expect(await store.has(good.digest)).toBe(true);
    expect(await store.has(absent)).toBe(false);
  });

  it('turns a blob whose bytes do not match its digest into piece-failed events', async () => {
    const promised = randomBytes(1_500_000);
    const digest = sha256Digest(promised);
    client.addBlob(SOURCE, digest, randomBytes(promised.length));
    const tasks = piecesOf(digest, promised.length, 1_000_000);
    await agent.fetchPieces(tasks, { onEvent: (e) => events.push(e) });
    expect(events.filter((e) => e.type === 'piece-done')).toHaveLength(2);
    expect(events.filter((e) => e.type === 'piece-failed')).toMatchObject([
      { digest, offset: 0, length: 1_000_000, code: 'MM_DIGEST_MISMATCH', upstreamBytes: 0 },
      { digest, offset: 1_000_000, length: 500_000, code: 'MM_DIGEST_MISMATCH', upstreamBytes: 0 },
    ]);
    expect(await agent.holdings([{ digest, size: promised.length }])).toEqual([{ digest, held: false, pieces: [] }]);
  });

  it('keeps a piece of a blob whose other pieces were assigned elsewhere', async () => {
    const large = blob(2_000_000);
    const [first] = piecesOf(large.digest, 2_000_000, 1_000_000);
    await agent.fetchPieces([first!], { onEvent: (e) => events.push(e) });
    expect(events.filter((e) => e.type === 'piece-done')).toHaveLength(1);
    expect(await agent.holdings([{ digest: large.digest, size: 2_000_000 }])).toEqual([
      {
        digest: large.digest,
        held: false,
        pieces: [{ offset: 0, length: 1_000_000, committed: 1_000_000, sha256: sha256Digest(large.data.subarray(0, 1_000_000)) }],
      },
    ]);
  });

  it('rejects with MM_ABORTED when aborted, keeping committed bytes', async () => {
    const large = blob(1_000_000);
    const controller = new AbortController();
    client.script({ failAfter: 200_000, failWith: 'hang' });
    let received = 0;
    await expect(
      agent.fetchPieces(piecesOf(large.digest, 1_000_000, 1_000_000), {
        signal: controller.signal,
        onEvent: (e) => {
          events.push(e);
          if (e.type === 'progress') received += e.bytes;
          if (received >= 200_000) controller.abort();
        },
      }),
    ).rejects.toMatchObject({ code: 'MM_ABORTED' });
    expect(await agent.holdings([{ digest: large.digest, size: 1_000_000 }])).toEqual([
      { digest: large.digest, held: false, pieces: [{ offset: 0, length: 1_000_000, committed: 200_000 }] },
    ]);
  });

  it('stores small blobs and archives them from its store', async () => {
    const manifest = Buffer.from('{"schemaVersion":2}');
    const digest = sha256Digest(manifest);
    await agent.putBlob(digest, manifest);
    const out = join(dir, 'out');
    const session = await agent.startArchive({ dir: out, chunkSizeBytes: 1 << 30 });
    await session.add({ digest, size: manifest.length });
    const images = [{ name: 'registry.test/team/app:1', descriptor: { mediaType: MediaType.OciManifest, digest, size: manifest.length } }];
    const result = await session.finish({ images, metadata: testRunDescription('in-process-agent-test', images) });
    expect(result.chunks).toHaveLength(1);
    const archive = await openArchive(out);
    expect((await buffer(await archive.openBlob(digest))).equals(manifest)).toBe(true);
  });
});
