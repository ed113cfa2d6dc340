import type { BlobHolding, BlobRef, Digest, PieceHolding, PieceTask } from '@meshmirror/shared';
import { evenPieces, fetchOrder, fillGaps, type MirrorPlan, type Range } from './plan.ts';

/** A piece of a farm-wide plan and where its bytes already are. */
export interface MeshPiece {
  task: PieceTask;
  /** Agents with a verified copy (a finished piece or the whole blob) and the sha256 to expect. */
  holders: Map<string, Digest>;
  /** The agent with the most committed bytes of an unfinished copy: it resumes there. */
  resumeOn?: { agent: string; committed: number };
  /**
   * Agents whose unfinished copy holds this piece within its committed bytes (no hash of its own:
   * the copy was cut off). Pulled when no verified copy exists; the blob's digest checks the bytes.
   */
  unchecked?: Set<string>;
}

export interface MeshSplit {
  /** Pieces the writer still needs, in `fetchOrder`: with holders they are pulled, else fetched upstream. */
  pieces: MeshPiece[];
  /** Pieces of each blob the writer still needs, by digest. */
  piecesPerBlob: Map<Digest, number>;
  /** Blobs the writer holds whole (they go straight into the archive). */
  heldByWriter: Set<Digest>;
  /** Blobs whose every piece the writer holds, not yet assembled (a run stopped in between). */
  assemble: BlobRef[];
  /** Bytes held somewhere in the farm (writer or agents), never fetched upstream again. */
  heldBytes: number;
  /** Bytes of unfinished copies an agent resumes. */
  resumedBytes: number;
  /** Bytes that must come from upstream. */
  missingBytes: number;
}

/**
 * Plans a farm-wide run from every agent's holdings: a blob held anywhere is pulled by the writer
 * instead of fetched, a piece an agent started is resumed by that agent, and only what nobody holds
 * is fetched from upstream, once. Piece boundaries follow the pieces that already exist, so the
 * bytes of earlier runs, on any host, are reused.
 */
