/**
 * Selecting the part of an operator catalog that an ImageSetConfiguration asks for, with oc-mirror
 * v2's rules, and rendering the result as the `/configs` of the re-published catalog.
 *
 * Per package (all packages when none are listed):
 * - `packages[].bundles` listed: exactly those bundles, in the (listed, else all) channels that
 *   contain them.
 * - a version range (`minVersion`/`maxVersion`, on the channel or else the package): walk each
 *   channel's `replaces` chain from its head, also looking at the entries each visited entry
 *   `skips`, and keep the entries whose version is in the range. Entries off that chain (only
 *   reachable through `skipRange`) are not kept: opm finds heads and
 *   walks channels by `replaces` and `skips` only.
 * - `full: true`: every entry of every kept channel.
 * - otherwise: each kept channel's head only.
 * Channels are the listed ones, else all of the package's. What cannot be honoured (a package or
 * channel not in the catalog, a range that keeps nothing, a default channel that is filtered out)
 * is a problem for the caller to report; it never stops the other packages.
 */
import { MeshmirrorError, type OperatorCatalogConfig, type OperatorChannelConfig, type OperatorPackageConfig } from '@meshmirror/shared';
import {
  SCHEMA_BUNDLE,
  SCHEMA_CHANNEL,
  type CatalogBundle,
  type CatalogChannel,
  type CatalogPackage,
  type ChannelEntryObject,
  type DeclarativeConfig,
  type OtherObject,
} from './declarative-config.ts';

import { addDependencies, type AddedDependency } from './dependencies.ts';

const SCHEMA_DEPRECATIONS = 'olm.deprecations';

/** Something the configuration asks for that the catalog cannot give. */
export interface CatalogProblem {
  package: string;
  channel?: string;
  bundle?: string;
  message: string;
}

/** An image a kept bundle needs, attributed to the first kept bundle (by package, then name) that names it. */
export interface CatalogRelatedImage {
  image: string;
  /** The related image's name in the bundle; `''` when the bundle gives none. */
  name: string;
  bundle: string;
  package: string;
}

export interface FilteredCatalog {
  /** Only the kept packages, channels (entries pruned to the kept bundles) and bundles. */
  config: DeclarativeConfig;
  /** Every kept bundle, sorted by package then name. */
  bundles: CatalogBundle[];
  /** Every image to mirror for the kept bundles, bundle images included, each image once. */
  relatedImages: CatalogRelatedImage[];
  problems: CatalogProblem[];
  /** With `includeDependencies`: the bundles added because selected ones need them, and why. */
  dependencies: AddedDependency[];
}

/**
 * Filters `config` by one `mirror.operators[]` entry. `where` names the catalog in problems
 * (usually its reference). With `includeDependencies`, the bundles the selected ones need are added.
 */
export function filterCatalog(
  config: DeclarativeConfig,
  operator: OperatorCatalogConfig,
  where: string,
  options: { includeDependencies?: boolean } = {},
): FilteredCatalog {
  const problems: CatalogProblem[] = [];
  // The configuration entries of each selected package. A package listed twice is selected twice
  // and the two selections are merged, as oc-mirror v1 did with split listings.
  const requests = new Map<string, OperatorPackageConfig[]>();
  if (operator.packages.length === 0) {
    for (const packageName of config.packages.keys()) requests.set(packageName, []);
  }
  const missing = new Set<string>();
  for (const pkgConfig of operator.packages) {
    if (config.packages.has(pkgConfig.name)) {
      requests.set(pkgConfig.name, [...(requests.get(pkgConfig.name) ?? []), pkgConfig]);
    } else if (!missing.has(pkgConfig.name)) {
      missing.add(pkgConfig.name);
      problems.push({ package: pkgConfig.name, message: `package "${pkgConfig.name}" is not in catalog ${where}` });
    }
  }

  const selections = new Map<string, Selection>();
  for (const packageName of [...requests.keys()].sort(compareText)) {
    const pkg = config.packages.get(packageName) as CatalogPackage;
    const pkgConfigs = requests.get(packageName) ?? [];
    const selection: Selection = new Map();
    if (pkgConfigs.length === 0) mergeSelection(selection, selectPackage(pkg, undefined, operator.full, where, problems));
    for (const pkgConfig of pkgConfigs) mergeSelection(selection, selectPackage(pkg, pkgConfig, operator.full, where, problems));
    selections.set(packageName, selection);
  }
  const dependencies = options.includeDependencies === true ? addDependencies(config, selections, problems, channelHead) : [];

  const filtered: DeclarativeConfig = { packages: new Map(), others: config.others };
  for (const packageName of [...selections.keys()].sort(compareText)) {
    const pkg = config.packages.get(packageName) as CatalogPackage;
    const configuredDefault = requests.get(packageName)?.find((c) => c.defaultChannel !== undefined)?.defaultChannel;
    const kept = buildFilteredPackage(pkg, selections.get(packageName) ?? new Map<string, Set<string>>(), configuredDefault, problems);
    if (kept !== undefined) filtered.packages.set(packageName, kept);
  }

  const bundles = [...filtered.packages.values()].flatMap((pkg) => [...pkg.bundles.values()]);
  return { config: filtered, bundles, relatedImages: collectRelatedImages(bundles), problems, dependencies };
}

