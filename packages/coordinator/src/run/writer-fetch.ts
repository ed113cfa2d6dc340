/**
 * The blob supply into the writer's store (mirror to disk): the farm (or the farm of one) fetches
 * every missing blob and the writer takes each in as it arrives; then one repair pass, on the
 * coordinator's own agent, fetches again what came wrong (a blob whose bytes did not match its
 * digest, damaged on the way) and what the sink found corrupt in the store. The same wrong bytes
 * twice fail the blob's images.
 */
import type { Digest, Logger } from '@meshmirror/shared';
import type { MeshSplit } from '../plan/mesh-plan.ts';
import type { MirrorPlan } from '../plan/plan.ts';
import type { ProgressReporter } from '../report/progress.ts';
import { fetchLocally, isFarm, meshFetch, type AgentReport, type BlobSupply } from './mesh-fetch.ts';

export interface WriterFetchOptions {
  supply: BlobSupply;
  plan: MirrorPlan;
  split: MeshSplit;
  /** The repair pass splits blobs larger than this. */
  pieceSize: number;
  logger: Logger;
  progress?: ProgressReporter;
  signal?: AbortSignal;
  /** The writer holds the blob, verified. */
  onBlobHeld: (digest: Digest, size: number) => void;
  /** The blob cannot be had in this run (it may still be repaired). */
  onBlobFailed?: (digest: Digest) => void;
  /** Once the fetch is over: blobs the sink found corrupt in the store, evicted, to fetch again. */
  corrupt: () => Promise<Digest[]>;
}

export interface WriterFetchOutcome {
  failedBlobs: Map<Digest, { code: string; message: string }>;
  upstreamBytes: number;
  retries: number;
  rangesIgnored: number;
  /** Blobs the sink found corrupt and that were fetched again. */
  repaired: number;
  /** A farm: bytes the writer pulled from agents, and each agent's report. */
  pulledBytes?: number;
  agents?: AgentReport[];
}

export async function fetchIntoWriter(options: WriterFetchOptions): Promise<WriterFetchOutcome> {
  const { supply, plan, logger, progress, signal } = options;
  const log = logger.child({ component: 'coordinator:fetch' });
  const started = Date.now();
  const passOptions = { logger, ...(progress === undefined ? {} : { progress }), ...(signal === undefined ? {} : { signal }) };
  const fetched = await meshFetch({
    ...passOptions,
    split: options.split,
    fetchers: supply.fetchers,
    writer: supply.writer,
    onBlobHeld: (digest, size) => options.onBlobHeld(digest, size),
    ...(options.onBlobFailed === undefined ? {} : { onBlobFailed: options.onBlobFailed }),
  });
  const outcome: WriterFetchOutcome = {
    failedBlobs: fetched.failedBlobs,
    upstreamBytes: fetched.upstreamBytes,
    retries: fetched.retries,
    rangesIgnored: fetched.rangesIgnored,
    repaired: 0,
    ...(isFarm(supply) ? { pulledBytes: fetched.pulledBytes, agents: fetched.agents } : {}),
  };

  const corrupt = await options.corrupt();
  // A blob that arrived with wrong bytes (damaged on the way: a proxy, a bad link) was discarded by
  // the store; it is fetched once more, as the registry client does for manifests.
  const wrongBytes = [...outcome.failedBlobs].filter(([d, f]) => f.code === 'MM_DIGEST_MISMATCH' && !corrupt.includes(d)).map(([d]) => d);
  if (wrongBytes.length > 0) log.warn({ blobs: wrongBytes }, 'fetched blobs did not match their digests; fetching them once more');
  for (const digest of wrongBytes) outcome.failedBlobs.delete(digest);
  const again = [...corrupt, ...wrongBytes];
  if (again.length > 0) {
    // Fetched afresh by the coordinator's own agent: the copies elsewhere in the farm may be the wrong ones.
    const repairPlan: MirrorPlan = { ...plan, blobs: new Map(again.map((d) => [d, plan.blobs.get(d)!])) };
    const repaired = await fetchLocally(supply, repairPlan, [], options.pieceSize, { ...passOptions, onBlobHeld: options.onBlobHeld });
    for (const [digest, why] of repaired.failedBlobs) outcome.failedBlobs.set(digest, why);
    outcome.upstreamBytes += repaired.upstreamBytes;
    outcome.retries += repaired.retries;
    outcome.rangesIgnored += repaired.rangesIgnored;
    outcome.repaired = corrupt.length;
  }
  log.info({ ms: Date.now() - started, upstreamBytes: outcome.upstreamBytes, failedBlobs: outcome.failedBlobs.size }, 'fetch finished');
  return outcome;
}
