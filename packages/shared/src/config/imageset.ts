/**
 * The ImageSetConfiguration that oc-mirror reads, as zod schemas: the single source of truth for
 * its fields, their defaults and their checks. Field names and shapes follow oc-mirror's Go types
 * (`v2/internal/pkg/api/v2alpha1/type_config.go`, `type_config_include.go`, and the v1alpha2 types
 * in `pkg/api/v1alpha2`) plus fields its newer documentation describes (`targetRepo`/`targetTag`
 * on additional images, operator `selectors`, helm `valuesFiles`, `releaseImageRepo`,
 * `releaseComponentRepo`). Every object is strict: an unknown field is an error naming its path,
 * as in oc-mirror v2.
 *
 * Where meshmirror differs from oc-mirror, on purpose:
 * - `archiveSize` may be a fraction of a GiB (0.05); oc-mirror wants a whole number.
 * - `blockedImages[].name` may be an image reference or a regular expression (newer oc-mirror
 *   matches blocked names as regular expressions).
 * - A top-level `meshmirror:` block carries run settings (timeouts, retries, parallelism). oc-mirror
 *   rejects a file that has it, so keep it out of files that oc-mirror must also read; the same
 *   settings are flags too, and flags win over the file.
 */
import { z } from 'zod';
import { describeError } from '../errors.ts';
import { parseImageReference } from '../oci/reference.ts';
import { parseDuration, parseSize } from '../units.ts';

export const IMAGESET_KIND = 'ImageSetConfiguration';
/** oc-mirror v2's format. */
export const IMAGESET_API_V2ALPHA1 = 'mirror.openshift.io/v2alpha1';
/** oc-mirror v1's format; oc-mirror v2 reads it too (without `storageConfig`). */
export const IMAGESET_API_V1ALPHA2 = 'mirror.openshift.io/v1alpha2';
export type ImageSetApiVersion = typeof IMAGESET_API_V2ALPHA1 | typeof IMAGESET_API_V1ALPHA2;

/** oc-mirror's default archive chunk size, in GiB. */
export const DEFAULT_ARCHIVE_SIZE_GIB = 500;
/** Release architectures oc-mirror mirrors; `multi` is the manifest list of all four. */
export const PLATFORM_ARCHITECTURES = ['amd64', 'arm64', 'ppc64le', 's390x', 'multi'] as const;
export type PlatformArchitecture = (typeof PLATFORM_ARCHITECTURES)[number];
/** Pieces smaller than this cost more in requests than they save. */
export const MIN_PIECE_SIZE_BYTES = 1024 * 1024;

/** A value as a message shows it: strings quoted, collections named, long strings cut. */
export function describeConfigValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return typeof value;
}

/**
 * `z.strictObject` whose unknown-field message suggests the field the user probably meant.
 * Contract with the loader's issue formatter: for an `unrecognized_keys` issue the message has one
 * line per unknown key, in the order of `issue.keys`.
 */
export function strictObject<S extends z.ZodRawShape>(shape: S) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? issue.keys.map((key) => unknownFieldMessage(key, known)).join('\n') : undefined),
  });
}

export function unknownFieldMessage(key: string, known: readonly string[]): string {
  const suggestion = closestName(key, known);
  return `unknown field "${key}"${suggestion === undefined ? '' : ` (did you mean "${suggestion}"?)`}`;
}

