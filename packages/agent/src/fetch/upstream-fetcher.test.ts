import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  HostBackoff,
  MeshmirrorError,
  sha256Digest,
  silentLogger,
  type Digest,
  type PieceEvent,
  type PieceTask,
  type RepositoryLocation,
  type RetryPolicy,
} from '@meshmirror/shared';
import { createBlobStore, type BlobStore } from '../store/blob-store.ts';
import { ScriptedRegistryClient } from './testing/scripted-registry-client.ts';
import { fetchPiece, type FetchPieceDeps } from './upstream-fetcher.ts';

const SOURCE: RepositoryLocation = { registry: 'registry.test', repository: 'team/app' };
const FAST_RETRY: RetryPolicy = { retries: 2, baseDelayMs: 1, maxDelayMs: 5, factor: 2, jitter: 0 };

function sumProgress(events: PieceEvent[]): number {
  return events.reduce((sum, e) => (e.type === 'progress' ? sum + e.bytes : sum), 0);
}

function ofType<T extends PieceEvent['type']>(events: PieceEvent[], type: T): Array<Extract<PieceEvent, { type: T }>> {
  return events.filter((e): e is Extract<PieceEvent, { type: T }> => e.type === type);
}

describe('fetchPiece', () => {
  let dir: string;
  let store: BlobStore;
  let client: ScriptedRegistryClient;
  let events: PieceEvent[];
  let blob: Buffer;
  let digest: Digest;

  function wholeBlob(sources: RepositoryLocation[] = [SOURCE]): PieceTask {
    return { digest, blobSize: blob.length, offset: 0, length: blob.length, sources };
  }

  function deps(overrides: Partial<FetchPieceDeps> = {}): FetchPieceDeps {
    return {
      client,
      store,
      retry: FAST_RETRY,
      logger: silentLogger(),
      onEvent: (e) => events.push(e),
      progressIntervalMs: 0,
      ...overrides,
    };
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-fetch-'));
    store = createBlobStore({ dir, logger: silentLogger(), commitEveryBytes: 256 * 1024 });
    await store.open();
    blob = randomBytes(1_000_000);
    digest = sha256Digest(blob);
    client = new ScriptedRegistryClient().addBlob(SOURCE, digest, blob);
    events = [];
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('fetches a whole blob, reports progress and a verified piece', async () => {
    const outcome = await fetchPiece(wholeBlob(), deps());
    expect(outcome).toEqual({
      type: 'piece-done',
      digest,
      offset: 0,
      length: blob.length,
      sha256: digest,
      upstreamBytes: blob.length,
    });
    expect(events.at(-1)).toEqual(outcome);
    expect(sumProgress(events)).toBe(blob.length);
    await store.completeBlob(digest, blob.length);
    expect(await store.has(digest)).toBe(true);
  });

  it('resumes after a reset without fetching committed bytes again', async () => {
    client.script({ failAfter: 300_000, failWith: 'reset' });
    const outcome = await fetchPiece(wholeBlob(), deps());
    expect(outcome.type).toBe('piece-done');
    expect(outcome.type === 'piece-done' && outcome.sha256).toBe(digest);
    expect(client.requests.map((r) => [r.offset, r.end])).toEqual([
      [0, blob.length - 1],
      [300_000, blob.length - 1],
    ]);
    expect(client.bytesServed).toBe(blob.length);
    expect(outcome.upstreamBytes).toBe(blob.length);
    expect(ofType(events, 'retry')).toMatchObject([{ attempt: 1, code: 'ECONNRESET' }]);
    expect(sumProgress(events)).toBe(blob.length);
  });

  it('resumes a piece in the middle of a blob after stalls and truncation', async () => {
    const task: PieceTask = { digest, blobSize: blob.length, offset: 250_000, length: 500_000, sources: [SOURCE] };
    client.script({ failAfter: 100_000, failWith: 'stall' }, { failAfter: 50_000, failWith: 'truncate' });
    const outcome = await fetchPiece(task, deps());
    expect(outcome).toMatchObject({ type: 'piece-done', sha256: sha256Digest(blob.subarray(250_000, 750_000)) });
    expect(client.requests.map((r) => [r.offset, r.end])).toEqual([
      [250_000, 749_999],
      [350_000, 749_999],
      [400_000, 749_999],
    ]);
    expect(client.bytesServed).toBe(500_000);
    expect(ofType(events, 'retry').map((e) => e.code)).toEqual(['MM_STALL', 'MM_TRUNCATED']);
  });

  it('resumes from the committed offset of an earlier run', async () => {
    const writer = await store.openPiece(wholeBlob());
    await writer.write(blob.subarray(0, 600_000));
    await writer.commit();
    await writer.close();
    const outcome = await fetchPiece(wholeBlob(), deps());
    expect(outcome).toMatchObject({ type: 'piece-done', sha256: digest, upstreamBytes: 400_000 });
    expect(client.requests.map((r) => r.offset)).toEqual([600_000]);
    expect(sumProgress(events)).toBe(400_000);
  });

  it('completes the piece when the server answers a resumed range with 200', async () => {
    client.script({ failAfter: 400_000, failWith: 'reset' }, { ignoreRange: true });
    const outcome = await fetchPiece(wholeBlob(), deps());
    expect(outcome).toMatchObject({ type: 'piece-done', sha256: digest });
    expect(ofType(events, 'range-ignored')).toEqual([{ type: 'range-ignored', digest, offset: 0 }]);
    // The 400,000 bytes before the resume point came over the wire twice and are counted twice.
    expect(outcome.upstreamBytes).toBe(400_000 + blob.length);
    expect(sumProgress(events)).toBe(blob.length);
  });

  it('stops reading a 200 answer at the end of a middle piece', async () => {
    const task: PieceTask = { digest, blobSize: blob.length, offset: 262_144, length: 262_144, sources: [SOURCE] };
    client.script({ ignoreRange: true });
    const outcome = await fetchPiece(task, deps());
    expect(outcome).toMatchObject({ type: 'piece-done', sha256: sha256Digest(blob.subarray(262_144, 524_288)) });
    expect(outcome.upstreamBytes).toBe(524_288);
    expect(client.bytesServed).toBe(524_288);
  });

  it('never gives up on a transfer that keeps making progress', async () => {
    // Six failures in a row, more than the two retries the policy allows, but each one after new bytes.
    for (let i = 0; i < 6; i++) client.script({ failAfter: 100_000, failWith: 'reset' });
    const outcome = await fetchPiece(wholeBlob(), deps());
    expect(outcome).toMatchObject({ type: 'piece-done', sha256: digest });
    expect(ofType(events, 'retry').map((e) => e.attempt)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(client.bytesServed).toBe(blob.length);
  });

  it('gives up after the retries are spent on failures without progress', async () => {
    client.script({ failAfter: 200_000, failWith: 'reset' }, { status: 500 }, { status: 503 }, { status: 500 });
    const outcome = await fetchPiece(wholeBlob(), deps());
    expect(outcome).toMatchObject({ type: 'piece-failed', code: 'MM_REGISTRY', upstreamBytes: 200_000 });
    expect(events.at(-1)).toEqual(outcome);
    // The attempt with progress starts a fresh count; the policy's two retries follow it, then no more.
    expect(client.requests).toHaveLength(3);
    expect(ofType(events, 'retry').map((e) => [e.attempt, e.code])).toEqual([
      [1, 'ECONNRESET'],
      [2, 'MM_REGISTRY'],
    ]);
    // What arrived stays committed for the next run.
    const [holding] = await store.holdings([{ digest, size: blob.length }]);
    expect(holding?.pieces).toEqual([{ offset: 0, length: blob.length, committed: 200_000 }]);
  });

  it('does not retry an answer that will not change', async () => {
    client.script({ status: 403, registryCodes: ['DENIED'] });
    const outcome = await fetchPiece(wholeBlob(), deps());
    expect(outcome).toMatchObject({ type: 'piece-failed', code: 'MM_REGISTRY' });
    expect(client.requests).toHaveLength(1);
    expect(ofType(events, 'retry')).toEqual([]);
  });

  it('tries the next source when one does not have the blob', async () => {
    const other: RepositoryLocation = { registry: 'mirror.test', repository: 'copy/app' };
    const missing: RepositoryLocation = { registry: 'registry.test', repository: 'gone/app' };
    client.addBlob(other, digest, blob);
    const outcome = await fetchPiece(wholeBlob([missing, other]), deps());
    expect(outcome).toMatchObject({ type: 'piece-done', sha256: digest });
    expect(client.requests.map((r) => r.location)).toEqual([missing, other]);
    expect(ofType(events, 'retry')).toEqual([]);
  });

  it('reports piece-failed when no source has the blob', async () => {
    const missing: RepositoryLocation = { registry: 'registry.test', repository: 'gone/app' };
    const outcome = await fetchPiece(wholeBlob([missing]), deps());
    expect(outcome).toMatchObject({ type: 'piece-failed', code: 'MM_REGISTRY', upstreamBytes: 0 });
    expect(outcome.type === 'piece-failed' && outcome.message).toContain('blob unknown');
  });

  it('starts the piece over when the content ETag changes, and says so in progress', async () => {
    client.script({ etag: '"v1"', failAfter: 300_000, failWith: 'reset' }, { etag: '"v2"' }, { etag: '"v2"' });
    const outcome = await fetchPiece(wholeBlob(), deps());
    expect(outcome).toMatchObject({ type: 'piece-done', sha256: digest });
    expect(client.requests.map((r) => [r.offset, r.ifMatchEtag])).toEqual([
      [0, undefined],
      [300_000, '"v1"'],
      [0, '"v2"'],
    ]);
    expect(ofType(events, 'progress').some((e) => e.bytes === -300_000)).toBe(true);
    expect(sumProgress(events)).toBe(blob.length);
  });

  it('answers at once for a blob already held', async () => {
    await store.putBlob(digest, blob);
    const outcome = await fetchPiece(wholeBlob(), deps());
    expect(outcome).toMatchObject({ type: 'piece-done', sha256: digest, upstreamBytes: 0 });
    expect(client.requests).toEqual([]);
  });

  it('stops promptly when aborted mid-body, keeps the bytes it had and reports how many came', async () => {
    const controller = new AbortController();
    client.script({ failAfter: 320_000, failWith: 'hang' });
    let reached = (): void => {};
    const progressed = new Promise<void>((resolve) => (reached = resolve));
    const fetching = fetchPiece(
      wholeBlob(),
      deps({
        signal: controller.signal,
        onEvent: (e) => {
          events.push(e);
          if (sumProgress(events) >= 320_000) reached();
        },
      }),
    );
    fetching.catch(() => undefined);
    // The server has sent 320,000 bytes and then goes quiet; the abort must not wait for it.
    await progressed;
    const abortedAt = Date.now();
    controller.abort();
    await expect(fetching).rejects.toMatchObject({ code: 'MM_ABORTED' });
    expect(Date.now() - abortedAt).toBeLessThan(2_000);
    expect(ofType(events, 'piece-failed')).toEqual([]);
    // The last word on the piece: the body bytes that came, for the agent's and the run's upstream count.
    expect(events.at(-1)).toEqual({ type: 'piece-cancelled', digest, offset: 0, length: blob.length, upstreamBytes: 320_000 });
    const [holding] = await store.holdings([{ digest, size: blob.length }]);
    expect(holding?.pieces).toEqual([{ offset: 0, length: blob.length, committed: 320_000 }]);
  });

  it('gives up on a piece that makes no progress for the no-progress timeout, with one last try at the deadline', async () => {
    for (let i = 0; i < 10; i++) client.script({ status: 503 });
    // Without a retry count, time decides; the 60 s delay is cut to the time that is left.
    const slowRetry: RetryPolicy = { noProgressTimeoutMs: 300, baseDelayMs: 60_000, maxDelayMs: 60_000, factor: 1, jitter: 0 };
    const started = Date.now();
    const outcome = await fetchPiece(wholeBlob(), deps({ retry: slowRetry }));
    expect(outcome).toMatchObject({ type: 'piece-failed', code: 'MM_REGISTRY' });
    expect(outcome.type === 'piece-failed' && outcome.message).toContain('gave up after 300ms without progress (--image-timeout)');
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(client.requests).toHaveLength(2);
  });

  it('never cuts a slow transfer that keeps moving, however long it takes', async () => {
    // 16 chunks, 50 ms apart: about 800 ms in all, more than the no-progress timeout.
    client.script({ chunkDelayMs: 50 });
    const started = Date.now();
    const outcome = await fetchPiece(wholeBlob(), deps({ retry: { ...FAST_RETRY, noProgressTimeoutMs: 500 } }));
    expect(outcome).toMatchObject({ type: 'piece-done', sha256: digest });
    expect(Date.now() - started).toBeGreaterThan(500);
  });

  it('does not count a transfer cut off by an outage as the host answering again', async () => {
    // Another request has just found the host refusing connections; then this transfer, which had
    // moved bytes, is cut off too. Were its bytes taken as the host being back, every request
    // waiting for the host would go at once (a storm of probes) and the outage would start over.
    let now = 1_000_000;
    const backoff = new HostBackoff({ noProgressTimeoutMs: 600_000, baseDelayMs: 1_000, maxDelayMs: 30_000, factor: 2, jitter: 0 }, { now: () => now });
    const refused = new MeshmirrorError('MM_NETWORK', 'connection refused by registry.test', { data: { cause: 'ECONNREFUSED' } });
    client.script({ failAfter: 300_000, failWith: 'reset' }).onRequest(() => {
      backoff.recordFailure(SOURCE.registry, refused);
      now += 5_000;
    });
    const controller = new AbortController();
    let failingSince: number | undefined;
    const fetching = fetchPiece(
      wholeBlob(),
      deps({
        backoff,
        signal: controller.signal,
        onEvent: (e) => {
          events.push(e);
          if (e.type !== 'retry') return;
          failingSince = backoff.failingSince(SOURCE.registry);
          controller.abort();
        },
      }),
    );
    await expect(fetching).rejects.toMatchObject({ code: 'MM_ABORTED' });
    expect(failingSince).toBe(1_000_000);
    expect(backoff.troubles()).toMatchObject([{ host: SOURCE.registry, failingSince: 1_000_000, unreachable: true }]);
  });

  it('stops promptly when aborted during a retry delay', async () => {
    const controller = new AbortController();
    client.script({ status: 503 });
    const slowRetry: RetryPolicy = { retries: 5, baseDelayMs: 60_000, maxDelayMs: 60_000, factor: 1, jitter: 0 };
    const fetching = fetchPiece(
      wholeBlob(),
      deps({
        retry: slowRetry,
        signal: controller.signal,
        onEvent: (e) => {
          events.push(e);
          if (e.type === 'retry') controller.abort();
        },
      }),
    );
    const started = Date.now();
    await expect(fetching).rejects.toMatchObject({ code: 'MM_ABORTED' });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(ofType(events, 'retry')).toMatchObject([{ delayMs: 60_000, code: 'MM_REGISTRY' }]);
    expect(ofType(events, 'piece-cancelled')).toEqual([{ type: 'piece-cancelled', digest, offset: 0, length: blob.length, upstreamBytes: 0 }]);
    expect(client.requests).toHaveLength(1);
  });
});
