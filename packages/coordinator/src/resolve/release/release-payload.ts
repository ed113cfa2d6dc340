/**
 * What a release payload image says about itself: `release-manifests/image-references` (an
 * ImageStream naming every component image by digest) and `release-manifests/release-metadata`
 * (Cincinnati metadata: version, previous versions). Both live in one of the payload's layers,
 * usually the top one; the layers are read top first and the scan stops as soon as both are found,
 * so the payload is never unpacked to disk.
 */
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { formatReference, MeshmirrorError, parseImageReference, type Digest, type ImageReference, type RegistryClient } from '@meshmirror/shared';
import type { LayerSource } from '../layer-source.ts';
import { scanLayer } from '../layer-files.ts';
import { platformManifest } from '../platform-manifest.ts';

const IMAGE_REFERENCES = 'release-manifests/image-references';
const RELEASE_METADATA = 'release-manifests/release-metadata';
/** The installer's CoreOS boot images: ConfigMap `coreos-bootimages`, whose `data.stream` names the KubeVirt container disk. */
const BOOT_IMAGES = 'release-manifests/0000_50_installer_coreos-bootimages.yaml';
/** The release component name of the KubeVirt container disk (oc-mirror's). */
export const KUBEVIRT_COMPONENT = 'kube-virt-container';

const imageStreamSchema = z.object({
  kind: z.literal('ImageStream'),
  apiVersion: z.string().optional(),
  metadata: z.object({ name: z.string().min(1) }).loose(),
  spec: z
    .object({
      tags: z
        .array(
          z
            .object({
              name: z.string().min(1),
              annotations: z.record(z.string(), z.string()).optional(),
              from: z.object({ kind: z.literal('DockerImage'), name: z.string().min(1) }).loose(),
            })
            .loose(),
        )
        .default([]),
    })
    .loose(),
});

const releaseMetadataSchema = z
  .object({
    kind: z.literal('cincinnati-metadata-v0'),
    version: z.string().min(1),
    previous: z.array(z.string()).default([]),
    metadata: z.record(z.string(), z.unknown()).optional(),
  })
  .loose();

export interface ReleaseComponent {
  /** The ImageStream tag name (`etcd`, `cli`, …). */
  name: string;
  /** The component image, by digest as the payload pins it. */
  image: string;
}

export interface ReleaseInfo {
  /** The payload's digest (of the manifest that was read). */
  digest: Digest;
  version: string;
  previous: string[];
  components: ReleaseComponent[];
  /** The CoreOS stream architectures (`x86_64`, `s390x`) whose KubeVirt container disk is among `components`. */
  kubeVirtKeys?: string[];
}

export interface ReadReleaseOptions {
  client: RegistryClient;
  layers: LayerSource;
  /** Picks the manifest of a multi-arch payload (oc-mirror's `multi` payloads are indexes). */
  architecture: string;
  /** `kubeVirtContainer: true`: the CoreOS stream architectures whose KubeVirt container disk joins the components. */
  kubeVirtKeys?: string[];
  signal?: AbortSignal;
}