export function planMesh(plan: MirrorPlan, writer: BlobHolding[], agents: Map<string, BlobHolding[]>, pieceSize: number): MeshSplit {
  const writerOf = new Map(writer.map((h) => [h.digest, h]));
  const agentsOf = new Map<Digest, Array<{ agent: string; holding: BlobHolding }>>();
  for (const [agent, holdings] of agents) {
    for (const holding of holdings) agentsOf.set(holding.digest, [...(agentsOf.get(holding.digest) ?? []), { agent, holding }]);
  }
  const split: MeshSplit = { pieces: [], piecesPerBlob: new Map(), heldByWriter: new Set(), assemble: [], heldBytes: 0, resumedBytes: 0, missingBytes: 0 };
  for (const blob of plan.blobs.values()) {
    const mine = writerOf.get(blob.digest);
    if (mine?.held === true) {
      split.heldByWriter.add(blob.digest);
      split.heldBytes += blob.size;
      continue;
    }
    const theirs = agentsOf.get(blob.digest) ?? [];
    const taskOf = (range: Range): PieceTask => ({ digest: blob.digest, blobSize: blob.size, offset: range.offset, length: range.length, sources: blob.sources });
    const add = (piece: MeshPiece): void => {
      split.pieces.push(piece);
      split.piecesPerBlob.set(blob.digest, (split.piecesPerBlob.get(blob.digest) ?? 0) + 1);
    };

    const wholeHolders = theirs.filter((t) => t.holding.held).map((t) => t.agent);
    if (wholeHolders.length > 0) {
      // Pulled whole and checked against the blob's own digest.
      split.heldBytes += blob.size;
      add({ task: taskOf({ offset: 0, length: blob.size }), holders: new Map(wholeHolders.map((agent) => [agent, blob.digest])) });
      continue;
    }

    const existing = [...(mine?.pieces ?? []), ...theirs.flatMap((t) => t.holding.pieces)];
    // Finished copies shape the pieces first (a piece fetched from where a lost agent's bytes ended
    // may overlap that agent's unfinished one), then the unfinished ones that do not overlap them.
    // An unfinished copy that overlaps a finished one still holds what it committed before it: that
    // prefix is a piece of its own, pulled instead of fetched again.
    const finished = existing.filter((p) => p.sha256 !== undefined);
    const tiles = tileOf(finished);
    const ranges =
      existing.length > 0
        ? fillGaps(
            uniqueRanges(
              finished.length > 0
                ? [
                    ...tiles,
                    ...notOverlapping(existing, tiles),
                    ...committedPrefixes(
                      existing.filter((p) => p.sha256 === undefined),
                      tiles,
                    ),
                  ]
                : existing,
            ),
            blob.size,
            pieceSize,
          )
        : evenPieces(blob.size, pieceSize);
    const before = split.pieces.length;
    for (const range of ranges) {
      const same = (p: Range): boolean => p.offset === range.offset && p.length === range.length;
      const writerCopy = mine?.pieces.find((p) => same(p) && p.sha256 !== undefined);
      if (writerCopy !== undefined) {
        split.heldBytes += range.length;
        continue;
      }
      const holders = new Map<string, Digest>();
      let resumeOn: MeshPiece['resumeOn'];
      for (const { agent, holding } of theirs) {
        const piece = holding.pieces.find(same);
        if (piece === undefined) continue;
        if (piece.sha256 !== undefined) holders.set(agent, piece.sha256);
        else if (piece.committed > (resumeOn?.committed ?? 0)) resumeOn = { agent, committed: piece.committed };
      }
      const unchecked =
        holders.size > 0 || resumeOn !== undefined
          ? []
          : theirs.filter(({ holding }) =>
              holding.pieces.some((p) => p.sha256 === undefined && p.offset <= range.offset && range.offset + range.length <= p.offset + p.committed),
            );
      if (holders.size > 0) {
        split.heldBytes += range.length;
        add({ task: taskOf(range), holders });
      } else if (unchecked.length > 0) {
        split.heldBytes += range.length;
        add({ task: taskOf(range), holders, unchecked: new Set(unchecked.map((t) => t.agent)) });
      } else {
        split.resumedBytes += resumeOn?.committed ?? 0;
        split.missingBytes += range.length - (resumeOn?.committed ?? 0);
        add({ task: taskOf(range), holders, ...(resumeOn === undefined ? {} : { resumeOn }) });
      }
    }
    if (split.pieces.length === before) split.assemble.push({ digest: blob.digest, size: blob.size });
  }
  // As in a single-host run (see fetchOrder): the tiny ones first, then longest first, so the fetch
  // ends on small pieces, evenly across agents.
  split.pieces.sort((a, b) => fetchOrder(a.task, b.task));
  return split;
}

function uniqueRanges(ranges: Range[]): Range[] {
  const seen = new Map<string, Range>();
  for (const r of ranges) seen.set(`${r.offset}+${r.length}`, { offset: r.offset, length: r.length });
  return [...seen.values()];
}

/** Non-overlapping ranges from `ranges`, lowest offset first (the first of two overlapping ones wins). */
function tileOf(ranges: Range[]): Range[] {
  const out: Range[] = [];
  let end = 0;
  for (const r of [...ranges].sort((a, b) => a.offset - b.offset || b.length - a.length)) {
    if (r.offset < end) continue;
    out.push({ offset: r.offset, length: r.length });
    end = r.offset + r.length;
  }
  return out;
}

/** The committed start of each unfinished copy, up to where a finished copy begins. */
function committedPrefixes(unfinished: PieceHolding[], tiles: Range[]): Range[] {
  const out: Range[] = [];
  for (const p of unfinished) {
    // One that overlaps no finished copy is a piece of its own already (resumed by its agent).
    if (notOverlapping([p], tiles).length > 0) continue;
    if (tiles.some((t) => t.offset <= p.offset && p.offset < t.offset + t.length)) continue;
    const next = tiles.filter((t) => t.offset > p.offset).reduce((end, t) => Math.min(end, t.offset), Number.POSITIVE_INFINITY);
    const end = Math.min(p.offset + p.committed, next);
    if (end > p.offset && end < p.offset + p.length) out.push({ offset: p.offset, length: end - p.offset });
  }
  return out;
}

function notOverlapping(ranges: Range[], taken: Range[]): Range[] {
  return ranges.filter((r) => !taken.some((t) => r.offset < t.offset + t.length && t.offset < r.offset + r.length));
}
