/**
 * An archive as an image source (disk to mirror): the images a mirror run archived, read from its
 * chunks. The release and catalog content comes from `run.json` (the graph and the catalogs are not
 * reachable from here), the additional images from the configuration. Each image's manifests are
 * read and checked against their digests, and every blob they name must be in the archive.
 */
import {
  describeError,
  errorCode,
  MeshmirrorError,
  parseImageReference,
  walkImage,
  type Digest,
  type ImageReference,
  type ImageSetConfig,
  type Logger,
  type RunMetadata,
} from '@meshmirror/shared';
import type { ArchiveReader } from '@meshmirror/agent';
import { isAttachedRole, type FailedImage, type RequestedImage, type ResolvedImage, type ResolvedManifest } from '../resolve/image-set.ts';
import { requestedImages } from '../resolve/requested-images.ts';
import { releaseSignatureCounts, type ImageSource } from '../run/image-source.ts';

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export function archiveSource(
  reader: ArchiveReader,
  config: ImageSetConfig,
  options: { logger: Logger; signal?: AbortSignal; /** `--remove-signatures`: the archive's signatures stay behind. */ removeSignatures?: boolean },
): ImageSource {
  return {
    images: async () => {
      const { signal } = options;
      const log = options.logger.child({ component: 'coordinator:archive-source' });
      const metadata = await reader.runMetadata();
      const entries = await reader.images();
      const archived = new Map(entries.filter((e) => e.name !== undefined).map((e) => [e.name as string, e.descriptor]));
      const described = new Map(metadata.images.flatMap((i) => (i.status === 'archived' ? [[i.source, i] as const] : [])));
      // A differential archive leaves out the blobs its receipt's target holds; the push finds them there.
      const elsewhere = new Set(metadata.differential?.omitted.map((b) => b.digest));

      const { images: requested, blocked } = requestedImages(config, resolvedContentOf(metadata, options.removeSignatures === true));
      const images: ResolvedImage[] = [];
      const failed: FailedImage[] = [];
      for (const image of requested) {
        const descriptor = archived.get(image.source);
        if (descriptor === undefined) {
          failed.push({
            ...image,
            code: 'MM_NOT_FOUND',
            reason: `not in the archive in ${reader.dir} (mirror it to disk first, with the same configuration)`,
          });
          continue;
        }
        // Images whose index lost platforms to the architecture filter at mirror time.
        const platforms = described.get(image.source)?.platforms ?? [];
        const skippedPlatforms = described.get(image.source)?.skippedPlatforms ?? [];
        try {
          const parts = await readImage(reader, image.source, descriptor.digest, skippedPlatforms.length > 0, elsewhere, signal);
          const signatures = options.removeSignatures === true ? undefined : described.get(image.source)?.releaseSignatures;
          images.push({
            ...image,
            descriptor,
            ...parts,
            platforms,
            skippedPlatforms,
            ...(signatures === undefined ? {} : { releaseSignatures: signatures.map((b) => new Uint8Array(Buffer.from(b, 'base64'))) }),
          });
        } catch (err) {
          if (signal?.aborted === true) throw err;
          log.warn({ image: image.source, code: errorCode(err), err: describeError(err) }, 'image refused');
          failed.push({ ...image, digest: descriptor.digest, code: errorCode(err), reason: describeError(err) });
        }
      }
      const found = images.filter((i) => i.role === 'signature').length;
      return {
        requested: requested.length,
        blocked,
        images,
        failed,
        signatures: {
          sigstore: { found, missing: 0, failed: failed.filter((f) => f.role === 'signature').length },
          release: releaseSignatureCounts(images, []),
          referrers: { found: images.filter((i) => i.role === 'referrer').length, failed: failed.filter((f) => f.role === 'referrer').length },
        },
      };
    },
  };
}

/**
 * Reads an image's manifests from the archive (each checked against its digest) and lists the
 * blobs they name; every one must be in the archive (or, in a differential archive, among those its
 * receipt's target holds). A child of an index that mirror to disk left
 * out by the architecture filter is skipped.
 */
