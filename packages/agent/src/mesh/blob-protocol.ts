/**
 * `/meshmirror/blob/1`: one request per stream. The asker sends a length-prefixed JSON request
 * `{digest, offset, length, live?}`; with `live`, the range may lie in a piece the holder is still
 * fetching, and its bytes are sent as they arrive from upstream. The holder answers a length-prefixed JSON header, `{size}` or
 * `{error: {code, message}}`, then exactly `size` raw bytes, then closes. Every message is
 * validated with zod on receipt; the asker checks the byte count (and its caller the hash).
 */
import type { Libp2p, PeerId, Stream, StreamMessageEvent } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { z } from 'zod';
import type { Readable } from 'node:stream';
import { describeError, errorCode, isDigest, MeshmirrorError, type Digest, type Logger } from '@meshmirror/shared';
import type { ByteRateLimiter } from '../fetch/rate-limiter.ts';
import { asError, encodeMessage, parseMessage } from './messages.ts';

export const BLOB_PROTOCOL = '/meshmirror/blob/1';
const MAX_MESSAGE_BYTES = 16 * 1024;
const REQUEST_TIMEOUT_MS = 10_000;
/**
 * While the reader is paused, yamux may still deliver the window in flight plus the one granted when
 * it resumed (2 x STREAM_WINDOW_BYTES, 4 MiB each): the stream's buffer must hold that with room to spare.
 */
const READ_BUFFER_BYTES = 32 * 1024 * 1024;
/** Received bytes waiting for the consumer: pause above the high mark, resume below the low one. */
const QUEUE_HIGH_BYTES = 4 * 1024 * 1024;
const QUEUE_LOW_BYTES = 1024 * 1024;

const digestSchema = z.string().refine((value) => isDigest(value), 'not a sha256 digest');
const blobRequestSchema = z.strictObject({
  digest: digestSchema,
  offset: z.number().int().nonnegative(),
  length: z.number().int().nonnegative(),
  live: z.boolean().optional(),
});
/** How long a live request waits for the holder to start writing the piece (the fetch was sent at the same moment). */
const LIVE_OPEN_WAIT_MS = 10_000;
const blobHeaderSchema = z.union([
  z.strictObject({ size: z.number().int().nonnegative() }),
  z.strictObject({ error: z.strictObject({ code: z.string().max(64), message: z.string().max(1000) }) }),
]);

export interface BlobRangeRequest {
  digest: Digest;
  offset: number;
  length: number;
  /** The range may be in a piece being fetched now: send its bytes as they arrive. */
  live?: boolean | undefined;
}

/** Where served bytes come from: held blobs and finished pieces, and pieces being written (`BlobStore`). */
export interface RangeSource {
  openStoredRange(digest: Digest, offset: number, length: number, options?: { signal?: AbortSignal }): Promise<Readable | undefined>;
  openLiveRange(digest: Digest, offset: number, length: number, options?: { signal?: AbortSignal; waitMs?: number }): Promise<Readable | undefined>;
}

export interface BlobServerOptions {
  source: RangeSource;
  logger: Logger;
  /** Called as bytes of a range are handed to the stream (a range cut short counts what went). */
  onServed?: (peer: string, bytes: number) => void;
  /** This host's ceiling on mesh bytes (`--limit-peer`), over everything it serves. */
  throttle?: ByteRateLimiter;
}

/** Serves held blobs and finished pieces to every admitted peer that asks. */
export async function serveBlobs(node: Libp2p, options: BlobServerOptions): Promise<void> {
  const { source, logger } = options;
  await node.handle(
    BLOB_PROTOCOL,
    async (stream, connection) => {
      const peer = connection.remotePeer.toString();
      const signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
      let request: BlobRangeRequest | undefined;
      try {
        const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES });
        request = parseMessage((await lp.read({ signal })).subarray(), blobRequestSchema, `blob request from ${peer}`);
        const body =
          request.live === true
            ? await source.openLiveRange(request.digest, request.offset, request.length, { waitMs: LIVE_OPEN_WAIT_MS })
            : await source.openStoredRange(request.digest, request.offset, request.length);
        if (body === undefined) {
          const error = { code: 'MM_NOT_FOUND', message: `range ${request.offset}+${request.length} of blob ${request.digest} is not held here` };
          await lp.write(encodeMessage({ error }), { signal });
          await stream.close({ signal });
          logger.debug({ peer, digest: request.digest, code: error.code }, 'blob request refused');
          return;
        }
        try {
          await lp.write(encodeMessage({ size: request.length }), { signal });
          const raw = lp.unwrap();
          // Fresh buffers from the stream: send() keeps a reference to what it is given.
          for await (const chunk of body as AsyncIterable<Buffer>) {
            if (options.throttle !== undefined) await options.throttle.take(chunk.length);
            const more = raw.send(chunk);
            options.onServed?.(peer, chunk.length);
            if (!more) await raw.onDrain();
          }
          await raw.close();
        } finally {
          body.destroy();
        }
        logger.debug({ peer, digest: request.digest, offset: request.offset, bytes: request.length }, 'served a blob range');
      } catch (err) {
        const error = asError(err);
        logger.warn({ peer, digest: request?.digest, err: describeError(error) }, 'serving a blob range failed');
        stream.abort(error);
      }
    },
    { maxInboundStreams: 256 },
  );
}