/** Channel name → names of the entries kept in it. */
type Selection = Map<string, Set<string>>;

function mergeSelection(into: Selection, from: Selection): void {
  for (const [channel, entries] of from) {
    const existing = into.get(channel);
    if (existing === undefined) into.set(channel, new Set(entries));
    else for (const entry of entries) existing.add(entry);
  }
}

function selectPackage(pkg: CatalogPackage, pkgConfig: OperatorPackageConfig | undefined, full: boolean, where: string, problems: CatalogProblem[]): Selection {
  const selection: Selection = new Map();
  const problem = (message: string, at: { channel?: string; bundle?: string } = {}): void => {
    problems.push({ package: pkg.name, ...at, message });
  };

  const listed = pkgConfig?.channels ?? [];
  const channels: Array<{ channel: CatalogChannel; channelConfig?: OperatorChannelConfig }> = [];
  for (const channelConfig of listed) {
    const channel = pkg.channels.get(channelConfig.name);
    if (channel !== undefined) channels.push({ channel, channelConfig });
    else problem(`channel "${channelConfig.name}" is not in package "${pkg.name}" of catalog ${where}`, { channel: channelConfig.name });
  }
  if (listed.length === 0) {
    for (const name of [...pkg.channels.keys()].sort(compareText)) channels.push({ channel: pkg.channels.get(name) as CatalogChannel });
    if (channels.length === 0) problem(`package "${pkg.name}" has no channels in catalog ${where}`);
  }

  const wantedBundles = pkgConfig?.bundles.map((b) => b.name) ?? [];
  if (wantedBundles.length > 0) {
    // Exact bundles: a version range and `full` do not apply (oc-mirror refuses the mix).
    const wanted = new Set(wantedBundles);
    for (const { channel, channelConfig } of channels) {
      const entries = channel.entries.filter((e) => wanted.has(e.name)).map((e) => e.name);
      if (entries.length > 0) selection.set(channel.name, new Set(entries));
      // A channel the user named should hold some of the bundles; one we merely looked in need not.
      else if (channelConfig !== undefined) {
        problem(`none of the bundles listed for package "${pkg.name}" is in its channel "${channel.name}"`, { channel: channel.name });
      }
    }
    for (const bundle of wanted) {
      if (!pkg.bundles.has(bundle)) problem(`bundle "${bundle}" is not in package "${pkg.name}" of catalog ${where}`, { bundle });
      else if (![...selection.values()].some((entries) => entries.has(bundle))) {
        problem(`bundle "${bundle}" of package "${pkg.name}" is in none of the selected channels`, { bundle });
      }
    }
    return selection;
  }

  for (const { channel, channelConfig } of channels) {
    const range = versionRange(pkg, pkgConfig, channelConfig, problems);
    if (range === 'invalid') continue;
    if (range === undefined && full) {
      selection.set(channel.name, new Set(channel.entries.map((e) => e.name)));
      continue;
    }
    const head = channelHead(channel, pkg);
    if (head === undefined) {
      problem(`channel "${channel.name}" of package "${pkg.name}" has no head (its replaces/skips form a cycle)`, { channel: channel.name });
      continue;
    }
    if (range === undefined) {
      selection.set(channel.name, new Set([head.name]));
      continue;
    }
    const entries = walkRange(channel, pkg, head, range);
    if (entries.length > 0) selection.set(channel.name, new Set(entries));
    else {
      problem(`no bundle of channel "${channel.name}" of package "${pkg.name}" is within ${range.text} (head ${head.name})`, {
        channel: channel.name,
      });
    }
  }
  return selection;
}

