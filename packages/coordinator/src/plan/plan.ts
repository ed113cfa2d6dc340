import type { BlobHolding, Digest, PieceTask, PlannedBlob, RepositoryLocation } from '@meshmirror/shared';
import type { ResolvedImage } from '../resolve/image-set.ts';

/** A blob of the plan: deduplicated across images, with every image that needs it. */
export interface PlanBlob extends PlannedBlob {
  /** Indexes into `MirrorPlan.images`. */
  images: number[];
}

export interface MirrorPlan {
  images: ResolvedImage[];
  /** Layers and configs, deduplicated, in the order of the first image that needs them. */
  blobs: Map<Digest, PlanBlob>;
  /** Sum of the sizes of the unique blobs. */
  uniqueBytes: number;
}

/** Deduplicates the blobs of every resolved image; a blob shared by ten images is fetched once. */
export function buildPlan(images: ResolvedImage[]): MirrorPlan {
  const blobs = new Map<Digest, PlanBlob>();
  images.forEach((image, index) => {
    const source: RepositoryLocation = image.fetchFrom ?? { registry: image.ref.registry, repository: image.ref.repository };
    // The blobs first seen in this image share one list of sources: most blobs have one source,
    // and a run of 50,000 blobs would otherwise hold 50,000 copies of it. A blob that gains a
    // second source gets a list of its own (lists are never changed in place).
    const sources = [source];
    for (const { digest, size } of image.blobs) {
      const blob = blobs.get(digest);
      if (blob === undefined) {
        blobs.set(digest, { digest, size, sources, images: [index] });
        continue;
      }
      if (!blob.images.includes(index)) blob.images.push(index);
      if (!blob.sources.some((s) => s.registry === source.registry && s.repository === source.repository)) {
        blob.sources = [...blob.sources, source];
      }
    }
  });
  let uniqueBytes = 0;
  for (const blob of blobs.values()) uniqueBytes += blob.size;
  return { images, blobs, uniqueBytes };
}

export interface PieceSplit {
  tasks: PieceTask[];
  /** Bytes of planned blobs already held whole. */
  heldBytes: number;
  /** Bytes already committed in partial pieces (a re-run resumes from them). */
  resumedBytes: number;
  /** Bytes still to fetch from upstream. */
  missingBytes: number;
}

/**
 * Turns the blobs that are not yet held into piece tasks. A blob larger than `pieceSize` is split
 * into pieces fetched in parallel with closed Range requests; a partial piece left by an earlier
 * run keeps its boundaries so its committed bytes are reused.
 */
export function splitIntoPieces(plan: MirrorPlan, holdings: BlobHolding[], pieceSize: number): PieceSplit {
  const byDigest = new Map(holdings.map((h) => [h.digest, h]));
  const tasks: PieceTask[] = [];
  let heldBytes = 0;
  let resumedBytes = 0;
  let missingBytes = 0;
  for (const blob of plan.blobs.values()) {
    const holding = byDigest.get(blob.digest);
    if (holding?.held === true) {
      heldBytes += blob.size;
      continue;
    }
    const partial = holding?.pieces ?? [];
    const ranges = partial.length > 0 ? fillGaps(partial, blob.size, pieceSize) : evenPieces(blob.size, pieceSize);
    for (const range of ranges) {
      const committed = partial.find((p) => p.offset === range.offset && p.length === range.length)?.committed ?? 0;
      resumedBytes += committed;
      missingBytes += range.length - committed;
      tasks.push({ digest: blob.digest, blobSize: blob.size, offset: range.offset, length: range.length, sources: blob.sources });
    }
  }
  tasks.sort(fetchOrder);
  return { tasks, heldBytes, resumedBytes, missingBytes };
}

/** Below this size a piece's time is its round trips, not its bytes (1 MiB: 40 ms at 200 Mbit/s). */
const LATENCY_BOUND_BYTES = 1024 * 1024;

/**
 * The order pieces go out in. Those small enough that round trips decide their time go first: they
 * overlap the large pieces' start instead of trailing at the end, where each waited behind a full
 * link (a farm of three at 200 Mbit/s fetched its 885-byte config blobs last, in 1.5 s). Then the
 * longest first: the run ends on the smallest of the rest, so the fetch finishes evenly across
 * connections and agents, and the archive, which copies each blob once it is whole, has little left
 * to copy when the fetch ends.
 */
export function fetchOrder(a: { length: number }, b: { length: number }): number {
  const small = (x: { length: number }): boolean => x.length < LATENCY_BOUND_BYTES;
  if (small(a) !== small(b)) return small(a) ? -1 : 1;
  return b.length - a.length;
}

export interface Range {
  offset: number;
  length: number;
}

export function evenPieces(size: number, pieceSize: number): Range[] {
  if (size <= pieceSize) return [{ offset: 0, length: size }];
  const count = Math.ceil(size / pieceSize);
  const base = Math.ceil(size / count);
  const ranges: Range[] = [];
  for (let offset = 0; offset < size; offset += base) ranges.push({ offset, length: Math.min(base, size - offset) });
  return ranges;
}

/** Keeps the pieces an earlier run started and covers what they leave out with new pieces. */
export function fillGaps(existing: Range[], size: number, pieceSize: number): Range[] {
  const sorted = [...existing].sort((a, b) => a.offset - b.offset);
  const ranges: Range[] = [];
  let cursor = 0;
  for (const piece of sorted) {
    if (piece.offset < cursor || piece.offset + piece.length > size) continue; // overlapping or stale: ignore
    if (piece.offset > cursor) {
      for (const gap of evenPieces(piece.offset - cursor, pieceSize)) ranges.push({ offset: cursor + gap.offset, length: gap.length });
    }
    ranges.push({ offset: piece.offset, length: piece.length });
    cursor = piece.offset + piece.length;
  }
  if (cursor < size) {
    for (const gap of evenPieces(size - cursor, pieceSize)) ranges.push({ offset: cursor + gap.offset, length: gap.length });
  }
  return ranges;
}
