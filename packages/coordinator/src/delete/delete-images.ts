/**
 * `meshmirror delete --delete-yaml-file FILE docker://HOST[/PREFIX]`: the second step of oc-mirror's
 * delete workflow. Every item must lie under the destination (else nothing at all is deleted). Per
 * item the manifest is read by its reference and deleted by the digest of its bytes
 * (`DELETE /v2/<name>/manifests/<digest>`), which removes it with all its tags, as containers/image
 * does for oc-mirror. What stays is worked out first (`delete-plan.ts`): the tags of each repository
 * that the list does not name keep their manifests, and an index's children go with it only when
 * nothing kept uses them. What referred to a deleted manifest (OCI referrers: signatures, SBOMs)
 * goes after it, with the `sha256-<hex>` tag index that listed it. Blobs are never deleted: the
 * registry's garbage collector frees those no manifest needs any more. An item that fails is
 * reported and the others carry on; a manifest already gone counts as deleted, so the same command
 * can simply be run again.
 */
import pLimit from 'p-limit';
import {
  asErrorCode,
  deleteItemTarget,
  describeError,
  errorCode,
  formatDuration,
  isIndexMediaType,
  MeshmirrorError,
  parseManifest,
  referrersTag,
  RegistryError,
  throwIfAborted,
  type DeleteImageItem,
  type DeleteImageList,
  type DeleteImageType,
  type Digest,
  type FetchedManifest,
  type Logger,
  type ManifestDeletion,
  type RegistryDeleteClient,
  type RepositoryLocation,
} from '@meshmirror/shared';
import type { ImageKind } from '../resolve/image-set.ts';
import { withMaxNestedPaths, type PushDestination } from '../push/push-targets.ts';
import { kindOfDeleteType } from './delete-items.ts';
import { planDeletes, type FoundItem, type ItemDecision, type KeptTag } from './delete-plan.ts';

export interface DeleteImagesOptions {
  list: DeleteImageList;
  /** The list's file, for the summary. */
  file: string;
  destination: PushDestination;
  client: RegistryDeleteClient;
  logger: Logger;
  signal?: AbortSignal;
}

/** `deleted` now, `absent` already (a re-run, or never pushed), `kept` because an image that stays needs it, or `failed`. */
export type DeleteItemState = 'deleted' | 'absent' | 'kept' | 'failed';

export interface DeleteItemOutcome {
  imageReference: string;
  imageName: string;
  type: DeleteImageType;
  kind: ImageKind;
  state: DeleteItemState;
  /** The manifest the reference named. */
  digest?: Digest;
  /** An index's children deleted with it, and those left because a kept image uses them. */
  children?: { deleted: number; kept: number };
  /**
   * Manifests that referred to what was deleted (signatures, SBOMs, attestations: OCI referrers, and
   * theirs) deleted after it, with the `sha256-<hex>` tag indexes that listed them.
   */
  referrers?: number;
  /** `kept`: the tag that stays and needs the same manifest. */
  keptBy?: string;
  code?: string;
  reason?: string;
}

export interface DeleteSummary {
  mode: 'delete';
  file: string;
  destination: string;
  items: Record<DeleteItemState, number> & { total: number };
  /** Manifest DELETEs the registry accepted (tops and children). */
  manifestsDeleted: number;
  outcomes: DeleteItemOutcome[];
  durationMs: number;
}

/** Manifest reads at once (small GETs). */
const LOOKUPS = 16;
/** Manifest DELETEs at once. */
const DELETES = 8;
/** Index levels followed below a top manifest (an index of indexes is rare; deeper is not seen). */
const MAX_INDEX_DEPTH = 3;
/** Referrers of referrers followed (a signature of an SBOM of the image); deeper is not seen. */
const MAX_REFERRER_DEPTH = 3;
/** A referrers tag index (`sha256-<hex>`, the referrers tag schema): it only lists its subject's referrers. */
const REFERRERS_TAG_RE = /^sha256-[0-9a-f]{64}$/;

/**
 * Whether a repository lies under the destination: `PREFIX/…`, or with `--max-nested-paths` the
 * flattened form a push gave it (`a/b-c-…` for prefix `a/b/c` and 2).
 */
export function underDestination(repository: string, destination: PushDestination): boolean {
  if (destination.prefix === '') return true;
  if (repository.startsWith(`${destination.prefix}/`)) return true;
  const flattened = withMaxNestedPaths(`${destination.prefix}/x`, destination.maxNestedPaths);
  return repository.startsWith(flattened.slice(0, -1));
}

