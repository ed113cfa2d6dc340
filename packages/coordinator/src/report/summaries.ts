/**
 * What each run mode reports: the summaries printed at the end of a run (text or `--output json`)
 * and written by the report writers. Kept apart from the run modes, which produce them, and the
 * report writers, which read them, so neither imports the other.
 */
import type { ArchiveChunk, Digest } from '@meshmirror/shared';
import type { PushOutcome } from '../push/image-pusher.ts';
import type { ImageKind } from '../resolve/image-set.ts';
import type { AgentReport } from '../schedule/farm-scheduler.ts';

export interface ImageOutcome {
  source: string;
  kind: ImageKind;
  origin: string;
  /** `warmed`: its blobs are in the farm's stores (`meshmirror warm`). */
  state: 'archived' | 'failed' | 'planned' | 'warmed';
  digest?: Digest;
  code?: string;
  reason?: string;
}

/** Signatures that travel with the images, per kind. */
export interface SignatureSummary {
  /** Sigstore signature tags (`sha256-<hex>.sig`) of the set's images. */
  sigstore: {
    /** Found in the source (or the archive) and made images of the run. */
    found: number;
    /** Of those, archived or pushed. */
    mirrored: number;
    /** Looked for and absent: most images are not signed. */
    missing: number;
    /** Present but could not be read. */
    failed: number;
  };
  /** Release payloads' OpenPGP signatures, for the cluster's upgrades. */
  release: {
    /** Payloads whose signatures were all verified, and how many signatures they have. */
    releases: number;
    signatures: number;
    /** Payloads without any signature, and with one that failed verification: those payloads failed. */
    missing: number;
    invalid: number;
  };
  /** OCI referrers (signatures, SBOMs, attestations naming an image as their `subject`). */
  referrers: {
    /** Listed by the source (API or tag index) and made images of the run. */
    found: number;
    /** Of those, archived or pushed (and, on a target without the referrers API, in its tag index). */
    mirrored: number;
    /** Could not be listed or read. */
    failed: number;
  };
}

/** `meshmirror verify` of the archive a mirror to disk wrote, read back from disk when it was done. */
export interface ArchiveCheck {
  intact: boolean;
  chunks: number;
  blobs: number;
  bytes: number;
  images: number;
  /** One line per problem, as `meshmirror verify` prints them. */
  problems: string[];
}

export interface MirrorSummary {
  runId: string;
  resumed: boolean;
  dryRun: boolean;
  destination: string;
  images: { requested: number; blocked: number; archived: number; failed: number };
  signatures: SignatureSummary;
  outcomes: ImageOutcome[];
  bytes: {
    /** Bytes of the unique layers and configs the image set needs. */
    unique: number;
    /** Of those, already held in the store before this run. */
    held: number;
    /** Committed by an interrupted earlier run and not fetched again. */
    resumed: number;
    /** Still missing when the run planned its fetches. */
    toFetch: number;
    /** Body bytes actually received from upstream registries, retries included. */
    fetched: number;
    /** In a farm run: bytes the writer pulled from agents. */
    pulled?: number;
    /** Bytes the coordinator put through sha256 to check what it fetched, stored and archived. */
    hashed: number;
  };
  /** Per agent of a farm run: upstream bytes, bytes served to the writer, pieces, failures. */
  agents?: AgentReport[];
  retries: number;
  rangesIgnored: number;
  /** Held blobs that failed verification when archived and were fetched (or stored) again. */
  repairedBlobs: number;
  archive: { chunks: ArchiveChunk[]; warnings: string[]; verification?: ArchiveCheck };
  /**
   * `--since-receipt`: the blobs left out because the receipt's target holds them, and their bytes
   * (what the receipt saved: neither fetched nor carried).
   */
  differential?: { basis: string; receipt?: string; target?: string; since?: string; omittedBlobs: number; omittedBytes: number };
  warnings: string[];
  files: { errors?: string; mapping?: string; report: string };
  durationMs: number;
}

export interface PushSummary {
  runId: string;
  resumed: boolean;
  from: string;
  destination: string;
  images: { requested: number; blocked: number; pushed: number; failed: number; alreadyPushed: number };
  signatures: SignatureSummary;
  outcomes: PushOutcome[];
  /**
   * `uploaded` counts unique blobs that were sent; `present` and `mounted` count placements (a blob
   * the target had, or got by mount, in one repository), so a shared blob may count in several.
   */
  blobs: { unique: number; present: number; mounted: number; uploaded: number };
  bytes: {
    /** Sizes of the unique blobs the pushed and failed images need. */
    unique: number;
    /** Of those, blobs the target already had (HEAD) or got by mount. */
    skipped: number;
    /** Bytes of the blobs that were uploaded. */
    uploaded: number;
    /** Body bytes put on the wire, failed attempts included (≥ uploaded minus resumed). */
    sent: number;
    /** Bytes an interrupted earlier run had uploaded and the registry still held. */
    resumed: number;
  };
  /** Failed requests to the target (each waited out and tried again, or given up), probes included. */
  retries: number;
  /** Upload sessions the registry lost and that were started over. */
  restarts: number;
  warnings: string[];
  /** `receipt`: what the target holds now (`working-dir/receipt.json`), for a differential mirror to disk. */
  files: { report: string; errors?: string; clusterResources: string[]; receipt?: string };
  durationMs: number;
}

export interface MirrorToMirrorSummary extends PushSummary {
  mode: 'mirror-to-mirror';
  fetch: {
    /** Unique blob bytes the target already held in some repository this run pushes to: not fetched. */
    inTarget: number;
    /** Bytes already in an agent's store from earlier runs. */
    held: number;
    /** Bytes an interrupted earlier fetch had committed. */
    resumed: number;
    /** Bytes that had to come from the source registries. */
    toFetch: number;
    /** Body bytes received from the source registries, retries included. */
    fetched: number;
    retries: number;
    /** Farm runs: blobs the coordinator's agent fetched and pushed itself because their agents were lost. */
    fetchedByCoordinator: number;
  };
  /** Per agent of a farm run: what it fetched and what it pushed. */
  agents?: Array<AgentReport & { pushedBytes: number; blobsPushed: number }>;
}

/** `meshmirror warm`: what the farm's stores hold of the image set now, and what this run fetched. */
export interface WarmSummary {
  mode: 'warm';
  runId: string;
  warnings: string[];
  images: { requested: number; warmed: number; failed: number };
  outcomes: ImageOutcome[];
  blobs: {
    /** Unique non-empty blobs of the image set. */
    unique: number;
    /** Of those, held whole by some agent before this run. */
    inFarm: number;
    /** Could not be had in this run. */
    failed: number;
  };
  bytes: { unique: number; inFarm: number; toFetch: number; fetched: number; failed: number };
  /** Per agent: what it fetched in this run. */
  agents: AgentReport[];
  retries: number;
  durationMs: number;
}
