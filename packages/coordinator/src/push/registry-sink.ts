/**
 * A target registry as an image sink (mirror to mirror, disk to mirror): each image from the source
 * becomes a push (its target by oc-mirror's naming rules, an index cut down to the platforms that
 * were mirrored), images an earlier run pushed are set aside, and the rest are pushed by the
 * `ImagePusher` through a blob placement that the run's supply provides (upload from an archive, or
 * from whichever agent holds the blob). The end of the run writes the outcomes, the cluster
 * resources and the reports.
 */
import { describeError, errorCode, type BlobRef, type Logger, type RegistryPushClient } from '@meshmirror/shared';
import type { SourcedImages } from '../run/image-source.ts';
import type { RunContext } from '../run/run-skeleton.ts';
import type { ProgressReporter } from '../report/progress.ts';
import { writePushReports } from '../report/push-reports.ts';
import type { PushSummary } from '../report/summaries.ts';
import { finishPushRun, ImagePusher, uniqueBlobsOf, type ImagePush, type PlaceBlob, type PushOutcome } from './image-pusher.ts';
import { pushTarget, type PushDestination } from './push-targets.ts';
import { stripSparseIndex } from './sparse-index.ts';
import { releaseSignaturesConfigMap } from '../cluster/release-signatures-configmap.ts';

/** How blobs reach the target: what a blob supply gives a registry sink. */
export interface BlobPlacement {
  /** Resolves once the blob's bytes can be had; rejects with why they cannot. Absent: always ready. */
  whenReady?: (blob: BlobRef) => Promise<void>;
  place: PlaceBlob;
}

export interface RegistrySinkOptions {
  destination: PushDestination;
  client: RegistryPushClient;
  /** Blob placements at once. */
  transfers: number;
  progress?: ProgressReporter;
  signal?: AbortSignal;
}

export class RegistrySink {
  readonly pusher: ImagePusher;
  /** Every image the source gave that can be pushed. */
  readonly pushes: ImagePush[];
  /** Outcomes so far: the source's failures, then the pushes as they end. */
  readonly outcomes: PushOutcome[];
  alreadyPushed = 0;
  readonly #sourced: SourcedImages;
  readonly #ctx: Pick<RunContext, 'journal' | 'run' | 'resumed' | 'warnings'>;
  readonly #o: RegistrySinkOptions;

  constructor(sourced: SourcedImages, placement: BlobPlacement, ctx: Pick<RunContext, 'journal' | 'run' | 'resumed' | 'warnings'>, options: RegistrySinkOptions) {
    this.#sourced = sourced;
    this.#ctx = ctx;
    this.#o = options;
    this.outcomes = sourced.failed.map((f) => ({
      source: f.source,
      kind: f.kind,
      origin: f.origin,
      ...(f.role === undefined ? {} : { role: f.role }),
      state: 'failed',
      ...(f.digest === undefined ? {} : { digest: f.digest }),
      code: f.code,
      reason: f.reason,
    }));
    this.pushes = [];
    for (const image of sourced.images) {
      const children = image.manifests.slice(1);
      try {
        const top =
          image.skippedPlatforms.length === 0
            ? image.manifests[0]!
            : stripSparseIndex(image.manifests[0]!, (child) => children.some((m) => m.digest === child), {
                source: image.source,
                byDigest: image.ref.digest !== undefined && image.ref.tag === undefined,
              });
        this.pushes.push({
          source: image.source,
          kind: image.kind,
          origin: image.origin,
          ...(image.role === undefined ? {} : { role: image.role }),
          digest: top.digest,
          target: pushTarget(options.destination, image, image.descriptor.digest),
          // Children before the index that names them.
          manifests: [...children, top],
          blobs: image.blobs,
        });
      } catch (err) {
        this.outcomes.push({
          source: image.source,
          kind: image.kind,
          origin: image.origin,
          state: 'failed',
          digest: image.descriptor.digest,
          code: errorCode(err),
          reason: describeError(err),
        });
      }
    }
    this.pusher = new ImagePusher({
      images: this.pushes,
      client: options.client,
      journal: ctx.journal,
      transfers: options.transfers,
      place: placement.place,
      ...(placement.whenReady === undefined ? {} : { whenReady: placement.whenReady }),
      ...(options.progress === undefined ? {} : { progress: options.progress }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  }

  /** Sets aside the images an earlier run pushed that the target still has; returns the rest. */
  async setAsidePushed(): Promise<ImagePush[]> {
    const { toPush, outcomes, alreadyPushed } = await this.pusher.setAsidePushed(this.pushes);
    this.outcomes.push(...outcomes);
    this.alreadyPushed = alreadyPushed;
    return toPush;
  }

  /** Pushes the images; an image that fails is an outcome, never an exception (unless aborted). */
  async pushAll(images: ImagePush[], log: Logger): Promise<void> {
    const failedSoFar = this.outcomes.length - this.alreadyPushed;
    this.outcomes.push(...(await this.pusher.pushAll(images, { done: this.alreadyPushed, failed: failedSoFar }, log)));
  }

  /**
   * Closes the run in the journal, writes the cluster resources and the reports into `workingDir`,
   * and returns the summary `complete` makes of the common one.
   */
  async finish<S extends PushSummary>(workingDir: string, from: string, started: number, complete: (base: PushSummary) => S): Promise<S> {
    const { destination, progress } = this.#o;
    // The signatures of every release payload that arrived, for the cluster to verify its upgrades with.
    const pushed = new Set(this.outcomes.filter((o) => o.state === 'pushed').map((o) => o.source));
    const signed = this.#sourced.images.flatMap((i) =>
      i.releaseSignatures !== undefined && pushed.has(i.source) ? [{ digest: i.descriptor.digest, signatures: i.releaseSignatures }] : [],
    );
    const finished = await finishPushRun(this.#ctx.journal, this.#ctx.run, this.outcomes, workingDir, progress, releaseSignaturesConfigMap(signed));
    const { stats } = this.pusher;
    const unique = uniqueBlobsOf(this.pushes);
    const clusterResources = finished.clusterResources;
    const summary = complete({
      runId: this.#ctx.run.runId,
      resumed: this.#ctx.resumed,
      from,
      destination: `docker://${destination.registry}${destination.prefix === '' ? '' : `/${destination.prefix}`}`,
      images: {
        requested: this.#sourced.requested,
        blocked: this.#sourced.blocked.length,
        pushed: finished.pushed,
        failed: finished.failed,
        alreadyPushed: this.alreadyPushed,
      },
      signatures: {
        sigstore: { ...this.#sourced.signatures.sigstore, mirrored: this.outcomes.filter((o) => o.role === 'signature' && o.state === 'pushed').length },
        release: this.#sourced.signatures.release,
      },
      outcomes: this.outcomes,
      blobs: { unique: unique.count, present: stats.present, mounted: stats.mounted, uploaded: stats.uploaded },
      bytes: { unique: unique.bytes, skipped: stats.skippedBytes, uploaded: stats.uploadedBytes, sent: stats.sent, resumed: stats.resumed },
      retries: stats.retries,
      restarts: stats.restarts,
      warnings: this.#ctx.warnings,
      files: { report: '', clusterResources },
      durationMs: Date.now() - started,
    });
    summary.files = { ...(await writePushReports(workingDir, summary)), clusterResources };
    return summary;
  }
}
