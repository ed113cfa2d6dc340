/**
 * Operator dependencies, opt-in (`--include-dependencies`, `includeDependencies: true`): every
 * selected bundle's `olm.package.required` (a package in a version range) and `olm.gvk.required`
 * (an API some bundle provides as `olm.gvk`) is followed to a bundle of the same catalog that
 * satisfies it, and that bundle is added, with what it needs in turn. When the selection already
 * satisfies a requirement nothing is added. Among the bundles that satisfy it, OLM's preference is
 * followed: a channel head of the package's default channel, then any channel head, then the
 * highest version, in the default channel first.
 */
import semver from 'semver';
import type { CatalogBundle, CatalogChannel, CatalogPackage, ChannelEntryObject, DeclarativeConfig } from './declarative-config.ts';

/** The filter's channel head rule (passed in: the filter calls this module). */
export type ChannelHead = (channel: CatalogChannel, pkg: CatalogPackage) => ChannelEntryObject | undefined;

/** A requirement no bundle of the catalog satisfies (the filter's problem shape). */
interface Problem {
  package: string;
  bundle?: string;
  message: string;
}

/** A bundle added because a selected bundle needs it. */
export interface AddedDependency {
  package: string;
  channel: string;
  bundle: string;
  /** The bundle that needs it. */
  neededBy: string;
  /** What it satisfies: `package cert-manager >=1.10.0 <2.0.0` or `API example.com/v1 Widget`. */
  requirement: string;
}

/** Channel name → entry names kept, per package: the filter's selection. */
export type Selections = Map<string, Map<string, Set<string>>>;

type Requirement =
  { kind: 'package'; packageName: string; range: string; text: string } | { kind: 'gvk'; group: string; version: string; kindName: string; text: string };

/** Adds to `selections` the bundles that the selected ones need, transitively; returns what was added and why. */
export function addDependencies(config: DeclarativeConfig, selections: Selections, problems: Problem[], channelHead: ChannelHead): AddedDependency[] {
  const added: AddedDependency[] = [];
  const queue = [...selectedBundles(config, selections)];
  const seen = new Set(queue.map((b) => b.name));
  while (queue.length > 0) {
    const bundle = queue.shift()!;
    for (const requirement of requirementsOf(bundle)) {
      const selected = [...selectedBundles(config, selections)];
      if (selected.some((b) => satisfies(b, requirement))) continue;
      const choice = bestCandidate(config, requirement, channelHead);
      if (choice === undefined) {
        problems.push({
          package: bundle.package,
          bundle: bundle.name,
          message: `bundle "${bundle.name}" needs ${requirement.text}, which no bundle of the catalog provides`,
        });
        continue;
      }
      const channels = selections.get(choice.bundle.package) ?? new Map<string, Set<string>>();
      const entries = channels.get(choice.channel) ?? new Set<string>();
      entries.add(choice.bundle.name);
      channels.set(choice.channel, entries);
      selections.set(choice.bundle.package, channels);
      added.push({ package: choice.bundle.package, channel: choice.channel, bundle: choice.bundle.name, neededBy: bundle.name, requirement: requirement.text });
      if (!seen.has(choice.bundle.name)) {
        seen.add(choice.bundle.name);
        queue.push(choice.bundle);
      }
    }
  }
  return added;
}

function* selectedBundles(config: DeclarativeConfig, selections: Selections): Generator<CatalogBundle> {
  for (const [packageName, channels] of selections) {
    const pkg = config.packages.get(packageName);
    if (pkg === undefined) continue;
    const names = new Set([...channels.values()].flatMap((entries) => [...entries]));
    for (const name of names) {
      const bundle = pkg.bundles.get(name);
      if (bundle !== undefined) yield bundle;
    }
  }
}

function propertiesOf(bundle: CatalogBundle): Array<{ type: string; value: Record<string, unknown> }> {
  const properties: unknown = bundle.object.properties;
  if (!Array.isArray(properties)) return [];
  return properties.flatMap((p: unknown) => {
    const property = p as { type?: unknown; value?: unknown };
    return typeof property.type === 'string' && typeof property.value === 'object' && property.value !== null
      ? [{ type: property.type, value: property.value as Record<string, unknown> }]
      : [];
  });
}

function requirementsOf(bundle: CatalogBundle): Requirement[] {
  return propertiesOf(bundle).flatMap((p): Requirement[] => {
    if (p.type === 'olm.package.required' && typeof p.value['packageName'] === 'string') {
      const range = typeof p.value['versionRange'] === 'string' && p.value['versionRange'] !== '' ? p.value['versionRange'] : '*';
      return [{ kind: 'package', packageName: p.value['packageName'], range, text: `package ${p.value['packageName']} ${range}` }];
    }
    if (p.type === 'olm.gvk.required' && typeof p.value['kind'] === 'string') {
      const group = typeof p.value['group'] === 'string' ? p.value['group'] : '';
      const version = typeof p.value['version'] === 'string' ? p.value['version'] : '';
      return [{ kind: 'gvk', group, version, kindName: p.value['kind'], text: `API ${group}/${version} ${p.value['kind']}` }];
    }
    return [];
  });
}

function satisfies(bundle: CatalogBundle, requirement: Requirement): boolean {
  if (requirement.kind === 'package') {
    const version = semver.coerce(bundle.version, { includePrerelease: true })?.version ?? bundle.version;
    return bundle.package === requirement.packageName && semver.valid(version) !== null && semver.satisfies(version, requirement.range, { includePrerelease: true });
  }
  return propertiesOf(bundle).some(
    (p) => p.type === 'olm.gvk' && p.value['group'] === requirement.group && p.value['version'] === requirement.version && p.value['kind'] === requirement.kindName,
  );
}

/** The bundle OLM would pick for the requirement, and the channel it is taken from. */
function bestCandidate(config: DeclarativeConfig, requirement: Requirement, channelHead: ChannelHead): { bundle: CatalogBundle; channel: string } | undefined {
  const packages = requirement.kind === 'package' ? [config.packages.get(requirement.packageName)].filter((p) => p !== undefined) : [...config.packages.values()];
  let best: { bundle: CatalogBundle; channel: string; rank: number[] } | undefined;
  for (const pkg of packages.sort((a, b) => a.name.localeCompare(b.name))) {
    for (const channel of [...pkg.channels.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      const head = channelHead(channel, pkg)?.name;
      for (const entry of channel.entries) {
        const bundle = pkg.bundles.get(entry.name);
        if (bundle === undefined || !satisfies(bundle, requirement)) continue;
        const rank = [isDefault(pkg, channel.name) && entry.name === head ? 1 : 0, entry.name === head ? 1 : 0, isDefault(pkg, channel.name) ? 1 : 0];
        if (best === undefined || compareRank(rank, best.rank, bundle, best.bundle) > 0) best = { bundle, channel: channel.name, rank };
      }
    }
  }
  return best === undefined ? undefined : { bundle: best.bundle, channel: best.channel };
}

function isDefault(pkg: CatalogPackage, channel: string): boolean {
  return pkg.defaultChannel === channel;
}

function compareRank(a: number[], b: number[], bundleA: CatalogBundle, bundleB: CatalogBundle): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return (a[i] ?? 0) - (b[i] ?? 0);
  const va = semver.coerce(bundleA.version)?.version;
  const vb = semver.coerce(bundleB.version)?.version;
  if (va !== undefined && vb !== undefined && va !== vb) return semver.compare(va, vb);
  return 0;
}
