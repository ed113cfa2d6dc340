/**
 * Image sources: where a run's images come from, resolved to their manifests and blobs. The
 * registries (mirror to disk, mirror to mirror) resolve the configuration against the update graph,
 * the catalogs and the source registries; an archive (disk to mirror) reads what a mirror run
 * resolved. Downstream, a run sees only `ResolvedImage`s and the images that failed.
 */
import pLimit from 'p-limit';
import { describeError, errorCode, RegistryError, throwIfAborted, type ImageSetConfig, type LocalAgent, type Logger, type RegistryClient } from '@meshmirror/shared';
import type { FailedImage, RequestedImage, ResolvedImage } from '../resolve/image-set.ts';
import { collectImageSet, type OpenShiftSources } from '../resolve/image-set-content.ts';
import type { LayerSource } from '../resolve/layer-source.ts';
import { resolveImage } from '../resolve/resolve-image.ts';
import { lookUpReferrers, referrerSubjects } from '../resolve/referrers.ts';
import { signatureRequests } from '../resolve/sigstore.ts';
import { openReleaseSignatureStore } from '../resolve/release/release-signatures.ts';
import type { ProgressReporter } from '../report/progress.ts';
import type { RunJournal, RunRecord } from './run-journal.ts';
import type { RunContext } from './run-skeleton.ts';

export interface SourcedImages {
  /** How many images the configuration asks for (resolved or not). */
  requested: number;
  /** Left out by `blockedImages`, with the entry that blocked each. */
  blocked: Array<{ source: string; blockedBy: string }>;
  images: ResolvedImage[];
  /** Images (and parts of the image set) that could not be had, each with why. */
  failed: FailedImage[];
  signatures: SignatureCounts;
}

export interface SignatureCounts {
  /** Sigstore signature tags looked for: found (among `images`), absent, and failed to resolve (among `failed`). */
  sigstore: { found: number; missing: number; failed: number };
  /** Release payloads whose OpenPGP signatures were verified, those signatures, and the payloads without any or with a bad one. */
  release: ReleaseSignatureCounts;
  /** OCI referrers: found (among `images`), and failures to list or resolve them (among `failed`). */
  referrers: { found: number; failed: number };
}

export interface ReleaseSignatureCounts {
  releases: number;
  signatures: number;
  missing: number;
  invalid: number;
}

export interface ImageSource {
  images(run: Pick<RunContext, 'journal' | 'run'>): Promise<SourcedImages>;
}

/**
 * Signature tags looked for at once: most answers are a small 404, so more at once than images
 * resolved (the load test's 200 unsigned images: 12.0 s with 4 at once, 6.4 s with 16; 9.6 s before
 * there were lookups, in a run of the whole suite).
 */
const SIGNATURE_LOOKUPS = 16;

export interface RegistrySourceOptions {
  config: ImageSetConfig;
  client: RegistryClient;
  /** The coordinator's agent: stores what resolution makes (filtered catalogs, the graph image). */
  agent: LocalAgent;
  layers: LayerSource;
  sources: OpenShiftSources;
  parallelImages: number;
  /**
   * Manifests looked up at once while resolving (`--parallel-images` × `--parallel-layers`, as many
   * as blobs are fetched at once): each is a small request, so a distant registry's round trips, not
   * the bytes, set how long resolving takes.
   */
  manifestLookups: number;
  /** `--remove-signatures`: no sigstore signature tags or referrers are looked for. */
  removeSignatures?: boolean;
  logger: Logger;
  progress?: ProgressReporter;
  signal?: AbortSignal;
}

/**
 * The source registries: the configuration's releases, operators and additional images, each tag
 * pinned in the journal to the digest it first resolved to, so a resumed run completes the same set.
 */