/** The kept part of a package, with its default channel fixed up; undefined when nothing is kept. */
function buildFilteredPackage(
  pkg: CatalogPackage,
  selection: Selection,
  configuredDefault: string | undefined,
  problems: CatalogProblem[],
): CatalogPackage | undefined {
  const channels = new Map<string, CatalogChannel>();
  const keptBundles = new Set<string>();
  for (const name of [...selection.keys()].sort(compareText)) {
    const channel = pkg.channels.get(name) as CatalogChannel;
    const keep = selection.get(name) as Set<string>;
    // Entries keep their own `replaces`/`skips` even when those name dropped bundles: opm allows
    // edges to bundles outside the catalog, and they tell the cluster what it may upgrade from.
    const entries = channel.entries.filter((e) => keep.has(e.name));
    if (entries.length === 0) continue;
    for (const entry of entries) keptBundles.add(entry.name);
    channels.set(name, { ...channel, entries, object: entries.length === channel.entries.length ? channel.object : { ...channel.object, entries } });
  }
  if (channels.size === 0) return undefined;

  const defaultChannel = chooseDefaultChannel(pkg, channels, configuredDefault, problems);
  const bundles = new Map<string, CatalogBundle>();
  for (const name of [...keptBundles].sort(compareText)) bundles.set(name, pkg.bundles.get(name) as CatalogBundle);
  const filtered: CatalogPackage = {
    name: pkg.name,
    channels,
    bundles,
    others: pkg.others.map((other) => pruneDeprecations(other, channels, bundles)),
    packageObject: defaultChannel === pkg.defaultChannel ? pkg.packageObject : { ...pkg.packageObject, defaultChannel },
  };
  if (defaultChannel !== undefined) filtered.defaultChannel = defaultChannel;
  return filtered;
}

/**
 * The default channel of the filtered package. `packages[].defaultChannel` wins when it is kept
 * (oc-mirror v2 treats it as an override); else the catalog's own when it is kept; else a problem,
 * and the first kept channel by name, so that the rebuilt catalog still passes `opm validate`.
 * A catalog that names no default channel is left as it is.
 */
function chooseDefaultChannel(
  pkg: CatalogPackage,
  channels: Map<string, CatalogChannel>,
  configured: string | undefined,
  problems: CatalogProblem[],
): string | undefined {
  if (configured !== undefined) {
    if (channels.has(configured)) return configured;
    problems.push({
      package: pkg.name,
      channel: configured,
      message: `defaultChannel "${configured}" set for package "${pkg.name}" is not among its selected channels (${[...channels.keys()].join(', ')})`,
    });
  }
  const original = pkg.defaultChannel;
  if (original === undefined || channels.has(original)) return original;
  // Only one problem per package: a configured channel that is not kept has been reported above.
  if (configured === undefined) {
    problems.push({
      package: pkg.name,
      channel: original,
      message: `default channel "${original}" of package "${pkg.name}" is not selected; set packages[].defaultChannel`,
    });
  }
  return [...channels.keys()][0];
}

/**
 * `olm.deprecations` entries that point at dropped bundles or channels are removed: opm refuses a
 * deprecation of something the catalog does not have. Other schemas are kept as they are.
 */
function pruneDeprecations(other: OtherObject, channels: Map<string, CatalogChannel>, bundles: Map<string, CatalogBundle>): OtherObject {
  if (other.schema !== SCHEMA_DEPRECATIONS || !Array.isArray(other['entries'])) return other;
  const entries = (other['entries'] as unknown[]).filter((entry) => {
    const reference = (entry as { reference?: { schema?: unknown; name?: unknown } } | null)?.reference;
    if (reference?.schema === SCHEMA_BUNDLE) return typeof reference.name === 'string' && bundles.has(reference.name);
    if (reference?.schema === SCHEMA_CHANNEL) return typeof reference.name === 'string' && channels.has(reference.name);
    return true;
  });
  return entries.length === (other['entries'] as unknown[]).length ? other : { ...other, entries };
}

/**
 * The channel head: the entry no other entry of the channel replaces or skips. A valid channel has
 * exactly one; when there are several, the highest version wins (then the name, to be stable).
 */
