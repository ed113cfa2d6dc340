/**
 * What each served repository holds: the manifests reachable from its top-level entries (index
 * children included), the configs and layers those manifests name, and the referrers of what it
 * holds. A manifest or blob asked for by digest is served only in a repository that holds it, as a
 * registry would.
 *
 * Found on a repository's first request by digest, not at start-up: an archive can hold thousands
 * of images, and reading every manifest would delay serving for clients that ask for a few. Each
 * manifest is read once (its digest checked while reading) and remembered as a small summary;
 * a failed look-up is not kept, so a later request tries again.
 */
import type { Readable } from 'node:stream';
import pLimit from 'p-limit';
import {
  describeError,
  errorCode,
  parseManifest,
  referrerEntry,
  stripSparseIndex,
  type Descriptor,
  type Digest,
  type ImageFolder,
  type Logger,
} from '@meshmirror/shared';
import type { ServedCatalog, ServedRepository } from './served-catalog.ts';

/** Manifests are read whole; nothing this large is a manifest (distribution refuses above 4 MiB). */
export const MAX_MANIFEST_BYTES = 8 * 1024 * 1024;
/** Manifests read at once while a repository's content is found: archive reads overlap without flooding the disk. */
const READ_CONCURRENCY = 8;

/** What serving needs to know of a manifest without reading it again. */
export interface ManifestSummary {
  digest: Digest;
  size: number;
  mediaType: string;
  /** An index's entries, held here or not (an archive's index can be sparse). */
  children: Descriptor[];
  /** An image manifest's config and layers. */
  blobs: Digest[];
  /** Its subject and its entry in a referrers list, when it refers to another manifest. */
  referrer?: { subject: Digest; descriptor: Descriptor };
}

export interface RepositoryContent {
  manifests: Map<Digest, ManifestSummary>;
  blobs: Set<Digest>;
}

export interface ServedContent {
  /** The summary of a held manifest; undefined when the digest is not held or is not a manifest. */
  summary(digest: Digest, mediaType?: string): Promise<ManifestSummary | undefined>;
  /** Everything `repository` holds. */
  contentOf(repository: ServedRepository): Promise<RepositoryContent>;
  /**
   * What a tag serves: the tagged manifest, or, for an index whose platforms were filtered at mirror
   * time, the index of the platforms held, byte for byte as a push of the archive makes it (the
   * sparse one is still served by its digest).
   */
  tagged(descriptor: Descriptor): Promise<ManifestSummary | undefined>;
  /** A held manifest's bytes (read whole and checked against its digest), or those of an index built by `tagged`. */
  bytesOf(manifest: ManifestSummary): Promise<Buffer>;
}