function closestName(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  const sameIgnoringCase = known.find((name) => name.toLowerCase() === lower);
  if (sameIgnoringCase !== undefined) return sameIgnoringCase;
  let best: string | undefined;
  let bestDistance = Math.min(2, Math.floor(key.length / 3));
  for (const name of known) {
    const distance = editDistance(lower, name.toLowerCase());
    if (distance <= bestDistance) {
      best = name;
      bestDistance = distance - 1;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

const nonEmptyText = z.string().min(1);

const RELEASE_VERSION = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
/** A release version as Cincinnati names it: always major.minor.patch, e.g. `4.19.2`. */
const releaseVersion = z.string().regex(RELEASE_VERSION, {
  error: (issue) => `expected a release version like 4.19.2, got ${describeConfigValue(issue.input)}`,
});

const TAG = /^[\w][\w.-]{0,127}$/;
const imageTag = z.string().regex(TAG, {
  error: (issue) => `${describeConfigValue(issue.input)} is not a valid image tag`,
});

const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const REPOSITORY_PATH = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
/** A repository path on the destination, without registry, tag or digest (`my-org/my-index`). */
const repositoryPath = z.string().regex(REPOSITORY_PATH, {
  error: (issue) =>
    `${describeConfigValue(issue.input)} is not a repository path: expected lower-case path components separated by "/", without registry, tag or digest`,
});

function imageReference(options: { allowOciLayout?: boolean } = {}) {
  return z.string().superRefine((value, ctx) => {
    // oc-mirror reads catalogs from local OCI layouts as `oci:///path` (or `oci:path`).
    if (options.allowOciLayout === true && value.startsWith('oci:')) {
      if (value.replace(/^oci:(\/\/)?/, '') === '') ctx.addIssue({ code: 'custom', message: `"${value}" names no OCI layout folder` });
      return;
    }
    try {
      parseImageReference(value);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: describeError(err) });
    }
  });
}

/** The largest `archiveSize` whose size in bytes is still a safe integer. */
const MAX_ARCHIVE_SIZE_GIB = Math.floor(Number.MAX_SAFE_INTEGER / 2 ** 30);

/** A blocked image: a reference, or a regular expression matched against references. */
const blockedImageName = z.string().superRefine((value, ctx) => {
  // An empty pattern matches every reference: it would block the whole image set.
  if (value.trim() === '') {
    ctx.addIssue({ code: 'custom', message: 'must not be empty (an empty pattern would block every image)' });
    return;
  }
  let referenceProblem: string;
  try {
    parseImageReference(value);
    return;
  } catch (err) {
    referenceProblem = describeError(err);
  }
  try {
    new RegExp(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `${referenceProblem}, and not a regular expression either: ${describeError(err)}` });
  }
});

function isHttpUrl(value: string): boolean {
  try {
    const { protocol } = new URL(value);
    return protocol === 'http:' || protocol === 'https:';
  } catch {
    return false;
  }
}

/** A Helm repository: an HTTP(S) chart repository, or `oci://host/path` in a registry. */
const helmRepositoryUrl = z.string().superRefine((value, ctx) => {
  if (value.startsWith('oci://')) {
    if (!/^oci:\/\/[^/\s]+\/?[^\s]*$/.test(value)) ctx.addIssue({ code: 'custom', message: `expected oci://host/path, got ${describeConfigValue(value)}` });
    return;
  }
  if (!isHttpUrl(value)) ctx.addIssue({ code: 'custom', message: `expected an http(s) or oci:// URL, got ${describeConfigValue(value)}` });
});

const boolFlag = z.boolean().default(false);

/** `a.b[2]` from `['a', 'b', 2]`. */
export function formatConfigPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else text += text === '' ? String(segment) : `.${String(segment)}`;
  }
  return text;
}

function compareReleaseVersions(a: string, b: string): number {
  const parts = (v: string) => (v.split(/[-+]/)[0] ?? '').split('.').map(Number);
  const pa = parts(a);
  const pb = parts(b);
  for (let i = 0; i < 3; i++) {
    const diff = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}

// ---- run settings carried in the file (meshmirror's own extension) ----

function durationSetting(minimum: 'positive' | 'zero-or-more') {
  return z
    .union([z.string(), z.number()], {
      error: (issue) => `expected a duration such as "90m" or a number of seconds, got ${describeConfigValue(issue.input)}`,
    })
    .transform((value, ctx) => {
      let ms: number;
      try {
        ms = parseDuration(value);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: describeError(err) });
        return z.NEVER;
      }
      if (minimum === 'positive' && ms <= 0) {
        ctx.addIssue({ code: 'custom', message: `must be longer than 0, got ${describeConfigValue(value)}` });
        return z.NEVER;
      }
      return ms;
    });
}

function countSetting(minimum: number) {
  const message = (issue: { input?: unknown }) => `expected a whole number of at least ${minimum}, got ${describeConfigValue(issue.input)}`;
  return z.number({ error: message }).int({ error: message }).min(minimum, { error: message });
}

const pieceSizeSetting = z
  .union([z.string(), z.number()], {
    error: (issue) => `expected a size such as "64MiB" or a number of bytes, got ${describeConfigValue(issue.input)}`,
  })
  .transform((value, ctx) => {
    let bytes: number;
    try {
      bytes = parseSize(value, 'B');
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: describeError(err) });
      return z.NEVER;
    }
    if (bytes < MIN_PIECE_SIZE_BYTES) {
      ctx.addIssue({
        code: 'custom',
        message: `must be at least 1MiB, got ${describeConfigValue(value)} (bare numbers are bytes; write e.g. "64MiB")`,
      });
      return z.NEVER;
    }
    return bytes;
  });