export function registrySource(options: RegistrySourceOptions): ImageSource {
  return {
    images: async ({ journal, run }) => {
      options.progress?.update({ phase: 'resolving' });
      const content = await collectImageSet({ ...options, journal, run });
      const log = options.logger.child({ component: 'coordinator:resolve' });
      for (const b of content.blocked) log.info({ image: b.source, blockedBy: b.blockedBy }, 'image blocked by blockedImages');
      const requested = content.requested.length + content.prepared.length;
      options.progress?.update({ imagesTotal: requested });
      const { resolved, failed: unresolved } = await resolveAll(content.requested, run, journal, options);
      const failed = [...unresolved];
      let images = [...content.prepared, ...resolved];
      // A release payload goes with its OpenPGP signatures, or not at all: a cluster cannot upgrade to it without them.
      let release: ReleaseSignatureCounts = { releases: 0, signatures: 0, missing: 0, invalid: 0 };
      if (options.removeSignatures !== true && images.some((i) => i.role === 'release-payload')) {
        const checked = await withReleaseSignatures(images, options);
        images = checked.images;
        failed.push(...checked.failed);
        release = releaseSignatureCounts(images, checked.failed);
      }
      // Sigstore signatures are more images of the set: found after their subjects, resolved the same way.
      // Referrers (signatures, SBOMs, attestations by `subject`) too, and theirs in turn. The two
      // lookups need only the subjects, so they go at once: each is mostly small 404s, a round trip
      // per manifest, and a remote registry's latency is paid once instead of twice.
      const wanted = options.removeSignatures === true ? [] : signatureRequests(images);
      const [sigstore, referrers] = await settledBoth(
        resolveAll(wanted, run, journal, options, { absentIsNormal: true, concurrency: SIGNATURE_LOOKUPS }),
        options.removeSignatures === true ? Promise.resolve(NO_REFERRERS) : withReferrers(images, run, journal, options),
      );
      if (wanted.length > 0) log.info({ lookedFor: wanted.length, found: sigstore.resolved.length, missing: sigstore.absent }, 'sigstore signatures');
      const allFailed = [...content.failed, ...failed, ...sigstore.failed, ...referrers.failed];
      const total = requested + sigstore.resolved.length + sigstore.failed.length + referrers.resolved.length + referrers.failed.length;
      options.progress?.update({ imagesTotal: total, imagesFailed: allFailed.length });
      return {
        requested: total,
        blocked: content.blocked,
        images: [...images, ...sigstore.resolved, ...referrers.resolved],
        failed: allFailed,
        signatures: {
          sigstore: { found: sigstore.resolved.length, missing: sigstore.absent, failed: sigstore.failed.length },
          release,
          referrers: { found: referrers.resolved.length, failed: referrers.failed.length },
        },
      };
    },
  };
}

/**
 * Both results once both have settled: when one fails (the run was aborted), the other has stopped
 * too before the failure is passed on, so no lookup outlives the run that started it.
 */
async function settledBoth<A, B>(a: Promise<A>, b: Promise<B>): Promise<[A, B]> {
  const [first, second] = await Promise.allSettled([a, b]);
  if (first.status === 'rejected') throw first.reason;
  if (second.status === 'rejected') throw second.reason;
  return [first.value, second.value];
}

/** How many levels of referrers are followed: an image, its SBOM, the SBOM's signature. */
const REFERRER_DEPTH = 3;

const NO_REFERRERS = { resolved: [], failed: [], subjects: 0 };

/**
 * The referrers of `images`, resolved: looked up per manifest (as many at once as signature tags),
 * then the referrers of those, `REFERRER_DEPTH` levels deep.
 */
