/**
 * Pushing images into a target registry once their blobs can be placed there, whatever holds the
 * bytes (an archive's chunks in disk to mirror, an agent's store in mirror to mirror). Blobs go
 * before the manifests that use them, child manifests before their index, the tag last. A blob
 * shared by several repositories is placed first in one of them (its primary: the first image's
 * repository that needs it) and mounted into the others. An image that fails never costs another
 * image its push.
 */
import pLimit from 'p-limit';
import {
  describeError,
  errorCode,
  isRetryable,
  MeshmirrorError,
  throwIfAborted,
  type Digest,
  type Logger,
  type PushBlobResult,
  type RegistryPushClient,
  type BlobRef,
} from '@meshmirror/shared';
import type { ImageKind, ImageRole } from '../resolve/image-set.ts';
import { join } from 'node:path';
import type { RunJournal, RunRecord } from '../run/run-journal.ts';
import { clusterResources, writeClusterResources, type ClusterResourceFile, type MirroredImage } from '../cluster/cluster-resources.ts';
import type { CatalogSourceTemplate } from '../cluster/catalog-source-template.ts';
import type { ProgressReporter } from '../report/progress.ts';
import type { PushTarget } from './push-targets.ts';

export interface ImagePush {
  source: string;
  kind: ImageKind;
  origin: string;
  role?: ImageRole;
  digest: Digest;
  target: PushTarget;
  /** Children first, the top manifest last. */
  manifests: Array<{ digest: Digest; mediaType: string; bytes: Uint8Array }>;
  /** Layers and configs, each once. */
  blobs: BlobRef[];
}

export interface PushOutcome {
  source: string;
  kind: ImageKind;
  origin: string;
  role?: ImageRole;
  state: 'pushed' | 'failed';
  digest?: Digest;
  /** `registry/repository:tag` (or `@digest`) in the target. */
  target?: string;
  code?: string;
  reason?: string;
}

export interface PushStats {
  /** Placements of a blob the target already had in that repository. */
  present: number;
  /** Placements by cross-repository mount. */
  mounted: number;
  /** Unique blobs whose bytes were sent. */
  uploaded: number;
  /** Bytes of unique blobs that needed no upload. */
  skippedBytes: number;
  /** Bytes of unique blobs that were uploaded. */
  uploadedBytes: number;
  /** Body bytes put on the wire, failed attempts included. */
  sent: number;
  /** Bytes interrupted earlier uploads had left in the registry. */
  resumed: number;
  retries: number;
  restarts: number;
}

/**
 * Places one blob in one repository of the target (HEAD, mount from `mountFrom`, upload), reporting
 * body bytes as they go out through `onBytesSent`.
 */
export type PlaceBlob = (blob: BlobRef, repository: string, mountFrom: string[], onBytesSent: (bytes: number) => void) => Promise<PushBlobResult>;

export interface ImagePusherOptions {
  /** Every image this run may push (for mount candidates and primaries). */
  images: ImagePush[];
  /** Puts the manifests and checks tags. */
  client: RegistryPushClient;
  journal: RunJournal;
  place: PlaceBlob;
  /**
   * Resolves when the blob's bytes can be had (mirror to mirror: once an agent holds it); rejects
   * with why they cannot. Awaited before a placement takes one of the `transfers` slots.
   */
  whenReady?: (blob: BlobRef) => Promise<void>;
  /** Blob placements at once. */
  transfers: number;
  progress?: ProgressReporter;
  signal?: AbortSignal;
}

/**
 * A failure that waiting was the cure for and that ran out of time (or attempts): the host did not
 * come back. A refusal (403 in one repository, a digest mismatch) is not one.
 */
function isTransient(err: unknown): boolean {
  if (isRetryable(err)) return true;
  let current: unknown = err;
  for (let depth = 0; depth < 8 && current instanceof Error; depth++) {
    if (current instanceof MeshmirrorError && current.data['gaveUp'] !== undefined) return true;
    current = current.cause;
  }
  return false;
}

/** Mount attempts per blob and repository before uploading it. */
const MAX_MOUNT_CANDIDATES = 3;

export class ImagePusher {
  readonly stats: PushStats = { present: 0, mounted: 0, uploaded: 0, skippedBytes: 0, uploadedBytes: 0, sent: 0, resumed: 0, retries: 0, restarts: 0 };
  readonly #o: ImagePusherOptions;
  readonly #limit: ReturnType<typeof pLimit>;
  /** Per blob: every target repository whose image needs it, in image order; the first is its primary. */
  readonly #reposOf = new Map<Digest, string[]>();
  /** Per repository and blob: one placement, however many images of the repository need it. */
  readonly #placements = new Map<string, Promise<void>>();
  readonly #counted = new Set<Digest>();

  constructor(options: ImagePusherOptions) {
    this.#o = options;
    this.#limit = pLimit(Math.max(1, options.transfers));
    for (const image of options.images) {
      for (const b of image.blobs) {
        const repos = this.#reposOf.get(b.digest) ?? [];
        if (!repos.includes(image.target.repository)) repos.push(image.target.repository);
        this.#reposOf.set(b.digest, repos);
      }
    }
  }