/** The items that do not lie under the destination: a delete refuses the whole list when there is one. */
export function itemsOutsideDestination(items: readonly DeleteImageItem[], destination: PushDestination): DeleteImageItem[] {
  return items.filter((item) => {
    const ref = deleteItemTarget(item);
    return ref.registry.toLowerCase() !== destination.registry.toLowerCase() || !underDestination(ref.repository, destination);
  });
}

export async function deleteImages(options: DeleteImagesOptions): Promise<DeleteSummary> {
  const started = Date.now();
  const { list, destination, client, signal } = options;
  const target = `docker://${destination.registry}${destination.prefix === '' ? '' : `/${destination.prefix}`}`;
  const outside = itemsOutsideDestination(list.items, destination);
  if (outside.length > 0) {
    const named = outside.slice(0, 5).map((i) => i.imageReference);
    throw new MeshmirrorError(
      'MM_USAGE',
      `${options.file}: ${outside.length === 1 ? '1 item does' : `${outside.length} items do`} not lie under ${target}, so nothing was deleted: ${named.join(', ')}${outside.length > 5 ? ', …' : ''}`,
      { data: { outside: outside.map((i) => i.imageReference) } },
    );
  }
  const log = options.logger.child({ component: 'coordinator:delete' });
  const abortable = signal === undefined ? {} : { signal };
  const outcomes: DeleteItemOutcome[] = list.items.map((item) => ({
    imageReference: item.imageReference,
    imageName: item.imageName,
    type: item.type,
    kind: kindOfDeleteType(item.type),
    state: 'failed',
  }));
  const fail = (id: number, err: unknown, context = ''): void => {
    if (signal?.aborted === true) throw err;
    Object.assign(outcomes[id]!, { state: 'failed', code: errorCode(err), reason: `${context}${describeError(err)}` });
    log.warn({ image: outcomes[id]!.imageReference, code: errorCode(err), err: describeError(err) }, 'delete failed');
  };

  const lookups = pLimit(LOOKUPS);
  const trees = new ManifestTrees(client, lookups, abortable);
  const byRepository = new Map<string, number[]>();
  list.items.forEach((item, id) => {
    const { repository } = deleteItemTarget(item);
    byRepository.set(repository, [...(byRepository.get(repository) ?? []), id]);
  });

  // What each item names and what each repository keeps.
  const found: FoundItem[] = [];
  const kept: KeptTag[] = [];
  await Promise.all(
    [...byRepository].map(async ([repository, ids]) => {
      const location = { registry: destination.registry, repository };
      const listedTags = new Set(ids.flatMap((id) => deleteItemTarget(list.items[id]!).tag ?? []));
      const inRepository: FoundItem[] = [];
      await Promise.all(
        ids.map(async (id) => {
          const ref = deleteItemTarget(list.items[id]!);
          try {
            const tree = await trees.read(location, ref.digest ?? ref.tag ?? 'latest');
            if (tree === undefined) Object.assign(outcomes[id]!, { state: 'absent' });
            else inRepository.push({ id, repository, digest: tree.digest, children: tree.children });
          } catch (err) {
            fail(id, err);
          }
        }),
      );
      if (inRepository.length === 0) return;
      try {
        const tags = await lookups(() => client.listTags(location, abortable));
        // A referrers tag index keeps nothing: it goes with its subject, and stays with it.
        const keptHere = await Promise.all(
          tags
            .filter((tag) => !listedTags.has(tag) && !REFERRERS_TAG_RE.test(tag))
            .map(async (tag) => {
              try {
                const tree = await trees.read(location, tag);
                return tree === undefined ? [] : [{ repository, tag, digest: tree.digest, children: tree.children }];
              } catch (err) {
                throw new MeshmirrorError(asErrorCode(errorCode(err)), `tag ${tag}, which stays: ${describeError(err)}`, { cause: err });
              }
            }),
        );
        kept.push(...keptHere.flat());
        found.push(...inRepository);
      } catch (err) {
        // Without every tag that stays, a delete could take a manifest one of them needs: none here.
        for (const item of inRepository) fail(item.id, err, `nothing deleted in ${repository}: what stays there could not be read: `);
      }
    }),
  );
  throwIfAborted(signal);

  const decisions = planDeletes(found, kept);

  // The referrers of everything each item deletes, found before anything goes (a registry may stop
  // listing a subject's referrers once it is gone). An item whose referrers cannot be listed is
  // left whole, to be retried, rather than leaving referrers no one can find again.
  const referrersOf = new Map<number, Digest[]>();
  await Promise.all(
    found.map(async (item) => {
      const decision = decisions.get(item.id) as ItemDecision;
      if (decision.action === 'keep') return;
      try {
        referrersOf.set(item.id, await trees.referrers({ registry: destination.registry, repository: item.repository }, [item.digest, ...decision.children]));
      } catch (err) {
        fail(item.id, err, 'nothing deleted: its referrers could not be listed: ');
      }
    }),
  );
  throwIfAborted(signal);

  const deletes = pLimit(DELETES);
  const deletions = new Map<string, Promise<ManifestDeletion>>();
  /** One DELETE per (repository, digest), however many items name it. */
  const deleteOnce = (repository: string, digest: Digest): Promise<ManifestDeletion> => {
    const key = `${repository} ${digest}`;
    let deletion = deletions.get(key);
    if (deletion === undefined) {
      deletion = deletes(() => client.deleteManifest({ registry: destination.registry, repository }, digest, abortable));
      deletions.set(key, deletion);
    }
    return deletion;
  };
  let manifestsDeleted = 0;
  const counted = new Set<string>();
  const count = (repository: string, digest: Digest, result: ManifestDeletion): void => {
    const key = `${repository} ${digest}`;
    if (result === 'deleted' && !counted.has(key)) {
      counted.add(key);
      manifestsDeleted += 1;
    }
  };

  // Every listed manifest first, then the children of the indexes that went: an index never
  // outlives its children, and a child is deleted only once nothing (listed) names it any more.
  const tops = found.map(async (item) => {
    const decision = decisions.get(item.id) as ItemDecision;
    const outcome = outcomes[item.id]!;
    outcome.digest = item.digest;
    if (decision.action === 'keep') {
      Object.assign(outcome, { state: 'kept', keptBy: decision.keptBy });
      return undefined;
    }
    if (!referrersOf.has(item.id)) return undefined;
    try {
      const result = await deleteOnce(item.repository, item.digest);
      count(item.repository, item.digest, result);
      outcome.state = result;
      return { item, decision };
    } catch (err) {
      fail(item.id, err);
      return undefined;
    }
  });
  const gone = (await Promise.all(tops)).filter((t) => t !== undefined);
  await Promise.all(
    gone.map(async ({ item, decision }) => {
      /** Deletes `digests` in order; how many went, or undefined once one failed (the item is failed with `what`). */
      const deleteAll = async (digests: Digest[], what: string): Promise<number | undefined> => {
        let deleted = 0;
        for (const digest of digests) {
          try {
            const result = await deleteOnce(item.repository, digest);
            count(item.repository, digest, result);
            if (result === 'deleted') deleted += 1;
          } catch (err) {
            fail(item.id, err, `${item.digest} deleted, but ${what} ${digest} not: `);
            return undefined;
          }
        }
        return deleted;
      };
      if (decision.children.length > 0 || decision.keptChildren > 0) {
        // Parents before their children: a nested index goes before what it lists.
        const deleted = await deleteAll(decision.children, 'its child manifest');
        if (deleted === undefined) return;
        outcomes[item.id]!.children = { deleted, kept: decision.keptChildren };
      }
      // Then what referred to them, and the tag indexes that listed it: nothing is left that names a manifest gone.
      const referrers = referrersOf.get(item.id) ?? [];
      if (referrers.length === 0) return;
      const deleted = await deleteAll(referrers, 'the manifest that referred to it,');
      if (deleted !== undefined) outcomes[item.id]!.referrers = deleted;
    }),
  );
  throwIfAborted(signal);

  const items = { total: outcomes.length, deleted: 0, absent: 0, kept: 0, failed: 0 };
  for (const o of outcomes) items[o.state] += 1;
  log.info({ ...items, manifestsDeleted }, 'delete finished');
  return { mode: 'delete', file: options.file, destination: target, items, manifestsDeleted, outcomes, durationMs: Date.now() - started };
}

