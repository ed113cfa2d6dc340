/**
 * The mesh's admission rules with real agent processes: a peer with the swarm key and on the
 * allow-list gets blobs; a peer without the key, and one with the key but not on the list, get
 * nothing, and the agent logs who was refused. The identity survives a restart; the key is never logged.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, parseSwarmKey, sha256Digest, SwarmKey, writeSwarmKeyFile, type Digest } from '@meshmirror/shared';
import { createBlobStore } from '@meshmirror/agent';
import { lpStream } from '@libp2p/utils';
import { CONTROL_PROTOCOL, fetchPeerRange, loadOrCreateIdentity, parseAgentAddress, RemoteAgent, startMeshNode } from '@meshmirror/agent/mesh';
import { startAgent, type RunningAgent } from './support/agents.ts';
import { runMeshmirror } from './support/cli.ts';

const MiB = 1024 * 1024;
const silent = createLogger({ level: 'silent' });
const SETTINGS = { tlsVerify: false, connectTimeoutMs: 5_000, headersTimeoutMs: 5_000, stallTimeoutMs: 5_000, retryTimes: 1, retryDelayMs: 0, parallel: 2 };

let dir: string;
let keyFile: string;
let agent: RunningAgent;
const big = randomBytes(5 * MiB + 123);
const bigDigest = sha256Digest(big);
/** A blob far larger than the stream's read buffer (32 MiB), for a consumer slower than the link. */
const HUGE_BYTES = 96 * MiB;
let hugeDigest: Digest;
type MeshNode = Awaited<ReturnType<typeof startMeshNode>>;
const nodes: MeshNode[] = [];

async function client(name: string, key: SwarmKey): Promise<{ node: MeshNode; peerId: string }> {
  const identity = await loadOrCreateIdentity(join(dir, name));
  const node = await startMeshNode({ identity, swarmKey: key, listen: [], allow: undefined, logger: silent });
  nodes.push(node);
  return { node, peerId: identity.peerId.toString() };
}

async function fetchAll(node: MeshNode, digest: Digest, offset: number, length: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  await fetchPeerRange(
    node,
    agent.addresses[0] ?? '',
    { digest, offset, length },
    (chunk: Uint8Array) => {
      parts.push(Buffer.from(chunk));
    },
    { stallMs: 10_000, dialTimeoutMs: 5_000 },
  );
  return Buffer.concat(parts);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-mesh-admission-'));
  keyFile = join(dir, 'swarm.key');
  const keygen = await runMeshmirror(['keygen', '--swarm-key', keyFile]);
  expect(keygen.code, keygen.stderr).toBe(0);
  // The agent's store already holds a 5 MiB blob, put there the way a fetch would.
  const store = createBlobStore({ dir: join(dir, 'agent', 'store'), logger: silent });
  await store.open();
  const writer = await store.openPiece({ digest: bigDigest, blobSize: big.length, offset: 0, length: big.length });
  await writer.write(big);
  await writer.finish();
  await store.completeBlob(bigDigest, big.length);
  // 96 blocks of 1 MiB, each the same random block stamped with its number: hashed, then stored.
  const block = randomBytes(MiB);
  const hugeBlock = (i: number): Buffer => {
    block.writeUInt32BE(i, 0);
    return block;
  };
  const hugeHash = createHash('sha256');
  for (let i = 0; i < HUGE_BYTES / MiB; i++) hugeHash.update(hugeBlock(i));
  hugeDigest = `sha256:${hugeHash.digest('hex')}`;
  const hugeWriter = await store.openPiece({ digest: hugeDigest, blobSize: HUGE_BYTES, offset: 0, length: HUGE_BYTES });
  for (let i = 0; i < HUGE_BYTES / MiB; i++) await hugeWriter.write(Buffer.from(hugeBlock(i)));
  await hugeWriter.finish();
  await store.completeBlob(hugeDigest, HUGE_BYTES);
  await store.close();
});