export interface FetchPeerRangeOptions {
  signal?: AbortSignal;
  /** Fail when no bytes arrive for this long. */
  stallMs: number;
  /** Dial timeout. */
  dialTimeoutMs?: number;
}

/**
 * Asks `peer` for a range of a blob and hands every chunk to `onBytes` in order, one at a time; a
 * slow `onBytes` pauses the stream, so memory stays flat. Resolves once exactly the requested
 * bytes arrived; rejects with the holder's error code, `MM_TRUNCATED`, `MM_STALL` or `MM_NETWORK`.
 */
export async function fetchPeerRange(
  node: Libp2p,
  target: PeerId | Multiaddr | string,
  request: BlobRangeRequest,
  onBytes: (chunk: Uint8Array) => Promise<void> | void,
  options: FetchPeerRangeOptions,
): Promise<void> {
  const peer = typeof target === 'string' ? multiaddr(target) : target;
  const dialSignal = AbortSignal.any([AbortSignal.timeout(options.dialTimeoutMs ?? 10_000), ...(options.signal ? [options.signal] : [])]);
  let stream: Stream;
  try {
    stream = await node.dialProtocol(peer, BLOB_PROTOCOL, { signal: dialSignal });
  } catch (err) {
    throw new MeshmirrorError('MM_NETWORK', `cannot open a blob stream to ${String(peer)}: ${describeError(asError(err))}`, { cause: err });
  }
  try {
    const headerSignal = AbortSignal.any([AbortSignal.timeout(REQUEST_TIMEOUT_MS), ...(options.signal ? [options.signal] : [])]);
    // Written and read by hand rather than through lpStream: a small blob's bytes arrive with the
    // header and the stream closes, after which lpStream cannot hand its buffered bytes back.
    if (!stream.send(lengthPrefixed(encodeMessage(request)))) await stream.onDrain({ signal: headerSignal });
    await stream.close({ signal: headerSignal });
    await consumeResponse(stream, request.length, onBytes, options, (bytes) => {
      const header = parseMessage(bytes, blobHeaderSchema, `blob header from ${String(peer)}`);
      if ('error' in header) {
        throw new MeshmirrorError(header.error.code === 'MM_NOT_FOUND' ? 'MM_NOT_FOUND' : 'MM_NETWORK', `peer ${String(peer)}: ${header.error.message}`, {
          data: { peerCode: header.error.code },
        });
      }
      if (header.size !== request.length) {
        throw new MeshmirrorError('MM_NETWORK', `peer ${String(peer)} offers ${header.size} bytes of ${request.digest}, asked for ${request.length}`);
      }
    });
  } catch (err) {
    const error = asError(err);
    stream.abort(error);
    if (error instanceof MeshmirrorError) throw error;
    if (options.signal?.aborted === true) throw new MeshmirrorError('MM_ABORTED', 'aborted', { cause: error });
    throw new MeshmirrorError('MM_NETWORK', `blob stream from ${String(peer)} failed: ${describeError(error)}`, { cause: error });
  }
}

/** An unsigned varint length prefix, as lpStream writes it, followed by the message. */
function lengthPrefixed(message: Uint8Array): Uint8Array {
  const prefix: number[] = [];
  let n = message.length;
  while (n >= 0x80) {
    prefix.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 0x80);
  }
  prefix.push(n);
  const out = new Uint8Array(prefix.length + message.length);
  out.set(prefix, 0);
  out.set(message, prefix.length);
  return out;
}

/** The length of a varint-prefixed message at the start of `bytes`, once its prefix is complete. */
function readPrefix(bytes: Uint8Array): { length: number; prefixBytes: number } | undefined {
  let length = 0;
  for (let i = 0; i < Math.min(bytes.length, 4); i++) {
    const byte = bytes[i]!;
    length += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) {
      if (length > MAX_MESSAGE_BYTES) throw new MeshmirrorError('MM_NETWORK', `peer header of ${length} bytes exceeds ${MAX_MESSAGE_BYTES}`);
      return { length, prefixBytes: i + 1 };
    }
  }
  if (bytes.length >= 4) throw new MeshmirrorError('MM_NETWORK', 'peer header length prefix is malformed');
  return undefined;
}

/**
 * Reads the length-prefixed header (handed to `onHeader`, which throws to refuse it), then exactly
 * `expected` body bytes. Chunks go into one ordered queue that a single loop hands to `onBytes`, so
 * they are never consumed concurrently or out of order, even when yamux decodes several frames in
 * one go. The stream is paused while the queue holds more than QUEUE_HIGH_BYTES and resumed below
 * QUEUE_LOW_BYTES, so memory stays flat whatever the consumer's speed. Completion is decided from
 * the stream's state (remote write side closed, nothing buffered or queued), not from an event
 * alone: 'end' and 'close' can fire before every byte was delivered.
 */