async function withReferrers(
  images: ResolvedImage[],
  run: RunRecord,
  journal: RunJournal,
  options: RegistrySourceOptions,
): Promise<{ resolved: ResolvedImage[]; failed: FailedImage[]; subjects: number }> {
  const seen = new Set<string>();
  const resolved: ResolvedImage[] = [];
  const failed: FailedImage[] = [];
  let subjects = 0;
  let frontier = images;
  for (let depth = 0; depth < REFERRER_DEPTH && frontier.length > 0; depth++) {
    const lookup = await lookUpReferrers(referrerSubjects(frontier), options.client, seen, {
      concurrency: SIGNATURE_LOOKUPS,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    subjects += lookup.subjects;
    const found = await resolveAll(lookup.requests, run, journal, options, { concurrency: SIGNATURE_LOOKUPS });
    resolved.push(...found.resolved);
    failed.push(...lookup.failed, ...found.failed);
    frontier = found.resolved;
  }
  if (subjects > 0) options.logger.child({ component: 'coordinator:resolve' }).info({ subjects, found: resolved.length, failed: failed.length }, 'referrers');
  return { resolved, failed, subjects };
}

/** What became of the release payloads' signatures. */
export function releaseSignatureCounts(images: ResolvedImage[], failed: FailedImage[]): ReleaseSignatureCounts {
  const signed = images.filter((i) => i.releaseSignatures !== undefined);
  return {
    releases: signed.length,
    signatures: signed.reduce((n, i) => n + (i.releaseSignatures?.length ?? 0), 0),
    missing: failed.filter((f) => f.code === 'MM_SIGNATURE_MISSING').length,
    invalid: failed.filter((f) => f.code === 'MM_SIGNATURE_INVALID').length,
  };
}

/** Release signature stores asked at once. */
const SIGNATURE_FETCHES = 4;

/** Each release payload of `images` with its verified signatures; the ones without become failures naming why. */
async function withReleaseSignatures(images: ResolvedImage[], options: RegistrySourceOptions): Promise<{ images: ResolvedImage[]; failed: FailedImage[] }> {
  const { sources, signal } = options;
  const store = await openReleaseSignatureStore({
    ...(sources.signatureUrl === undefined ? {} : { baseUrl: sources.signatureUrl }),
    ...(sources.signatureKeys === undefined ? {} : { armoredKeys: sources.signatureKeys }),
    tlsVerify: sources.tlsVerify,
    ...(sources.retry === undefined ? {} : { retry: sources.retry }),
    logger: options.logger,
  });
  const log = options.logger.child({ component: 'coordinator:resolve' });
  const limit = pLimit(SIGNATURE_FETCHES);
  try {
    const failed: FailedImage[] = [];
    const kept = await Promise.all(
      images.map((image) =>
        image.role !== 'release-payload'
          ? Promise.resolve(image)
          : limit(async (): Promise<ResolvedImage | undefined> => {
              try {
                const signatures = await store.signaturesOf(image.descriptor.digest, image.targetTag ?? image.source, signal === undefined ? {} : { signal });
                return { ...image, releaseSignatures: signatures };
              } catch (err) {
                if (signal?.aborted === true) throw err;
                log.error({ image: image.source, code: errorCode(err), err: describeError(err) }, 'release signatures');
                failed.push({ ...image, digest: image.descriptor.digest, code: errorCode(err), reason: describeError(err) });
                return undefined;
              }
            }),
      ),
    );
    return { images: kept.filter((i) => i !== undefined), failed };
  } finally {
    await store.close();
  }
}

/**
 * Resolves the images, `manifestLookups` at once. With `absentIsNormal`, an image the registry does
 * not have (a signature nobody made) is counted in `absent` instead of failing.
 */
async function resolveAll(
  requested: RequestedImage[],
  run: RunRecord,
  journal: RunJournal,
  options: RegistrySourceOptions,
  { absentIsNormal = false, concurrency = options.manifestLookups }: { absentIsNormal?: boolean; concurrency?: number } = {},
): Promise<{ resolved: ResolvedImage[]; failed: FailedImage[]; absent: number }> {
  const limit = pLimit(concurrency);
  const architectures = options.config.mirror.platform?.architectures;
  const log = options.logger.child({ component: 'coordinator:resolve' });
  const results = await Promise.all(
    requested.map((image) =>
      limit(async (): Promise<ResolvedImage | FailedImage | undefined> => {
        throwIfAborted(options.signal);
        // A tag resolved earlier in an unfinished run stays pinned to that digest.
        const pinned = image.ref.digest === undefined ? await journal.pinnedDigest(run, image.source) : undefined;
        const toResolve = pinned === undefined ? image : { ...image, ref: { ...image.ref, digest: pinned } };
        try {
          const resolved = await resolveImage(toResolve, {
            client: options.client,
            // The item's own platforms first. Operator images are otherwise mirrored with every platform,
            // as oc-mirror v2 does: a catalog names them by digest, and an index cut down to some
            // platforms cannot be pushed by digest.
            ...(image.platformFilter !== undefined
              ? { platforms: image.platformFilter }
              : architectures === undefined || image.kind === 'operator'
                ? {}
                : { platforms: architectures }),
            ...(options.signal === undefined ? {} : { signal: options.signal }),
          });
          const result: ResolvedImage = { ...resolved, ref: image.ref };
          if (image.ref.digest === undefined && pinned === undefined) await journal.pin(run, image.source, result.descriptor.digest);
          return result;
        } catch (err) {
          if (options.signal?.aborted === true) throw err;
          if (absentIsNormal && err instanceof RegistryError && err.status === 404) return undefined;
          log.warn({ image: image.source, code: errorCode(err), err: describeError(err) }, 'image could not be resolved');
          return { ...image, code: errorCode(err), reason: describeError(err) };
        }
      }),
    ),
  );
  const resolved: ResolvedImage[] = [];
  const failed: FailedImage[] = [];
  let absent = 0;
  for (const r of results) {
    if (r === undefined) absent += 1;
    else ('descriptor' in r ? resolved : failed).push(r as never);
  }
  return { resolved, failed, absent };
}
