import { describe, expect, it } from 'vitest';
import type { AgentReport } from '../schedule/farm-scheduler.ts';
import { MAX_FAILED_SHOWN, resultOf, RunStatus } from './run-status.ts';
import type { MirrorSummary, PushSummary } from './summaries.ts';

const report = (agent: string, address: string): AgentReport => ({
  agent,
  address,
  upstreamBytes: 0,
  servedBytes: 0,
  peerBytes: 0,
  piecesFetched: 0,
  piecesFailed: 0,
  piecesCancelled: 0,
  wrongPieces: 0,
});

function mirrorSummary(overrides: Partial<MirrorSummary> = {}): MirrorSummary {
  return {
    runId: 'r1',
    resumed: false,
    dryRun: false,
    destination: '/out',
    images: { requested: 3, blocked: 0, archived: 2, failed: 1 },
    signatures: {
      sigstore: { found: 0, mirrored: 0, missing: 0, failed: 0 },
      release: { releases: 0, signatures: 0, missing: 0, invalid: 0 },
      referrers: { found: 0, mirrored: 0, failed: 0 },
    },
    outcomes: [
      { source: 'quay.io/a:1', kind: 'additional', origin: 'additionalImages[0]', state: 'archived' },
      { source: 'quay.io/b:1', kind: 'additional', origin: 'additionalImages[1]', state: 'archived' },
      { source: 'quay.io/<c>:1', kind: 'additional', origin: 'additionalImages[2]', state: 'failed', code: 'MM_NOT_FOUND', reason: 'manifest unknown' },
    ],
    bytes: { unique: 1000, held: 0, resumed: 0, toFetch: 1000, fetched: 1100, pulled: 1000, hashed: 0 },
    retries: 2,
    rangesIgnored: 0,
    repairedBlobs: 0,
    archive: { chunks: [], warnings: [] },
    warnings: ['one'],
    files: { report: '/out/working-dir/report.json' },
    durationMs: 5_000,
    ...overrides,
  };
}