/** Reads a release payload's component list and metadata from its layers. */
export async function readReleaseInfo(payload: ImageReference, options: ReadReleaseOptions): Promise<ReleaseInfo> {
  const { client, signal } = options;
  const where = `release payload ${formatReference(payload)}`;
  const location = { registry: payload.registry, repository: payload.repository };
  const abortable = signal === undefined ? {} : { signal };
  const { manifest, topDigest } = await platformManifest(
    client,
    payload,
    where,
    (children) => children.find((m) => m.platform?.architecture === options.architecture) ?? children.find((m) => m.platform?.architecture === 'amd64') ?? children[0],
    abortable,
  );

  const kubeVirtKeys = options.kubeVirtKeys ?? [];
  const wanted = kubeVirtKeys.length > 0 ? [IMAGE_REFERENCES, RELEASE_METADATA, BOOT_IMAGES] : [IMAGE_REFERENCES, RELEASE_METADATA];
  const found = new Map<string, Buffer>();
  // Top layer first: later layers overwrite earlier ones, and the release manifests are added last.
  for (const layer of [...manifest.layers].reverse()) {
    const layerWhere = `${where}, layer ${layer.digest}`;
    const body = await options.layers.open(location, { digest: layer.digest, size: layer.size }, abortable);
    await scanLayer(body, {
      where: layerWhere,
      maxFileBytes: 16 * 1024 * 1024,
      ...abortable,
      want: (entry) => wanted.includes(entry.path) && !found.has(entry.path),
      onFile: (entry, bytes) => {
        found.set(entry.path, bytes);
        return found.size === wanted.length ? 'stop' : undefined;
      },
    });
    if (found.size === wanted.length) break;
  }
  const imageReferences = found.get(IMAGE_REFERENCES);
  const releaseMetadata = found.get(RELEASE_METADATA);
  if (imageReferences === undefined) {
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: no ${IMAGE_REFERENCES} in any of its ${manifest.layers.length} layers; is this a release image?`);
  }

  const stream = parseJsonFile(imageReferences, imageStreamSchema, `${where}: ${IMAGE_REFERENCES}`);
  const metadata = releaseMetadata === undefined ? undefined : parseJsonFile(releaseMetadata, releaseMetadataSchema, `${where}: ${RELEASE_METADATA}`);
  const components: ReleaseComponent[] = [];
  for (const [i, tag] of stream.spec.tags.entries()) {
    let ref: ImageReference;
    try {
      ref = parseImageReference(tag.from.name);
    } catch (cause) {
      throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: ${IMAGE_REFERENCES} spec.tags[${i}] (${tag.name}): ${(cause as Error).message}`, { cause });
    }
    if (ref.digest === undefined) {
      throw new MeshmirrorError(
        'MM_MANIFEST_INVALID',
        `${where}: ${IMAGE_REFERENCES} spec.tags[${i}] (${tag.name}) names ${tag.from.name} by tag; a release pins its components by digest`,
      );
    }
    components.push({ name: tag.name, image: formatReference(ref) });
  }
  if (kubeVirtKeys.length > 0) components.push(...kubeVirtComponents(found.get(BOOT_IMAGES), kubeVirtKeys, `${where}: ${BOOT_IMAGES}`));
  return {
    digest: topDigest,
    version: metadata?.version ?? stream.metadata.name,
    previous: metadata?.previous ?? [],
    components,
    ...(kubeVirtKeys.length > 0 ? { kubeVirtKeys: [...kubeVirtKeys].sort() } : {}),
  };
}

/**
 * The KubeVirt container disk of each architecture, from the boot images ConfigMap's CoreOS stream
 * (`architectures.<key>.images.kubevirt["digest-ref"]`), as oc-mirror reads it: one component
 * `kube-virt-container`, or `kube-virt-container-<key>` each when several architectures are asked.
 */
export function kubeVirtComponents(file: Buffer | undefined, keys: string[], where: string): ReleaseComponent[] {
  if (file === undefined) throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: not in the payload, so kubeVirtContainer cannot be mirrored`);
  let stream: unknown;
  try {
    const configMap = parseYaml(file.toString('utf8')) as { data?: { stream?: unknown } } | null;
    if (typeof configMap?.data?.stream !== 'string') throw new Error('data.stream is not a string');
    stream = JSON.parse(configMap.data.stream);
  } catch (cause) {
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: data.stream is not CoreOS stream JSON: ${(cause as Error).message}`, { cause });
  }
  return keys.map((key) => {
    const ref = (stream as { architectures?: Record<string, { images?: { kubevirt?: Record<string, unknown> } }> }).architectures?.[key]?.images?.kubevirt?.[
      'digest-ref'
    ];
    if (typeof ref !== 'string') throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: no architectures.${key}.images.kubevirt["digest-ref"] in data.stream`);
    let parsed: ImageReference;
    try {
      parsed = parseImageReference(ref);
    } catch (cause) {
      throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: architectures.${key}.images.kubevirt["digest-ref"]: ${(cause as Error).message}`, { cause });
    }
    if (parsed.digest === undefined)
      throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: architectures.${key}.images.kubevirt["digest-ref"] ${ref} has no digest`);
    return { name: keys.length > 1 ? `${KUBEVIRT_COMPONENT}-${key}` : KUBEVIRT_COMPONENT, image: formatReference(parsed) };
  });
}

function parseJsonFile<T>(bytes: Buffer, schema: z.ZodType<T>, where: string): T {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (cause) {
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where} is not JSON`, { cause });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}
