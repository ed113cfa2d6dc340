/**
 * A target registry as an image sink (mirror to mirror, disk to mirror): each image from the source
 * becomes a push (its target by oc-mirror's naming rules, an index cut down to the platforms that
 * were mirrored), images an earlier run pushed are set aside, and the rest are pushed by the
 * `ImagePusher` through a blob placement that the run's supply provides (upload from an archive, or
 * from whichever agent holds the blob). The end of the run writes the outcomes, the cluster
 * resources and the reports.
 */
import { mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import {
  describeError,
  errorCode,
  makeReceipt,
  MediaType,
  mergeReferrersIndex,
  parseReceipt,
  type Receipt,
  referrerEntry,
  referrersTag,
  type BlobRef,
  type Descriptor,
  type Digest,
  type Logger,
  type RegistryPushClient,
} from '@meshmirror/shared';
import type { SourcedImages } from '../run/image-source.ts';
import type { RunContext } from '../run/run-skeleton.ts';
import type { ProgressReporter } from '../report/progress.ts';
import { writePushReports } from '../report/push-reports.ts';
import { writeReportFile } from '../report/report-file.ts';
import type { PushSummary } from '../report/summaries.ts';
import { finishPushRun, ImagePusher, uniqueBlobsOf, type ImagePush, type PlaceBlob, type PushOutcome } from './image-pusher.ts';
import { pushTarget, type PushDestination } from './push-targets.ts';
import { pushableIndex } from './sparse-index.ts';
import { releaseSignaturesConfigMap } from '../cluster/release-signatures-configmap.ts';
import type { CatalogSourceTemplate } from '../cluster/catalog-source-template.ts';

/** How blobs reach the target: what a blob supply gives a registry sink. */
export interface BlobPlacement {
  /** Resolves once the blob's bytes can be had; rejects with why they cannot. Absent: always ready. */
  whenReady?: (blob: BlobRef) => Promise<void>;
  place: PlaceBlob;
}

/** The receipt an earlier push left, if it can be read; one that cannot is replaced (this push's content is what counts). */
async function readPreviousReceipt(path: string): Promise<Receipt | undefined> {
  try {
    const parsed = parseReceipt(JSON.parse(await readFile(path, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** Referrers tag indexes written at once. */
const REFERRER_INDEX_WRITES = 4;

export interface RegistrySinkOptions {
  destination: PushDestination;
  /** The catalogs' `targetCatalogSourceTemplate`s, checked, by origin (`mirror.operators[i]`). */
  catalogSourceTemplates?: ReadonlyMap<string, CatalogSourceTemplate>;
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
            : pushableIndex(image.manifests[0]!, (child) => children.some((m) => m.digest === child), {
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

  /**
   * Pushes the images, then lists the referrers that arrived where a client looks for them; an image
   * that fails is an outcome, never an exception (unless aborted).
   */
  async pushAll(images: ImagePush[], log: Logger): Promise<void> {
    const failedSoFar = this.outcomes.length - this.alreadyPushed;
    this.outcomes.push(...(await this.pusher.pushAll(images, { done: this.alreadyPushed, failed: failedSoFar }, log)));
    await this.#indexReferrers(log);
  }

  /**
   * A target without the referrers API learns nothing from a referrer's `subject`: for each subject
   * of the referrers in the target (pushed now or by an earlier run), its `sha256-<hex>` tag index
   * is made to list them, keeping what it listed already. A referrer whose index cannot be written
   * cannot be found, so it fails.
   */
  async #indexReferrers(log: Logger): Promise<void> {
    const { client, signal } = this.#o;
    const pushed = new Map(this.outcomes.filter((o) => o.state === 'pushed').map((o) => [`${o.source} ${o.target ?? ''}`, o]));
    const groups = new Map<string, { repository: string; registry: string; subject: Digest; entries: Descriptor[]; outcomes: PushOutcome[] }>();
    for (const image of this.pushes) {
      const outcome = pushed.get(`${image.source} ${image.target.reference}`);
      const top = image.manifests[image.manifests.length - 1];
      if (image.role !== 'referrer' || outcome === undefined || top === undefined) continue;
      const entry = referrerEntry(top, image.source);
      if (entry === undefined) continue;
      const key = `${image.target.repository} ${entry.subject}`;
      const group = groups.get(key) ?? { repository: image.target.repository, registry: image.target.registry, subject: entry.subject, entries: [], outcomes: [] };
      group.entries.push(entry.descriptor);
      group.outcomes.push(outcome);
      groups.set(key, group);
    }
    const limit = pLimit(REFERRER_INDEX_WRITES);
    await Promise.all(
      [...groups.values()].map((group) =>
        limit(async () => {
          const location = { registry: group.registry, repository: group.repository };
          const options = signal === undefined ? {} : { signal };
          try {
            const current = await client.getReferrers(location, group.subject, options);
            if (current.via === 'api') return;
            const merged = mergeReferrersIndex(current.manifests, group.entries);
            if (merged !== undefined) await client.putManifest(location, referrersTag(group.subject), { bytes: merged, mediaType: MediaType.OciIndex }, options);
          } catch (err) {
            if (signal?.aborted === true) throw err;
            const reason = `pushed, but the referrers tag ${group.repository}:${referrersTag(group.subject)} could not be written: ${describeError(err)}`;
            log.warn({ repository: group.repository, subject: group.subject, code: errorCode(err), err: describeError(err) }, 'referrers tag index');
            for (const outcome of group.outcomes) Object.assign(outcome, { state: 'failed', code: errorCode(err), reason });
          }
        }),
      ),
    );
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
    const finished = await finishPushRun(
      this.#ctx.journal,
      this.#ctx.run,
      this.outcomes,
      workingDir,
      progress,
      releaseSignaturesConfigMap(signed),
      this.#o.catalogSourceTemplates,
    );
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
        referrers: { ...this.#sourced.signatures.referrers, mirrored: this.outcomes.filter((o) => o.role === 'referrer' && o.state === 'pushed').length },
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
    const receipt = await this.#writeReceipt(workingDir, summary.destination);
    summary.files = { ...(await writePushReports(workingDir, { ...summary, files: { ...summary.files, receipt } })), clusterResources, receipt };
    return summary;
  }

  /**
   * `working-dir/receipt.json`: every manifest and blob of the images the target now holds (pushed
   * now or set aside as pushed before), merged into the receipt an earlier push to the same target
   * left there.
   */
  async #writeReceipt(workingDir: string, target: string): Promise<string> {
    const path = join(workingDir, 'receipt.json');
    const pushed = new Set(this.outcomes.filter((o) => o.state === 'pushed').map((o) => `${o.source} ${o.target ?? ''}`));
    const content = this.pushes
      .filter((p) => pushed.has(`${p.source} ${p.target.reference}`))
      .map((p) => ({
        repository: p.target.repository,
        manifests: p.manifests.map((m) => ({ digest: m.digest, size: m.bytes.byteLength })),
        blobs: p.blobs.map((b) => ({ digest: b.digest, size: b.size })),
      }));
    const previous = await readPreviousReceipt(path);
    await mkdir(workingDir, { recursive: true });
    await writeReportFile(`${path}.partial`, `${JSON.stringify(makeReceipt(target, content, previous))}\n`);
    await rename(`${path}.partial`, path);
    return path;
  }
}
