/**
 * A meshmirror libp2p node: TCP, Noise with the swarm key bound into every handshake as the
 * prologue (a peer with another key fails the handshake), yamux, and an allow-list of peer ids
 * checked in the connection gater once Noise has authenticated the remote's id. Who connected and
 * who was refused goes to the log; the swarm key never does.
 *
 * Not `@libp2p/pnet`: measured here with 3.0.27, a protected connection aborts after about 55 MB of
 * bulk transfer (js-libp2p #3551).
 */
import { noiseCrypto } from './noise-crypto.ts';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import type {
  ConnectionEncrypter,
  ConnectionGater,
  Libp2p,
  MessageStream,
  MultiaddrConnection,
  PeerId,
  SecureConnectionOptions,
  SecuredConnection,
} from '@libp2p/interface';
import { tcp } from '@libp2p/tcp';
import { createLibp2p } from 'libp2p';
import { describeError, MeshmirrorError, type Logger, type SwarmKey } from '@meshmirror/shared';
import type { PeerIdentity } from './identity.ts';

/** The most a peer may send on one stream before the reader asks for more (yamux's stream window). */
export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024;

export interface MeshNodeOptions {
  identity: PeerIdentity;
  swarmKey: SwarmKey;
  /** Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/4001`; none for a node that only dials. */
  listen: string[];
  /** Peer ids admitted besides this node's own; undefined admits every peer holding the swarm key. */
  allow: ReadonlySet<string> | undefined;
  logger: Logger;
}

/**
 * Wraps the Noise encrypter so a failed handshake (most often a peer with another swarm key) is
 * logged with the remote address: libp2p has no event for it.
 */
function logHandshakeFailures<C>(factory: (components: C) => ConnectionEncrypter, logger: Logger): (components: C) => ConnectionEncrypter {
  return (components: C) => {
    const inner = factory(components);
    // The upgrader hands the encrypter the transport's MultiaddrConnection, typed as the MessageStream it extends.
    const remoteOf = (connection: MessageStream): string => (connection as Partial<Pick<MultiaddrConnection, 'remoteAddr'>>).remoteAddr?.toString() ?? 'unknown';
    const report = (direction: 'inbound' | 'outbound', connection: MessageStream, err: unknown): void => {
      logger.warn({ direction, remote: remoteOf(connection), err: describeError(err) }, 'handshake failed (a peer without this swarm key?); connection refused');
    };
    return {
      protocol: inner.protocol,
      async secureInbound(connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection> {
        try {
          return await inner.secureInbound(connection, options);
        } catch (err) {
          report('inbound', connection, err);
          throw err;
        }
      },
      async secureOutbound(connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection> {
        try {
          return await inner.secureOutbound(connection, options);
        } catch (err) {
          report('outbound', connection, err);
          throw err;
        }
      },
    };
  };
}

export async function startMeshNode(options: MeshNodeOptions): Promise<Libp2p> {
  const { logger, allow } = options;
  const admitted = (peer: PeerId): boolean => allow === undefined || allow.has(peer.toString());
  const refuse = (direction: 'inbound' | 'outbound', peer: PeerId, remote: unknown): boolean => {
    if (admitted(peer)) return false;
    logger.warn({ direction, peer: peer.toString(), remote: String(remote) }, 'refused a peer that is not on the allow-list');
    return true;
  };
  const connectionGater: ConnectionGater = {
    // After the Noise handshake, so the peer id is authenticated.
    denyInboundEncryptedConnection: (peer, connection) => refuse('inbound', peer, connection.remoteAddr),
    denyOutboundEncryptedConnection: (peer, connection) => refuse('outbound', peer, connection.remoteAddr),
    // Before any socket is opened, when the peer id is already known.
    denyDialPeer: (peer) => !admitted(peer),
  };
  let node: Libp2p;
  try {
    node = await createLibp2p({
      privateKey: options.identity.privateKey,
      addresses: { listen: options.listen },
      transports: [tcp()],
      connectionEncrypters: [logHandshakeFailures(noise({ prologueBytes: options.swarmKey.prologue(), crypto: noiseCrypto }), logger)],
      // A paused reader can hold up to two windows (the one in flight and the one granted on
      // resume), so the window bounds the memory of every blob stream; 4 MiB keeps a LAN busy.
      streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: STREAM_WINDOW_BYTES } })],
      connectionGater,
    });
  } catch (err) {
    throw new MeshmirrorError('MM_USAGE', `cannot start the mesh node on ${options.listen.join(', ') || 'no address'}: ${describeError(err)}`, { cause: err });
  }
  node.addEventListener('connection:open', (event) => {
    const connection = event.detail;
    logger.info({ peer: connection.remotePeer.toString(), remote: connection.remoteAddr.toString(), direction: connection.direction }, 'peer connected');
  });
  node.addEventListener('connection:close', (event) => {
    const connection = event.detail;
    logger.debug({ peer: connection.remotePeer.toString(), remote: connection.remoteAddr.toString() }, 'peer disconnected');
  });
  return node;
}