/** A manifest as the registry holds it: its digest and, for an index, every manifest under it (parents first). */
interface ManifestTree {
  digest: Digest;
  children: Digest[];
}

/** Reads manifests and the indexes under them, each (repository, reference) once. */
class ManifestTrees {
  readonly #client: RegistryDeleteClient;
  readonly #limit: ReturnType<typeof pLimit>;
  readonly #abortable: { signal?: AbortSignal };
  readonly #read = new Map<string, Promise<ManifestTree | undefined>>();

  constructor(client: RegistryDeleteClient, limit: ReturnType<typeof pLimit>, abortable: { signal?: AbortSignal }) {
    this.#client = client;
    this.#limit = limit;
    this.#abortable = abortable;
  }

  /** undefined when the registry does not have it (404). */
  read(location: RepositoryLocation, reference: string, depth = 0): Promise<ManifestTree | undefined> {
    const key = `${location.repository} ${reference}`;
    let tree = this.#read.get(key);
    if (tree === undefined) {
      tree = this.#readTree(location, reference, depth);
      this.#read.set(key, tree);
    }
    return tree;
  }

  /**
   * The manifests to delete after `subjects`: each subject's referrers with what is under them, the
   * referrers of those in turn, and each `sha256-<hex>` tag index that listed them (a registry
   * without the referrers API); referrers before their tag index, each once.
   */
  async referrers(location: RepositoryLocation, subjects: Digest[]): Promise<Digest[]> {
    const out: Digest[] = [];
    const seen = new Set<Digest>(subjects);
    let frontier = subjects;
    for (let depth = 0; depth < MAX_REFERRER_DEPTH && frontier.length > 0; depth++) {
      // A level's lookups go at once (within the lookups' limit); what they found is taken in subject order.
      const levels = await Promise.all(
        frontier.map(async (subject) => {
          const found = await this.#limit(() => this.#client.getReferrers(location, subject, this.#abortable));
          const [referrers, index] = await Promise.all([
            Promise.all(found.manifests.map(async (referrer) => ({ digest: referrer.digest, tree: await this.read(location, referrer.digest) }))),
            found.via === 'tag' ? this.read(location, referrersTag(subject)) : Promise.resolve(undefined),
          ]);
          return { referrers, index };
        }),
      );
      const next: Digest[] = [];
      for (const { referrers, index } of levels) {
        for (const { digest: referrer, tree } of referrers) {
          // Listed but gone already (a re-run): nothing to delete, nor anything under it.
          if (seen.has(referrer) || tree === undefined) continue;
          for (const digest of [tree.digest, ...tree.children]) {
            if (seen.has(digest)) continue;
            seen.add(digest);
            out.push(digest);
          }
          next.push(referrer);
        }
        if (index !== undefined && !seen.has(index.digest)) {
          seen.add(index.digest);
          out.push(index.digest);
        }
      }
      frontier = next;
    }
    return out;
  }

