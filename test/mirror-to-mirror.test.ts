/**
 * Mirror to mirror with real processes: the source registry behind a byte-counting proxy, a second
 * real registry as the target (behind its own counting proxy where bytes matter), checked with
 * skopeo. Single host, a target that already holds part of the set, `kill -9` mid-upload, and a
 * farm of agents that push what they fetched without the blob bytes passing through the
 * coordinator.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cacheWithIdentity, startAgent, type RunningAgent } from './support/agents.ts';
import { runMeshmirror, spawnMeshmirror, waitFor } from './support/cli.ts';
import { startFaultProxy, type FaultProxy } from './support/fault-proxy.ts';
import { mirrorToMirrorArgs, startMirrorFixture, type MirrorFixture } from './support/mirror-fixture.ts';
import { pushLayout } from './support/push-layout.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';
import { skopeoCopy, skopeoInspectDigest } from './support/skopeo.ts';

const MiB = 1024 * 1024;

interface AgentRow {
  agent: string;
  address: string;
  upstreamBytes: number;
  pushedBytes: number;
  blobsPushed: number;
}

let fx: MirrorFixture;
let config: string;
let target: RunningRegistry | undefined;
let targetProxy: FaultProxy | undefined;

beforeAll(async () => {
  fx = await startMirrorFixture();
  config = await fx.writeConfig('m2m.yaml', { additionalImages: fx.pushed.map((p) => fx.viaProxy(p.name)) });
});
afterEach(async () => {
  fx.proxy.setRules([]);
  await targetProxy?.close();
  await target?.stop();
  targetProxy = undefined;
  target = undefined;
});
afterAll(async () => {
  await fx?.close();
});

function m2mArgs(destination: string, workspace: string, cache: string, ...extra: string[]): string[] {
  return mirrorToMirrorArgs(config, workspace, destination, cache, '--retry-delay', '50ms', ...extra);
}

/** Every image reads back from the target with the source's digest, and copies whole (skopeo verifies every blob). */
async function expectTargetMatchesSource(host: string): Promise<void> {
  for (const pushed of fx.pushed) {
    const ref = `docker://${host}/mirror/${pushed.name}`;
    expect(await skopeoInspectDigest(ref), pushed.name).toBe(pushed.digest);
    await skopeoCopy(ref, `oci:${join(fx.dir, 'readback-m2m')}:${pushed.name.replace(/[/:]/g, '-')}`);
  }
}