/**
 * The `meshmirror:` block: run settings users asked to keep in the file. No defaults here on
 * purpose: `resolveTransferSettings` must tell "set in the file" from "not set" to let flags win
 * over the file and the file over `DEFAULT_TRANSFER_SETTINGS`. Durations are Go durations or
 * seconds; the parsed block names them in milliseconds.
 */
export const MeshmirrorSettingsSchema = strictObject({
  /** Longest wait without progress for one image (oc-mirror `--image-timeout`); never cuts a moving transfer. */
  imageTimeout: durationSetting('positive').optional(),
  /** No body bytes for this long: the transfer is retried and resumed. */
  stallTimeout: durationSetting('positive').optional(),
  connectTimeout: durationSetting('positive').optional(),
  headersTimeout: durationSetting('positive').optional(),
  retryTimes: countSetting(0).optional(),
  /** 0: exponential backoff from the built-in base (oc-mirror's meaning); else the base delay. */
  retryDelay: durationSetting('zero-or-more').optional(),
  parallelImages: countSetting(1).optional(),
  parallelLayers: countSetting(1).optional(),
  srcTlsVerify: z.boolean().optional(),
  destTlsVerify: z.boolean().optional(),
  /** Size of the byte ranges large blobs are split into (for the piece planner). */
  pieceSize: pieceSizeSetting.optional(),
}).transform((block) => {
  const settings: MeshmirrorFileSettings = {};
  if (block.imageTimeout !== undefined) settings.imageTimeoutMs = block.imageTimeout;
  if (block.stallTimeout !== undefined) settings.stallTimeoutMs = block.stallTimeout;
  if (block.connectTimeout !== undefined) settings.connectTimeoutMs = block.connectTimeout;
  if (block.headersTimeout !== undefined) settings.headersTimeoutMs = block.headersTimeout;
  if (block.retryTimes !== undefined) settings.retryTimes = block.retryTimes;
  if (block.retryDelay !== undefined) settings.retryDelayMs = block.retryDelay;
  if (block.parallelImages !== undefined) settings.parallelImages = block.parallelImages;
  if (block.parallelLayers !== undefined) settings.parallelLayers = block.parallelLayers;
  if (block.srcTlsVerify !== undefined) settings.srcTlsVerify = block.srcTlsVerify;
  if (block.destTlsVerify !== undefined) settings.destTlsVerify = block.destTlsVerify;
  if (block.pieceSize !== undefined) settings.pieceSizeBytes = block.pieceSize;
  return settings;
});

/** The parsed `meshmirror:` block; only the settings the file sets are present. */
export interface MeshmirrorFileSettings {
  imageTimeoutMs?: number;
  stallTimeoutMs?: number;
  connectTimeoutMs?: number;
  headersTimeoutMs?: number;
  retryTimes?: number;
  retryDelayMs?: number;
  parallelImages?: number;
  parallelLayers?: number;
  srcTlsVerify?: boolean;
  destTlsVerify?: boolean;
  pieceSizeBytes?: number;
}

// ---- the ImageSetConfiguration ----

/**
 * The parts of an ImageSetConfiguration: what `mirror:` holds and the v1-only `storageConfig`. A
 * DeleteImageSetConfiguration's `delete:` is made of the same parts, so both read alike.
 */