afterAll(async () => {
  for (const node of nodes) await node.stop();
  await agent?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('mesh admission', () => {
  it('serves an admitted peer whole blobs and ranges, and says when it does not hold a blob', async () => {
    const key = parseSwarmKey(await readFile(keyFile, 'utf8'), keyFile);
    const friend = await client('friend', key);
    agent = await startAgent({ data: join(dir, 'agent'), swarmKey: keyFile, allow: [friend.peerId] });
    const whole = await fetchAll(friend.node, bigDigest, 0, big.length);
    expect(sha256Digest(whole)).toBe(bigDigest);
    // A consumer that writes each chunk to a file before taking the next: the stream is paused
    // while it works, and every byte still arrives, in order.
    const file = join(dir, 'fetched.bin');
    const handle = await open(file, 'w');
    let position = 0;
    await fetchPeerRange(
      friend.node,
      agent.addresses[0] ?? '',
      { digest: bigDigest, offset: 0, length: big.length },
      async (chunk: Uint8Array) => {
        const { bytesWritten } = await handle.write(chunk, 0, chunk.length, position);
        position += bytesWritten;
      },
      { stallMs: 10_000 },
    );
    await handle.close();
    expect(sha256Digest(await readFile(file))).toBe(bigDigest);
    const middle = await fetchAll(friend.node, bigDigest, 3 * MiB - 7, MiB + 11);
    expect(middle.equals(big.subarray(3 * MiB - 7, 4 * MiB + 4))).toBe(true);
    const missing = sha256Digest(Buffer.from('not held'));
    await expect(fetchAll(friend.node, missing, 0, 8)).rejects.toMatchObject({ code: 'MM_NOT_FOUND', message: expect.stringContaining(missing) });
    await expect(fetchAll(friend.node, bigDigest, big.length - 10, 11)).rejects.toMatchObject({
      code: 'MM_NOT_FOUND',
      message: expect.stringContaining('is not held here'),
    });
    expect(agent.stderr()).toContain(friend.peerId);
    expect(agent.stderr()).toContain('peer connected');
  });

  it('hands a consumer slower than the link every byte of a blob larger than the read buffer, in order', async () => {
    const key = parseSwarmKey(await readFile(keyFile, 'utf8'), keyFile);
    // The admitted identity, on a node of its own.
    const reader = await client('friend', key);
    const hash = createHash('sha256');
    let received = 0;
    // About 1 ms per chunk: far slower than loopback, so the stream spends most of its time paused.
    await fetchPeerRange(
      reader.node,
      agent.addresses[0] ?? '',
      { digest: hugeDigest, offset: 0, length: HUGE_BYTES },
      async (chunk: Uint8Array) => {
        hash.update(chunk);
        received += chunk.length;
        await new Promise((resolve) => setTimeout(resolve, 1));
      },
      { stallMs: 20_000 },
    );
    expect(received).toBe(HUGE_BYTES);
    expect(`sha256:${hash.digest('hex')}`).toBe(hugeDigest);
  }, 60_000);

  it('answers control requests from an admitted peer, and names the field of a malformed one', async () => {
    const key = parseSwarmKey(await readFile(keyFile, 'utf8'), keyFile);
    const friend = await client('friend', key);
    const { address, peerId } = parseAgentAddress(agent.addresses[0] ?? '', 'test');
    const remote = new RemoteAgent({ node: friend.node, address, peerId, settings: SETTINGS, logger: silent });
    await remote.hello();
    expect(await remote.holdings([{ digest: bigDigest, size: big.length }])).toEqual([{ digest: bigDigest, held: true, pieces: [] }]);
    // A request that fails validation: the agent says which field, and does nothing.
    const stream = await friend.node.dialProtocol(address, CONTROL_PROTOCOL, { signal: AbortSignal.timeout(5_000) });
    const lp = lpStream(stream);
    const task = { digest: 'sha256:nope', blobSize: 1, offset: 0, length: 1, sources: [{ registry: 'example.com', repository: 'a/b' }] };
    await lp.write(new TextEncoder().encode(JSON.stringify({ type: 'assign', settings: SETTINGS, tasks: [task] })));
    const reply = JSON.parse(new TextDecoder().decode((await lp.read({ signal: AbortSignal.timeout(5_000) })).subarray())) as { type: string; message: string };
    expect(reply).toMatchObject({ type: 'error', message: expect.stringContaining('tasks.0.digest') });
  });

  it('gives nothing to a peer with another swarm key, and logs the failed handshake', async () => {
    const stranger = await client('stranger', SwarmKey.generate());
    const error = await fetchAll(stranger.node, bigDigest, 0, 1024).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'MM_NETWORK' });
    expect(String((error as Error).message)).toMatch(/handshake|decrypt|Encryption/i);
    await expectLogged('handshake failed');
  });

  it('gives nothing to a peer with the key that is not on the allow-list, and logs its peer id', async () => {
    const key = parseSwarmKey(await readFile(keyFile, 'utf8'), keyFile);
    const intruder = await client('intruder', key);
    await expect(fetchAll(intruder.node, bigDigest, 0, 1024)).rejects.toMatchObject({ code: 'MM_NETWORK' });
    await expectLogged(intruder.peerId);
    // Nor any control: a coordinator that is not on the list cannot give this agent work.
    const { address, peerId } = parseAgentAddress(agent.addresses[0] ?? '', 'test');
    const remote = new RemoteAgent({ node: intruder.node, address, peerId, settings: SETTINGS, logger: silent });
    await expect(remote.hello()).rejects.toMatchObject({ code: 'MM_AGENT_LOST' });
    const refusal = agent
      .stderr()
      .split('\n')
      .find((line) => line.includes(intruder.peerId));
    expect(refusal).toContain('refused a peer that is not on the allow-list');
  });

  it('keeps its peer id across restarts and never logs the swarm key', async () => {
    const before = agent.peerId;
    const logs = agent.stderr() + agent.stdout();
    expect(await agent.stop()).toMatchObject({ code: 0 });
    const friend = (await loadOrCreateIdentity(join(dir, 'friend'))).peerId.toString();
    agent = await startAgent({ data: join(dir, 'agent'), swarmKey: keyFile, allow: [friend] });
    expect(agent.peerId).toBe(before);
    const hex = (await readFile(keyFile, 'utf8')).split('\n')[2] ?? '';
    expect(hex).toMatch(/^[0-9a-f]{64}$/);
    for (const text of [logs, agent.stderr(), agent.stdout()]) {
      expect(text).not.toContain(hex);
      expect(text).not.toContain(hex.slice(0, 16));
    }
  });

  it('refuses to start with a key file other users can read, naming the file', async () => {
    const open = join(dir, 'open.key');
    await writeSwarmKeyFile(open, SwarmKey.generate());
    await (await import('node:fs/promises')).chmod(open, 0o644);
    const result = await runMeshmirror(['agent', '--data', join(dir, 'agent2'), '--swarm-key', open, '--listen', '/ip4/127.0.0.1/tcp/0']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(open);
    expect(result.stderr).toContain('chmod 600');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });
});

/** The agent writes its log as it goes; wait until a line with `text` has arrived. */
async function expectLogged(text: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!agent.stderr().includes(text)) {
    if (Date.now() > deadline) throw new Error(`agent never logged "${text}": ${agent.stderr().slice(-1500)}`);
    await new Promise<void>((resolve) => agent.child.stderr?.once('data', () => resolve()));
  }
}
