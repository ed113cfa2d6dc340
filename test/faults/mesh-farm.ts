/**
 * Support for the mesh group of the fault matrix: a loopback farm (swarm key, coordinator identity,
 * agents), a TCP relay in front of one agent that can freeze what it sends (the writer's pull from
 * that agent stops mid-piece), and the archive check every row ends with.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { PushedImage } from '../support/push-layout.ts';
import { startServe } from '../support/cli.ts';
import { extractChunks, listChunks } from '../support/mirror-fixture.ts';
import { skopeoCopy, skopeoInspectDigest } from '../support/skopeo.ts';

/** The one Docker-format image of the fixture: skopeo 1.9 reads it only through `meshmirror serve`. */
const DOCKER_FORMAT = new Set(['sample/docker:3.1']);

export interface ArchiveCheck {
  /** Images whose manifest digest is the pushed one and that skopeo copied whole out of the archive. */
  verified: number;
  chunks: number;
  /** Leftovers of an interrupted run: `*.partial` files (or anything else not a chunk) in the archive folder. */
  leftovers: string[];
  /** Blob files whose bytes do not hash to their name. */
  badBlobs: string[];
  /** One line per image that did not read back. */
  failures: string[];
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/**
 * Reads an archive back as a user would: extracts every chunk with `tar`, checks every blob file
 * against its name, then asks skopeo for each image's manifest digest and copies the image (every
 * platform; skopeo checks each blob it copies) out of the layout, or out of `meshmirror serve` of
 * the chunks for the Docker-format image.
 */
export async function checkArchive(out: string, into: string, pushed: PushedImage[], refOf: (name: string) => string): Promise<ArchiveCheck> {
  const names = await readdir(out);
  const leftovers = names.filter((n) => n !== 'working-dir' && !/^mirror_\d{6}\.tar$/.test(n));
  const chunks = (await listChunks(out)).length;
  await extractChunks(out, join(into, 'layout'));
  const layout = join(into, 'layout');
  const badBlobs: string[] = [];
  for (const hex of await readdir(join(layout, 'blobs', 'sha256'))) {
    if ((await sha256File(join(layout, 'blobs', 'sha256', hex))) !== hex) badBlobs.push(hex);
  }
  const failures: string[] = [];
  let verified = 0;
  const served = pushed.some((p) => DOCKER_FORMAT.has(p.name)) ? await startServe(out) : undefined;
  try {
    for (const [i, image] of pushed.entries()) {
      const ref = DOCKER_FORMAT.has(image.name) ? `docker://${served!.host}/${image.name}` : `oci:${layout}:${refOf(image.name)}`;
      try {
        const digest = await skopeoInspectDigest(ref);
        if (digest !== image.digest) throw new Error(`digest ${digest}, pushed ${image.digest}`);
        await skopeoCopy(ref, `dir:${join(into, `copy-${i}`)}`);
        verified += 1;
      } catch (error) {
        failures.push(`${image.name}: ${(error as Error).message.split('\n')[0]}`);
      }
    }
  } finally {
    await served?.stop();
  }
  return { verified, chunks, leftovers, badBlobs, failures };
}

/** `complete, skopeo ✓` or what was wrong with the archive. */
export function describeCheck(check: ArchiveCheck, expected: number): string {
  if (check.verified === expected && check.leftovers.length === 0 && check.badBlobs.length === 0) return `complete (${check.chunks} chunks), skopeo ✓`;
  return [
    `${check.verified}/${expected} images read back`,
    ...(check.leftovers.length > 0 ? [`leftovers ${check.leftovers.join(', ')}`] : []),
    ...(check.badBlobs.length > 0 ? [`${check.badBlobs.length} blobs with wrong bytes`] : []),
    ...check.failures,
  ].join('; ');
}

/** Counts a message in an agent's or the CLI's JSON log. */
export function countLog(text: string, msg: string): number {
  return text.split(`"msg":"${msg}"`).length - 1;
}

export interface FreezingRelay {
  /** The agent's multiaddr with the relay's port in place of the agent's. */
  address: string;
  /** Bytes sent from the agent to whoever dialled the relay. */
  bytesFromAgent(): number;
  /** True once `freezeAfter` bytes went through and nothing more is forwarded. */
  frozen(): boolean;
  close(): Promise<void>;
}

/**
 * A TCP relay in front of an agent's libp2p port. Once `freezeAfter` bytes went from the agent to
 * the dialler, nothing more is forwarded in that direction (the agent's sends back up in the
 * kernel, as over a link that stopped): the writer is left in the middle of a pull. When either
 * side closes, the other is closed too, so a killed agent is seen as a dropped connection.
 */
export async function startFreezingRelay(agentAddress: string, freezeAfter: number): Promise<FreezingRelay> {
  const m = /^\/ip4\/([^/]+)\/tcp\/(\d+)(\/p2p\/.+)$/.exec(agentAddress);
  if (m === null) throw new Error(`cannot relay ${agentAddress}`);
  const [, host, port, rest] = m;
  let fromAgent = 0;
  let frozen = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const agent = connect({ host: host!, port: Number(port) });
    for (const s of [client, agent]) {
      sockets.add(s);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        agent.destroy();
      });
      s.on('error', () => undefined);
    }
    client.on('data', (chunk: Buffer) => {
      if (!agent.write(chunk)) client.pause();
    });
    agent.on('drain', () => client.resume());
    agent.on('data', (chunk: Buffer) => {
      if (frozen) return;
      const room = freezeAfter - fromAgent;
      const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
      fromAgent += part.length;
      if (part.length > 0 && !client.write(part)) agent.pause();
      if (fromAgent >= freezeAfter) {
        frozen = true;
        agent.pause();
      }
    });
    client.on('drain', () => {
      if (!frozen) agent.resume();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const relayPort = (server.address() as { port: number }).port;
  return {
    address: `/ip4/127.0.0.1/tcp/${relayPort}${rest}`,
    bytesFromAgent: () => fromAgent,
    frozen: () => frozen,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