describe('mirror to mirror on one host', () => {
  it('fetches each unique blob once, pushes every image with the source digests, and writes the cluster resources', async () => {
    target = await startRegistry();
    targetProxy = await startFaultProxy(target.url);
    fx.proxy.resetStats();
    const workspace = join(fx.dir, 'ws-plain');
    const cache = join(fx.dir, 'cache-m2m-plain');
    const result = await runMeshmirror(m2mArgs(`${targetProxy.host}/mirror`, workspace, cache));
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.mode).toBe('mirror-to-mirror');
    expect(summary.images).toMatchObject({ requested: fx.pushed.length, pushed: fx.pushed.length, failed: 0 });
    // Each blob crossed each link once: from the source, and into the target.
    expect(fx.proxy.stats().blobBodyBytes).toBe(fx.uniqueBlobBytes);
    expect(summary.fetch.fetched).toBe(fx.uniqueBlobBytes);
    expect(targetProxy.stats().uploadBodyBytes).toBe(fx.uniqueBlobBytes);
    expect(summary.bytes).toMatchObject({ uploaded: fx.uniqueBlobBytes, sent: fx.uniqueBlobBytes });
    expect(summary.blobs.mounted).toBeGreaterThanOrEqual(3); // the shared base layer
    await expectTargetMatchesSource(target.host);

    const itms = await readFile(join(workspace, 'working-dir', 'cluster-resources', 'itms-oc-mirror.yaml'), 'utf8');
    expect(itms).toContain(`source: ${fx.proxy.host}/sample`);
    expect(itms).toContain(`- ${targetProxy.host}/mirror/sample`);
    const report = JSON.parse(await readFile(join(workspace, 'working-dir', 'push-report.json'), 'utf8'));
    expect(report.images.pushed).toBe(fx.pushed.length);

    // The same command again: nothing fetched, nothing sent.
    fx.proxy.resetStats();
    const again = await runMeshmirror(m2mArgs(`${targetProxy.host}/mirror`, workspace, cache));
    expect(again.code, again.stderr).toBe(0);
    const second = JSON.parse(again.stdout);
    expect(second.images.alreadyPushed).toBe(fx.pushed.length);
    expect(second.bytes.sent).toBe(0);
    expect(fx.proxy.stats().blobBodyBytes).toBe(0);
  });

  it('neither fetches nor sends what a target that already holds part of the set has', async () => {
    target = await startRegistry();
    await pushLayout(join(fx.dir, 'source-layout'), target.url, { images: ['sample/base:1.0', 'sample/big:1.0'], rename: (name) => `mirror/${name}` });
    targetProxy = await startFaultProxy(target.url);
    fx.proxy.resetStats();
    // A cold cache: nothing is in the store, so every byte not in the target must be fetched.
    const result = await runMeshmirror(m2mArgs(`${targetProxy.host}/mirror`, join(fx.dir, 'ws-half'), join(fx.dir, 'cache-m2m-half')));
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout);
    const heldBytes = summary.fetch.inTarget as number;
    expect(heldBytes).toBeGreaterThan(fx.uniqueBlobBytes / 2);
    expect(fx.proxy.stats().blobBodyBytes).toBe(fx.uniqueBlobBytes - heldBytes);
    expect(targetProxy.stats().uploadBodyBytes).toBe(fx.uniqueBlobBytes - heldBytes);
    await expectTargetMatchesSource(target.host);
  });

  it('after kill -9 mid-upload, the same command resumes that upload and fetches nothing again', async () => {
    target = await startRegistry();
    targetProxy = await startFaultProxy(target.url);
    // Hold the big layer's ninth 1 MiB chunk, so the kill lands in the middle of a PATCH.
    targetProxy.setRules([
      { match: { method: 'PATCH', header: ['content-range', /^8388608-/] }, fault: { kind: 'stall-request-after', bytes: 64 * 1024, ms: 120_000 }, times: 1 },
    ]);
    fx.proxy.resetStats();
    const args = m2mArgs(`${targetProxy.host}/mirror`, join(fx.dir, 'ws-kill'), join(fx.dir, 'cache-m2m-kill'), '--upload-chunk-size', '1MiB');
    const first = spawnMeshmirror(args);
    await waitFor(() => targetProxy!.stats().log.some((e) => e.fault === 'stall-request-after' && e.requestBytes >= 64 * 1024), 'the stalled PATCH');
    first.child.kill('SIGKILL');
    await first.result;
    const fetchedBefore = fx.proxy.stats().blobBodyBytes;
    const sentBefore = targetProxy.stats().uploadBodyBytes;

    const second = await runMeshmirror(args);
    expect(second.code, second.stderr).toBe(0);
    const summary = JSON.parse(second.stdout);
    expect(summary.images.failed).toBe(0);
    // The big blob continued from the 8 MiB the registry had confirmed; what was held was not fetched again.
    expect(summary.bytes.resumed).toBe(8 * MiB);
    expect(targetProxy.stats().uploadBodyBytes - sentBefore).toBe(summary.bytes.sent);
    expect(summary.bytes.sent).toBe(summary.bytes.uploaded - summary.bytes.resumed);
    expect(fetchedBefore).toBeGreaterThan(0);
    expect(fx.proxy.stats().blobBodyBytes).toBeLessThanOrEqual(fx.uniqueBlobBytes * 1.05);
    expect(targetProxy.stats().uploadBodyBytes / fx.uniqueBlobBytes).toBeLessThanOrEqual(1.05);
    await expectTargetMatchesSource(target.host);
  });

  it('names the flag at fault with exit code 2', async () => {
    const cases: Array<[string[], string]> = [
      [['mirror', '-c', config, '--workspace', 'file://', 'docker://localhost:5000'], '--workspace'],
      [['mirror', '-c', config, '--workspace', `file://${fx.dir}`, 'file:///tmp/out'], '--workspace'],
      [['mirror', '-c', config, '--workspace', `file://${fx.dir}`, '--from', `file://${fx.dir}`, 'docker://localhost:5000'], '--from'],
    ];
    for (const [args, flag] of cases) {
      const result = await runMeshmirror(args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toContain(flag);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }
  });
});

