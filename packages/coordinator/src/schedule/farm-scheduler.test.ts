import { describe, expect, it } from 'vitest';
import type { Digest, PieceTask } from '@meshmirror/shared';
import type { MeshPiece } from '../plan/mesh-plan.ts';
import { DISTRUST_AFTER_WRONG_PIECES, ENDGAME_MIN_REMAINING_MS, FarmScheduler, PULLS_PER_AGENT, type Decision } from './farm-scheduler.ts';

const MiB = 1024 * 1024;

function digestOf(n: number): Digest {
  return `sha256:${n.toString(16).padStart(64, '0')}`;
}

function piece(n: number, length: number, extra: Partial<MeshPiece> = {}): MeshPiece {
  const task: PieceTask = { digest: digestOf(n), blobSize: length, offset: 0, length, sources: [{ registry: 'r.example', repository: 'app' }] };
  return { task, holders: new Map(), ...extra };
}

/**
 * A farm of fake agents around the scheduler: each fetch decision is held until the test says what
 * the agent did, and time moves only when the test moves it.
 */
function farm(
  pieces: MeshPiece[],
  agents: Array<{ name: string; slots?: number; streams?: boolean }>,
  options: { maxAttempts?: number; deliver?: 'writer' | 'holders' } = {},
) {
  let now = 1_000_000;
  const scheduler = new FarmScheduler({
    split: { pieces, piecesPerBlob: new Map(pieces.map((p) => [p.task.digest, 1])) },
    agents: agents.map((a) => ({ name: a.name, address: `/ip4/10.0.0.1/tcp/1/${a.name}`, slots: a.slots ?? 4, streams: a.streams ?? false })),
    now: () => now,
    ...options,
  });
  const log: Decision[] = [];
  const decide = (): Decision[] => {
    const out = scheduler.decide();
    log.push(...out);
    return out;
  };
  const of = <K extends Decision['kind']>(decisions: Decision[], kind: K): Array<Extract<Decision, { kind: K }>> =>
    decisions.filter((d): d is Extract<Decision, { kind: K }> => d.kind === kind);
  const keyOf = (p: MeshPiece): string => `${p.task.digest}@${p.task.offset}`;
  /** The agent fetched the whole piece and reports its hash; its fetch call then ends. */
  const fetched = (agent: string, p: MeshPiece): void => {
    scheduler.fetchProgress(agent, keyOf(p), p.task.length);
    scheduler.fetchDone(agent, keyOf(p), p.task.digest, p.task.length);
    scheduler.fetchEnded(agent, keyOf(p));
  };
  return {
    scheduler,
    log,
    decide,
    of,
    keyOf,
    fetched,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('FarmScheduler', () => {
  it('delivering to holders, leaves each blob with the agent that fetched it: nothing is pulled, and a held copy counts at once', () => {
    const already = piece(3, MiB, { holders: new Map([['b', digestOf(3)]]) });
    const pieces = [piece(1, 4 * MiB), piece(2, 2 * MiB), already];
    const f = farm(pieces, [{ name: 'a' }, { name: 'b' }], { deliver: 'holders' });
    const first = f.decide();
    expect(f.of(first, 'held')).toEqual([{ kind: 'held', digest: digestOf(3), size: MiB, holder: 'b' }]);
    const fetches = f.of(first, 'fetch');
    expect(fetches.map((d) => d.key).sort()).toEqual([f.keyOf(pieces[0]!), f.keyOf(pieces[1]!)].sort());
    for (const d of fetches)
      f.fetched(
        d.agent,
        pieces.find((p) => f.keyOf(p) === d.key)!,
      );
    const next = f.decide();
    expect(
      f
        .of(next, 'held')
        .map((d) => [d.digest, d.holder])
        .sort(),
    ).toEqual(fetches.map((d) => [d.task.digest, d.agent]).sort());
    expect(f.log.filter((d) => d.kind === 'pull' || d.kind === 'complete')).toEqual([]);
    expect(f.scheduler.idle).toBe(true);
    f.scheduler.finish();
    expect(f.scheduler.failedBlobs.size).toBe(0);
    expect(f.scheduler.pulledBytes).toBe(0);
  });

  it('pulls a piece only an unfinished copy holds, unchecked, and fetches it when that pull fails', () => {
    const start = piece(1, 2 * MiB, { unchecked: new Set(['cut']) });
    const f = farm([start], [{ name: 'cut' }, { name: 'b' }]);
    const [pull] = f.of(f.decide(), 'pull');
    expect(pull).toMatchObject({ holder: 'cut', live: false, sha256: undefined, from: 0 });
    expect(f.log.filter((d) => d.kind === 'fetch')).toEqual([]);
    f.scheduler.pullFailed('cut', f.keyOf(start), 'MM_NOT_FOUND', 'not there any more', 0);
    const fetches = f.of(f.decide(), 'fetch');
    expect(fetches.map((d) => d.key)).toEqual([f.keyOf(start)]);
    f.fetched(fetches[0]!.agent, start);
    const [again] = f.of(f.decide(), 'pull');
    // A verified copy now: pulled with its hash, from the agent that fetched it.
    expect(again).toMatchObject({ holder: fetches[0]!.agent, sha256: start.task.digest });
  });

  it('prefers a verified copy to an unchecked one', () => {
    const p = piece(1, MiB, { holders: new Map([['good', digestOf(1)]]), unchecked: new Set(['cut']) });
    const f = farm([p], [{ name: 'good' }, { name: 'cut' }]);
    expect(f.of(f.decide(), 'pull')).toEqual([expect.objectContaining({ holder: 'good', sha256: digestOf(1) })]);
  });

  it('refuses to deliver a blob split into pieces to holders: no agent holds all of it', () => {
    const split: MeshPiece = { task: { ...piece(1, 2 * MiB).task, blobSize: 4 * MiB }, holders: new Map() };
    expect(() => farm([split], [{ name: 'a' }], { deliver: 'holders' })).toThrow(/split into pieces; delivery to holders needs whole blobs/);
  });

  it('gives each piece to one agent, pulls it from its holder once fetched, and completes the blob', () => {
    const pieces = [piece(1, 4 * MiB), piece(2, 2 * MiB)];
    const f = farm(pieces, [{ name: 'a' }, { name: 'b' }]);
    const fetches = f.of(f.decide(), 'fetch');
    expect(fetches.map((d) => d.key).sort()).toEqual(pieces.map(f.keyOf).sort());
    // Spread over both agents before any rate is known.
    expect(new Set(fetches.map((d) => d.agent)).size).toBe(2);
    for (const d of fetches)
      f.fetched(
        d.agent,
        pieces.find((p) => f.keyOf(p) === d.key)!,
      );
    const pulls = f.of(f.decide(), 'pull');
    expect(pulls.map((d) => [d.key, d.holder]).sort()).toEqual(fetches.map((d) => [d.key, d.agent]).sort());
    for (const d of pulls) f.scheduler.pullDone(d.holder, d.key, d.task.length);
    expect(
      f
        .of(f.decide(), 'complete')
        .map((d) => d.digest)
        .sort(),
    ).toEqual(pieces.map((p) => p.task.digest).sort());
    expect(f.scheduler.idle).toBe(true);
    f.scheduler.finish();
    expect(f.scheduler.failedBlobs.size).toBe(0);
  });

  it('an agent lost mid-piece: its pieces go to the others, cancelled on it, and it is reported lost', () => {
    const pieces = [piece(1, 8 * MiB), piece(2, 8 * MiB), piece(3, 8 * MiB)];
    const f = farm(pieces, [
      { name: 'a', slots: 1 },
      { name: 'b', slots: 1 },
    ]);
    const first = f.of(f.decide(), 'fetch');
    expect(first).toHaveLength(2);
    const onA = first.find((d) => d.agent === 'a')!;
    f.scheduler.fetchProgress('a', onA.key, 3 * MiB);
    // The agent's fetch call fails as a dead agent's does: the agent is lost, the piece waits again.
    f.scheduler.fetchEnded('a', onA.key, { code: 'MM_AGENT_LOST', message: 'stream reset' });
    expect(f.scheduler.reports.find((r) => r.agent === 'a')?.lost).toBe('MM_AGENT_LOST: stream reset');
    const onB = first.find((d) => d.agent === 'b')!;
    f.fetched(
      'b',
      pieces.find((p) => f.keyOf(p) === onB.key)!,
    );
    const next = f.decide();
    // b takes the next piece; a is given nothing.
    expect(f.of(next, 'fetch').map((d) => d.agent)).toEqual(['b']);
    const remaining = new Set(pieces.map(f.keyOf));
    remaining.delete(onB.key);
    expect(remaining.has(f.of(next, 'fetch')[0]!.key)).toBe(true);
    // Every piece is eventually fetched by b, the one it lost included.
    const fetchedByB = new Set([onB.key]);
    let decisions = next;
    for (let round = 0; round < 5 && fetchedByB.size < 3; round++) {
      for (const d of f.of(decisions, 'fetch')) {
        expect(d.agent).toBe('b');
        f.fetched(
          'b',
          pieces.find((p) => f.keyOf(p) === d.key)!,
        );
        fetchedByB.add(d.key);
      }
      decisions = f.decide();
      for (const d of f.of(decisions, 'pull')) f.scheduler.pullDone(d.holder, d.key, d.task.length);
    }
    expect(fetchedByB).toEqual(new Set(pieces.map(f.keyOf)));
  });

  it('a lost agent that was fetching two pieces has both cancelled', () => {
    const pieces = [piece(1, MiB), piece(2, MiB), piece(3, MiB)];
    const f = farm(pieces, [
      { name: 'a', slots: 2 },
      { name: 'b', slots: 1 },
    ]);
    const first = f.of(f.decide(), 'fetch');
    const onA = first.filter((d) => d.agent === 'a');
    expect(onA).toHaveLength(2);
    f.scheduler.lose('a', 'heartbeat missed');
    expect(
      f
        .of(f.decide(), 'cancel')
        .map((d) => [d.agent, d.key])
        .sort(),
    ).toEqual(onA.map((d) => ['a', d.key]).sort());
  });

  it('wrong bytes: the holder is not asked for that piece again, its copy is evicted, and after repeated wrong pieces it is distrusted', () => {
    const pieces = Array.from({ length: DISTRUST_AFTER_WRONG_PIECES + 1 }, (_, i) => piece(i + 1, MiB));
    // Both agents hold every piece from an earlier run; the writer pulls.
    for (const p of pieces) {
      p.holders.set('bad', p.task.digest);
      p.holders.set('good', p.task.digest);
    }
    const g = farm(pieces, [
      { name: 'bad', slots: 8 },
      { name: 'good', slots: 8 },
    ]);
    let pulls = g.of(g.decide(), 'pull');
    expect(pulls).toHaveLength(pieces.length);
    // Neither has served anything yet, so the first holder listed is asked for every piece.
    const fromBad = pulls.filter((d) => d.holder === 'bad');
    expect(fromBad).toHaveLength(pieces.length);
    for (const d of pulls) {
      if (d.holder === 'bad') g.scheduler.pullFailed('bad', d.key, 'MM_DIGEST_MISMATCH', 'digest mismatch');
      else g.scheduler.pullDone('good', d.key, d.task.length);
    }
    const after = g.decide();
    expect(
      g
        .of(after, 'evict')
        .map((d) => d.digest)
        .sort(),
    ).toEqual(fromBad.map((d) => d.task.digest).sort());
    // The same pieces are pulled again, from the other holder.
    pulls = g.of(after, 'pull');
    expect(pulls.map((d) => d.key).sort()).toEqual(fromBad.map((d) => d.key).sort());
    expect(pulls.every((d) => d.holder === 'good')).toBe(true);
    const report = g.scheduler.reports.find((r) => r.agent === 'bad')!;
    expect(report.wrongPieces).toBe(fromBad.length);
    expect(report.distrusted).toBe(`sent wrong bytes for ${DISTRUST_AFTER_WRONG_PIECES} pieces`);
  });

  it('distrusts an agent after repeated wrong pieces and refetches a piece only it held', () => {
    const pieces = Array.from({ length: DISTRUST_AFTER_WRONG_PIECES }, (_, i) => piece(i + 1, MiB));
    for (const p of pieces) p.holders.set('bad', p.task.digest);
    const f = farm(pieces, [
      { name: 'bad', slots: 8 },
      { name: 'good', slots: 8 },
    ]);
    const pulls = f.of(f.decide(), 'pull');
    for (const d of pulls) f.scheduler.pullFailed('bad', d.key, 'MM_DIGEST_MISMATCH', 'digest mismatch');
    const next = f.decide();
    expect(f.scheduler.reports.find((r) => r.agent === 'bad')?.distrusted).toBe(`sent wrong bytes for ${DISTRUST_AFTER_WRONG_PIECES} pieces`);
    // No copy is left: every piece is fetched again, by the agent still trusted only.
    const fetches = f.of(next, 'fetch');
    expect(fetches.map((d) => d.key).sort()).toEqual(pieces.map(f.keyOf).sort());
    expect(fetches.every((d) => d.agent === 'good')).toBe(true);
    // A distrusted agent is not re-admitted.
    expect(f.scheduler.readmit('bad')).toBe(false);
  });

  it('a slow agent: an idle fast agent duplicates its last piece, and the first copy in cancels the other', () => {
    const pieces = [piece(1, 64 * MiB), piece(2, 64 * MiB)];
    const f = farm(pieces, [
      { name: 'fast', slots: 1 },
      { name: 'slow', slots: 1 },
    ]);
    const first = f.of(f.decide(), 'fetch');
    const onFast = first.find((d) => d.agent === 'fast')!;
    const onSlow = first.find((d) => d.agent === 'slow')!;
    // Ten seconds in: fast has all of its piece (6.4 MiB/s), slow has 5 MiB (0.5 MiB/s).
    f.advance(10_000);
    f.fetched(
      'fast',
      pieces.find((p) => f.keyOf(p) === onFast.key)!,
    );
    f.scheduler.fetchProgress('slow', onSlow.key, 5 * MiB);
    const next = f.decide();
    const duplicate = f.of(next, 'fetch');
    expect(duplicate).toEqual([expect.objectContaining({ agent: 'fast', key: onSlow.key, endgame: true })]);
    // The fast agent's copy comes in first: the slow agent's fetch is cancelled and its copy pulled from fast.
    f.fetched(
      'fast',
      pieces.find((p) => f.keyOf(p) === onSlow.key)!,
    );
    const after = f.decide();
    expect(f.of(after, 'cancel')).toEqual([{ kind: 'cancel', agent: 'slow', key: onSlow.key }]);
    expect(f.of(after, 'pull').map((d) => [d.key, d.holder])).toContainEqual([onSlow.key, 'fast']);
  });

  it("a cancelled copy's last word counts its bytes and nothing else: no second pull, no second completion", () => {
    const pieces = [piece(1, 64 * MiB), piece(2, 64 * MiB)];
    const f = farm(pieces, [
      { name: 'fast', slots: 1 },
      { name: 'slow', slots: 1 },
    ]);
    const first = f.of(f.decide(), 'fetch');
    const onFast = pieces.find((p) => f.keyOf(p) === first.find((d) => d.agent === 'fast')!.key)!;
    const onSlow = pieces.find((p) => f.keyOf(p) === first.find((d) => d.agent === 'slow')!.key)!;
    f.advance(10_000);
    f.fetched('fast', onFast);
    f.scheduler.fetchProgress('slow', f.keyOf(onSlow), 5 * MiB);
    expect(f.of(f.decide(), 'fetch')).toEqual([expect.objectContaining({ agent: 'fast', key: f.keyOf(onSlow), endgame: true })]);
    f.fetched('fast', onSlow);
    expect(f.of(f.decide(), 'cancel')).toEqual([{ kind: 'cancel', agent: 'slow', key: f.keyOf(onSlow) }]);
    // The cancelled agent says how its fetch ended: stopped with 6 MiB, or (a second time, for the
    // test) finished the piece just as the cancel came.
    f.scheduler.fetchStopped('slow', 6 * MiB, 'cancelled');
    f.scheduler.fetchStopped('slow', 64 * MiB, 'fetched');
    f.scheduler.fetchEnded('slow', f.keyOf(onSlow));
    f.decide();
    // Each piece is pulled once, from the copy that won, and each blob completed once.
    const pulls = f.of(f.log, 'pull');
    for (const d of pulls) f.scheduler.pullDone(d.holder, d.key, d.task.length);
    f.decide();
    expect(f.decide()).toEqual([]);
    expect(f.of(f.log, 'pull').map((d) => d.holder)).toEqual(['fast', 'fast']);
    expect(new Set(f.of(f.log, 'pull').map((d) => d.key))).toEqual(new Set(pieces.map(f.keyOf)));
    expect(
      f
        .of(f.log, 'complete')
        .map((d) => d.digest)
        .sort(),
    ).toEqual(pieces.map((p) => p.task.digest).sort());
    const slow = f.scheduler.reports.find((r) => r.agent === 'slow')!;
    expect(slow).toMatchObject({ upstreamBytes: 70 * MiB, piecesFetched: 1, piecesCancelled: 1, piecesFailed: 0 });
    expect(slow.lost).toBeUndefined();
  });

  it('a slow agent: a piece that will soon be done is not duplicated', () => {
    const pieces = [piece(1, 8 * MiB), piece(2, 8 * MiB)];
    const f = farm(pieces, [
      { name: 'fast', slots: 1 },
      { name: 'slow', slots: 1 },
    ]);
    const first = f.of(f.decide(), 'fetch');
    const onFast = first.find((d) => d.agent === 'fast')!;
    const onSlow = first.find((d) => d.agent === 'slow')!;
    f.advance(3_000);
    f.fetched(
      'fast',
      pieces.find((p) => f.keyOf(p) === onFast.key)!,
    );
    // Slow has 7 of 8 MiB after 3 s: under a second to go, far below the endgame's threshold.
    f.scheduler.fetchProgress('slow', onSlow.key, 7 * MiB);
    expect(ENDGAME_MIN_REMAINING_MS).toBeGreaterThan(1_000);
    expect(f.of(f.decide(), 'fetch')).toEqual([]);
  });

  it('gives faster agents more of the queue once their rates are known', () => {
    const pieces = Array.from({ length: 40 }, (_, i) => piece(i + 1, MiB));
    const f = farm(pieces, [
      { name: 'fast', slots: 16 },
      { name: 'slow', slots: 16 },
    ]);
    const taken = { fast: 0, slow: 0 };
    let decisions = f.decide();
    for (let round = 0; round < 200 && taken.fast + taken.slow < pieces.length; round++) {
      for (const d of f.of(decisions, 'fetch')) {
        const p = pieces.find((x) => f.keyOf(x) === d.key)!;
        // fast fetches a piece every 100 ms of fake time, slow every 1,000 ms.
        f.advance(d.agent === 'fast' ? 100 : 1_000);
        f.fetched(d.agent, p);
        taken[d.agent as 'fast' | 'slow'] += 1;
      }
      decisions = f.decide();
    }
    expect(taken.fast + taken.slow).toBe(pieces.length);
    expect(taken.fast).toBeGreaterThan(taken.slow);
  });

  it('pulls into the writer as many pieces at once as the farm has agents to keep up with', () => {
    for (const agents of [['a'], ['a', 'b', 'c']]) {
      const pieces = Array.from({ length: 40 }, (_, i) => piece(i + 1, MiB));
      // Every piece already held by the agents (round robin): only pulls are left.
      pieces.forEach((p, i) => p.holders.set(agents[i % agents.length]!, p.task.digest));
      const f = farm(
        pieces,
        agents.map((name) => ({ name })),
      );
      const pulls = f.of(f.decide(), 'pull');
      expect(pulls).toHaveLength(PULLS_PER_AGENT * agents.length);
      // One done, one more goes.
      f.scheduler.pullDone(pulls[0]!.holder, pulls[0]!.key, MiB);
      expect(f.of(f.decide(), 'pull')).toHaveLength(1);
    }
  });

  it('an agent that comes back is given work again in the same run', () => {
    const pieces = [piece(1, MiB), piece(2, MiB), piece(3, MiB)];
    const f = farm(pieces, [
      { name: 'a', slots: 1 },
      { name: 'b', slots: 1 },
    ]);
    const first = f.of(f.decide(), 'fetch');
    const onA = first.find((d) => d.agent === 'a')!;
    f.scheduler.fetchEnded('a', onA.key, { code: 'MM_AGENT_LOST', message: 'connection closed' });
    expect(f.scheduler.lostAgents()).toEqual(['a']);
    // While a is lost, only b is given work.
    const onB = first.find((d) => d.agent === 'b')!;
    f.fetched(
      'b',
      pieces.find((p) => f.keyOf(p) === onB.key)!,
    );
    expect(f.of(f.decide(), 'fetch').map((d) => d.agent)).toEqual(['b']);
    // a answers again: it is back, no longer reported lost, and takes the next waiting piece.
    expect(f.scheduler.readmit('a')).toBe(true);
    const report = f.scheduler.reports.find((r) => r.agent === 'a')!;
    expect(report.lost).toBeUndefined();
    expect(report.readmitted).toBe(1);
    expect(f.scheduler.lostAgents()).toEqual([]);
    expect(f.of(f.decide(), 'fetch').map((d) => d.agent)).toEqual(['a']);
  });

  it('an agent whose store fails (a full disk) hands its piece to the others and is not re-admitted; the blob does not fail', () => {
    const pieces = [piece(1, MiB), piece(2, MiB)];
    const f = farm(pieces, [
      { name: 'full', slots: 1 },
      { name: 'roomy', slots: 1 },
    ]);
    const first = f.of(f.decide(), 'fetch');
    const onFull = first.find((d) => d.agent === 'full')!;
    f.scheduler.storeFailed('full', onFull.key, 'cannot write …/partial/x: ENOSPC: no space left on device, write', 300);
    f.scheduler.fetchEnded('full', onFull.key);
    const next = f.decide();
    expect(f.of(next, 'failed')).toEqual([]);
    const report = f.scheduler.reports.find((r) => r.agent === 'full')!;
    expect(report.lost).toMatch(/^its store failed: .*no space left on device/);
    expect(report.piecesFailed).toBe(1);
    expect(report.upstreamBytes).toBe(300);
    // Not watched for a return, and refused if it answers.
    expect(f.scheduler.lostAgents()).toEqual([]);
    expect(f.scheduler.readmit('full')).toBe(false);
    // The roomy agent finishes its piece and takes the full agent's.
    const onRoomy = first.find((d) => d.agent === 'roomy')!;
    f.fetched(
      'roomy',
      pieces.find((p) => f.keyOf(p) === onRoomy.key)!,
    );
    const later = f.of(f.decide(), 'fetch');
    expect(later.map((d) => [d.agent, d.key])).toEqual([['roomy', onFull.key]]);
  });

  it('gives a piece up after it was lost with its agents too often, and says so', () => {
    const pieces = [piece(1, MiB)];
    const f = farm(pieces, [{ name: 'a' }, { name: 'b' }], { maxAttempts: 2 });
    for (const agent of ['a', 'b']) {
      const [d] = f.of(f.decide(), 'fetch');
      expect(d?.agent).toBeDefined();
      f.scheduler.fetchEnded(d!.agent, d!.key, { code: 'MM_AGENT_LOST', message: `${agent} gone` });
      f.scheduler.readmit(d!.agent);
    }
    expect(f.scheduler.failedBlobs.get(pieces[0]!.task.digest)).toEqual({ code: 'MM_AGENT_LOST', message: 'fetched 2 times, by agents that were lost' });
  });

  it('with every agent lost, waiting pieces fail at once instead of waiting forever', () => {
    const pieces = [piece(1, MiB), piece(2, MiB)];
    const f = farm(pieces, [{ name: 'a', slots: 1 }]);
    const [d] = f.of(f.decide(), 'fetch');
    f.scheduler.fetchEnded('a', d!.key, { code: 'MM_AGENT_LOST', message: 'gone' });
    f.decide();
    expect([...f.scheduler.failedBlobs.values()].map((e) => e.message)).toEqual(['no agent is left to fetch it', 'no agent is left to fetch it']);
    expect(f.scheduler.idle).toBe(true);
  });

  it('a blob that fails stops every fetch of its pieces', () => {
    const pieces = [piece(1, 64 * MiB)];
    const f = farm(pieces, [{ name: 'a' }]);
    const [d] = f.of(f.decide(), 'fetch');
    f.scheduler.fetchFailed('a', d!.key, 'MM_REGISTRY', 'manifest unknown', 0);
    expect(f.scheduler.failedBlobs.get(pieces[0]!.task.digest)?.code).toBe('MM_REGISTRY');
    expect(f.scheduler.reports[0]?.piecesFailed).toBe(1);
    expect(f.of(f.decide(), 'cancel')).toEqual([{ kind: 'cancel', agent: 'a', key: d!.key }]);
  });

  it('says at once that a blob failed, so its images can be reported', () => {
    const pieces = [piece(1, MiB)];
    const f = farm(pieces, [{ name: 'a' }]);
    const [d] = f.of(f.decide(), 'fetch');
    f.scheduler.fetchFailed('a', d!.key, 'MM_NOT_FOUND', 'blob unknown', 0);
    expect(f.of(f.decide(), 'failed')).toEqual([{ kind: 'failed', digest: pieces[0]!.task.digest, code: 'MM_NOT_FOUND', message: 'blob unknown' }]);
  });

  it('assembles a blob whose pieces the writer already holds, before anything is fetched', () => {
    const scheduler = new FarmScheduler({
      split: { pieces: [], piecesPerBlob: new Map(), assemble: [{ digest: digestOf(7), size: 3 * MiB }] },
      agents: [{ name: 'a', address: 'a', slots: 4 }],
    });
    expect(scheduler.decide()).toEqual([{ kind: 'complete', digest: digestOf(7), size: 3 * MiB }]);
    expect(scheduler.idle).toBe(true);
  });

  it('a source host that is down holds back only its own pieces: each host has its own room on an agent', () => {
    const onHost = (n: number, registry: string): MeshPiece => {
      const p = piece(n, MiB);
      return { ...p, task: { ...p.task, sources: [{ registry, repository: 'app' }] } };
    };
    // The down host's pieces come first and would fill every slot.
    const pieces = [1, 2, 3, 4].map((n) => onHost(n, 'down.example')).concat([5, 6].map((n) => onHost(n, 'up.example')));
    const f = farm(pieces, [{ name: 'a', slots: 2 }]);
    const first = f.of(f.decide(), 'fetch');
    const hostOfKey = (key: string): string => pieces.find((p) => f.keyOf(p) === key)!.task.sources[0]!.registry;
    expect(first.map((d) => hostOfKey(d.key)).sort()).toEqual(['down.example', 'down.example', 'up.example', 'up.example']);
    // The up host's pieces finish while the down host's wait: the next pieces are still the down host's, and wait for its room.
    for (const d of first.filter((d) => hostOfKey(d.key) === 'up.example'))
      f.fetched(
        'a',
        pieces.find((p) => f.keyOf(p) === d.key)!,
      );
    expect(f.of(f.decide(), 'fetch')).toEqual([]);
  });

  it('a farm of one is given as many pieces as it has slots, with no work kept back for other agents', () => {
    const pieces = Array.from({ length: 10 }, (_, i) => piece(i + 1, 64 * MiB));
    const f = farm(pieces, [{ name: 'only', slots: 6 }]);
    expect(f.of(f.decide(), 'fetch')).toHaveLength(6);
    const two = farm(pieces, [
      { name: 'a', slots: 6 },
      { name: 'b', slots: 6 },
    ]);
    // Two agents: each is given only what it can bring in soon, so neither sits on work the other could do.
    expect(two.of(two.decide(), 'fetch').length).toBeLessThan(12);
  });

  it('streams each piece to the writer while it is fetched, and after a loss fetches only what the writer lacks', () => {
    const pieces = [piece(1, 4 * MiB)];
    const f = farm(pieces, [
      { name: 'a', streams: true },
      { name: 'b', streams: true },
    ]);
    const first = f.decide();
    const [fetch] = f.of(first, 'fetch');
    const [live] = f.of(first, 'pull');
    expect(live).toMatchObject({ holder: fetch!.agent, live: true, from: 0, key: fetch!.key });
    const victim = fetch!.agent;
    const other = victim === 'a' ? 'b' : 'a';
    // The victim dies with 1 MiB at the writer: its fetch and its live pull both fail.
    f.scheduler.fetchProgress(victim, fetch!.key, MiB);
    f.scheduler.fetchEnded(victim, fetch!.key, { code: 'MM_AGENT_LOST', message: 'stream reset' });
    expect(f.of(f.decide(), 'fetch')).toEqual([]);
    f.scheduler.pullFailed(victim, fetch!.key, 'MM_NETWORK', 'stream reset', MiB);
    const next = f.decide();
    const [again] = f.of(next, 'fetch');
    expect(again).toMatchObject({ agent: other, task: { offset: MiB, length: 3 * MiB } });
    expect(f.of(next, 'pull')).toEqual([expect.objectContaining({ holder: other, live: true, from: MiB })]);
    // Its copy arrives and is pulled: the blob completes.
    f.scheduler.fetchDone(other, again!.key, digestOf(99), 3 * MiB);
    f.scheduler.pullDone(other, again!.key, 3 * MiB);
    f.scheduler.fetchEnded(other, again!.key);
    expect(f.of(f.decide(), 'complete')).toEqual([{ kind: 'complete', digest: pieces[0]!.task.digest, size: 4 * MiB }]);
  });

  it('before rates are known, gives each agent a quarter of its even share ahead, within 8 to 32 MiB', () => {
    const fetchesPerAgent = (count: number, size: number): number[] => {
      const pieces = Array.from({ length: count }, (_, i) => piece(i + 1, size));
      const f = farm(
        pieces,
        [{ name: 'a' }, { name: 'b' }, { name: 'c' }].map((a) => ({ ...a, slots: 8 })),
      );
      const fetches = f.of(f.decide(), 'fetch');
      return ['a', 'b', 'c'].map((name) => fetches.filter((d) => d.agent === name).length);
    };
    // 384 MiB over three agents: 32 MiB ahead each, two 16 MiB pieces (one with 8 MiB: its intake
    // stops while the next piece is asked for).
    expect(fetchesPerAgent(24, 16 * MiB)).toEqual([2, 2, 2]);
    // 48 MiB: a quarter of 16 MiB is below the 8 MiB floor.
    expect(fetchesPerAgent(12, 4 * MiB)).toEqual([2, 2, 2]);
    // 3 GiB: the 32 MiB cap.
    expect(fetchesPerAgent(96, 32 * MiB)).toEqual([1, 1, 1]);
  });

  it('a live pull that broke off while its agent goes on is followed by a pull of the finished copy', () => {
    const pieces = [piece(1, 4 * MiB)];
    const f = farm(pieces, [{ name: 'a', streams: true }]);
    const [fetch] = f.of(f.decide(), 'fetch');
    f.scheduler.pullFailed('a', fetch!.key, 'MM_STALL', 'no bytes for 10s', 2 * MiB);
    expect(f.of(f.decide(), 'fetch')).toEqual([]);
    f.fetched('a', pieces[0]!);
    expect(f.of(f.decide(), 'pull')).toEqual([expect.objectContaining({ holder: 'a', live: false, from: 0 })]);
  });
});