function imageSetParts<V extends ImageSetApiVersion>(apiVersion: V) {
  const v1 = apiVersion === IMAGESET_API_V1ALPHA2;
  /** A field oc-mirror v1 had and v2 dropped: accepted in v1alpha2, refused with a reason in v2alpha1. */
  const v1Only = <S extends z.ZodType>(schema: S, instead: string) =>
    v1 ? schema.optional() : z.undefined({ error: `only valid with apiVersion ${IMAGESET_API_V1ALPHA2} (oc-mirror v1); ${instead}` }).optional();

  const bundleRange = {
    minVersion: nonEmptyText.optional(),
    maxVersion: nonEmptyText.optional(),
    minBundle: v1Only(nonEmptyText, 'oc-mirror v2 selects bundles with packages[].bundles[]'),
  };

  const rangeRules = (range: { minVersion?: string | undefined; minBundle?: string | undefined }, ctx: z.RefinementCtx) => {
    if (range.minVersion !== undefined && range.minBundle !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['minBundle'], message: 'minVersion and minBundle cannot both be set' });
    }
  };

  const includeChannel = strictObject({ name: nonEmptyText, ...bundleRange }).superRefine(rangeRules);

  const labelSelector = strictObject({
    matchLabels: z.record(z.string(), z.string()).optional(),
    matchExpressions: z
      .array(
        strictObject({
          key: nonEmptyText,
          operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
          values: z.array(z.string()).default([]),
        }),
      )
      .default([]),
  });

  /**
   * `{os, architecture}` (oc-mirror v2's per-item `platforms`): which children of a multi-arch image
   * are copied. Optional rather than defaulted, so configurations without it keep their run identity.
   */
  const platforms = z.array(strictObject({ os: nonEmptyText, architecture: nonEmptyText })).optional();

  const includePackage = strictObject({
    name: nonEmptyText,
    /** The default channel to keep when the catalog's own default channel is filtered out. */
    defaultChannel: nonEmptyText.optional(),
    ...bundleRange,
    channels: z.array(includeChannel).default([]),
    /** Exact bundles to mirror (oc-mirror v2). */
    bundles: z.array(strictObject({ name: nonEmptyText })).default([]),
    /** Label selectors over related images (newer oc-mirror v2). */
    selectors: z.array(labelSelector).default([]),
  }).superRefine((pkg, ctx) => {
    rangeRules(pkg, ctx);
    if ((pkg.minVersion !== undefined || pkg.maxVersion !== undefined) && pkg.channels.length > 0) {
      ctx.addIssue({
        code: 'custom',
        path: [pkg.minVersion !== undefined ? 'minVersion' : 'maxVersion'],
        message: 'a package-level version range cannot be combined with channels; put minVersion/maxVersion on each channel',
      });
    }
  });

  const operator = strictObject({
    /** The catalog image; `oci:///path` reads a local OCI layout. */
    catalog: imageReference({ allowOciLayout: true }),
    /** Destination repository path of the filtered catalog (`my-org/redhat-operator-index`). */
    targetCatalog: repositoryPath.optional(),
    targetTag: imageTag.optional(),
    targetName: v1Only(nonEmptyText, 'use targetCatalog'),
    /** Every bundle of every kept channel instead of the channel heads. */
    full: boolFlag,
    skipDependencies: boolFlag,
    /** Add the bundles the selected ones need (`olm.package.required`, `olm.gvk.required`), as `--include-dependencies` does. */
    includeDependencies: boolFlag,
    /** A CatalogSource file used as the template for the generated one. */
    targetCatalogSourceTemplate: nonEmptyText.optional(),
    /** The catalog image's platforms to publish (its bundles and related images are copied whole). */
    platforms,
    packages: z.array(includePackage).default([]),
  }).superRefine((op, ctx) => {
    if (!op.full) return;
    op.packages.forEach((pkg, p) => {
      const ranged: Array<{ path: PropertyKey[]; has: boolean }> = [
        { path: ['packages', p, 'minVersion'], has: pkg.minVersion !== undefined },
        { path: ['packages', p, 'maxVersion'], has: pkg.maxVersion !== undefined },
        ...pkg.channels.flatMap((ch, c) => [
          { path: ['packages', p, 'channels', c, 'minVersion'], has: ch.minVersion !== undefined },
          { path: ['packages', p, 'channels', c, 'maxVersion'], has: ch.maxVersion !== undefined },
        ]),
      ];
      const first = ranged.find((r) => r.has);
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: first.path, message: 'version ranges cannot be combined with full: true on the catalog' });
      }
    });
  });

  const releaseChannel = strictObject({
    name: nonEmptyText,
    type: z.enum(['ocp', 'okd']).default('ocp'),
    minVersion: releaseVersion.optional(),
    maxVersion: releaseVersion.optional(),
    /** Only the releases on the shortest upgrade path from minVersion to maxVersion. */
    shortestPath: boolFlag,
    /** The whole channel. */
    full: boolFlag,
  }).superRefine((channel, ctx) => {
    if (channel.minVersion !== undefined && channel.maxVersion !== undefined && compareReleaseVersions(channel.minVersion, channel.maxVersion) > 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['maxVersion'],
        message: `maxVersion ${channel.maxVersion} is older than minVersion ${channel.minVersion}`,
      });
    }
  });

  const platform = strictObject({
    channels: z.array(releaseChannel).default([]),
    /** Also mirror the update graph data image for the OpenShift Update Service. */
    graph: boolFlag,
    architectures: z
      .array(
        z.enum(PLATFORM_ARCHITECTURES, {
          error: (issue) => `expected one of ${PLATFORM_ARCHITECTURES.join(', ')}, got ${describeConfigValue(issue.input)}`,
        }),
      )
      .optional(),
    /** oc-mirror v2's replacement for `architectures`: `{os: linux, architecture: arm64}` entries. */
    platforms,
    /** A release image to mirror directly, outside any channel. */
    release: imageReference({ allowOciLayout: true }).optional(),
    /** Also mirror the KubeVirt container disk image named in the release's boot images. */
    kubeVirtContainer: boolFlag,
    /** Destination repository of release images (oc-mirror default `openshift/release-images`). */
    releaseImageRepo: repositoryPath.optional(),
    /** Destination repository of release component images (oc-mirror default `openshift/release`). */
    releaseComponentRepo: repositoryPath.optional(),
  })
    .superRefine((p, ctx) => {
      const given = p.platforms ?? [];
      if (given.length > 0 && p.architectures !== undefined && p.architectures.length > 0) {
        ctx.addIssue({ code: 'custom', path: ['platforms'], message: 'give platforms or architectures, not both (architectures is the older form)' });
      }
      given.forEach((entry, i) => {
        if (entry.os !== 'linux' || !(PLATFORM_ARCHITECTURES as readonly string[]).includes(entry.architecture) || entry.architecture === 'multi') {
          ctx.addIssue({
            code: 'custom',
            path: ['platforms', i],
            message: `release payloads exist for linux/${PLATFORM_ARCHITECTURES.filter((a) => a !== 'multi').join(', linux/')}, not ${entry.os}/${entry.architecture}`,
          });
        }
      });
      const seen = new Map<string, number>();
      p.channels.forEach((channel, i) => {
        const key = `${channel.type}/${channel.name}`;
        const first = seen.get(key);
        if (first === undefined) seen.set(key, i);
        else ctx.addIssue({ code: 'custom', path: ['channels', i, 'name'], message: `channel "${channel.name}" is already listed at channels[${first}]` });
      });
    })
    // One list of release architectures from either form; none (or an empty list, as oc-mirror reads it) is amd64.
    .transform((p) => {
      const given = p.platforms ?? [];
      const chosen = given.length > 0 ? [...new Set(given.map((e) => e.architecture as PlatformArchitecture))] : (p.architectures ?? []);
      return { ...p, architectures: chosen.length === 0 ? (['amd64'] as PlatformArchitecture[]) : chosen };
    });

  const image = strictObject({ name: imageReference() });
  const additionalImage = strictObject({
    name: imageReference(),
    /** Destination repository path instead of the source's. */
    targetRepo: repositoryPath.optional(),
    targetTag: imageTag.optional(),
    platforms,
  });

  const helmChartShape = {
    name: nonEmptyText,
    version: nonEmptyText.optional(),
    path: nonEmptyText.optional(),
    /** JSONPath expressions where the chart keeps image references. */
    imagePaths: z.array(nonEmptyText).default([]),
    /** Values used only to render the chart for image discovery. */
    values: z.record(z.string(), z.unknown()).optional(),
    valuesFiles: z.array(nonEmptyText).default([]),
    /** Platforms of the images the chart names. */
    platforms,
  };

  const helm = strictObject({
    repositories: z.array(strictObject({ name: nonEmptyText, url: helmRepositoryUrl, charts: z.array(strictObject(helmChartShape)).default([]) })).default([]),
    local: z.array(strictObject({ ...helmChartShape, path: nonEmptyText })).default([]),
  });

  const mirror = strictObject({
    platform: platform.optional(),
    operators: z.array(operator).default([]),
    additionalImages: z.array(additionalImage).default([]),
    /** Images never mirrored, whichever part of the set names them. */
    blockedImages: z.array(strictObject({ name: blockedImageName })).default([]),
    /** Charts from HTTP or `oci://` repositories and local paths, with the images they name. */
    helm: helm.optional(),
    /** Listed by oc-mirror's types but not implemented by oc-mirror either. */
    samples: z.array(image).default([]),
  });

  const storageConfig = strictObject({
    local: strictObject({ path: nonEmptyText }).optional(),
    registry: strictObject({ imageURL: nonEmptyText, skipTLS: boolFlag }).optional(),
  });

  return {
    platform,
    operator,
    additionalImage,
    helm,
    mirror,
    storageConfig: v1Only(storageConfig, 'oc-mirror v2 and meshmirror keep their metadata in the cache and workspace folders: remove it'),
  };
}