export function servedContent(folder: ImageFolder, catalog: ServedCatalog, logger: Logger): ServedContent {
  const summaries = new Map<Digest, Promise<ManifestSummary | undefined>>();
  const contents = new Map<string, Promise<RepositoryContent>>();
  /** What each sparse index's tag serves, by the sparse index's digest. */
  const forTags = new Map<Digest, Promise<ManifestSummary | undefined>>();
  /** The indexes of the platforms held that `tagged` built, with their bytes, by their own digest. */
  const built = new Map<Digest, { summary: ManifestSummary; bytes: Buffer }>();

  const summary = (digest: Digest, mediaType?: string): Promise<ManifestSummary | undefined> => {
    const own = built.get(digest);
    if (own !== undefined) return Promise.resolve(own.summary);
    let pending = summaries.get(digest);
    if (pending === undefined) {
      pending = readSummary(folder, digest, mediaType, logger);
      summaries.set(digest, pending);
      pending.catch(() => summaries.delete(digest));
    }
    return pending;
  };

  /** A summary for the content walk: a manifest that cannot be read is left out (and logged) instead of failing the repository. */
  const summaryOrSkip = async (digest: Digest, mediaType: string | undefined): Promise<ManifestSummary | undefined> => {
    try {
      return await summary(digest, mediaType);
    } catch (error) {
      logger.warn({ digest, err: describeError(error), code: errorCode(error) }, 'manifest cannot be read; left out of its repository');
      return undefined;
    }
  };

  /** The index of the platforms `top` has in the folder, built once; `top` itself when it has them all. */
  const heldPlatforms = async (top: ManifestSummary): Promise<ManifestSummary> => {
    const held = await Promise.all(top.children.map(async (child) => (await summaryOrSkip(child.digest, child.mediaType)) !== undefined));
    if (held.every(Boolean)) return top;
    const kept = new Set(top.children.filter((_, i) => held[i]).map((child) => child.digest));
    const index = stripSparseIndex({ digest: top.digest, mediaType: top.mediaType, bytes: await readWhole(await folder.openBlob(top.digest)) }, (child) =>
      kept.has(child),
    );
    if (index === undefined) return top;
    const own: ManifestSummary = {
      digest: index.digest,
      size: index.bytes.byteLength,
      mediaType: index.mediaType,
      children: top.children.filter((child) => kept.has(child.digest)),
      blobs: [],
    };
    built.set(own.digest, { summary: own, bytes: Buffer.from(index.bytes) });
    logger.debug({ sparse: top.digest, served: own.digest, platforms: own.children.length }, 'a tag of an index filtered at mirror time serves the platforms held');
    return own;
  };

  const tagged = (descriptor: Descriptor): Promise<ManifestSummary | undefined> => {
    if (!catalog.sparseIndexes.has(descriptor.digest)) return summary(descriptor.digest, descriptor.mediaType);
    let pending = forTags.get(descriptor.digest);
    if (pending === undefined) {
      pending = summary(descriptor.digest, descriptor.mediaType).then((top) => (top === undefined ? undefined : heldPlatforms(top)));
      forTags.set(descriptor.digest, pending);
      pending.catch(() => forTags.delete(descriptor.digest));
    }
    return pending;
  };

  const build = async (repository: ServedRepository): Promise<RepositoryContent> => {
    const content: RepositoryContent = { manifests: new Map(), blobs: new Set() };
    const limit = pLimit(READ_CONCURRENCY);
    const walk = async (start: Descriptor[]): Promise<void> => {
      let frontier = start;
      while (frontier.length > 0) {
        const fresh = [...new Map(frontier.filter((d) => !content.manifests.has(d.digest)).map((d) => [d.digest, d])).values()];
        const read = await Promise.all(fresh.map((d) => limit(() => summaryOrSkip(d.digest, d.mediaType))));
        frontier = [];
        for (const found of read) {
          if (found === undefined) continue;
          content.manifests.set(found.digest, found);
          for (const blob of found.blobs) content.blobs.add(blob);
          frontier.push(...found.children);
        }
      }
    };
    await walk([...repository.roots.values()]);
    // What a tag serves is held here too, so a client that pulled the tag can ask for it by digest.
    for (const descriptor of repository.tags.values()) {
      if (!catalog.sparseIndexes.has(descriptor.digest)) continue;
      const served = await tagged(descriptor).catch(() => undefined);
      if (served !== undefined) content.manifests.set(served.digest, served);
    }
    // Unnamed referrers belong where their subject is; a referrer of a referrer follows it in.
    for (let added = catalog.unnamed.length > 0; added;) {
      added = false;
      for (const entry of catalog.unnamed) {
        if (content.manifests.has(entry.digest)) continue;
        const found = await summaryOrSkip(entry.digest, entry.mediaType);
        if (found?.referrer === undefined || !content.manifests.has(found.referrer.subject)) continue;
        await walk([entry]);
        added = true;
      }
    }
    logger.debug({ repository: repository.name, manifests: content.manifests.size, blobs: content.blobs.size }, 'repository content found');
    return content;
  };

  return {
    summary,
    tagged,
    async bytesOf(manifest) {
      return built.get(manifest.digest)?.bytes ?? (await readWhole(await folder.openBlob(manifest.digest)));
    },
    contentOf(repository) {
      let pending = contents.get(repository.name);
      if (pending === undefined) {
        pending = build(repository);
        contents.set(repository.name, pending);
        pending.catch(() => contents.delete(repository.name));
      }
      return pending;
    },
  };
}

async function readSummary(folder: ImageFolder, digest: Digest, mediaType: string | undefined, logger: Logger): Promise<ManifestSummary | undefined> {
  const size = await folder.blobSize(digest);
  if (size === undefined || size > MAX_MANIFEST_BYTES) return undefined;
  const bytes = await readWhole(await folder.openBlob(digest));
  let parsed;
  try {
    parsed = parseManifest(bytes, mediaType, digest);
  } catch (error) {
    logger.debug({ digest, err: describeError(error) }, 'blob asked for as a manifest is not one');
    return undefined;
  }
  let referrer: ManifestSummary['referrer'];
  try {
    referrer = referrerEntry({ digest, mediaType: parsed.mediaType, bytes }, digest);
  } catch {
    referrer = undefined;
  }
  return {
    digest,
    size,
    mediaType: parsed.mediaType,
    children: parsed.kind === 'index' ? parsed.index.manifests : [],
    blobs: parsed.kind === 'image' ? [parsed.manifest.config.digest, ...parsed.manifest.layers.map((layer) => layer.digest)] : [],
    ...(referrer === undefined ? {} : { referrer }),
  };
}

/** A whole blob's bytes; for manifests only, which are small. */
export async function readWhole(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}
