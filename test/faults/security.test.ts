/**
 * Fault matrix, security group, with real `meshmirror agent` processes: a peer without the swarm
 * key, and one with the key but not on the allow-list, get no byte and no control; an admitted peer
 * that sends malformed control messages is refused and the agent keeps serving; registry
 * credentials and the swarm key appear in no output, file, archive, store or mesh message of a farm
 * run, a disk-to-mirror push and a mirror-to-mirror farm run.
 *
 * What crosses the mesh is read from `MESHMIRROR_MESH_TRACE` files (every mesh message each process
 * sends or receives, headers only), since the wire itself is Noise-encrypted.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lpStream } from '@libp2p/utils';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { createBlobStore } from '@meshmirror/agent';
import { CONTROL_PROTOCOL, fetchPeerRange, loadOrCreateIdentity, parseAgentAddress, RemoteAgent, startMeshNode } from '@meshmirror/agent/mesh';
import { writeSampleLayout } from '../../packages/coordinator/src/demo/sample-image-set.ts';
import { createLogger, parseSwarmKey, sha256Digest, SwarmKey, type Digest } from '@meshmirror/shared';
import { cacheWithIdentity, farmKeys, startAgent, type RunningAgent } from '../support/agents.ts';
import { runMeshmirror, type CliResult } from '../support/cli.ts';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.ts';
import { extractChunks, fixtureImages, mirrorArgs, startMirrorFixture, writeImageSetConfig, type MirrorFixture } from '../support/mirror-fixture.ts';
import { pushLayout, type PushedImage } from '../support/push-layout.ts';
import { makeHtpasswd, startRegistry, type RunningRegistry } from '../support/registry.ts';
import { skopeoInspectDigest } from '../support/skopeo.ts';
import { scenario } from './matrix.ts';

const MiB = 1024 * 1024;
const silent = createLogger({ level: 'silent' });
const SETTINGS = { tlsVerify: false, connectTimeoutMs: 5_000, headersTimeoutMs: 5_000, stallTimeoutMs: 5_000, retryTimes: 1, retryDelayMs: 0, parallel: 2 };
type MeshNode = Awaited<ReturnType<typeof startMeshNode>>;

const nodes: MeshNode[] = [];
const agents: RunningAgent[] = [];

/** A libp2p node in this process with its own identity under `dir/name` and `key`. */
async function meshClient(dir: string, name: string, key: SwarmKey): Promise<{ node: MeshNode; peerId: string }> {
  const identity = await loadOrCreateIdentity(join(dir, name));
  const node = await startMeshNode({ identity, swarmKey: key, listen: [], allow: undefined, logger: silent });
  nodes.push(node);
  return { node, peerId: identity.peerId.toString() };
}

/** Asks `address` for a blob range; resolves with the bytes received and the error, if any. */
async function askForBlob(node: MeshNode, address: string, digest: Digest, length: number): Promise<{ bytes: number; error: unknown }> {
  let bytes = 0;
  const error = await fetchPeerRange(
    node,
    address,
    { digest, offset: 0, length },
    (chunk: Uint8Array) => {
      bytes += chunk.length;
    },
    { stallMs: 5_000, dialTimeoutMs: 5_000 },
  ).then(
    () => undefined,
    (e: unknown) => e,
  );
  return { bytes, error };
}

/** Waits until a running agent's log has a line with every one of `texts`; returns that line. */
async function loggedLine(agent: RunningAgent, ...texts: string[]): Promise<string> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const line = agent
      .stderr()
      .split('\n')
      .find((l) => texts.every((t) => l.includes(t)));
    if (line !== undefined) return line;
    if (Date.now() > deadline) throw new Error(`agent never logged ${JSON.stringify(texts)}: ${agent.stderr().slice(-1500)}`);
    await new Promise<void>((resolve) => agent.child.stderr?.once('data', () => resolve()));
  }
}