function buildImageSetSchema<V extends ImageSetApiVersion>(apiVersion: V) {
  const { mirror, storageConfig } = imageSetParts(apiVersion);
  const archiveSizeMessage = (issue: { input?: unknown }) => `expected a number of GiB > 0, got ${describeConfigValue(issue.input)}`;

  return strictObject({
    kind: z.literal(IMAGESET_KIND, {
      error: (issue) => `expected ${IMAGESET_KIND}, got ${describeConfigValue(issue.input)}`,
    }),
    apiVersion: z.literal(apiVersion),
    /** Size of each archive chunk in GiB; fractions allowed. */
    archiveSize: z
      .number({ error: archiveSizeMessage })
      .gt(0, { error: archiveSizeMessage })
      // Beyond this the size in bytes is no longer an exact integer (2^53 bytes is 8 PiB).
      .lte(MAX_ARCHIVE_SIZE_GIB, { error: (issue) => `expected a number of GiB up to ${MAX_ARCHIVE_SIZE_GIB}, got ${describeConfigValue(issue.input)}` })
      .default(DEFAULT_ARCHIVE_SIZE_GIB),
    storageConfig,
    mirror,
    /** meshmirror's run settings; oc-mirror rejects files that carry this block. */
    meshmirror: MeshmirrorSettingsSchema.optional(),
  });
}

