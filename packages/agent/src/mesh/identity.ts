/**
 * An agent's persistent peer identity: an Ed25519 key in `<data>/identity.key` (libp2p's protobuf
 * encoding, mode 600), made on first start. The peer id derived from it is what coordinators put
 * on their allow-lists, so it must survive restarts.
 */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PeerId, PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { describeError, errorCode, fileErrorReason, MeshmirrorError } from '@meshmirror/shared';

export const IDENTITY_FILE = 'identity.key';

export interface PeerIdentity {
  privateKey: PrivateKey;
  peerId: PeerId;
}

function identityError(file: string, why: string, cause?: unknown): MeshmirrorError {
  return new MeshmirrorError('MM_USAGE', `peer identity ${file}: ${why}`, { data: { file }, ...(cause === undefined ? {} : { cause }) });
}

/** Loads the identity in `dataDir`, or makes and saves a new one when there is none. */
export async function loadOrCreateIdentity(dataDir: string): Promise<PeerIdentity & { created: boolean }> {
  const file = join(dataDir, IDENTITY_FILE);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  let bytes: Buffer | undefined;
  try {
    const info = await stat(file);
    if ((info.mode & 0o077) !== 0) throw identityError(file, `other users can access it (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 ${file}`);
    bytes = await readFile(file);
  } catch (err) {
    if (err instanceof MeshmirrorError) throw err;
    if (errorCode(err) !== 'ENOENT') throw identityError(file, fileErrorReason(err), err);
  }
  if (bytes !== undefined) {
    let privateKey: PrivateKey;
    try {
      privateKey = privateKeyFromProtobuf(bytes);
    } catch (err) {
      throw identityError(file, 'not a libp2p private key; move it away to make a new identity (the peer id changes)', err);
    }
    return { privateKey, peerId: peerIdFromPrivateKey(privateKey), created: false };
  }
  const privateKey = await generateKeyPair('Ed25519');
  let handle;
  try {
    // 'wx': two agents started on the same folder at once cannot both write an identity.
    handle = await open(file, 'wx', 0o600);
    await handle.writeFile(privateKeyToProtobuf(privateKey));
    await handle.sync();
  } catch (err) {
    if (errorCode(err) === 'EEXIST') return await loadOrCreateIdentity(dataDir);
    throw identityError(file, fileErrorReason(err), err);
  } finally {
    await handle?.close();
  }
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey), created: true };
}

/** Parses a peer id given on the command line or in a config, naming where it came from. */
export function parsePeerId(text: string, where: string): PeerId {
  try {
    return peerIdFromString(text.trim());
  } catch {
    throw new MeshmirrorError('MM_USAGE', `${where}: "${text}" is not a libp2p peer id (like 12D3KooW…)`);
  }
}

/** A listen address given on the command line: a multiaddr such as /ip4/0.0.0.0/tcp/4001. */
export function checkListenAddress(text: string, where: string): void {
  try {
    multiaddr(text);
  } catch (err) {
    throw new MeshmirrorError('MM_USAGE', `${where}: "${text}" is not a multiaddr (${describeError(err)}); expected e.g. /ip4/0.0.0.0/tcp/4001`);
  }
}

/** An agent's address as given on the command line: a multiaddr that ends in `/p2p/<peer id>`. */
export function parseAgentAddress(text: string, where: string): { address: Multiaddr; peerId: PeerId } {
  let address: Multiaddr;
  try {
    address = multiaddr(text);
  } catch (err) {
    throw new MeshmirrorError('MM_USAGE', `${where}: "${text}" is not a multiaddr (${describeError(err)}); expected e.g. /ip4/10.0.0.5/tcp/4001/p2p/12D3KooW…`);
  }
  const id = address.getComponents().findLast((c) => c.name === 'p2p')?.value;
  if (id === undefined) {
    throw new MeshmirrorError('MM_USAGE', `${where}: "${text}" has no /p2p/<peer id>; the agent prints its full address when it starts`);
  }
  return { address, peerId: parsePeerId(id, where) };
}