export function channelHead(channel: CatalogChannel, pkg: CatalogPackage): ChannelEntryObject | undefined {
  const referenced = new Set<string>();
  for (const entry of channel.entries) {
    if (entry.replaces !== undefined && entry.replaces !== '') referenced.add(entry.replaces);
    for (const skipped of entry.skips ?? []) referenced.add(skipped);
  }
  let head: { entry: ChannelEntryObject; version: SemVer | undefined } | undefined;
  for (const entry of channel.entries) {
    if (referenced.has(entry.name)) continue;
    const version = parseSemVer(pkg.bundles.get(entry.name)?.version ?? '');
    if (head === undefined) {
      head = { entry, version };
      continue;
    }
    const byVersion = compareOptionalSemVer(version, head.version);
    if (byVersion > 0 || (byVersion === 0 && compareText(entry.name, head.entry.name) < 0)) head = { entry, version };
  }
  return head?.entry;
}

interface VersionRange {
  min?: SemVer;
  max?: SemVer;
  /** `minVersion 1.2.0, maxVersion 1.4.0`, for messages. */
  text: string;
}

/** The range for one channel: the channel's bounds, else the package's; `'invalid'` after a problem. */
function versionRange(
  pkg: CatalogPackage,
  pkgConfig: OperatorPackageConfig | undefined,
  channelConfig: OperatorChannelConfig | undefined,
  problems: CatalogProblem[],
): VersionRange | undefined | 'invalid' {
  const channelName = channelConfig?.name;
  const problem = (message: string): 'invalid' => {
    // A bad package-level bound is met once per channel; say it once.
    if (!problems.some((p) => p.package === pkg.name && p.message === message)) {
      problems.push({ package: pkg.name, ...(channelName === undefined ? {} : { channel: channelName }), message });
    }
    return 'invalid';
  };
  let minText = channelConfig?.minVersion ?? pkgConfig?.minVersion;
  const maxText = channelConfig?.maxVersion ?? pkgConfig?.maxVersion;
  // oc-mirror v1's `minBundle`: the range starts at that bundle's version.
  const minBundle = channelConfig?.minBundle ?? pkgConfig?.minBundle;
  if (minText === undefined && minBundle !== undefined) {
    const bundle = pkg.bundles.get(minBundle);
    if (bundle === undefined) return problem(`minBundle "${minBundle}" is not a bundle of package "${pkg.name}"`);
    minText = bundle.version;
  }
  if (minText === undefined && maxText === undefined) return undefined;
  const bounds = [minText === undefined ? '' : `minVersion ${minText}`, maxText === undefined ? '' : `maxVersion ${maxText}`];
  const range: VersionRange = { text: bounds.filter((t) => t !== '').join(', ') };
  if (minText !== undefined) {
    const min = parseSemVer(minText);
    if (min === undefined) return problem(`minVersion "${minText}" of package "${pkg.name}" is not a version`);
    range.min = min;
  }
  if (maxText !== undefined) {
    const max = parseSemVer(maxText);
    if (max === undefined) return problem(`maxVersion "${maxText}" of package "${pkg.name}" is not a version`);
    range.max = max;
  }
  if (range.min !== undefined && range.max !== undefined && compareSemVer(range.min, range.max) > 0) {
    return problem(`minVersion ${minText} of package "${pkg.name}" is above its maxVersion ${maxText}`);
  }
  return range;
}

/**
 * Entries of the channel within `range`: the `replaces` chain from the head, plus what each entry
 * on it skips. The walk always starts at the head, so a maxVersion below the head still finds the
 * older bundles; the chain is followed to its end because only the versions decide.
 */
function walkRange(channel: CatalogChannel, pkg: CatalogPackage, head: ChannelEntryObject, range: VersionRange): string[] {
  const byName = new Map(channel.entries.map((e) => [e.name, e]));
  const keep = new Set<string>();
  const consider = (name: string): void => {
    const version = parseSemVer(pkg.bundles.get(name)?.version ?? '');
    if (version === undefined) return;
    if (range.min !== undefined && compareSemVer(version, range.min) < 0) return;
    if (range.max !== undefined && compareSemVer(version, range.max) > 0) return;
    keep.add(name);
  };
  const visited = new Set<string>();
  for (let entry: ChannelEntryObject | undefined = head; entry !== undefined && !visited.has(entry.name); entry = byName.get(entry.replaces ?? '')) {
    visited.add(entry.name);
    consider(entry.name);
    for (const skipped of entry.skips ?? []) if (byName.has(skipped)) consider(skipped);
  }
  return channel.entries.filter((e) => keep.has(e.name)).map((e) => e.name);
}