  async #readTree(location: RepositoryLocation, reference: string, depth: number): Promise<ManifestTree | undefined> {
    let manifest: FetchedManifest;
    try {
      manifest = await this.#limit(() => this.#client.getManifest(location, reference, this.#abortable));
    } catch (err) {
      if (err instanceof RegistryError && err.status === 404) return undefined;
      throw err;
    }
    const parsed = parseManifest(manifest.bytes, manifest.mediaType, `${location.registry}/${location.repository}@${manifest.digest}`);
    if (parsed.kind !== 'index') return { digest: manifest.digest, children: [] };
    const children: Digest[] = [];
    for (const child of parsed.index.manifests) {
      children.push(child.digest);
      if (!isIndexMediaType(child.mediaType) || depth + 1 >= MAX_INDEX_DEPTH) continue;
      const below = await this.read(location, child.digest, depth + 1);
      if (below !== undefined) children.push(...below.children);
    }
    return { digest: manifest.digest, children: [...new Set(children)] };
  }
}

const STATE_WORDS: Record<DeleteItemState, string> = { deleted: 'deleted', absent: 'already gone', kept: 'kept', failed: 'FAILED' };

/** The delete step's summary a person reads: one line per item, then what to do about blobs. */
export function deleteSummaryText(s: DeleteSummary): string {
  const { items } = s;
  const lines = [
    `delete from ${s.destination} (${s.file}) finished in ${formatDuration(s.durationMs)}: ${items.total} items, ${items.deleted} deleted, ` +
      `${items.absent} already gone, ${items.kept} kept, ${items.failed} failed; ${s.manifestsDeleted} manifests deleted`,
  ];
  for (const o of s.outcomes) {
    let detail = '';
    if (o.state === 'kept') detail = `: its manifest ${o.digest ?? ''} is also ${o.keptBy ?? ''}'s, which stays`;
    else if (o.state === 'failed') detail = `: ${o.reason ?? o.code ?? ''}`;
    else {
      const parts = [
        ...(o.children === undefined
          ? []
          : [`${o.children.deleted} child manifests${o.children.kept > 0 ? `; ${o.children.kept} kept, used by images that stay` : ''}`]),
        ...(o.referrers === undefined ? [] : [`${o.referrers} referrers (signatures, SBOMs) and their tag indexes`]),
      ];
      if (parts.length > 0) detail = ` (with ${parts.join('; ')})`;
    }
    lines.push(`  ${STATE_WORDS[o.state]}: ${o.imageReference}${detail}`);
  }
  if (items.failed > 0) lines.push('  run the same command again to retry the failed items; what is gone already is reported as such.');
  if (items.deleted > 0) {
    lines.push(
      "  blobs are not deleted: run the registry's garbage collector to free them (distribution: registry garbage-collect CONFIG, registry stopped or read-only)",
    );
  }
  return lines.join('\n');
}
