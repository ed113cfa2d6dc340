import { describe, expect, it } from 'vitest';
import { MeshmirrorError, type Agent, type Digest, type FetchPiecesOptions, type PieceEvent, type PieceTask, type PushBlobRequest } from '@meshmirror/shared';
import { AgentCounters } from './agent-counters.ts';

const digest: Digest = `sha256:${'a'.repeat(64)}`;
const other: Digest = `sha256:${'b'.repeat(64)}`;
const task = (d: Digest, offset: number, registry = 'quay.io'): PieceTask => ({
  digest: d,
  blobSize: 100,
  offset,
  length: 50,
  sources: [{ registry, repository: 'org/app' }],
});

/** An agent that answers fetches with the given events and pushes with the given outcome. */
function scripted(events: PieceEvent[], push: () => Promise<{ bytesSent: number; action: 'uploaded' | 'mounted' }>): Agent {
  return {
    name: 'scripted',
    holdings: () => Promise.resolve([]),
    evict: () => Promise.resolve(),
    fetchPieces(_tasks: PieceTask[], options: FetchPiecesOptions) {
      for (const e of events) options.onEvent(e);
      return Promise.resolve();
    },
    async pushBlob(_request, options) {
      options?.onBytesSent?.(30);
      const r = await push();
      return { ...r, resumedFrom: 0, restarts: 0, retries: 0 };
    },
    close: () => Promise.resolve(),
  };
}

describe('AgentCounters', () => {
  it('counts upstream bytes by registry, pieces by outcome and retries from the events it passes on', async () => {
    const counters = new AgentCounters();
    const seen: PieceEvent[] = [];
    const events: PieceEvent[] = [
      { type: 'progress', digest, offset: 0, bytes: 20 },
      { type: 'retry', digest, offset: 0, attempt: 1, delayMs: 10, code: 'MM_NETWORK', message: 'reset', host: 'quay.io' },
      { type: 'piece-done', digest, offset: 0, length: 50, sha256: digest, upstreamBytes: 70 },
      { type: 'piece-failed', digest: other, offset: 50, length: 50, code: 'MM_NOT_FOUND', message: 'gone', upstreamBytes: 5 },
      // Stopped by the coordinator (an endgame duplicate lost): its bytes crossed the link all the same.
      { type: 'piece-cancelled', digest: other, offset: 0, length: 50, upstreamBytes: 12 },
    ];
    const agent = counters.metered(scripted(events, () => Promise.reject(new Error('unused'))));
    await agent.fetchPieces([task(digest, 0), task(other, 50, 'registry.example:5000'), task(other, 0)], { onEvent: (e) => seen.push(e) });
    expect(seen).toEqual(events);
    const s = counters.snapshot();
    expect(s.upstreamBytes).toEqual({ 'quay.io': 82, 'registry.example:5000': 5 });
    expect(s.pieces).toEqual({ inFlight: 0, done: 1, failed: 1, cancelled: 1 });
    expect(s.pieceFailures).toEqual({ MM_NOT_FOUND: 1 });
    expect(s.retries).toEqual([{ host: 'quay.io', code: 'MM_NETWORK', count: 1 }]);
    expect(s.assignments).toEqual({ started: 1, finished: 1 });
  });

  it('keeps pieces in flight until their batch reports them', async () => {
    const counters = new AgentCounters();
    let release!: () => void;
    const agent = counters.metered({
      ...scripted([], () => Promise.reject(new Error('unused'))),
      fetchPieces: (_tasks, options) =>
        new Promise<void>((resolve) => {
          options.onEvent({ type: 'piece-done', digest, offset: 0, length: 50, sha256: digest, upstreamBytes: 50 });
          release = resolve;
        }),
    });
    const fetching = agent.fetchPieces([task(digest, 0), task(digest, 50)], { onEvent: () => undefined });
    expect(counters.snapshot().pieces).toEqual({ inFlight: 1, done: 1, failed: 0, cancelled: 0 });
    release();
    await fetching;
    expect(counters.snapshot().pieces.inFlight).toBe(0);
  });

  it('counts pushed bytes by registry and pushes by outcome, an abort apart from a failure', async () => {
    const counters = new AgentCounters();
    const request: PushBlobRequest = { digest, size: 100, target: { registry: 'mirror.local:5000', repository: 'org/app' }, mountFrom: [] };
    await counters.metered(scripted([], () => Promise.resolve({ bytesSent: 100, action: 'uploaded' }))).pushBlob(request);
    await counters.metered(scripted([], () => Promise.resolve({ bytesSent: 0, action: 'mounted' }))).pushBlob(request);
    await expect(counters.metered(scripted([], () => Promise.reject(new Error('500')))).pushBlob(request)).rejects.toThrow('500');
    await expect(counters.metered(scripted([], () => Promise.reject(new MeshmirrorError('MM_ABORTED', 'stopped')))).pushBlob(request)).rejects.toThrow('stopped');
    const s = counters.snapshot();
    expect(s.pushes).toEqual({ uploaded: 1, mounted: 1, failed: 1, aborted: 1 });
    // The upload's own count, then the 30 bytes each failed attempt put on the wire.
    expect(s.pushedBytes).toEqual({ 'mirror.local:5000': 100 + 0 + 30 + 30 });
  });

  it('counts served bytes by peer', () => {
    const counters = new AgentCounters();
    counters.noteServed('peer-a', 10);
    counters.noteServed('peer-a', 5);
    counters.noteServed('peer-b', 1);
    expect(counters.snapshot().servedBytes).toEqual({ 'peer-a': 15, 'peer-b': 1 });
  });
});