  /** The repository a blob is placed in first; the others mount it from there. */
  primaryOf(digest: Digest): string | undefined {
    return this.#reposOf.get(digest)?.[0];
  }

  /** Target repositories that need the blob. */
  repositoriesOf(digest: Digest): readonly string[] {
    return this.#reposOf.get(digest) ?? [];
  }

  /**
   * Sets aside the images an earlier run pushed whose tag the target still has on the same digest
   * (their blobs count as present); a failed check fails only its image. The rest are to push.
   */
  async setAsidePushed(images: ImagePush[]): Promise<{ toPush: ImagePush[]; outcomes: PushOutcome[]; alreadyPushed: number }> {
    const toPush: ImagePush[] = [];
    const outcomes: PushOutcome[] = [];
    let alreadyPushed = 0;
    await Promise.all(
      images.map(async (image) => {
        const base = outcomeBase(image);
        try {
          if (await this.#alreadyPushed(image)) {
            alreadyPushed += 1;
            outcomes.push({ ...base, state: 'pushed' });
          } else {
            toPush.push(image);
          }
        } catch (err) {
          if (this.#o.signal?.aborted === true) throw err;
          outcomes.push({ ...base, state: 'failed', code: errorCode(err), reason: describeError(err) });
        }
      }),
    );
    return { toPush, outcomes, alreadyPushed };
  }

  /**
   * Pushes the images all at once (placements are limited by `transfers`), counting each outcome
   * into the progress on top of the images already `done` and `failed`.
   */
  async pushAll(images: ImagePush[], already: { done: number; failed: number }, log: Logger): Promise<PushOutcome[]> {
    let { done, failed } = already;
    return await Promise.all(
      images.map(async (image) => {
        const outcome = await this.push(image);
        if (outcome.state === 'pushed') {
          done += 1;
        } else {
          failed += 1;
          log.warn({ image: outcome.source, code: outcome.code, err: outcome.reason }, 'image not pushed');
        }
        this.#o.progress?.update({ imagesDone: done, imagesFailed: failed });
        return outcome;
      }),
    );
  }

  async #alreadyPushed(image: ImagePush): Promise<boolean> {
    const { journal, client, signal } = this.#o;
    if ((await journal.pushedImage(image.target.reference)) !== image.digest) return false;
    const location = { registry: image.target.registry, repository: image.target.repository };
    const current = await client.manifestDigest(location, image.target.tag ?? image.digest, signal === undefined ? {} : { signal });
    if (current !== image.digest) return false;
    for (const b of image.blobs) {
      if (this.#counted.has(b.digest)) continue;
      this.#counted.add(b.digest);
      this.stats.present += 1;
      this.#countSkipped(b.size);
    }
    return true;
  }

  /** Places every blob of the image, then its manifests and tag. Never rejects unless aborted. */
  async push(image: ImagePush): Promise<PushOutcome> {
    const { client, journal, signal } = this.#o;
    const base = outcomeBase(image);
    const location = { registry: image.target.registry, repository: image.target.repository };
    try {
      const results = await Promise.allSettled(image.blobs.map((b) => this.#ensure(b, image.target.repository)));
      const failed = results.findIndex((r) => r.status === 'rejected');
      if (failed !== -1) {
        const blob = image.blobs[failed];
        const reason = (results[failed] as PromiseRejectedResult).reason as unknown;
        return { ...base, state: 'failed', code: errorCode(reason), reason: `blob ${blob?.digest ?? ''} (${blob?.size ?? 0} bytes): ${describeError(reason)}` };
      }
      throwIfAborted(signal);
      for (const manifest of image.manifests) {
        await client.putManifest(location, manifest.digest, manifest, signal === undefined ? {} : { signal });
      }
      const top = image.manifests[image.manifests.length - 1];
      if (top !== undefined && image.target.tag !== undefined) await client.putManifest(location, image.target.tag, top, signal === undefined ? {} : { signal });
      await journal.recordPushedImage(image.target.reference, image.digest);
      return { ...base, state: 'pushed' };
    } catch (err) {
      if (signal?.aborted === true) throw err;
      return { ...base, state: 'failed', code: errorCode(err), reason: describeError(err) };
    }
  }

  #ensure(blob: BlobRef, repository: string): Promise<void> {
    const key = `${repository} ${blob.digest}`;
    const known = this.#placements.get(key);
    if (known !== undefined) return known;
    const primary = this.primaryOf(blob.digest) ?? repository;
    let placement: Promise<void>;
    if (primary === repository) {
      const ready = this.#o.whenReady?.(blob) ?? Promise.resolve();
      placement = ready.then(() => this.#limit(() => this.#place(blob, repository, this.#mountCandidates(blob.digest, repository, undefined))));
    } else {
      // After the primary placement: mounted from there, or (when the primary repository refused
      // it) uploaded here. A blob given up because the target or its source stayed unreachable is
      // given up once, for every image that needs it: another upload would wait as long again.
      placement = this.#ensure(blob, primary).then(
        () => this.#limit(() => this.#place(blob, repository, this.#mountCandidates(blob.digest, repository, primary))),
        (err: unknown) =>
          isTransient(err) ? Promise.reject(err) : this.#limit(() => this.#place(blob, repository, this.#mountCandidates(blob.digest, repository, undefined))),
      );
    }
    this.#placements.set(key, placement);
    return placement;
  }

  /**
   * Where to try mounting from: the repository that got the blob this run, else others of this
   * push that need it (an earlier push may have put it there); a refused mount opens the upload.
   */
  #mountCandidates(digest: Digest, repository: string, holder: string | undefined): string[] {
    const others = this.repositoriesOf(digest)
      .filter((r) => r !== repository && r !== holder)
      .slice(0, MAX_MOUNT_CANDIDATES);
    return holder === undefined ? others : [holder, ...others.slice(0, MAX_MOUNT_CANDIDATES - 1)];
  }

  async #place(blob: BlobRef, repository: string, mountFrom: string[]): Promise<void> {
    const { stats } = this;
    const outcome = await this.#o.place(blob, repository, mountFrom, (bytes) => {
      stats.sent += bytes;
      this.#o.progress?.addBytes(bytes);
    });
    stats.retries += outcome.retries;
    stats.restarts += outcome.restarts;
    stats.resumed += outcome.resumedFrom;
    if (outcome.action === 'present') stats.present += 1;
    if (outcome.action === 'mounted') stats.mounted += 1;
    // Bytes count each unique blob once, by what its first placement took.
    if (this.#counted.has(blob.digest)) return;
    this.#counted.add(blob.digest);
    if (outcome.action === 'uploaded') {
      stats.uploaded += 1;
      stats.uploadedBytes += blob.size;
    } else {
      this.#countSkipped(blob.size);
    }
  }

  /** A unique blob that needed no upload: its bytes count as done. */
  #countSkipped(size: number): void {
    this.stats.skippedBytes += size;
    this.#o.progress?.addBytes(size);
  }
}