describe('mirror to mirror across a farm', () => {
  const running: RunningAgent[] = [];
  let keyFile: string;
  let coordinatorId: string;

  beforeAll(async () => {
    keyFile = join(fx.dir, 'm2m-swarm.key');
    const keygen = await runMeshmirror(['keygen', '--swarm-key', keyFile]);
    expect(keygen.code, keygen.stderr).toBe(0);
    const identity = await runMeshmirror(['identity', '--cache-dir', join(fx.dir, 'm2m-identity')]);
    expect(identity.code, identity.stderr).toBe(0);
    coordinatorId = identity.stdout.trim();
  });
  afterAll(async () => {
    await Promise.all(running.map((a) => a.stop()));
  });

  it('has each agent push the blobs it fetched; every blob crosses each link once and none passes through the coordinator', async () => {
    const agents = await Promise.all(
      ['a', 'b'].map((n) => startAgent({ data: join(fx.dir, `m2m-agent-${n}`), swarmKey: keyFile, allow: [coordinatorId], logLevel: 'info' })),
    );
    running.push(...agents);
    target = await startRegistry();
    targetProxy = await startFaultProxy(target.url);
    fx.proxy.resetStats();
    const cache = await cacheWithIdentity(join(fx.dir, 'm2m-identity'), join(fx.dir, 'cache-m2m-farm'));
    const args = [
      ...m2mArgs(`${targetProxy.host}/mirror`, join(fx.dir, 'ws-farm'), cache),
      '--swarm-key',
      keyFile,
      '--agents',
      ...agents.map((a) => a.addresses[0] ?? ''),
    ];
    const result = await runMeshmirror(args);
    expect(result.code, result.stderr + agents.map((a) => a.stderr()).join('\n')).toBe(0);
    const summary = JSON.parse(result.stdout) as {
      images: { pushed: number };
      bytes: { sent: number; uploaded: number };
      fetch: { fetched: number };
      agents: AgentRow[];
    };
    expect(summary.images.pushed).toBe(fx.pushed.length);
    expect(fx.proxy.stats().blobBodyBytes).toBe(fx.uniqueBlobBytes);
    expect(targetProxy.stats().uploadBodyBytes).toBe(fx.uniqueBlobBytes);
    expect(summary.agents).toHaveLength(2);
    // Both agents fetched and pushed; together they sent every byte the target received.
    for (const row of summary.agents) {
      expect(row.upstreamBytes, JSON.stringify(summary.agents)).toBeGreaterThan(0);
      expect(row.pushedBytes, JSON.stringify(summary.agents)).toBeGreaterThan(0);
    }
    expect(summary.agents.reduce((n, a) => n + a.pushedBytes, 0)).toBe(fx.uniqueBlobBytes);
    // Each agent pushed exactly the blobs it fetched.
    for (const row of summary.agents) expect(row.pushedBytes).toBe(row.upstreamBytes);
    // The agents say so in their own logs.
    for (const agent of agents) expect(agent.stderr()).toContain('"msg":"blob pushed"');
    await expectTargetMatchesSource(target.host);

    // Again: the images are there; nothing is fetched or sent.
    fx.proxy.resetStats();
    const again = await runMeshmirror(args);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).bytes.sent).toBe(0);
    expect(fx.proxy.stats().blobBodyBytes).toBe(0);
  });

  it('when its agents are killed mid-push, the coordinator fetches and pushes their blobs itself and the run completes', async () => {
    const agents = await Promise.all(
      ['c', 'd'].map((n) => startAgent({ data: join(fx.dir, `m2m-agent-${n}`), swarmKey: keyFile, allow: [coordinatorId], logLevel: 'info' })),
    );
    running.push(...agents);
    target = await startRegistry();
    targetProxy = await startFaultProxy(target.url);
    // Hold the big layer's ninth 1 MiB chunk: the agent pushing it is mid-PATCH when the agents die.
    targetProxy.setRules([
      { match: { method: 'PATCH', header: ['content-range', /^8388608-/] }, fault: { kind: 'stall-request-after', bytes: 64 * 1024, ms: 120_000 }, times: 1 },
    ]);
    const cache = await cacheWithIdentity(join(fx.dir, 'm2m-identity'), join(fx.dir, 'cache-m2m-farm-kill'));
    const run = spawnMeshmirror([
      ...m2mArgs(`${targetProxy.host}/mirror`, join(fx.dir, 'ws-farm-kill'), cache, '--upload-chunk-size', String(MiB)),
      '--swarm-key',
      keyFile,
      '--agents',
      ...agents.map((a) => a.addresses[0] ?? ''),
    ]);
    await waitFor(() => targetProxy!.stats().log.some((e) => e.fault === 'stall-request-after' && e.requestBytes >= 64 * 1024), 'the stalled PATCH');
    for (const agent of agents) agent.child.kill('SIGKILL');
    const result = await run.result;
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.images.pushed).toBe(fx.pushed.length);
    expect(summary.fetch.fetchedByCoordinator).toBeGreaterThanOrEqual(1);
    expect(summary.warnings.join('\n')).toContain('fetched and pushed by the coordinator');
    await expectTargetMatchesSource(target.host);
  });
});
