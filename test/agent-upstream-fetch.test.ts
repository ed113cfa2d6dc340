/**
 * The in-process agent against a real registry (distribution) through the fault proxy, with the
 * real registry client: pieces of a layer survive resets, truncation, a 500 and a 200 to a Range,
 * resume instead of restarting, and end as one verified blob in the store.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ANONYMOUS_CREDENTIALS,
  createDigester,
  createRegistryClient,
  digestOf,
  HostBackoff,
  sha256Digest,
  silentLogger,
  type Agent,
  type Digest,
  type HttpRegistryClient,
  type PieceEvent,
  type PieceTask,
  type RetryPolicy,
} from '@meshmirror/shared';
import { createInProcessAgent } from '../packages/agent/src/in-process-agent.ts';
import { createBlobStore, type BlobStore } from '../packages/agent/src/store/blob-store.ts';
import { startFaultProxy, type FaultProxy } from './support/fault-proxy.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';

const MiB = 1024 * 1024;
const REPOSITORY = 'agent-test/layer';
const BLOB_PATH = /\/v2\/agent-test\/layer\/blobs\/sha256:/;
const RETRY: RetryPolicy = { retries: 3, baseDelayMs: 20, maxDelayMs: 200, factor: 2, jitter: 0 };

/** Monolithic upload (POST, then PUT ?digest=) straight to the registry, bypassing meshmirror's code. */
async function uploadBlob(registryUrl: string, repository: string, data: Buffer): Promise<Digest> {
  const digest = sha256Digest(data);
  const start = await fetch(`${registryUrl}/v2/${repository}/blobs/uploads/`, { method: 'POST' });
  expect(start.status).toBe(202);
  const location = new URL(start.headers.get('location') ?? '', registryUrl);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream' },
    body: data,
  });
  expect(put.status).toBe(201);
  return digest;
}

function pieces(digest: Digest, size: number, pieceSize: number, registry: string): PieceTask[] {
  const tasks: PieceTask[] = [];
  for (let offset = 0; offset < size; offset += pieceSize) {
    tasks.push({
      digest,
      blobSize: size,
      offset,
      length: Math.min(pieceSize, size - offset),
      sources: [{ registry, repository: REPOSITORY }],
    });
  }
  return tasks;
}

describe('in-process agent against a real registry', () => {
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  let dir: string;
  let store: BlobStore;
  let client: HttpRegistryClient;
  let agent: Agent;

  beforeAll(async () => {
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.url);
  });

  afterAll(async () => {
    await proxy?.close();
    await registry?.stop();
  });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-agent-fetch-'));
    store = createBlobStore({ dir, logger: silentLogger(), commitEveryBytes: MiB });
    await store.open();
    const backoff = new HostBackoff(RETRY);
    client = createRegistryClient({
      credentials: ANONYMOUS_CREDENTIALS,
      tlsVerify: false,
      connectTimeoutMs: 5_000,
      headersTimeoutMs: 10_000,
      stallTimeoutMs: 5_000,
      retry: RETRY,
      backoff,
    });
    agent = createInProcessAgent({
      store,
      client,
      retry: RETRY,
      backoff,
      parallelLayers: 2,
      logger: silentLogger(),
    });
    proxy.setRules([]);
    proxy.resetStats();
  });

  afterEach(async () => {
    await agent.close();
    await client.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('fetches pieces through resets, truncation, a 500 and a 200 to a Range into one verified blob', async () => {
    const data = randomBytes(6 * MiB + 12_345);
    const digest = await uploadBlob(registry.url, REPOSITORY, data);
    proxy.setRules([
      { match: { method: 'GET', path: BLOB_PATH }, fault: { kind: 'reset-after', bytes: MiB }, times: 1 },
      { match: { method: 'GET', path: BLOB_PATH }, fault: { kind: 'truncate-after', bytes: 512 * 1024 }, times: 1 },
      { match: { method: 'GET', path: BLOB_PATH }, fault: { kind: 'status', status: 500, body: 'boom' }, times: 1 },
      { match: { method: 'GET', path: BLOB_PATH }, fault: { kind: 'ignore-range' }, times: 1 },
    ]);
    const events: PieceEvent[] = [];
    const tasks = pieces(digest, data.length, 2 * MiB, proxy.host);
    await agent.fetchPieces(tasks, { onEvent: (e) => events.push(e) });

    expect(events.filter((e) => e.type === 'piece-failed')).toEqual([]);
    expect(events.filter((e) => e.type === 'piece-done')).toHaveLength(tasks.length);
    expect(events.filter((e) => e.type === 'retry').length).toBeGreaterThanOrEqual(3);
    expect(events.filter((e) => e.type === 'range-ignored')).toHaveLength(1);
    expect(events.reduce((sum, e) => (e.type === 'progress' ? sum + e.bytes : sum), 0)).toBe(data.length);
    expect(await store.has(digest)).toBe(true);
    const hash = createDigester();
    for await (const chunk of await store.openBlob(digest)) hash.update(chunk as Buffer);
    expect(digestOf(hash)).toBe(digest);
  });

  it('resumes a piece after each reset instead of fetching it again from the start', async () => {
    const data = randomBytes(6 * MiB);
    const digest = await uploadBlob(registry.url, REPOSITORY, data);
    proxy.setRules([{ match: { method: 'GET', path: BLOB_PATH }, fault: { kind: 'reset-after', bytes: MiB }, times: 3 }]);
    const events: PieceEvent[] = [];
    await agent.fetchPieces(pieces(digest, data.length, data.length, proxy.host), { onEvent: (e) => events.push(e) });

    expect(events.filter((e) => e.type === 'retry')).toHaveLength(3);
    expect(await store.has(digest)).toBe(true);
    const served = proxy.stats().blobBodyBytes;
    // Restarting would have served 3 MiB more; resuming re-sends at most what a reset lost in flight.
    expect(served).toBeGreaterThanOrEqual(data.length);
    expect(served).toBeLessThan(data.length + MiB);
    const done = events.find((e) => e.type === 'piece-done');
    expect(done?.type === 'piece-done' && done.upstreamBytes).toBeLessThanOrEqual(served);
  });
});