function collectRelatedImages(bundles: CatalogBundle[]): CatalogRelatedImage[] {
  const byImage = new Map<string, CatalogRelatedImage>();
  for (const bundle of bundles) {
    // The bundle image comes first: it must be mirrored whether or not the bundle lists it.
    const listedName = bundle.relatedImages.find((r) => r.image === bundle.image)?.name ?? '';
    const images = bundle.image === '' ? bundle.relatedImages : [{ name: listedName, image: bundle.image }, ...bundle.relatedImages];
    for (const { name, image } of images) {
      const seen = byImage.get(image);
      if (seen === undefined) byImage.set(image, { image, name, bundle: bundle.name, package: bundle.package });
      // A name is more useful than none; take the first one any bundle gives.
      else if (seen.name === '' && name !== '') seen.name = name;
    }
  }
  return [...byImage.values()];
}

/**
 * The `/configs` files of a filtered catalog: `<package>/catalog.json` per package (a JSON stream:
 * the package, its channels by name, its bundles by name, then its other objects), plus a top-level
 * `catalog.json` for objects that belong to no package. Same input, same bytes.
 */
export function renderPackageFiles(filtered: DeclarativeConfig): Array<{ path: string; content: string }> {
  const files: Array<{ path: string; content: string }> = [];
  for (const name of [...filtered.packages.keys()].sort(compareText)) {
    // The name becomes a folder in the new layer: it must not be able to climb out of /configs.
    if (name === '.' || name === '..' || /[/\\\0]/.test(name)) {
      throw new MeshmirrorError('MM_MANIFEST_INVALID', `package name "${name}" cannot be used as a folder name`, { data: { package: name } });
    }
    const pkg = filtered.packages.get(name) as CatalogPackage;
    const objects: object[] = [
      pkg.packageObject,
      ...[...pkg.channels.keys()].sort(compareText).map((c) => (pkg.channels.get(c) as CatalogChannel).object),
      ...[...pkg.bundles.keys()].sort(compareText).map((b) => (pkg.bundles.get(b) as CatalogBundle).object),
      ...pkg.others,
    ];
    files.push({ path: `${name}/catalog.json`, content: renderJsonStream(objects) });
  }
  if (filtered.others.length > 0) files.push({ path: 'catalog.json', content: renderJsonStream(filtered.others) });
  return files;
}

function renderJsonStream(objects: object[]): string {
  return `${objects.map((object) => JSON.stringify(object, null, 2)).join('\n')}\n`;
}

/** Code-unit order: unlike localeCompare, the same on every machine. */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---- semantic versions (bundle versions are semver; configuration bounds may omit minor/patch) ----

interface SemVer {
  major: number;
  minor: number;
  patch: number;
  prerelease: Array<string | number>;
}

const SEMVER = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

/** `1.2.3-rc.1+build`; `v1.2` as `1.2.0`, as Masterminds/semver (oc-mirror's parser) reads it. */
function parseSemVer(text: string): SemVer | undefined {
  const match = SEMVER.exec(text.trim());
  if (match === null) return undefined;
  return {
    major: Number(match[1]),
    minor: Number(match[2] ?? 0),
    patch: Number(match[3] ?? 0),
    prerelease: match[4] === undefined ? [] : match[4].split('.').map((part) => (/^\d+$/.test(part) ? Number(part) : part)),
  };
}

/** Semver precedence: build metadata ignored, a prerelease below its release. */
function compareSemVer(a: SemVer, b: SemVer): number {
  const core = a.major - b.major || a.minor - b.minor || a.patch - b.patch;
  if (core !== 0) return Math.sign(core);
  if (a.prerelease.length === 0 && b.prerelease.length === 0) return 0;
  if (a.prerelease.length === 0) return 1;
  if (b.prerelease.length === 0) return -1;
  for (let i = 0; i < Math.max(a.prerelease.length, b.prerelease.length); i++) {
    const x = a.prerelease[i];
    const y = b.prerelease[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return x < y ? -1 : 1;
    // Numeric identifiers sort below alphanumeric ones.
    if (typeof x === 'number') return -1;
    if (typeof y === 'number') return 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

/** A version that cannot be parsed sorts below every version. */
function compareOptionalSemVer(a: SemVer | undefined, b: SemVer | undefined): number {
  if (a === undefined || b === undefined) return (a === undefined ? 0 : 1) - (b === undefined ? 0 : 1);
  return compareSemVer(a, b);
}
