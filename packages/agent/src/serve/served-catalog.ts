/**
 * The repositories and tags `meshmirror serve` answers for, from the folder's `index.json` names
 * (and, for a meshmirror archive, what `meshmirror/run.json` says of each image). Built at start-up
 * without reading any manifest.
 *
 * Naming, one rule with the push (`mirroredName` in shared):
 * - a name that is an image reference (`quay.io/team/app:1.0`, `sample/app:1.0`) is served under
 *   the repository and tag a push of the archive would give it: `team/app:1.0`; the run's
 *   `targetRepo`/`targetTag` win, an image named only by digest is tagged with the digest's hex,
 *   and a referrer has no tag;
 * - a name that is a bare tag (`1.0`, `latest`: what skopeo, buildah, umoci and oras write) is a
 *   tag of the folder's own repository, named by `--repository` or else after the folder;
 * - an entry without a name is served by digest in the folder's repository, and, when it refers to
 *   a subject (a signature, an SBOM), in every repository that holds the subject.
 * A name with a registry host whose host is a valid repository path component (`quay.io`, not
 * `127.0.0.1:5000`) is also answered as `<host>/<repository>`, for clients whose mirror
 * configuration keeps the source host; such aliases are not listed in `_catalog`.
 */
import { basename } from 'node:path';
import {
  describeError,
  MeshmirrorError,
  mirroredName,
  parseImageReference,
  type ArchivedRunImage,
  type Descriptor,
  type Digest,
  type FolderImage,
  type ImageReference,
  type Logger,
  type RunImage,
} from '@meshmirror/shared';

/** A tag, as the distribution spec allows it. */
export const TAG_RE = /^[\w][\w.-]{0,127}$/;
/** A repository name, as the distribution spec allows it: lower-case path components. */
export const REPOSITORY_NAME_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const MAX_REPOSITORY_NAME_LENGTH = 255;
/** The folder repository when the folder's name gives nothing usable. */
const FALLBACK_FOLDER_REPOSITORY = 'image';

export interface ServedRepository {
  name: string;
  /** Tag → top-level manifest (or index) descriptor. */
  tags: Map<string, Descriptor>;
  /** Every top-level manifest served here, tagged or not: what the repository's content is found from. */
  roots: Map<Digest, Descriptor>;
}

export interface ServedCatalog {
  /** By name; the names `_catalog` lists. */
  repositories: Map<string, ServedRepository>;
  /** `<registry host>/<repository>` → repository name. */
  aliases: Map<string, string>;
  /** Entries without a name (or with one that is no reference): served also where their subject is. */
  unnamed: Descriptor[];
  /** The repository of bare tags and unnamed entries. */
  folderRepository: string;
  /**
   * Top-level indexes whose platforms were filtered at mirror time (run.json's `skippedPlatforms`):
   * the archive holds them sparse, and a tag serves them as the index of the platforms held.
   */
  sparseIndexes: Set<Digest>;
}

/** The repository a name in a request means, through an alias or not. */
export function findRepository(catalog: ServedCatalog, name: string): ServedRepository | undefined {
  return catalog.repositories.get(name) ?? catalog.repositories.get(catalog.aliases.get(name) ?? '');
}

/** True for a valid repository name (the spec's grammar, at most 255 characters). */
export function isRepositoryName(name: string): boolean {
  return name.length <= MAX_REPOSITORY_NAME_LENGTH && REPOSITORY_NAME_RE.test(name);
}

/**
 * The folder's repository: `repository` when given (checked), else the folder's name made into a
 * repository name (`My Images` → `my-images`).
 */
export function folderRepositoryName(dir: string, repository?: string): string {
  if (repository !== undefined) {
    if (!isRepositoryName(repository)) {
      throw new MeshmirrorError(
        'MM_USAGE',
        `--repository "${repository}" is not a repository name (lower-case letters, digits and . _ - separators, / between components)`,
      );
    }
    return repository;
  }
  const derived = basename(dir)
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return isRepositoryName(derived) ? derived : FALLBACK_FOLDER_REPOSITORY;
}