function consumeResponse(
  stream: Stream,
  expected: number,
  onBytes: (chunk: Uint8Array) => Promise<void> | void,
  options: FetchPeerRangeOptions,
  onHeader: (header: Uint8Array) => void,
): Promise<void> {
  stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, READ_BUFFER_BYTES);
  return new Promise<void>((resolve, reject) => {
    let received = 0;
    let settled = false;
    const queue: Uint8Array[] = [];
    let queuedBytes = 0;
    let draining = false;
    let resuming = false;
    const stall = setTimeout(() => fail(new MeshmirrorError('MM_STALL', `no bytes from the peer for ${Math.round(options.stallMs / 1000)}s`)), options.stallMs);
    const cleanup = (): void => {
      clearTimeout(stall);
      stream.removeEventListener('message', onMessage);
      stream.removeEventListener('remoteCloseWrite', maybeDone);
      stream.removeEventListener('close', onClose);
      options.signal?.removeEventListener('abort', onAbort);
    };
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      cleanup();
      reject(err);
    };
    function maybeDone(): void {
      if (settled || draining || queue.length > 0) return;
      if (stream.remoteWriteStatus === 'writable' || stream.readBufferLength > 0) return;
      if (head !== undefined) {
        fail(new MeshmirrorError('MM_TRUNCATED', 'the peer closed the stream before its header'));
        return;
      }
      if (received !== expected) {
        fail(new MeshmirrorError('MM_TRUNCATED', `peer sent ${received} of ${expected} bytes`, { data: { remaining: expected - received } }));
        return;
      }
      settled = true;
      cleanup();
      resolve();
    }
    let head: Uint8Array | undefined = new Uint8Array(0);
    function deliver(chunk: Uint8Array): Promise<void> | void {
      if (head !== undefined) {
        const joined = new Uint8Array(head.length + chunk.length);
        joined.set(head, 0);
        joined.set(chunk, head.length);
        const prefix = readPrefix(joined);
        if (prefix === undefined || joined.length < prefix.prefixBytes + prefix.length) {
          head = joined;
          return;
        }
        head = undefined;
        onHeader(joined.subarray(prefix.prefixBytes, prefix.prefixBytes + prefix.length));
        chunk = joined.subarray(prefix.prefixBytes + prefix.length);
        if (chunk.length === 0) return;
      }
      received += chunk.length;
      if (received > expected) throw new MeshmirrorError('MM_NETWORK', `peer sent more than the ${expected} bytes asked for`);
      return onBytes(chunk);
    }
    /**
     * resume() hands over the paused stream's buffer and then re-opens yamux's window, which would
     * undo a pause made while the buffer was being handed over; so the pause is decided after it.
     */
    function resumeReading(): void {
      if (stream.readStatus !== 'paused') return;
      resuming = true;
      try {
        stream.resume();
      } finally {
        resuming = false;
      }
      // Read again: resume() changed it (the compiler still sees 'paused').
      const status: string = stream.readStatus;
      if (queuedBytes > QUEUE_HIGH_BYTES && status === 'readable') stream.pause();
    }
    async function drain(): Promise<void> {
      draining = true;
      try {
        while (queue.length > 0 && !settled) {
          const chunk = queue.shift()!;
          queuedBytes -= chunk.length;
          await deliver(chunk);
          if (queuedBytes < QUEUE_LOW_BYTES) resumeReading();
        }
      } catch (err) {
        fail(asError(err));
      } finally {
        draining = false;
      }
      maybeDone();
    }
    function onMessage(event: StreamMessageEvent): void {
      if (settled) return;
      stall.refresh();
      const data = event.data;
      for (const part of data instanceof Uint8Array ? [data] : data) {
        queue.push(part);
        queuedBytes += part.length;
      }
      if (!resuming && queuedBytes > QUEUE_HIGH_BYTES && stream.readStatus === 'readable') stream.pause();
      if (!draining) void drain();
    }
    function onClose(event: Event): void {
      const error = (event as Event & { error?: Error }).error;
      if (error !== undefined) fail(error);
      else maybeDone();
    }
    function onAbort(): void {
      fail(new MeshmirrorError('MM_ABORTED', 'aborted'));
    }
    options.signal?.addEventListener('abort', onAbort, { once: true });
    stream.addEventListener('message', onMessage);
    stream.addEventListener('remoteCloseWrite', maybeDone);
    stream.addEventListener('close', onClose);
    maybeDone();
  });
}

/** True when a peer error means "ask someone else" rather than "this blob cannot be had". */
export function isPeerUnavailable(err: unknown): boolean {
  return ['MM_NETWORK', 'MM_STALL', 'MM_TRUNCATED'].includes(errorCode(err));
}
