/**
 * The image manifest of one platform: the manifest itself for a single-platform image, else the
 * child an index lists for the platform `choose` picks (a release payload, the graph base image).
 */
import {
  manifestReference,
  MeshmirrorError,
  parseManifest,
  type AbortOptions,
  type Descriptor,
  type Digest,
  type ImageManifest,
  type ImageReference,
  type RegistryClient,
} from '@meshmirror/shared';

export async function platformManifest(
  client: RegistryClient,
  ref: ImageReference,
  where: string,
  choose: (children: Descriptor[]) => Descriptor | undefined,
  options: AbortOptions = {},
): Promise<{ manifest: ImageManifest; mediaType: string; topDigest: Digest }> {
  const location = { registry: ref.registry, repository: ref.repository };
  const top = await client.getManifest(location, manifestReference(ref), options);
  let parsed = parseManifest(top.bytes, top.mediaType, where);
  if (parsed.kind === 'index') {
    const child = choose(parsed.index.manifests);
    if (child === undefined) {
      const has = parsed.index.manifests.map((m) => `${m.platform?.os ?? '?'}/${m.platform?.architecture ?? '?'}`).join(', ');
      throw new MeshmirrorError('MM_NOT_FOUND', `${where}: no suitable platform in its index (has ${has || 'nothing'})`);
    }
    const fetched = await client.getManifest(location, child.digest, options);
    parsed = parseManifest(fetched.bytes, fetched.mediaType, where);
    if (parsed.kind !== 'image') throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: nested index is not supported`);
  }
  return { manifest: parsed.manifest, mediaType: parsed.mediaType, topDigest: top.digest };
}