describe('RunStatus', () => {
  it('adds up what the run and its agents tell, and reads the figures of the reports it was handed', () => {
    let clock = 1_000_000;
    const status = new RunStatus(() => clock);
    const reporter = status.reporter();
    const a = report('peer-a', '/ip4/10.0.0.1/tcp/4001/p2p/peer-a');
    const b = report('peer-b', '/ip4/10.0.0.2/tcp/4001/p2p/peer-b');
    reporter.update({ phase: 'fetching', bytesTotal: 1000, imagesTotal: 3 });
    reporter.noteAgent?.({ type: 'agents', reports: [a, b] });
    reporter.noteAgent?.({ type: 'fetch-started', agent: 'peer-a' });
    reporter.noteAgent?.({ type: 'fetch-started', agent: 'peer-a' });
    reporter.noteAgent?.({ type: 'fetch-started', agent: 'peer-b' });
    status.sample();
    clock += 2_000;
    reporter.noteAgent?.({ type: 'received', agent: 'peer-a', bytes: 600 });
    // A piece that starts over drops bytes from the progress; what arrived stays counted.
    reporter.noteAgent?.({ type: 'received', agent: 'peer-a', bytes: -100 });
    reporter.noteAgent?.({ type: 'received', agent: 'peer-b', bytes: 200 });
    reporter.addBytes(700);
    reporter.noteRetry({
      type: 'retry',
      digest: `sha256:${'a'.repeat(64)}`,
      offset: 0,
      attempt: 1,
      delayMs: 10,
      code: 'MM_STALL',
      message: 'stalled',
      host: 'quay.io',
    });
    // The scheduler updates the reports it owns; the status reads them.
    a.upstreamBytes = 650;
    a.piecesFetched = 1;
    a.servedBytes = 600;
    b.piecesFailed = 1;
    b.upstreamBytes = 50;
    b.lost = 'MM_AGENT_LOST: gone';
    reporter.noteAgent?.({ type: 'piece-ended', agent: 'peer-a', registry: 'quay.io', upstreamBytes: 650 });
    reporter.noteAgent?.({ type: 'piece-ended', agent: 'peer-b', registry: 'docker.io', upstreamBytes: 50, code: 'MM_TRUNCATED' });
    reporter.noteAgent?.({ type: 'fetch-ended', agent: 'peer-a' });
    status.sample();

    const json = status.json();
    expect(json).toMatchObject({
      phase: 'fetching',
      bytesDone: 700,
      bytesTotal: 1000,
      elapsedSeconds: 2,
      bytesPerSecond: 350,
      etaSeconds: 1,
      retries: 1,
      upstreamBytes: 700,
      servedBytes: 600,
      pieces: { inFlight: 2, fetched: 1, failed: 1, wrong: 0 },
      registries: [
        { registry: 'quay.io', upstreamBytes: 650 },
        { registry: 'docker.io', upstreamBytes: 50 },
      ],
      retriesByHost: [{ host: 'quay.io', code: 'MM_STALL', count: 1 }],
      pieceFailures: [{ code: 'MM_TRUNCATED', count: 1 }],
      finished: false,
    });
    expect(json.agents).toEqual([
      { ...a, piecesInFlight: 1, receivedBytes: 600 },
      { ...b, piecesInFlight: 1, receivedBytes: 200 },
    ]);
    expect(json.throughput).toEqual({ agents: ['peer-a', 'peer-b'], points: [{ t: 2, run: 350, agents: [300, 100] }] });
    expect(status.upstream()).toEqual([
      { registry: 'quay.io', agent: 'peer-a', bytes: 650 },
      { registry: 'docker.io', agent: 'peer-b', bytes: 50 },
    ]);
    expect(status.failures()).toEqual([{ kind: 'piece', code: 'MM_TRUNCATED', count: 1 }]);
  });

  it('sums an agent over several fetches (a repair pass), its state the latest', () => {
    const status = new RunStatus();
    const first = { ...report('local', 'local'), upstreamBytes: 100, piecesFetched: 2, lost: 'store failed' };
    const repair = { ...report('local', 'local'), upstreamBytes: 30, piecesFetched: 1, readmitted: 1 };
    status.noteAgent({ type: 'agents', reports: [first] });
    status.noteAgent({ type: 'agents', reports: [repair] });
    expect(status.agents()).toEqual([{ ...report('local', 'local'), upstreamBytes: 130, piecesFetched: 3, readmitted: 1, piecesInFlight: 0, receivedBytes: 0 }]);
  });

  it('keeps the chart bounded: old samples thin out, their rates still true averages', () => {
    let clock = 0;
    const status = new RunStatus(() => clock);
    const reporter = status.reporter();
    for (let i = 0; i <= 1000; i++) {
      status.sample();
      clock += 1_000;
      reporter.addBytes(100);
    }
    const { points } = status.json().throughput;
    expect(points.length).toBeLessThanOrEqual(240);
    expect(points.every((p) => p.run === 100)).toBe(true);
    expect(points[points.length - 1]!.t).toBe(1000);
  });

  it('takes the summary as the final word, and tells its listeners', () => {
    const status = new RunStatus();
    let changes = 0;
    const stop = status.onChange(() => (changes += 1));
    status.reporter().update({ phase: 'archiving', imagesDone: 1 });
    status.finish(mirrorSummary());
    stop();
    status.reporter().update({ bytesDone: 1 });
    expect(changes).toBe(2);
    const json = status.json();
    expect(json).toMatchObject({ phase: 'done', finished: true, imagesTotal: 3, imagesDone: 2, imagesFailed: 1, etaSeconds: 0 });
    expect(json.result).toEqual({
      mode: 'mirror to disk',
      images: { requested: 3, done: 2, failed: 1 },
      failedImages: [{ source: 'quay.io/<c>:1', code: 'MM_NOT_FOUND', reason: 'manifest unknown' }],
      bytes: { unique: 1000, upstream: 1100, pulled: 1000 },
      retries: 2,
      durationMs: 5_000,
      warnings: 1,
    });
    expect(status.failures()).toEqual([{ kind: 'image', code: 'MM_NOT_FOUND', count: 1 }]);
  });
});

describe('resultOf', () => {
  it('lists at most MAX_FAILED_SHOWN failed images; the count says how many failed', () => {
    const outcomes = Array.from({ length: MAX_FAILED_SHOWN + 5 }, (_, i) => ({
      source: `quay.io/x:${i}`,
      kind: 'additional' as const,
      origin: 'additionalImages[0]',
      state: 'failed' as const,
      code: 'MM_NOT_FOUND',
    }));
    const result = resultOf(mirrorSummary({ outcomes, images: { requested: outcomes.length, blocked: 0, archived: 0, failed: outcomes.length } }));
    expect(result.failedImages).toHaveLength(MAX_FAILED_SHOWN);
    expect(result.images.failed).toBe(MAX_FAILED_SHOWN + 5);
  });

  it('reads a push: images pushed, bytes sent, nothing from upstream', () => {
    const push: PushSummary = {
      runId: 'r2',
      resumed: false,
      from: '/archive',
      destination: 'registry.local',
      images: { requested: 2, blocked: 0, pushed: 2, failed: 0, alreadyPushed: 1 },
      signatures: mirrorSummary().signatures,
      outcomes: [],
      blobs: { unique: 3, present: 0, mounted: 0, uploaded: 3 },
      bytes: { unique: 900, skipped: 0, uploaded: 900, sent: 950, resumed: 0 },
      retries: 1,
      restarts: 0,
      warnings: [],
      files: { report: '/r.json', clusterResources: [] },
      durationMs: 10,
    };
    expect(resultOf(push)).toMatchObject({ mode: 'disk to mirror', images: { requested: 2, done: 2, failed: 0 }, bytes: { unique: 900, upstream: 0, pushed: 950 } });
  });
});
