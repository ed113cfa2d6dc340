/**
 * A chart as an OCI artifact, the way `helm push` stores it: the `Chart.yaml` metadata as the config
 * (`application/vnd.cncf.helm.config.v1+json`) and the chart archive as the one layer. Made here for
 * charts from HTTP repositories and local paths, stored in the coordinator's agent, and then mirrored
 * like any image, so `helm install oci://<mirror>/<repo>/<chart> --version <v>` works on the far side.
 */
import { parseImageReference, sha256Digest, type LocalWriter, type Digest } from '@meshmirror/shared';
import type { ResolvedImage } from '../image-set.ts';
import type { ChartMetadata } from './chart.ts';
import { HELM_CHART_LAYER_MEDIA_TYPE, HELM_CONFIG_MEDIA_TYPE } from './helm-repository.ts';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
/** Charts made here have no upstream registry; this names them in the archive, as the graph image's name does. */
const CHART_SOURCE_REGISTRY = 'localhost';

export interface ChartArtifactOptions {
  metadata: ChartMetadata;
  /** The chart archive (`.tgz`), as downloaded or packaged. */
  archive: Uint8Array;
  /** Repository path in the target, e.g. `podinfo/podinfo`. */
  targetRepo: string;
  origin: string;
  agent: LocalWriter;
  signal?: AbortSignal;
}

/** Helm's OCI tag for a chart version (`+` is not allowed in tags). */
export function chartTag(version: string): string {
  return version.replaceAll('+', '_');
}

export async function chartArtifact(options: ChartArtifactOptions): Promise<ResolvedImage> {
  const { metadata, archive, agent } = options;
  const abortable = options.signal === undefined ? {} : { signal: options.signal };
  const config = Buffer.from(JSON.stringify(metadata.raw));
  const configDigest = sha256Digest(config);
  const layerDigest: Digest = sha256Digest(archive);
  const annotations: Record<string, string> = { 'org.opencontainers.image.title': metadata.name, 'org.opencontainers.image.version': metadata.version };
  if (typeof metadata.raw['description'] === 'string') annotations['org.opencontainers.image.description'] = metadata.raw['description'];
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: HELM_CONFIG_MEDIA_TYPE, digest: configDigest, size: config.byteLength },
      layers: [{ mediaType: HELM_CHART_LAYER_MEDIA_TYPE, digest: layerDigest, size: archive.byteLength }],
      annotations,
    }),
  );
  const manifestDigest = sha256Digest(manifest);
  await agent.putBlob(configDigest, config, abortable);
  await agent.putBlob(layerDigest, archive, abortable);
  const tag = chartTag(metadata.version);
  const source = `${CHART_SOURCE_REGISTRY}/helm/${options.targetRepo}:${tag}`;
  return {
    kind: 'helm',
    role: 'helm-chart',
    source,
    ref: parseImageReference(source),
    origin: options.origin,
    targetRepo: options.targetRepo,
    targetTag: tag,
    descriptor: { mediaType: OCI_MANIFEST, digest: manifestDigest, size: manifest.byteLength },
    manifests: [{ digest: manifestDigest, mediaType: OCI_MANIFEST, bytes: manifest }],
    blobs: [
      { digest: configDigest, size: config.byteLength },
      { digest: layerDigest, size: archive.byteLength },
    ],
    platforms: [],
    skippedPlatforms: [],
  };
}