export const ImageSetConfigV2Alpha1Schema = buildImageSetSchema(IMAGESET_API_V2ALPHA1);
export const ImageSetConfigV1Alpha2Schema = buildImageSetSchema(IMAGESET_API_V1ALPHA2);

/** The whole ImageSetConfiguration, in either apiVersion. */
export const ImageSetConfigSchema = z.discriminatedUnion('apiVersion', [ImageSetConfigV2Alpha1Schema, ImageSetConfigV1Alpha2Schema], {
  error: (issue) => {
    if (issue.code !== 'invalid_union') return undefined;
    const given = issue.input !== null && typeof issue.input === 'object' ? (issue.input as Record<string, unknown>)['apiVersion'] : undefined;
    const accepted = `${IMAGESET_API_V2ALPHA1} or ${IMAGESET_API_V1ALPHA2}`;
    if (given === undefined) return `required field is missing (expected ${accepted})`;
    if (given === 'mirror.openshift.io/v1alpha1') {
      return `mirror.openshift.io/v1alpha1 is oc-mirror's first format, which meshmirror does not read; rewrite it as ${IMAGESET_API_V2ALPHA1}`;
    }
    return `expected ${accepted}, got ${describeConfigValue(given)}`;
  },
});

export type ImageSetConfig = z.output<typeof ImageSetConfigSchema>;
export type ImageSetMirror = ImageSetConfig['mirror'];
export type PlatformConfig = NonNullable<ImageSetMirror['platform']>;
export type ReleaseChannelConfig = PlatformConfig['channels'][number];
export type OperatorCatalogConfig = ImageSetMirror['operators'][number];
export type OperatorPackageConfig = OperatorCatalogConfig['packages'][number];
export type OperatorChannelConfig = OperatorPackageConfig['channels'][number];
export type AdditionalImageConfig = ImageSetMirror['additionalImages'][number];
export type BlockedImageConfig = ImageSetMirror['blockedImages'][number];
export type HelmConfig = NonNullable<ImageSetMirror['helm']>;

// ---- the DeleteImageSetConfiguration ----

export const DELETE_IMAGESET_KIND = 'DeleteImageSetConfiguration';

/**
 * oc-mirror v2's DeleteImageSetConfiguration: what to delete from a mirror registry, named as an
 * ImageSetConfiguration names what to mirror (`delete:` holds `platform`, `operators`,
 * `additionalImages` and `helm` as `mirror:` does, read with the v2alpha1 rules whatever the
 * apiVersion, as oc-mirror reads it). A `mirror:` key, `blockedImages`, unknown fields, and a
 * catalog or release channel listed twice are errors, as in oc-mirror.
 */