/**
 * The end of a push run, the same for disk to mirror and mirror to mirror: the images' outcomes go
 * into the journal, the run is closed, and the cluster resources for the images that arrived are
 * written into `workingDir/cluster-resources`.
 */
export async function finishPushRun(
  journal: RunJournal,
  run: RunRecord,
  outcomes: PushOutcome[],
  workingDir: string,
  progress?: ProgressReporter,
  /** More cluster resources for the images that arrived (the release signatures' ConfigMap). */
  extra: ClusterResourceFile[] = [],
  /** The catalogs' CatalogSource templates, by origin (`mirror.operators[i]`). */
  catalogSourceTemplates: ReadonlyMap<string, CatalogSourceTemplate> = new Map(),
): Promise<{ pushed: number; failed: number; clusterResources: string[] }> {
  const pushed = outcomes.filter((o) => o.state === 'pushed');
  const failed = outcomes.length - pushed.length;
  await journal.recordImages(
    run,
    outcomes.map((o) => ({ source: o.source, state: o.state === 'pushed' ? 'pushed' : 'failed', digest: o.digest, code: o.code, reason: o.reason })),
  );
  await journal.finishRun(run, failed === 0 ? 'complete' : 'partial');
  progress?.update({ phase: 'done', imagesDone: pushed.length, imagesFailed: failed });
  // A signature or referrer lives in the repository of its image, which has its mirror entries already;
  // a chart is not pulled by a container runtime, so it has none.
  const mirrored: MirroredImage[] = pushed.flatMap((o) =>
    o.role === 'signature' || o.role === 'referrer' || o.role === 'helm-chart'
      ? []
      : [
          {
            category: o.kind === 'release' ? 'release' : o.kind === 'operator' ? 'operator' : 'generic',
            source: o.source,
            destination: o.target ?? '',
            ...(o.role === undefined ? {} : { role: o.role }),
            ...(o.role === 'catalog' && catalogSourceTemplates.has(o.origin) ? { catalogSourceTemplate: catalogSourceTemplates.get(o.origin)! } : {}),
          },
        ],
  );
  const files = await writeClusterResources(join(workingDir, 'cluster-resources'), [...clusterResources(mirrored), ...extra]);
  return { pushed: pushed.length, failed, clusterResources: files };
}

/** The unique blobs the images need and their total size. */
export function uniqueBlobsOf(images: ImagePush[]): { count: number; bytes: number } {
  const unique = new Map<Digest, number>();
  for (const image of images) for (const b of image.blobs) unique.set(b.digest, b.size);
  let bytes = 0;
  for (const size of unique.values()) bytes += size;
  return { count: unique.size, bytes };
}

/** What every outcome of an image says, whatever became of it. */
function outcomeBase(image: ImagePush) {
  return {
    source: image.source,
    kind: image.kind,
    origin: image.origin,
    ...(image.role === undefined ? {} : { role: image.role }),
    digest: image.digest,
    target: image.target.reference,
  };
}
