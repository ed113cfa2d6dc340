/**
 * A new image made from an existing one plus one layer on top: the filtered catalog (a configs
 * layer) and the graph image (the graph data). The config gains the layer's diff ID and a history
 * entry; its other settings come from `patch`. Layer media types follow the manifest's (Docker or OCI).
 */
import { MediaType, sha256Digest, type Descriptor, type Digest, type ImageManifest } from '@meshmirror/shared';

export interface AppendedImage {
  digest: Digest;
  bytes: Uint8Array;
  config: Descriptor;
  configBytes: Uint8Array;
}

export function appendLayer(
  base: { manifest: ImageManifest; mediaType: string; config: Record<string, unknown> },
  layer: { digest: Digest; diffId: Digest; size: number },
  options: { createdBy: string; patch?: (containerConfig: Record<string, unknown>) => Record<string, unknown> },
): AppendedImage {
  const { manifest, mediaType, config } = base;
  const inner = (config['config'] ?? {}) as Record<string, unknown>;
  const rootfs = (config['rootfs'] ?? { type: 'layers', diff_ids: [] }) as { type: string; diff_ids: string[] };
  const history = Array.isArray(config['history']) ? (config['history'] as unknown[]) : [];
  const newConfig = {
    ...config,
    config: options.patch === undefined ? inner : options.patch(inner),
    rootfs: { type: rootfs.type, diff_ids: [...rootfs.diff_ids, layer.diffId] },
    history: [...history, { created: '1970-01-01T00:00:00Z', created_by: options.createdBy }],
  };
  const configBytes = new TextEncoder().encode(JSON.stringify(newConfig));
  const docker = mediaType === MediaType.DockerManifest;
  const configDescriptor: Descriptor = {
    mediaType: manifest.config.mediaType || (docker ? MediaType.DockerConfig : MediaType.OciConfig),
    digest: sha256Digest(configBytes),
    size: configBytes.byteLength,
  };
  const layerDescriptor: Descriptor = { mediaType: docker ? MediaType.DockerLayerGzip : MediaType.OciLayerGzip, digest: layer.digest, size: layer.size };
  const bytes = new TextEncoder().encode(JSON.stringify({ ...manifest, mediaType, config: configDescriptor, layers: [...manifest.layers, layerDescriptor] }));
  return { digest: sha256Digest(bytes), bytes, config: configDescriptor, configBytes };
}