export const DeleteImageSetConfigSchema = (() => {
  const { platform, operator, additionalImage, helm } = imageSetParts(IMAGESET_API_V2ALPHA1);
  const content = strictObject({
    platform: platform.optional(),
    operators: z.array(operator).default([]),
    additionalImages: z.array(additionalImage).default([]),
    helm: helm.optional(),
    blockedImages: z.undefined({ error: 'not part of a DeleteImageSetConfiguration: it lists only what to delete' }).optional(),
  }).superRefine((d, ctx) => {
    const catalogs = new Map<string, number>();
    d.operators.forEach((op, i) => {
      // oc-mirror's unique name of a catalog: where it comes from and where it goes.
      const key = `${op.catalog} ${op.targetCatalog ?? ''} ${op.targetTag ?? ''}`;
      const first = catalogs.get(key);
      if (first === undefined) catalogs.set(key, i);
      else ctx.addIssue({ code: 'custom', path: ['operators', i, 'catalog'], message: `catalog "${op.catalog}" is already listed at operators[${first}]` });
    });
    // oc-mirror compares channel names only; the platform's own check covers the same name and type.
    const channels = d.platform?.channels ?? [];
    channels.forEach((channel, i) => {
      const first = channels.findIndex((c) => c.name === channel.name);
      if (first !== i && channels[first]?.type !== channel.type) {
        ctx.addIssue({
          code: 'custom',
          path: ['platform', 'channels', i, 'name'],
          message: `release channel "${channel.name}" is already listed at channels[${first}]`,
        });
      }
    });
  });
  return strictObject({
    kind: z.literal(DELETE_IMAGESET_KIND, {
      error: (issue) =>
        `expected ${DELETE_IMAGESET_KIND}, got ${describeConfigValue(issue.input)}${issue.input === IMAGESET_KIND ? ' (delete reads what to delete from a DeleteImageSetConfiguration, under delete:)' : ''}`,
    }),
    /** Any apiVersion, as oc-mirror reads it (its own examples say v1alpha2; the copy it saves says v2alpha1). */
    apiVersion: nonEmptyText,
    delete: content,
    mirror: z.undefined({ error: `not allowed in a ${DELETE_IMAGESET_KIND}: list what to delete under delete:` }).optional(),
  });
})();

export type DeleteImageSetConfig = z.output<typeof DeleteImageSetConfigSchema>;

/**
 * The ImageSetConfiguration that mirrors what a DeleteImageSetConfiguration deletes: resolving it
 * names exactly the images a mirror run of the same content pushed.
 */
export function imageSetOfDelete(config: DeleteImageSetConfig): ImageSetConfig {
  const { platform, operators, additionalImages, helm } = config.delete;
  return {
    kind: IMAGESET_KIND,
    apiVersion: IMAGESET_API_V2ALPHA1,
    archiveSize: DEFAULT_ARCHIVE_SIZE_GIB,
    mirror: {
      ...(platform === undefined ? {} : { platform }),
      operators,
      additionalImages,
      ...(helm === undefined ? {} : { helm }),
      blockedImages: [],
      samples: [],
    },
  };
}

/** Something the file asks for that meshmirror reads but does not act on. */
export interface ImageSetNotice {
  /** The field, e.g. `mirror.helm`. */
  path: string;
  message: string;
}

/** The parts of a valid configuration that meshmirror accepts but does not mirror (yet); for warnings. */
export function unsupportedImageSetContent(config: ImageSetConfig): ImageSetNotice[] {
  const notices: ImageSetNotice[] = [];
  config.mirror.operators.forEach((op, i) => {
    if (!op.skipDependencies && !op.includeDependencies && op.packages.length > 0) {
      notices.push({
        path: `mirror.operators[${i}]`,
        message: 'packages that the selected bundles depend on are added only with includeDependencies: true or --include-dependencies; else list them under packages',
      });
    }
    op.packages.forEach((pkg, p) => {
      if (pkg.selectors.length > 0)
        notices.push({ path: `mirror.operators[${i}].packages[${p}].selectors`, message: 'ignored: related images are not filtered by label yet' });
    });
  });
  if (config.mirror.samples.length > 0) {
    notices.push({ path: 'mirror.samples', message: 'samples are not implemented (by oc-mirror either) and are ignored' });
  }
  if (config.storageConfig !== undefined) {
    notices.push({ path: 'storageConfig', message: 'ignored: meshmirror keeps its metadata in the cache folder' });
  }
  return notices;
}
