/**
 * `meshmirror list releases` and `meshmirror list operators`: what oc-mirror's `list` shows, for
 * writing an ImageSetConfiguration. Releases come from the update graph (the channel's versions, or
 * the channels a version's graph knows); operators from a catalog image's file-based configs
 * (packages with their default channel, a package's channels with their heads, a channel's versions).
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { createLogger, MeshmirrorError, resolveTransferSettings, type LogLevel } from '@meshmirror/shared';
import { supplyLayerSource } from '../../resolve/layer-source.ts';
import { openCatalog } from '../../resolve/catalog/operator-catalogs.ts';
import { channelHead } from '../../resolve/catalog/filter-catalog.ts';
import type { CatalogPackage } from '../../resolve/catalog/declarative-config.ts';
import { compareVersions, UpdateGraphClient } from '../../resolve/release/update-graph.ts';
import { blobSupply, openLocalAgent, registryClients } from './mirror.ts';

export interface ListReleasesFlags {
  channel?: string;
  version?: string;
  channels?: boolean;
  filterByArchs: string[];
  updateUrl?: string;
  output: string;
  logLevel: string;
}

const ARCHITECTURES = ['amd64', 'arm64', 's390x', 'ppc64le', 'multi'];

export async function runListReleasesCommand(flags: ListReleasesFlags): Promise<number> {
  checkOutput(flags.output);
  if (flags.channels === true && flags.version === undefined)
    throw new MeshmirrorError('MM_USAGE', '--channels needs --version (the channels of that version are listed)');
  const channel = flags.channel ?? (flags.version === undefined ? undefined : `stable-${flags.version}`);
  if (channel === undefined) throw new MeshmirrorError('MM_USAGE', 'give --channel C or --version X.Y (its stable channel)');
  const unknown = flags.filterByArchs.filter((a) => !ARCHITECTURES.includes(a));
  if (unknown.length > 0)
    throw new MeshmirrorError('MM_USAGE', `--filter-by-archs: unknown architecture(s) ${unknown.join(', ')} (known: ${ARCHITECTURES.join(', ')})`);
  const updateUrl = flags.updateUrl ?? process.env['UPDATE_URL_OVERRIDE'];
  const graph = new UpdateGraphClient({
    ...(updateUrl === undefined || updateUrl === '' ? {} : { baseUrl: updateUrl }),
    logger: createLogger({ level: flags.logLevel as LogLevel }),
  });
  try {
    if (flags.channels === true) {
      const answer = await graph.channelGraph({ channel, arch: flags.filterByArchs[0] ?? 'amd64', type: 'ocp' });
      const channels = [...new Set(answer.nodes.flatMap((n) => n.channels))].sort();
      print(flags.output, { version: flags.version, channels }, () => [`Listing channels for version ${flags.version ?? ''}:`, '', ...channels]);
      return 0;
    }
    const lists: Array<{ channel: string; architecture: string; versions: string[] }> = [];
    for (const architecture of flags.filterByArchs) {
      const answer = await graph.channelGraph({ channel, arch: architecture, type: 'ocp' });
      const versions = answer.nodes.map((n) => n.version).sort(compareVersions);
      if (versions.length === 0) throw new MeshmirrorError('MM_NOT_FOUND', `channel ${channel} (${architecture}): no versions found`);
      lists.push({ channel, architecture, versions });
    }
    print(flags.output, lists, () => lists.flatMap((l) => [`Channel: ${l.channel}`, `Architecture: ${l.architecture}`, ...l.versions]));
    return 0;
  } finally {
    await graph.close();
  }
}

export interface ListOperatorsFlags {
  catalog: string;
  package?: string;
  channel?: string;
  cacheDir?: string;
  authfile?: string;
  srcTlsVerify?: boolean;
  output: string;
  logLevel: string;
}

export async function runListOperatorsCommand(flags: ListOperatorsFlags): Promise<number> {
  checkOutput(flags.output);
  if (flags.channel !== undefined && flags.package === undefined) throw new MeshmirrorError('MM_USAGE', '--channel needs --package');
  const logger = createLogger({ level: flags.logLevel as LogLevel });
  const settings = resolveTransferSettings(undefined, flags.srcTlsVerify === undefined ? {} : { srcTlsVerify: flags.srcTlsVerify });
  const { retry, backoff, clientFor } = await registryClients(settings, flags.authfile, logger);
  const client = clientFor('source');
  const cacheDir = resolve(flags.cacheDir ?? join(homedir(), '.meshmirror'));
  const { store, agent } = await openLocalAgent({ cacheDir, settings, client, retry, backoff, logger });
  try {
    const layers = supplyLayerSource(blobSupply(agent, store, settings), store, { pieceSize: 64 * 1024 * 1024, logger });
    const { declarative, source } = await openCatalog(flags.catalog, { client, layers, architectures: ['amd64'] });
    const packages = [...declarative.packages.values()].sort((a, b) => a.name.localeCompare(b.name));
    if (flags.package === undefined) {
      const rows = packages.map((p) => ({ name: p.name, displayName: displayName(p), defaultChannel: p.defaultChannel ?? '' }));
      print(flags.output, { catalog: source, packages: rows }, () =>
        table([['NAME', 'DISPLAY NAME', 'DEFAULT CHANNEL'], ...rows.map((r) => [r.name, r.displayName, r.defaultChannel])]),
      );
      return 0;
    }
    const pkg = declarative.packages.get(flags.package);
    if (pkg === undefined) throw new MeshmirrorError('MM_NOT_FOUND', `catalog ${source} has no package ${flags.package}`);
    const channels = [...pkg.channels.values()].sort((a, b) => a.name.localeCompare(b.name));
    if (flags.channel === undefined) {
      const rows = channels.map((c) => ({ channel: c.name, head: channelHead(c, pkg)?.name ?? '' }));
      print(flags.output, { catalog: source, package: pkg.name, defaultChannel: pkg.defaultChannel ?? '', channels: rows }, () => [
        ...table([
          ['NAME', 'DISPLAY NAME', 'DEFAULT CHANNEL'],
          [pkg.name, displayName(pkg), pkg.defaultChannel ?? ''],
        ]),
        '',
        ...table([['PACKAGE', 'CHANNEL', 'HEAD'], ...rows.map((r) => [pkg.name, r.channel, r.head])]),
      ]);
      return 0;
    }
    const channel = pkg.channels.get(flags.channel);
    if (channel === undefined) throw new MeshmirrorError('MM_NOT_FOUND', `package ${pkg.name} in catalog ${source} has no channel ${flags.channel}`);
    const versions = channel.entries.map((e) => pkg.bundles.get(e.name)?.version ?? e.name).sort(compareVersions);
    print(flags.output, { catalog: source, package: pkg.name, channel: channel.name, versions }, () => ['VERSIONS', ...versions]);
    return 0;
  } finally {
    await agent.close();
    await client.close();
  }
}

/** The package's display name, from its head bundle's `olm.csv.metadata` when the catalog has it. */
function displayName(pkg: CatalogPackage): string {
  const channel = pkg.channels.get(pkg.defaultChannel ?? '') ?? [...pkg.channels.values()][0];
  const head = channel === undefined ? undefined : channelHead(channel, pkg);
  const properties: unknown = head === undefined ? undefined : pkg.bundles.get(head.name)?.object.properties;
  if (!Array.isArray(properties)) return '';
  for (const p of properties as Array<{ type?: unknown; value?: { displayName?: unknown } }>) {
    if (p.type === 'olm.csv.metadata' && typeof p.value?.displayName === 'string') return p.value.displayName;
  }
  return '';
}

function checkOutput(output: string): void {
  if (output !== 'text' && output !== 'json') throw new MeshmirrorError('MM_USAGE', `--output: expected text or json, got "${output}"`);
}

function print(output: string, json: unknown, text: () => string[]): void {
  process.stdout.write(output === 'json' ? `${JSON.stringify(json, null, 2)}\n` : `${text().join('\n')}\n`);
}

/** Columns padded to their widest cell and two spaces apart, as oc-mirror's tabwriter prints them. */
function table(rows: string[][]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  '));
}
