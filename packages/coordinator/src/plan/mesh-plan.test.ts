import { describe, expect, it } from 'vitest';
import type { BlobHolding } from '@meshmirror/shared';
import { digest, planOf } from './plan-fixture.ts';
import { planMesh } from './mesh-plan.ts';

const none = (n: number): BlobHolding => ({ digest: digest(n), held: false, pieces: [] });

describe('planMesh', () => {
  it('fetches only what nobody holds, pulls what an agent holds, and resumes a started piece on its agent', () => {
    const plan = planOf([100, 200, 1_000, 240]);
    const writer: BlobHolding[] = [{ digest: digest(1), held: true, pieces: [] }, none(2), none(3), none(4)];
    const agents = new Map<string, BlobHolding[]>([
      [
        'a',
        [
          none(1),
          { digest: digest(2), held: true, pieces: [] },
          { digest: digest(3), held: false, pieces: [{ offset: 0, length: 250, committed: 250, sha256: digest(90) }] },
          none(4),
        ],
      ],
      [
        'b',
        [none(1), { digest: digest(2), held: true, pieces: [] }, { digest: digest(3), held: false, pieces: [{ offset: 250, length: 250, committed: 100 }] }, none(4)],
      ],
    ]);
    const split = planMesh(plan, writer, agents, 250);
    const shape = split.pieces.map((p) => ({
      blob: Number.parseInt(p.task.digest.slice(7), 16),
      at: `${p.task.offset}+${p.task.length}`,
      holders: Object.fromEntries(p.holders),
      resumeOn: p.resumeOn,
    }));
    expect(shape).toEqual(
      [
        { blob: 4, at: '0+240', holders: {}, resumeOn: undefined },
        { blob: 3, at: '0+250', holders: { a: digest(90) }, resumeOn: undefined },
        { blob: 3, at: '250+250', holders: {}, resumeOn: { agent: 'b', committed: 100 } },
        { blob: 3, at: '500+250', holders: {}, resumeOn: undefined },
        { blob: 3, at: '750+250', holders: {}, resumeOn: undefined },
        { blob: 2, at: '0+200', holders: { a: digest(2), b: digest(2) }, resumeOn: undefined },
      ].sort((x, y) => Number(y.at.split('+')[1]) - Number(x.at.split('+')[1])),
    );
    expect([...split.heldByWriter]).toEqual([digest(1)]);
    expect(split.piecesPerBlob.get(digest(3))).toBe(4);
    expect(split).toMatchObject({ heldBytes: 100 + 200 + 250, resumedBytes: 100, missingBytes: 240 + 150 + 250 + 250 });
  });

  it('counts a piece the writer already finished as held and plans nothing for it', () => {
    const plan = planOf([500]);
    const writer: BlobHolding[] = [{ digest: digest(1), held: false, pieces: [{ offset: 0, length: 250, committed: 250, sha256: digest(91) }] }];
    const split = planMesh(plan, writer, new Map([['a', [none(1)]]]), 250);
    expect(split.pieces.map((p) => `${p.task.offset}+${p.task.length}`)).toEqual(['250+250']);
    expect(split.piecesPerBlob.get(digest(1))).toBe(1);
    expect(split).toMatchObject({ heldBytes: 250, missingBytes: 250 });
  });

  it('lists a blob whose every piece the writer finished, without assembling it, for assembly', () => {
    const plan = planOf([500]);
    const finished = [
      { offset: 0, length: 250, committed: 250, sha256: digest(91) },
      { offset: 250, length: 250, committed: 250, sha256: digest(92) },
    ];
    const split = planMesh(plan, [{ digest: digest(1), held: false, pieces: finished }], new Map([['a', [none(1)]]]), 250);
    expect(split.pieces).toEqual([]);
    expect(split.assemble).toEqual([{ digest: digest(1), size: 500 }]);
    expect(split).toMatchObject({ heldBytes: 500, missingBytes: 0 });
  });

  it("shapes pieces by finished copies first: a piece resumed from a lost agent's offset is pulled, and so is the lost agent's committed start", () => {
    const plan = planOf([1_000]);
    const agents = new Map<string, BlobHolding[]>([
      ['lost', [{ digest: digest(1), held: false, pieces: [{ offset: 0, length: 1_000, committed: 250 }] }]],
      ['other', [{ digest: digest(1), held: false, pieces: [{ offset: 250, length: 750, committed: 750, sha256: digest(93) }] }]],
    ]);
    const split = planMesh(plan, [none(1)], agents, 1_000);
    expect(split.pieces.map((p) => ({ at: `${p.task.offset}+${p.task.length}`, holders: Object.fromEntries(p.holders), unchecked: [...(p.unchecked ?? [])] }))).toEqual(
      [
        { at: '250+750', holders: { other: digest(93) }, unchecked: [] },
        { at: '0+250', holders: {}, unchecked: ['lost'] },
      ],
    );
    expect(split).toMatchObject({ heldBytes: 1_000, missingBytes: 0 });
  });

  it('pulls only what an unfinished copy committed before a finished one begins; the rest is fetched', () => {
    const plan = planOf([1_000]);
    const agents = new Map<string, BlobHolding[]>([
      // Cut off with 100 bytes committed; the writer had received 250 of them, so the rest was fetched from 250.
      ['lost', [{ digest: digest(1), held: false, pieces: [{ offset: 0, length: 1_000, committed: 100 }] }]],
      ['other', [{ digest: digest(1), held: false, pieces: [{ offset: 250, length: 750, committed: 750, sha256: digest(93) }] }]],
    ]);
    const split = planMesh(plan, [none(1)], agents, 1_000);
    expect(
      split.pieces
        .map((p) => ({ at: `${p.task.offset}+${p.task.length}`, unchecked: [...(p.unchecked ?? [])], resumeOn: p.resumeOn }))
        .sort((a, b) => a.at.localeCompare(b.at)),
    ).toEqual([
      { at: '0+100', unchecked: ['lost'], resumeOn: undefined },
      { at: '100+150', unchecked: [], resumeOn: undefined },
      { at: '250+750', unchecked: [], resumeOn: undefined },
    ]);
    expect(split).toMatchObject({ heldBytes: 850, missingBytes: 150 });
  });
});