async function readImage(
  reader: ArchiveReader,
  source: string,
  digest: Digest,
  platformsFiltered: boolean,
  elsewhere: ReadonlySet<Digest>,
  signal: AbortSignal | undefined,
): Promise<Pick<ResolvedImage, 'manifests' | 'blobs'>> {
  const top = await readManifest(reader, digest, source, signal);
  const walked = await walkImage(top, source, {
    child: async (child, where) => {
      if (reader.locateBlob(child.digest) === undefined) {
        if (platformsFiltered) return undefined;
        const at = reader.locateBlob(digest);
        throw new MeshmirrorError(
          'MM_ARCHIVE_INVALID',
          `${at === undefined ? source : `${at.file} entry ${at.entry}`}: the index of ${source} names manifest ${child.digest}, which is not in the archive`,
        );
      }
      return await readManifest(reader, child.digest, where, signal, child.mediaType);
    },
    onBlob: (d, owner) => {
      const located = reader.locateBlob(d.digest);
      if (located !== undefined && located.size === d.size) return;
      if (located === undefined && elsewhere.has(d.digest)) return;
      const at = reader.locateBlob(owner.manifest.digest);
      const why = located === undefined ? 'which is not in the archive' : `but the archive holds ${located.size} bytes for it`;
      throw new MeshmirrorError(
        'MM_ARCHIVE_INVALID',
        `${at === undefined ? owner.where : `${at.file} entry ${at.entry}`}: the manifest of ${owner.where} names blob ${d.digest} (${d.size} bytes), ${why}`,
        { data: { digest: d.digest, ...(at === undefined ? {} : { file: at.file, entry: at.entry }) } },
      );
    },
  });
  return { manifests: [top, ...walked.children.map((c) => c.manifest)], blobs: walked.blobs };
}

async function readManifest(reader: ArchiveReader, digest: Digest, what: string, signal: AbortSignal | undefined, mediaTypeHint?: string): Promise<ResolvedManifest> {
  const size = await reader.blobSize(digest);
  if (size === undefined) {
    const last = reader.chunks[reader.chunks.length - 1]?.file ?? 'the last chunk';
    throw new MeshmirrorError('MM_ARCHIVE_INVALID', `${last} entry index.json: names manifest ${digest} of ${what}, which is not in the archive`);
  }
  if (size > MAX_MANIFEST_BYTES) throw new MeshmirrorError('MM_MANIFEST_INVALID', `manifest ${digest} of ${what} is ${size} bytes, more than a manifest may be`);
  // A whole-blob read is checked against the digest as it streams.
  const stream = await reader.openBlob(digest, signal === undefined ? {} : { signal });
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  return { digest, mediaType: mediaTypeOf(bytes, mediaTypeHint), bytes };
}

function mediaTypeOf(bytes: Buffer, hint: string | undefined): string {
  try {
    const json = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
    if (typeof json.mediaType === 'string') return json.mediaType;
  } catch {
    // parseManifest reports it with the image's name.
  }
  return hint ?? 'application/vnd.oci.image.manifest.v1+json';
}

/**
 * From `run.json`: the release and operator images the mirror run archived, with their targets, and
 * the signatures it found. Additional images are not taken from here: the configuration names them.
 */
function resolvedContentOf(metadata: RunMetadata, removeSignatures: boolean): RequestedImage[] {
  const out: RequestedImage[] = [];
  for (const image of metadata.images) {
    if (image.status !== 'archived') continue;
    if (isAttachedRole(image.role) ? removeSignatures : image.kind === 'additional') continue;
    let ref: ImageReference;
    try {
      ref = parseImageReference(image.source);
    } catch {
      continue; // not an image the archive could hold
    }
    const { source, kind, origin, role, targetRepo, targetTag } = image;
    out.push({
      kind,
      source,
      ref,
      origin,
      ...(role === undefined ? {} : { role }),
      ...(targetRepo === undefined ? {} : { targetRepo }),
      ...(targetTag === undefined ? {} : { targetTag }),
    });
  }
  return out;
}
