import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { multiaddr } from '@multiformats/multiaddr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { abortError, silentLogger, SwarmKey, type Agent, type Digest, type FetchPiecesOptions, type PieceEvent, type PieceTask } from '@meshmirror/shared';
import { createBlobStore, type BlobStore } from '../store/blob-store.ts';
import { AgentCounters } from './agent-counters.ts';
import { RemoteAgent, serveControl } from './control-protocol.ts';
import { loadOrCreateIdentity } from './identity.ts';
import { startMeshNode } from './node.ts';

const digest: Digest = `sha256:${'c'.repeat(64)}`;
const task: PieceTask = { digest, blobSize: 4_000, offset: 0, length: 4_000, sources: [{ registry: 'quay.io', repository: 'org/app' }] };
const SETTINGS = { tlsVerify: false, connectTimeoutMs: 5_000, headersTimeoutMs: 5_000, stallTimeoutMs: 5_000, retryTimes: 1, retryDelayMs: 0, parallel: 2 };

/** How the agent's fetch behaves once the coordinator cancels it. */
type OnCancel = 'report-bytes' | 'finished-first' | 'hang';

/**
 * An agent's fetcher that has received 1,000 bytes of the piece and waits: on a cancel it reports as
 * the upstream fetcher does (the bytes that came, then the abort), says it finished the piece just
 * before, or never answers at all.
 */
function fetcherThat(onCancel: OnCancel): Agent {
  return {
    name: 'scripted',
    holdings: () => Promise.resolve([]),
    evict: () => Promise.resolve(),
    fetchPieces(tasks: PieceTask[], options: FetchPiecesOptions): Promise<void> {
      const [t] = tasks;
      options.onEvent({ type: 'progress', digest: t!.digest, offset: t!.offset, bytes: 1_000 });
      return new Promise<void>((resolve, reject) => {
        options.signal?.addEventListener('abort', () => {
          if (onCancel === 'hang') return;
          // As a real fetch does, the answer comes after its bytes are committed: a turn or two later.
          setImmediate(() => {
            if (onCancel === 'finished-first') {
              options.onEvent({ type: 'piece-done', digest: t!.digest, offset: t!.offset, length: t!.length, sha256: digest, upstreamBytes: 4_000 });
              resolve();
            } else {
              options.onEvent({ type: 'piece-cancelled', digest: t!.digest, offset: t!.offset, length: t!.length, upstreamBytes: 1_000 });
              reject(abortError(options.signal));
            }
          });
        });
      });
    },
    pushBlob: () => Promise.reject(new Error('unused')),
    close: () => Promise.resolve(),
  };
}

describe('cancelling an assignment over the control protocol', () => {
  let dir: string;
  let store: BlobStore;
  const nodes: Array<Awaited<ReturnType<typeof startMeshNode>>> = [];
  const counters = new AgentCounters();
  let onCancel: OnCancel = 'report-bytes';
  let remote: RemoteAgent;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-control-'));
    const key = SwarmKey.generate();
    store = createBlobStore({ dir: join(dir, 'store'), logger: silentLogger() });
    await store.open();
    const agent = await startMeshNode({
      identity: await loadOrCreateIdentity(join(dir, 'agent-id')),
      swarmKey: key,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      allow: undefined,
      logger: silentLogger(),
    });
    const coordinator = await startMeshNode({
      identity: await loadOrCreateIdentity(join(dir, 'coordinator-id')),
      swarmKey: key,
      listen: [],
      allow: undefined,
      logger: silentLogger(),
    });
    nodes.push(agent, coordinator);
    await serveControl(agent, {
      store,
      // As the agent process does: every fetch goes through its counters.
      fetcherFor: () => counters.metered(fetcherThat(onCancel)),
      pusherFor: () => {
        throw new Error('unused');
      },
      logger: silentLogger(),
    });
    const address = agent.getMultiaddrs()[0]!;
    remote = new RemoteAgent({ node: coordinator, address: multiaddr(address.toString()), peerId: agent.peerId, settings: SETTINGS, logger: silentLogger() });
  });

  afterAll(async () => {
    for (const node of nodes) await node.stop();
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs one assignment of `task`, cancelled as soon as its first bytes are reported. */
  async function cancelled(): Promise<{ events: PieceEvent[]; error: unknown; ms: number }> {
    const controller = new AbortController();
    const events: PieceEvent[] = [];
    let abortedAt = 0;
    const error = await remote
      .fetchPieces([task], {
        signal: controller.signal,
        onEvent: (event) => {
          events.push(event);
          if (event.type === 'progress') {
            abortedAt = Date.now();
            controller.abort();
          }
        },
      })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    return { events, error, ms: Date.now() - abortedAt };
  }

  it('hears the bytes a cancelled fetch received, so the run counts them as the agent does', async () => {
    onCancel = 'report-bytes';
    const before = counters.snapshot();
    const { events, error } = await cancelled();
    expect(error).toMatchObject({ code: 'MM_ABORTED' });
    expect(events.map((e) => e.type)).toEqual(['progress', 'piece-cancelled']);
    expect(events[1]).toMatchObject({ upstreamBytes: 1_000 });
    const after = counters.snapshot();
    expect((after.upstreamBytes['quay.io'] ?? 0) - (before.upstreamBytes['quay.io'] ?? 0)).toBe(1_000);
    expect(after.pieces.cancelled - before.pieces.cancelled).toBe(1);
    expect(after.pieces.inFlight).toBe(0);
  });

  it('hears a piece the agent finished just before the cancel reached it', async () => {
    onCancel = 'finished-first';
    const before = counters.snapshot();
    const { events, error } = await cancelled();
    expect(error).toMatchObject({ code: 'MM_ABORTED' });
    expect(events.map((e) => e.type)).toEqual(['progress', 'piece-done']);
    expect(counters.snapshot().pieces.done - before.pieces.done).toBe(1);
  });

  it('does not wait long for an agent that says nothing more after a cancel', async () => {
    onCancel = 'hang';
    const { events, error, ms } = await cancelled();
    expect(error).toMatchObject({ code: 'MM_ABORTED' });
    expect(events.map((e) => e.type)).toEqual(['progress']);
    // The drain gives up after a second, well before the agent would be taken for lost.
    expect(ms).toBeLessThan(3_000);
  });
});