export interface BuildCatalogOptions {
  images: FolderImage[];
  /** The images of a meshmirror archive's run.json (or an extracted one's), for roles and target names. */
  runImages?: readonly RunImage[];
  folderRepository: string;
  logger: Logger;
}

export function buildServedCatalog(options: BuildCatalogOptions): ServedCatalog {
  const { logger, folderRepository } = options;
  const catalog: ServedCatalog = { repositories: new Map(), aliases: new Map(), unnamed: [], folderRepository, sparseIndexes: new Set() };
  const runImages = new Map<string, ArchivedRunImage>();
  for (const image of options.runImages ?? []) {
    if (image.status === 'archived') runImages.set(`${image.source}\n${image.digest}`, image);
  }
  const aliasClaims = new Map<string, Set<string>>();

  const repository = (name: string): ServedRepository => {
    let found = catalog.repositories.get(name);
    if (found === undefined) {
      found = { name, tags: new Map(), roots: new Map() };
      catalog.repositories.set(name, found);
    }
    return found;
  };
  const serve = (repositoryName: string, tag: string | undefined, descriptor: Descriptor): void => {
    const served = repository(repositoryName);
    served.roots.set(descriptor.digest, descriptor);
    if (tag === undefined) return;
    const existing = served.tags.get(tag);
    if (existing !== undefined && existing.digest !== descriptor.digest) {
      logger.warn({ repository: repositoryName, tag, kept: existing.digest, ignored: descriptor.digest }, 'two index.json entries give one tag; keeping the first');
      return;
    }
    served.tags.set(tag, descriptor);
  };
  const unnamed = (descriptor: Descriptor): void => {
    catalog.unnamed.push(descriptor);
    serve(folderRepository, undefined, descriptor);
  };

  for (const { name, descriptor } of options.images) {
    if (name === undefined) {
      unnamed(descriptor);
      continue;
    }
    const runImage = runImages.get(`${name}\n${descriptor.digest}`);
    if ((runImage?.skippedPlatforms.length ?? 0) > 0) catalog.sparseIndexes.add(descriptor.digest);
    if (runImage === undefined && TAG_RE.test(name)) {
      serve(folderRepository, name, descriptor);
      continue;
    }
    let ref: ImageReference;
    try {
      ref = parseImageReference(name);
    } catch (error) {
      logger.warn({ name, err: describeError(error) }, 'index.json name is neither an image reference nor a tag; the image is served by digest only');
      unnamed(descriptor);
      continue;
    }
    const mirrored = mirroredName(
      {
        ref,
        ...(runImage?.targetRepo === undefined ? {} : { targetRepo: runImage.targetRepo }),
        ...(runImage?.targetTag === undefined ? {} : { targetTag: runImage.targetTag }),
        ...(runImage?.role === undefined ? {} : { role: runImage.role }),
      },
      descriptor.digest,
    );
    if (!isRepositoryName(mirrored.repository)) {
      logger.warn({ name, repository: mirrored.repository }, 'index.json name gives no valid repository name; the image is served by digest only');
      unnamed(descriptor);
      continue;
    }
    serve(mirrored.repository, mirrored.tag, descriptor);
    const alias = `${ref.registry}/${mirrored.repository}`;
    if (isRepositoryName(alias)) aliasClaims.set(alias, (aliasClaims.get(alias) ?? new Set()).add(mirrored.repository));
  }
  // An alias never hides a repository of that name, and one claimed by two repositories answers for neither.
  for (const [alias, owners] of aliasClaims) {
    const [owner] = owners;
    if (owners.size === 1 && owner !== undefined && !catalog.repositories.has(alias)) catalog.aliases.set(alias, owner);
  }
  return catalog;
}
