/**
 * `mirror.platform`: the release payloads a channel selection names in the update graph (or the one
 * `release:` image), and every component image each payload pins, named the way oc-mirror v2 names
 * them in the mirror: payloads as `openshift/release-images:<version>-<arch>`, components as
 * `openshift/release:<version>-<arch>-<component>` (both repositories configurable).
 */
import pLimit from 'p-limit';
import { describeError, errorCode, parseImageReference, type Logger, type PlatformConfig, type RegistryClient } from '@meshmirror/shared';
import type { FailedImage, RequestedImage } from '../image-set.ts';
import type { LayerSource } from '../layer-source.ts';
import { readReleaseInfo, type ReleaseInfo } from './release-payload.ts';
import { selectReleases, type UpdateGraphClient } from './update-graph.ts';

export const DEFAULT_RELEASE_IMAGE_REPO = 'openshift/release-images';
export const DEFAULT_RELEASE_COMPONENT_REPO = 'openshift/release';

/** oc-mirror's architecture names in release tags (`4.19.2-x86_64`). */
const ARCH_TAG: Record<string, string> = { amd64: 'x86_64', arm64: 'aarch64', ppc64le: 'ppc64le', s390x: 's390x', multi: 'multi' };

/**
 * The CoreOS stream architectures whose KubeVirt container disk `kubeVirtContainer: true` mirrors,
 * oc-mirror's way: amd64 → `x86_64`, s390x → `s390x` (arm64 and ppc64le have none), `multi` both;
 * none configured → `x86_64`.
 */
export function kubeVirtStreamKeys(architectures: readonly string[] | undefined): string[] {
  const keys = new Set<string>();
  for (const arch of architectures === undefined || architectures.length === 0 ? ['amd64'] : architectures) {
    if (arch === 'amd64' || arch === 'multi') keys.add('x86_64');
    if (arch === 's390x' || arch === 'multi') keys.add('s390x');
  }
  return [...keys].sort();
}

export interface ReleaseCache {
  /** A payload's component list by payload digest: a payload is never read twice. */
  get(digest: string): Promise<ReleaseInfo | undefined>;
  put(info: ReleaseInfo): Promise<void>;
}

export interface ResolveReleasesOptions {
  platform: PlatformConfig;
  graph: UpdateGraphClient;
  client: RegistryClient;
  layers: LayerSource;
  cache?: ReleaseCache;
  /** Payloads read at once. */
  parallel: number;
  logger: Logger;
  signal?: AbortSignal;
}

export interface SelectedRelease {
  version: string;
  architecture: string;
  /** The payload by digest. */
  payload: string;
  /** Where the configuration asks for it. */
  origin: string;
}

export interface ResolvedReleases {
  /** Payloads first, then components; one entry per target name (a component shared by releases gets each release's tag). */
  images: RequestedImage[];
  failed: FailedImage[];
}

export async function resolveReleases(options: ResolveReleasesOptions): Promise<ResolvedReleases> {
  const { platform, graph, signal } = options;
  const log = options.logger.child({ component: 'coordinator:releases' });
  const abortable = signal === undefined ? {} : { signal };
  const failed: FailedImage[] = [];
  const selected: SelectedRelease[] = [];
  const seenPayloads = new Set<string>();
  const select = (release: SelectedRelease): void => {
    const key = `${release.payload} ${release.architecture}`;
    if (seenPayloads.has(key)) return;
    seenPayloads.add(key);
    selected.push(release);
  };

  for (const [c, channel] of platform.channels.entries()) {
    for (const architecture of platform.architectures) {
      const origin = `mirror.platform.channels[${c}]`;
      const request = { channel: channel.name, arch: architecture, type: channel.type };
      const url = graph.urlFor(request);
      try {
        const nodes = selectReleases(await graph.channelGraph(request, abortable), channel, url);
        log.info({ channel: channel.name, architecture, versions: nodes.map((n) => n.version) }, 'releases selected');
        for (const node of nodes) select({ version: node.version, architecture, payload: node.payload, origin: `${origin} (${node.version})` });
      } catch (err) {
        if (signal?.aborted === true) throw err;
        log.warn({ channel: channel.name, architecture, code: errorCode(err), err: describeError(err) }, 'release channel could not be resolved');
        failed.push({ kind: 'release', source: `channel ${channel.name} (${architecture})`, origin, code: errorCode(err), reason: describeError(err) });
      }
    }
  }

  const kubeVirtKeys = platform.kubeVirtContainer === true ? kubeVirtStreamKeys(platform.architectures) : [];
  // Read every selected payload (and the direct `release:` image) for its components.
  const direct =
    platform.release === undefined ? [] : [{ architecture: platform.architectures[0] ?? 'amd64', payload: platform.release, origin: 'mirror.platform.release' }];
  const limit = pLimit(options.parallel);
  const toRead = [...selected.map((s) => ({ ...s, direct: false })), ...direct.map((d) => ({ ...d, version: '', direct: true }))];
  const read = await Promise.all(
    toRead.map((release) =>
      limit(async () => {
        try {
          const ref = parseImageReference(release.payload);
          // A cached reading without the KubeVirt disk asked for now is read again.
          const hit = ref.digest === undefined ? undefined : await options.cache?.get(ref.digest);
          const cached = hit !== undefined && (hit.kubeVirtKeys ?? []).join(',') === kubeVirtKeys.join(',') ? hit : undefined;
          const info =
            cached ??
            (await readReleaseInfo(ref, {
              client: options.client,
              layers: options.layers,
              architecture: release.architecture,
              ...(kubeVirtKeys.length > 0 ? { kubeVirtKeys } : {}),
              ...abortable,
            }));
          if (cached === undefined) await options.cache?.put(info);
          return { release, info };
        } catch (err) {
          if (signal?.aborted === true) throw err;
          log.warn({ payload: release.payload, code: errorCode(err), err: describeError(err) }, 'release payload could not be read');
          failed.push({ kind: 'release', source: release.payload, origin: release.origin, code: errorCode(err), reason: describeError(err) });
          return undefined;
        }
      }),
    ),
  );

  const imageRepo = platform.releaseImageRepo ?? DEFAULT_RELEASE_IMAGE_REPO;
  const componentRepo = platform.releaseComponentRepo ?? DEFAULT_RELEASE_COMPONENT_REPO;
  const payloads: RequestedImage[] = [];
  const components: RequestedImage[] = [];
  for (const entry of read) {
    if (entry === undefined) continue;
    const { release, info } = entry;
    const version = release.version === '' ? info.version : release.version;
    const prefix = `${version}-${ARCH_TAG[release.architecture] ?? release.architecture}`;
    const payloadRef = parseImageReference(release.payload);
    const origin = release.direct ? release.origin : `${release.origin.replace(/ \(.*\)$/, '')} (${version})`;
    payloads.push({
      kind: 'release',
      role: 'release-payload',
      source: release.payload,
      ref: payloadRef,
      origin,
      targetRepo: imageRepo,
      targetTag: prefix,
    });
    for (const component of info.components) {
      components.push({
        kind: 'release',
        source: component.image,
        ref: parseImageReference(component.image),
        origin: `${origin} component ${component.name}`,
        targetRepo: componentRepo,
        targetTag: `${prefix}-${component.name}`,
      });
    }
  }
  return { images: [...payloads, ...components], failed };
}