/** An agent's data dir whose store already holds `blob`, put there the way a fetch would. */
async function storeHolding(data: string, blob: Buffer): Promise<Digest> {
  const digest = sha256Digest(blob);
  const store = createBlobStore({ dir: join(data, 'store'), logger: silent });
  await store.open();
  const writer = await store.openPiece({ digest, blobSize: blob.length, offset: 0, length: blob.length });
  await writer.write(blob);
  await writer.finish();
  await store.completeBlob(digest, blob.length);
  await store.close();
  return digest;
}

afterAll(async () => {
  for (const node of nodes) await node.stop();
  await Promise.all(agents.map((a) => a.stop()));
});

describe('security: admission', () => {
  let fx: MirrorFixture;
  let keyFile: string;
  let coordinatorId: string;
  let config: string;
  const blob = randomBytes(3 * MiB + 17);
  let digest: Digest;

  beforeAll(async () => {
    fx = await startMirrorFixture(fixtureImages({ bigLayerBytes: 6 * MiB }));
    ({ keyFile, coordinatorId } = await farmKeys(fx.dir));
    config = await fx.writeConfig('admission.yaml', { additionalImages: fx.pushed.map((p) => fx.viaProxy(p.name)) });
    digest = await storeHolding(join(fx.dir, 'agent'), blob);
  });
  afterAll(async () => {
    await fx?.close();
  });

  /** Reads every OCI image back from an archive with skopeo; returns how many match the pushed digests. */
  async function archiveReadsBack(out: string, layout: string): Promise<number> {
    await extractChunks(out, layout);
    let read = 0;
    for (const pushed of fx.pushed.filter((p) => p.name !== 'sample/docker:3.1')) {
      expect(await skopeoInspectDigest(`oci:${layout}:${fx.viaProxy(pushed.name)}`)).toBe(pushed.digest);
      read++;
    }
    return read;
  }

  scenario('security: a peer without the swarm key gets nothing', { sample: true, timeout: 120_000 }, async (record) => {
    const agent = await startAgent({ data: join(fx.dir, 'agent'), swarmKey: keyFile, allow: [coordinatorId], logLevel: 'info' });
    agents.push(agent);
    const address = agent.addresses[0] ?? '';
    // A process with another key asks for a blob the agent holds, and for control.
    const stranger = await meshClient(fx.dir, 'stranger', SwarmKey.generate());
    const asked = await askForBlob(stranger.node, address, digest, blob.length);
    const { address: ma, peerId } = parseAgentAddress(address, 'test');
    const hello = await new RemoteAgent({ node: stranger.node, address: ma, peerId, settings: SETTINGS, logger: silent }).hello().then(
      () => undefined,
      (e: unknown) => e,
    );
    const handshakeLine = await loggedLine(agent, 'handshake failed');

    // The reverse: a coordinator whose key is not the agent's, given only that agent: it stops, naming it.
    const otherKey = join(fx.dir, 'other.key');
    expect((await runMeshmirror(['keygen', '--swarm-key', otherKey])).code).toBe(0);
    const cache = await cacheWithIdentity(join(fx.dir, 'identity'), join(fx.dir, 'cache-wrong-key'));
    const refused = await runMeshmirror([...mirrorArgs(config, join(fx.dir, 'out-wrong-key'), cache), '--swarm-key', otherKey, '--agents', address]);
    const refusedLine = refused.stderr.split('\n').find((l) => l.startsWith('meshmirror: error:')) ?? refused.stderr;
    // And a farm where one of two agents has another key: the run goes on with the other one.
    const foreign = await startAgent({ data: join(fx.dir, 'agent-foreign'), swarmKey: otherKey, allow: [coordinatorId], logLevel: 'info' });
    agents.push(foreign);
    const out = join(fx.dir, 'out-farm');
    fx.proxy.resetStats();
    const run = await runMeshmirror([...mirrorArgs(config, out, cache), '--swarm-key', keyFile, '--agents', address, foreign.addresses[0] ?? '']);
    const fetched = fx.proxy.stats().blobBodyBytes;
    const skipped = run.stderr.split('\n').find((l) => l.includes(foreign.peerId) && l.includes('running without it')) ?? run.stderr;
    const summary = run.code === 0 ? (JSON.parse(run.stdout) as { images: { archived: number }; agents: Array<{ agent: string; upstreamBytes: number }> }) : undefined;
    const read = run.code === 0 ? await archiveReadsBack(out, join(fx.dir, 'layout-farm')) : 0;
    record({
      scenario: 'security: a peer without the swarm key gets nothing',
      faults: 'a node with another key asks an agent for a held blob and hello; coordinator with another key; a farm with one foreign-key agent',
      expected: fx.pushed.length,
      delivered: summary?.images.archived ?? 0,
      fetchedBytes: fetched,
      uniqueBytes: fx.uniqueBlobBytes,
      outcome:
        `stranger got ${asked.bytes} B (${(asked.error as { code?: string })?.code}), hello ${(hello as { code?: string })?.code}, agent logged "handshake failed"; ` +
        `coordinator with another key: exit ${refused.code} "${refusedLine.replace(address, '<agent>')}"; ` +
        `farm with a foreign-key agent: exit ${run.code}, it is named and skipped, skopeo ✓`,
    });
    expect(asked.bytes).toBe(0);
    expect(asked.error).toMatchObject({ code: 'MM_NETWORK' });
    expect(hello).toMatchObject({ code: 'MM_AGENT_LOST' });
    expect(handshakeLine).toContain('connection refused');
    expect(refused.code).toBe(1);
    expect(refusedLine).toMatch(/^meshmirror: error: none of the 1 agents answered/);
    expect(refusedLine).toContain(address);
    expect(refused.stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
    expect(skipped).toContain('running without it');
    expect(run.code, run.stderr).toBe(0);
    expect(summary?.agents.map((a) => a.agent)).toEqual([peerId.toString()]);
    expect(summary?.images.archived).toBe(fx.pushed.length);
    expect(read).toBe(fx.pushed.length - 1);
    expect(fetched).toBe(fx.uniqueBlobBytes);
    // Neither agent ran anything for a coordinator it could not authenticate.
    expect(foreign.stderr()).toContain('handshake failed');
    expect(foreign.stderr()).not.toContain('assignment started');
  });

  scenario('security: a peer with the key but not on the allow-list gets nothing', { sample: false, timeout: 120_000 }, async (record) => {
    const agent = agents[0]!;
    const address = agent.addresses[0] ?? '';
    const key = parseSwarmKey(await readFile(keyFile, 'utf8'), keyFile);
    const intruder = await meshClient(fx.dir, 'intruder', key);
    const asked = await askForBlob(intruder.node, address, digest, blob.length);
    const { address: ma, peerId } = parseAgentAddress(address, 'test');
    const hello = await new RemoteAgent({ node: intruder.node, address: ma, peerId, settings: SETTINGS, logger: silent }).hello().then(
      () => undefined,
      (e: unknown) => e,
    );
    const refusal = await loggedLine(agent, intruder.peerId, 'refused a peer that is not on the allow-list');

    // A coordinator with the key but another identity: it stops, naming the agent and the id to allow.
    const stranger = join(fx.dir, 'cache-not-allowed');
    const refused = await runMeshmirror([...mirrorArgs(config, join(fx.dir, 'out-not-allowed'), stranger), '--swarm-key', keyFile, '--agents', address]);
    const refusedLine = refused.stderr.split('\n').find((l) => l.startsWith('meshmirror: error:')) ?? refused.stderr;
    const strangerId = (await runMeshmirror(['identity', '--cache-dir', stranger])).stdout.trim();
    // The same command from the admitted identity completes.
    const out = join(fx.dir, 'out-allowed');
    fx.proxy.resetStats();
    const run = await runMeshmirror([
      ...mirrorArgs(config, out, await cacheWithIdentity(join(fx.dir, 'identity'), join(fx.dir, 'cache-allowed'))),
      '--swarm-key',
      keyFile,
      '--agents',
      address,
    ]);
    const fetched = fx.proxy.stats().blobBodyBytes;
    const summary = run.code === 0 ? (JSON.parse(run.stdout) as { images: { archived: number }; bytes: { pulled: number } }) : undefined;
    const read = run.code === 0 ? await archiveReadsBack(out, join(fx.dir, 'layout-allowed')) : 0;
    record({
      scenario: 'security: a peer with the key but not on the allow-list gets nothing',
      faults: 'a node with the key, not allowed, asks for a held blob and hello; a coordinator with the key but another identity',
      expected: fx.pushed.length,
      delivered: summary?.images.archived ?? 0,
      fetchedBytes: fetched,
      uniqueBytes: fx.uniqueBlobBytes,
      outcome:
        `intruder got ${asked.bytes} B (${(asked.error as { code?: string })?.code}), hello ${(hello as { code?: string })?.code}, agent logged its peer id as refused; ` +
        `unlisted coordinator: exit ${refused.code} "${refusedLine.replace(address, '<agent>').replace(strangerId, '<its id>')}" → admitted coordinator: exit ${run.code}, ` +
        `${summary?.bytes.pulled ?? '?'} B pulled from the agent, skopeo ✓`,
    });
    expect(asked.bytes).toBe(0);
    expect(asked.error).toMatchObject({ code: 'MM_NETWORK' });
    expect(hello).toMatchObject({ code: 'MM_AGENT_LOST' });
    expect(refusal).toContain(intruder.peerId);
    expect(refused.code).toBe(1);
    expect(refusedLine).toContain(address);
    expect(refusedLine).toContain(`--allow ${strangerId}`);
    expect(refused.stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
    expect(await loggedLine(agent, strangerId, 'refused a peer that is not on the allow-list')).toBeTruthy();
    expect(run.code, run.stderr).toBe(0);
    expect(read).toBe(fx.pushed.length - 1);
    // The agent's store is warm from the earlier farm run: nothing crosses the upstream link.
    expect(fetched).toBe(0);
  });

  scenario('security: an admitted peer sending malformed control messages is refused; the agent keeps serving', { sample: false, timeout: 120_000 }, async (record) => {
    const agent = agents[0]!;
    const address = agent.addresses[0] ?? '';
    const key = parseSwarmKey(await readFile(keyFile, 'utf8'), keyFile);
    // The coordinator's own identity, the one the agent admits.
    const friend = await meshClient(fx.dir, 'identity', key);
    const { address: ma, peerId } = parseAgentAddress(address, 'test');
    const send = async (bytes: Uint8Array): Promise<string> => {
      const stream = await friend.node.dialProtocol(ma, CONTROL_PROTOCOL, { signal: AbortSignal.timeout(5_000) });
      const lp = lpStream(stream, { maxDataLength: 8 * MiB });
      try {
        await lp.write(bytes);
        const reply = JSON.parse(new TextDecoder().decode((await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray())) as { type: string; message?: string };
        return reply.type === 'error' ? `error: ${reply.message}` : reply.type;
      } catch (e) {
        return `stream ended: ${(e as Error).message}`;
      } finally {
        stream.abort(new Error('done'));
      }
    };
    const text = (value: unknown): Uint8Array => new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));
    const replies = {
      notJson: await send(text('{"type": "hello", ')),
      unknownType: await send(text({ type: 'shutdown' })),
      extraField: await send(text({ type: 'hello', version: 1, authorization: 'Basic Zm9vOmJhcg==' })),
      badDigest: await send(text({ type: 'holdings', blobs: [{ digest: 'sha256:../../etc/passwd', size: 1 }] })),
      badPush: await send(text({ type: 'push', settings: {}, digest: digest, size: 1, target: { registry: '', repository: 'x' }, mountFrom: [] })),
      oversized: await send(text(`{"type":"holdings","blobs":[${'{"digest":"x","size":1},'.repeat(200_000)}{}]}`)),
    };
    await loggedLine(agent, 'control request failed');
    // Still serving: holdings and the blob itself to the admitted peer, and a farm run.
    const remote = new RemoteAgent({ node: friend.node, address: ma, peerId, settings: SETTINGS, logger: silent });
    const holdings = await remote.holdings([{ digest, size: blob.length }]);
    const served = await askForBlob(friend.node, address, digest, blob.length);
    await friend.node.stop();
    nodes.splice(nodes.indexOf(friend.node), 1);
    const out = join(fx.dir, 'out-after-malformed');
    fx.proxy.resetStats();
    const run = await runMeshmirror([
      ...mirrorArgs(config, out, await cacheWithIdentity(join(fx.dir, 'identity'), join(fx.dir, 'cache-after-malformed'))),
      '--swarm-key',
      keyFile,
      '--agents',
      address,
    ]);
    const summary = run.code === 0 ? (JSON.parse(run.stdout) as { images: { archived: number } }) : undefined;
    const read = run.code === 0 ? await archiveReadsBack(out, join(fx.dir, 'layout-after-malformed')) : 0;
    record({
      scenario: 'security: an admitted peer sending malformed control messages is refused; the agent keeps serving',
      faults: 'not JSON, unknown type, an extra field, a bad digest, an empty registry, a 5 MiB message',
      expected: fx.pushed.length,
      delivered: summary?.images.archived ?? 0,
      fetchedBytes: fx.proxy.stats().blobBodyBytes,
      uniqueBytes: fx.uniqueBlobBytes,
      outcome: `${Object.values(replies).filter((r) => !r.startsWith('hello') && !r.startsWith('holdings')).length}/6 refused (e.g. "${replies.extraField}"); then holdings, ${served.bytes} B blob and a farm run: exit ${run.code}, skopeo ✓`,
    });
    expect(replies.notJson).toMatch(/^error: control request from \S+ is not JSON$/);
    expect(replies.unknownType).toMatch(/^error: .*malformed at type/);
    expect(replies.extraField).toMatch(/^error: .*malformed/);
    expect(replies.extraField).toContain('authorization');
    expect(replies.badDigest).toMatch(/^error: .*malformed at blobs\.0\.digest/);
    expect(replies.badPush).toMatch(/^error: .*malformed at settings\./);
    expect(replies.oversized).not.toMatch(/^(hello|holdings)$/);
    expect(holdings).toEqual([{ digest, held: true, pieces: [] }]);
    expect(served).toEqual({ bytes: blob.length, error: undefined });
    expect(run.code, run.stderr).toBe(0);
    expect(read).toBe(fx.pushed.length - 1);
    expect(agent.child.exitCode).toBeNull();
  });
});

/** Every file below `dir`, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe('security: secrets', () => {
  const hex = randomBytes(6).toString('hex');
  const SRC = { user: 'src-bot', password: `S3cr3t-src-${hex}` };
  const DST = { user: 'dst-bot', password: `S3cr3t-dst-${hex}` };
  let dir: string;
  let source: RunningRegistry;
  let target: RunningRegistry;
  let proxy: FaultProxy;
  let pushed: PushedImage[];
  let uniqueBytes: number;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-faults-secrets-'));
    await mkdir(join(dir, 'src-auth'), { recursive: true });
    await mkdir(join(dir, 'dst-auth'), { recursive: true });
    source = await startRegistry({ config: { auth: { htpasswd: { realm: 'src', path: await makeHtpasswd(join(dir, 'src-auth'), SRC.user, SRC.password) } } } });
    target = await startRegistry({ config: { auth: { htpasswd: { realm: 'dst', path: await makeHtpasswd(join(dir, 'dst-auth'), DST.user, DST.password) } } } });
    const layout = await writeSampleLayout(join(dir, 'source-layout'), fixtureImages({ bigLayerBytes: 6 * MiB }));
    uniqueBytes = layout.uniqueBytes - layout.manifestBytes;
    pushed = await pushLayout(join(dir, 'source-layout'), source.url, { credentials: { username: SRC.user, password: SRC.password } });
    proxy = await startFaultProxy(source.url);
  });
  afterAll(async () => {
    await proxy?.close();
    await source?.stop();
    await target?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  scenario('security: registry credentials and the swarm key appear nowhere', { sample: false, timeout: 300_000 }, async (record) => {
    const b64 = (s: string): string => Buffer.from(s).toString('base64');
    const authfile = join(dir, 'auth.json');
    await writeFile(
      authfile,
      JSON.stringify({ auths: { [proxy.host]: { auth: b64(`${SRC.user}:${SRC.password}`) }, [target.host]: { auth: b64(`${DST.user}:${DST.password}`) } } }),
    );
    const { keyFile, coordinatorId } = await farmKeys(dir);
    const keyHex = (await readFile(keyFile, 'utf8')).split('\n')[2] ?? '';
    const farm = await Promise.all(
      ['a', 'b'].map((n) =>
        startAgent({
          data: join(dir, `agent-${n}`),
          swarmKey: keyFile,
          allow: [coordinatorId],
          authfile,
          logLevel: 'trace',
          env: { MESHMIRROR_MESH_TRACE: join(dir, `trace-agent-${n}.jsonl`) },
        }),
      ),
    );
    agents.push(...farm);
    const farmArgs = ['--swarm-key', keyFile, '--agents', ...farm.map((a) => a.addresses[0] ?? ''), '--piece-size', String(2 * MiB)];
    const env = { MESHMIRROR_MESH_TRACE: join(dir, 'trace-coordinator.jsonl') };
    const config = await writeImageSetConfig(join(dir, 'isc.yaml'), { additionalImages: pushed.map((p) => `${proxy.host}/${p.name}`), archiveSize: 0.005 });
    const common = ['--authfile', authfile, '--log-level', 'trace', '--retry-delay', '50ms'];

    // 1. A farm mirror to disk, 2. the archive pushed into the target, 3. a farm mirror to mirror.
    const out = join(dir, 'out');
    const results: CliResult[] = [];
    const toDisk = await runMeshmirror([...mirrorArgs(config, out, await cacheWithIdentity(join(dir, 'identity'), join(dir, 'cache-farm')), ...common), ...farmArgs], {
      env,
    });
    results.push(toDisk);
    expect(toDisk.code, toDisk.stderr.slice(-3000)).toBe(0);
    const push = await runMeshmirror(
      [
        'mirror',
        '-c',
        config,
        '--from',
        `file://${out}`,
        `docker://${target.host}/ocp`,
        '--cache-dir',
        join(dir, 'cache-push'),
        '--dest-tls-verify=false',
        '--output',
        'json',
        ...common,
      ],
      { env },
    );
    results.push(push);
    expect(push.code, push.stderr.slice(-3000)).toBe(0);
    const m2m = await runMeshmirror(
      [
        'mirror',
        '-c',
        config,
        '--workspace',
        `file://${join(dir, 'work')}`,
        `docker://${target.host}/m2m`,
        '--cache-dir',
        await cacheWithIdentity(join(dir, 'identity'), join(dir, 'cache-m2m')),
        '--src-tls-verify=false',
        '--dest-tls-verify=false',
        '--output',
        'json',
        ...common,
        ...farmArgs,
      ],
      { env },
    );
    results.push(m2m);
    expect(m2m.code, m2m.stderr.slice(-3000)).toBe(0);
    const fetched = proxy.stats().blobBodyBytes;
    for (const agent of farm) await agent.stop();

    // What arrived: the archive read back by skopeo, and both pushes in the target.
    const layout = join(dir, 'layout');
    await extractChunks(out, layout);
    const creds = `${DST.user}:${DST.password}`;
    let delivered = 0;
    for (const image of pushed) {
      if (image.name !== 'sample/docker:3.1') expect(await skopeoInspectDigest(`oci:${layout}:${proxy.host}/${image.name}`)).toBe(image.digest);
      expect(await skopeoInspectDigest(`docker://${target.host}/ocp/${image.name}`, { creds })).toBe(image.digest);
      expect(await skopeoInspectDigest(`docker://${target.host}/m2m/${image.name}`, { creds })).toBe(image.digest);
      delivered++;
    }

    // Every secret, in every form it could leak in.
    const keyBytes = Buffer.from(keyHex, 'hex');
    const secrets: Array<[string, Buffer]> = [];
    for (const { user, password } of [SRC, DST]) {
      secrets.push(
        [`${user} password`, Buffer.from(password)],
        [`${user} base64(user:password)`, Buffer.from(b64(`${user}:${password}`))],
        [`${user} base64(password)`, Buffer.from(b64(password))],
      );
    }
    secrets.push(['swarm key hex', Buffer.from(keyHex)], ['swarm key base64', Buffer.from(keyBytes.toString('base64'))], ['swarm key bytes', keyBytes]);
    // The search can find them: the auth file holds one of each password's forms.
    expect((await readFile(authfile)).includes(secrets[1]![1])).toBe(true);

    const outputs: Array<[string, Buffer]> = [
      ...results.flatMap((r, i): Array<[string, Buffer]> => [
        [`run ${i + 1} stdout`, Buffer.from(r.stdout)],
        [`run ${i + 1} stderr`, Buffer.from(r.stderr)],
      ]),
      ...farm.flatMap((a, i): Array<[string, Buffer]> => [
        [`agent ${i} stdout`, Buffer.from(a.stdout())],
        [`agent ${i} stderr`, Buffer.from(a.stderr())],
      ]),
    ];
    const ownSecrets = new Set([authfile, keyFile, join(dir, 'src-auth', 'htpasswd'), join(dir, 'dst-auth', 'htpasswd')]);
    const files = (await filesUnder(dir)).filter((f) => !ownSecrets.has(f));
    for (const file of files) outputs.push([file, await readFile(file)]);
    const leaks = outputs.flatMap(([where, bytes]) => secrets.filter(([, secret]) => bytes.includes(secret)).map(([what]) => `${what} in ${where}`));
    const logBytes = outputs.slice(0, results.length * 2 + farm.length * 2).reduce((n, [, b]) => n + b.length, 0);

    // The mesh messages: every one each process sent or received.
    const traces = await Promise.all(
      ['trace-coordinator', 'trace-agent-a', 'trace-agent-b'].map(async (n) => (await readFile(join(dir, `${n}.jsonl`), 'utf8')).trim().split('\n')),
    );
    const messages = traces.flat().map((line) => JSON.parse(line) as { direction: string; what?: string; message: string });
    const received = messages
      .filter((m) => m.direction === 'received' && m.what?.startsWith('control request from') === true)
      .map((m) => JSON.parse(m.message) as { type: string });
    const keysSeen = new Set(messages.flatMap((m) => [...m.message.matchAll(/"([A-Za-z]+)":/g)].map((k) => k[1])));
    record({
      scenario: 'security: registry credentials and the swarm key appear nowhere',
      faults: 'htpasswd source and target, farm of 2 agents with --authfile, trace logs everywhere; to disk, disk to mirror, mirror to mirror',
      expected: pushed.length,
      delivered,
      fetchedBytes: fetched,
      uniqueBytes,
      outcome:
        `3 runs exit ${results.map((r) => r.code).join('/')} (mirror to mirror fetched ${(JSON.parse(m2m.stdout) as { fetch: { fetched: number } }).fetch.fetched} B again); searched ${(logBytes / MiB).toFixed(1)} MiB of output, ${files.length} files (chunks, extracted layout, stores incl. LevelDB, reports, traces) ` +
        `and ${messages.length} mesh messages for ${secrets.length} secret forms: ${leaks.length === 0 ? 'none found' : leaks.join('; ')}; skopeo ✓`,
    });
    expect(leaks).toEqual([]);
    // The trace saw the control traffic that would carry a credential if any did.
    expect(received.map((m) => m.type)).toEqual(expect.arrayContaining(['hello', 'holdings', 'assign', 'push']));
    expect([...keysSeen].filter((k) => /auth|pass|cred|token|secret/i.test(k ?? ''))).toEqual([]);
    // Every process logged at debug/trace level, so the search covered the most talkative logs.
    for (const text of [...results.map((r) => r.stderr), ...farm.map((a) => a.stderr())]) expect(text).toMatch(/"level":(10|20),/);
  });
});
