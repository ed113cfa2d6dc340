/**
 * `meshmirror list releases` and `list operators` against the OpenShift fixture's update graph and
 * catalog (the real formats): what they print is checked against the fixture's own channels,
 * packages and channel heads.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMeshmirror } from './support/cli.ts';
import { compareVersions, DEFAULT_CHANNELS, startOpenShiftFixture, type OpenShiftFixture } from './support/openshift-fixture.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';

let dir: string;
let registry: RunningRegistry;
let fx: OpenShiftFixture;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-list-'));
  registry = await startRegistry();
  fx = await startOpenShiftFixture({ registryUrl: registry.url, dir: join(dir, 'fixture') });
}, 120_000);

afterAll(async () => {
  await fx?.close();
  await registry?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

const list = (...args: string[]) => runMeshmirror(['list', ...args]);

describe('meshmirror list releases', () => {
  it("lists a channel's versions, oldest first, and --version X.Y lists its stable channel", async () => {
    const byChannel = await list('releases', '--channel', 'fast-4.19', '--update-url', fx.graphUrl);
    expect(byChannel.code, byChannel.stderr).toBe(0);
    expect(byChannel.stdout.trim().split('\n')).toEqual(['Channel: fast-4.19', 'Architecture: amd64', ...[...DEFAULT_CHANNELS['fast-4.19']!].sort(compareVersions)]);
    const byVersion = await list('releases', '--version', '4.19', '--update-url', fx.graphUrl, '--output', 'json');
    expect(byVersion.code, byVersion.stderr).toBe(0);
    expect(JSON.parse(byVersion.stdout)).toEqual([
      { channel: 'stable-4.19', architecture: 'amd64', versions: [...DEFAULT_CHANNELS['stable-4.19']!].sort(compareVersions) },
    ]);
  });

  it('lists the channels of a version, and names the flag when one is missing', async () => {
    const channels = await list('releases', '--channels', '--version', '4.19', '--update-url', fx.graphUrl, '--output', 'json');
    expect(channels.code, channels.stderr).toBe(0);
    const expected = Object.entries(DEFAULT_CHANNELS)
      .filter(([, versions]) => versions.some((v) => DEFAULT_CHANNELS['stable-4.19']!.includes(v)))
      .map(([name]) => name)
      .sort();
    expect(JSON.parse(channels.stdout)).toEqual({ version: '4.19', channels: expected });
    const bad = await list('releases', '--channels', '--update-url', fx.graphUrl);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--channels needs --version');
  });
});

describe('meshmirror list operators', () => {
  const common = () => ['--catalog', fx.catalog.ref, '--src-tls-verify=false', '--cache-dir', join(dir, 'cache')];

  it("lists the catalog's packages with their default channels", async () => {
    const result = await list('operators', ...common(), '--output', 'json');
    expect(result.code, result.stderr).toBe(0);
    const { packages } = JSON.parse(result.stdout) as { packages: Array<{ name: string; defaultChannel: string }> };
    expect(packages.map((p) => [p.name, p.defaultChannel])).toEqual(
      [...fx.catalog.packages.values()].map((p) => [p.name, p.defaultChannel]).sort(([a], [b]) => a!.localeCompare(b!)),
    );
  });

  it("lists a package's channels with their heads, and a channel's versions", async () => {
    const pkg = fx.catalog.packages.get('cluster-logging')!;
    const result = await list('operators', ...common(), '--package', pkg.name, '--output', 'json');
    expect(result.code, result.stderr).toBe(0);
    const { channels } = JSON.parse(result.stdout) as { channels: Array<{ channel: string; head: string }> };
    expect(channels).toEqual(
      [...pkg.channels.entries()].map(([channel, entries]) => ({ channel, head: entries.at(-1) })).sort((a, b) => a.channel.localeCompare(b.channel)),
    );

    const [channel, entries] = [...pkg.channels.entries()][0]!;
    const versions = await list('operators', ...common(), '--package', pkg.name, '--channel', channel);
    expect(versions.code, versions.stderr).toBe(0);
    const expected = entries.map((name) => pkg.bundles.find((b) => b.name === name)!.version).sort(compareVersions);
    expect(versions.stdout.trim().split('\n')).toEqual(['VERSIONS', ...expected]);

    const text = await list('operators', ...common(), '--package', pkg.name);
    expect(text.stdout).toMatch(/^PACKAGE\s+CHANNEL\s+HEAD$/m);
    const missing = await list('operators', ...common(), '--package', 'no-such-operator');
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('has no package no-such-operator');
  });
});
