/**
 * `/meshmirror/control/1`: how the coordinator drives an agent. One request per stream (hello,
 * holdings, assign, evict), answered with length-prefixed JSON replies validated on receipt. An
 * assignment's stream stays open while its pieces are fetched: the agent streams piece events and a
 * heartbeat every second, and the coordinator may send `cancel`. A coordinator that hears nothing
 * for `lostAfterMs`, or whose stream breaks, treats the agent as lost.
 */
import type { Libp2p, PeerId, Stream } from '@libp2p/interface';
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils';
import type { Multiaddr } from '@multiformats/multiaddr';
import {
  abortError,
  CONTROL_PROTOCOL_VERSION,
  controlFollowUpSchema,
  controlReplySchema,
  controlRequestSchema,
  describeError,
  errorCode,
  HOLDINGS_BATCH,
  MAX_CONTROL_MESSAGE_BYTES,
  MeshmirrorError,
  raceAbort,
  type AbortOptions,
  type Agent,
  type BlobHolding,
  type ControlReply,
  type ControlRequest,
  type Digest,
  type ErrorCode,
  type FetchPiecesOptions,
  type FetchSettings,
  type Logger,
  type PieceTask,
  type PushBlobOptions,
  type PushBlobRequest,
  type PushBlobResult,
  type PushSettings,
  type BlobRef,
} from '@meshmirror/shared';
import type { BlobStore } from '../store/blob-store.ts';
import { asError, encodeMessage, parseMessage } from './messages.ts';

export const CONTROL_PROTOCOL = '/meshmirror/control/1';
export const DEFAULT_HEARTBEAT_MS = 1_000;
/** Silence after which an agent is given up: five missed heartbeats. */
export const DEFAULT_LOST_AFTER_MS = 5_000;
const REQUEST_TIMEOUT_MS = 30_000;
/** How long a cancelled assignment's last replies are awaited (normally one round trip). */
const CANCEL_DRAIN_MS = 1_000;

export interface ControlServerOptions {
  store: BlobStore;
  /** An agent over `store` that fetches with these settings (the same one for the same settings). */
  fetcherFor(settings: FetchSettings): Agent;
  /** An agent over `store` that pushes into a target with these settings and this host's credentials. */
  pusherFor(settings: PushSettings): Agent;
  logger: Logger;
  heartbeatMs?: number;
}

/** Answers the coordinator's control requests on an agent. */
export async function serveControl(node: Libp2p, options: ControlServerOptions): Promise<void> {
  const { store, logger } = options;
  await node.handle(
    CONTROL_PROTOCOL,
    async (stream, connection) => {
      const peer = connection.remotePeer.toString();
      const lp = lpStream(stream, { maxDataLength: MAX_CONTROL_MESSAGE_BYTES });
      let request: ControlRequest | undefined;
      try {
        const first = await lp.read({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
        request = parseMessage(first.subarray(), controlRequestSchema, `control request from ${peer}`);
        switch (request.type) {
          case 'hello':
            await reply(lp, { type: 'hello', version: CONTROL_PROTOCOL_VERSION, peer: node.peerId.toString() });
            break;
          case 'holdings':
            await reply(lp, { type: 'holdings', holdings: await store.holdings(request.blobs) });
            break;
          case 'evict':
            for (const digest of request.digests) await store.evict(digest);
            logger.warn({ peer, blobs: request.digests }, "evicted blobs at the coordinator's request (they failed verification there)");
            await reply(lp, { type: 'done' });
            break;
          case 'assign':
            await runAssignment(stream, lp, request, peer, options);
            break;
          case 'push':
            await runPush(stream, lp, request, peer, options);
            break;
        }
        await stream.close({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      } catch (err) {
        const error = asError(err);
        logger.warn({ peer, request: request?.type, err: describeError(error) }, 'control request failed');
        // Tell the coordinator why, when the stream still works.
        await reply(lp, { type: 'error', code: errorCode(error), message: describeError(error) }).catch(() => undefined);
        stream.abort(error);
      }
    },
    { maxInboundStreams: 1_024 },
  );
}

function reply(lp: LengthPrefixedStream<Stream>, message: ControlReply): Promise<void> {
  return lp.write(encodeMessage(message), { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
}

/**
 * A long request's stream (an assignment, a push): replies leave in order, one at a time; a
 * heartbeat goes every second; `signal` aborts when the stream breaks, when the coordinator sends
 * `cancel` (it keeps its side open for that), or when a reply cannot be sent. Replies still go after
 * a `cancel`, so the coordinator hears how each piece ended (the bytes a cancelled fetch received
 * count upstream); they stop once the stream is broken. `end` stops the heartbeat and waits for the
 * replies already queued.
 */
function longRequest(stream: Stream, lp: LengthPrefixedStream<Stream>, peer: string, options: ControlServerOptions) {
  const controller = new AbortController();
  let broken = false;
  const breakOff = (err: Error): void => {
    broken = true;
    controller.abort(err);
  };
  let sending: Promise<void> = Promise.resolve();
  const send = (message: ControlReply): void => {
    sending = sending.then(() => (broken ? undefined : reply(lp, message))).catch((err: unknown) => breakOff(asError(err)));
  };
  const onClose = (): void => breakOff(new MeshmirrorError('MM_NETWORK', `the coordinator ${peer} went away`));
  stream.addEventListener('close', onClose);
  void lp
    .read({ signal: controller.signal })
    .then((bytes) => {
      parseMessage(bytes.subarray(), controlFollowUpSchema, `control message from ${peer}`);
      controller.abort(new MeshmirrorError('MM_ABORTED', 'cancelled by the coordinator'));
    })
    .catch(() => undefined);
  const heartbeat = setInterval(() => send({ type: 'heartbeat' }), options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS);
  return {
    signal: controller.signal,
    send,
    /** The error to report: why the request was aborted, else what it threw. */
    failure: (err: unknown): Error => (controller.signal.aborted ? asError(controller.signal.reason) : asError(err)),
    async end(): Promise<void> {
      clearInterval(heartbeat);
      stream.removeEventListener('close', onClose);
      await sending;
    },
  };
}

async function runAssignment(
  stream: Stream,
  lp: LengthPrefixedStream<Stream>,
  request: Extract<ControlRequest, { type: 'assign' }>,
  peer: string,
  options: ControlServerOptions,
): Promise<void> {
  const { logger } = options;
  const session = longRequest(stream, lp, peer, options);
  const started = Date.now();
  logger.info(
    { peer, pieces: request.tasks.length, bytes: request.tasks.reduce((n, t) => n + t.length, 0), first: `${request.tasks[0]?.digest}@${request.tasks[0]?.offset}` },
    'assignment started',
  );
  try {
    await options.fetcherFor(request.settings).fetchPieces(request.tasks, {
      signal: session.signal,
      onEvent: (event) => session.send({ type: 'event', event }),
    });
    session.send({ type: 'done' });
    logger.info({ peer, pieces: request.tasks.length, ms: Date.now() - started }, 'assignment finished');
  } catch (err) {
    const error = session.failure(err);
    logger.warn({ peer, err: describeError(error) }, 'assignment stopped');
    session.send({ type: 'error', code: errorCode(error), message: describeError(error) });
  } finally {
    await session.end();
  }
}

/** How often bytes sent by a push are reported to the coordinator. */
const SENT_REPORT_MS = 250;

async function runPush(
  stream: Stream,
  lp: LengthPrefixedStream<Stream>,
  request: Extract<ControlRequest, { type: 'push' }>,
  peer: string,
  options: ControlServerOptions,
): Promise<void> {
  const { logger } = options;
  const session = longRequest(stream, lp, peer, options);
  let unreported = 0;
  const report = (): void => {
    if (unreported === 0) return;
    session.send({ type: 'sent', bytes: unreported });
    unreported = 0;
  };
  const progress = setInterval(report, SENT_REPORT_MS);
  const where = `${request.target.registry}/${request.target.repository}`;
  try {
    const result = await options
      .pusherFor(request.settings)
      .pushBlob(
        { digest: request.digest, size: request.size, target: request.target, mountFrom: request.mountFrom },
        { signal: session.signal, onBytesSent: (bytes) => (unreported += bytes) },
      );
    report();
    session.send({ type: 'pushed', result });
    logger.info({ peer, digest: request.digest, target: where, action: result.action, bytesSent: result.bytesSent }, 'blob pushed');
  } catch (err) {
    const error = session.failure(err);
    report();
    logger.warn({ peer, digest: request.digest, target: where, code: errorCode(error), err: describeError(error) }, 'push failed');
    session.send({ type: 'error', code: errorCode(error), message: describeError(error) });
  } finally {
    clearInterval(progress);
    await session.end();
  }
}

export interface RemoteAgentOptions {
  node: Libp2p;
  /** A dialable address ending in `/p2p/<peer id>`. */
  address: Multiaddr;
  peerId: PeerId;
  /** Applied to every assignment. */
  settings: FetchSettings;
  /** Applied to every push (mirror to mirror); without it `pushBlob` is refused. */
  pushSettings?: PushSettings;
  logger: Logger;
  lostAfterMs?: number;
  dialTimeoutMs?: number;
}

/**
 * An agent on another host, reached over the mesh: the `Agent` interface the in-process agent
 * implements, so the coordinator drives both alike. It holds, fetches, serves and pushes; the
 * archive is written by the coordinator's own agent (`LocalAgent`).
 */
export class RemoteAgent implements Agent {
  readonly name: string;
  readonly address: Multiaddr;
  readonly #options: RemoteAgentOptions;
  readonly #lostAfterMs: number;

  constructor(options: RemoteAgentOptions) {
    this.#options = options;
    this.address = options.address;
    this.name = options.peerId.toString();
    this.#lostAfterMs = options.lostAfterMs ?? DEFAULT_LOST_AFTER_MS;
  }

  /** Checks that the agent answers and speaks this protocol version. */
  async hello(options: AbortOptions = {}): Promise<void> {
    const answer = await this.#call({ type: 'hello', version: CONTROL_PROTOCOL_VERSION }, 'hello', options);
    if (answer.version !== CONTROL_PROTOCOL_VERSION) {
      throw new MeshmirrorError('MM_USAGE', `agent ${this.name} speaks control protocol version ${answer.version}, this coordinator ${CONTROL_PROTOCOL_VERSION}`);
    }
  }

  async holdings(blobs: BlobRef[], options: AbortOptions = {}): Promise<BlobHolding[]> {
    const result: BlobHolding[] = [];
    for (let i = 0; i < blobs.length; i += HOLDINGS_BATCH) {
      const asked = blobs.slice(i, i + HOLDINGS_BATCH);
      const answer = await this.#call({ type: 'holdings', blobs: asked }, 'holdings', options);
      if (answer.holdings.length !== asked.length || answer.holdings.some((h, n) => h.digest !== asked[n]?.digest)) {
        throw new MeshmirrorError('MM_NETWORK', `agent ${this.name} answered holdings for other blobs than asked`);
      }
      result.push(...(answer.holdings as BlobHolding[]));
    }
    return result;
  }

  async evict(digests: Digest[], options: AbortOptions = {}): Promise<void> {
    for (let i = 0; i < digests.length; i += HOLDINGS_BATCH) {
      await this.#call({ type: 'evict', digests: digests.slice(i, i + HOLDINGS_BATCH) }, 'done', options);
    }
  }

  async close(): Promise<void> {
    // The mesh node belongs to the coordinator, which stops it.
  }

  /**
   * Sends one assignment and relays its events until the agent says it is done. Rejects with
   * `MM_AGENT_LOST` when the stream breaks or nothing arrives for `lostAfterMs`, and with the
   * agent's own error code when the agent gives up the whole assignment.
   */
  async fetchPieces(tasks: PieceTask[], options: FetchPiecesOptions): Promise<void> {
    const { signal, onEvent } = options;
    const assigned = new Set(tasks.map((t) => `${t.digest}@${t.offset}`));
    const digests = new Set(tasks.map((t) => t.digest));
    const { stream, lp } = await this.#open(signal);
    const onAbort = (): void => {
      void lp.write(encodeMessage({ type: 'cancel' }), { signal: AbortSignal.timeout(1_000) }).catch(() => undefined);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    // One read at a time, never abandoned: the read a cancel interrupts is the drain's first.
    let reading: Promise<ControlReply> | undefined;
    const next = async (until: AbortSignal | undefined, waitMs?: number): Promise<ControlReply> => {
      reading ??= this.#read(lp, undefined, waitMs);
      const message = await raceAbort(reading, until);
      reading = undefined;
      return message;
    };
    /** The agent's last word came (`done` or `error`). */
    let over = false;
    /** Passes on one reply; true once the assignment is over. */
    const relay = (message: ControlReply): boolean => {
      if (message.type === 'heartbeat') return false;
      over = message.type === 'done' || message.type === 'error';
      if (message.type === 'done') return true;
      if (message.type === 'error') throw new MeshmirrorError(asCode(message.code), `agent ${this.name}: ${message.message}`);
      if (message.type !== 'event') throw new MeshmirrorError('MM_NETWORK', `agent ${this.name} sent "${message.type}" during an assignment`);
      const event = message.event;
      // An agent reports only on what it was given.
      const mine = event.type === 'blob-held' ? digests.has(event.digest) : assigned.has(`${event.digest}@${event.offset}`);
      if (mine) onEvent(event);
      else this.#options.logger.warn({ agent: this.name, event: event.type, digest: event.digest }, 'agent reported on a piece it was not assigned; ignored');
      return false;
    };
    try {
      await this.#write(lp, { type: 'assign', settings: this.#options.settings, tasks }, signal);
      while (!relay(await next(signal)));
      await stream.close({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }).catch(() => undefined);
    } catch (err) {
      if (signal?.aborted === true && !over) {
        // Cancelled: the agent still says how each piece ended (what a stopped fetch received, or
        // the piece it finished just before), then ends the assignment. Heard for a moment, so
        // those upstream bytes are counted here as they are on the agent.
        const drained = AbortSignal.timeout(CANCEL_DRAIN_MS);
        await (async () => {
          while (!relay(await next(drained, CANCEL_DRAIN_MS)));
        })().catch(() => undefined);
      }
      stream.abort(asError(err));
      if (signal?.aborted === true) throw abortError(signal);
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Asks the agent to place one blob in the target from its store, relaying the bytes it reports
   * sending. Rejects with `MM_AGENT_LOST` when the agent goes silent or away, and with the agent's
   * error code (the registry's, kept when it is ours) when the push itself fails.
   */
  async pushBlob(request: PushBlobRequest, options: PushBlobOptions = {}): Promise<PushBlobResult> {
    const settings = this.#options.pushSettings;
    if (settings === undefined) throw new MeshmirrorError('MM_USAGE', `agent ${this.name} was not given push settings`);
    const { signal } = options;
    const { stream, lp } = await this.#open(signal);
    const onAbort = (): void => {
      void lp.write(encodeMessage({ type: 'cancel' }), { signal: AbortSignal.timeout(1_000) }).catch(() => undefined);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const message: ControlRequest = { type: 'push', settings, digest: request.digest, size: request.size, target: request.target, mountFrom: request.mountFrom };
      await this.#write(lp, message, signal);
      for (;;) {
        const answer = await this.#read(lp, signal);
        if (answer.type === 'heartbeat') continue;
        if (answer.type === 'sent') {
          options.onBytesSent?.(answer.bytes);
          continue;
        }
        if (answer.type === 'error') throw new MeshmirrorError(asPushCode(answer.code), `agent ${this.name}: ${answer.message}`);
        if (answer.type !== 'pushed') throw new MeshmirrorError('MM_NETWORK', `agent ${this.name} sent "${answer.type}" during a push`);
        await stream.close({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }).catch(() => undefined);
        return answer.result;
      }
    } catch (err) {
      stream.abort(asError(err));
      if (signal?.aborted === true) throw abortError(signal);
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async #open(signal?: AbortSignal): Promise<{ stream: Stream; lp: LengthPrefixedStream<Stream> }> {
    const dialSignal = AbortSignal.any([AbortSignal.timeout(this.#options.dialTimeoutMs ?? 10_000), ...(signal ? [signal] : [])]);
    let stream: Stream;
    try {
      stream = await this.#options.node.dialProtocol(this.address, CONTROL_PROTOCOL, { signal: dialSignal });
    } catch (err) {
      if (signal?.aborted === true) throw abortError(signal);
      throw new MeshmirrorError('MM_AGENT_LOST', `cannot reach agent ${this.name} at ${this.address.toString()}: ${describeError(asError(err))}`, { cause: err });
    }
    return { stream, lp: lpStream(stream, { maxDataLength: MAX_CONTROL_MESSAGE_BYTES }) };
  }

  #silence(signal?: AbortSignal): AbortSignal {
    return AbortSignal.any([AbortSignal.timeout(this.#lostAfterMs), ...(signal ? [signal] : [])]);
  }

  /** A request that cannot be written (the connection died under it, or stays blocked) means the agent is gone. */
  async #write(lp: LengthPrefixedStream<Stream>, request: ControlRequest, signal?: AbortSignal): Promise<void> {
    try {
      await lp.write(encodeMessage(request), { signal: this.#silence(signal) });
    } catch (err) {
      if (signal?.aborted === true) throw abortError(signal);
      throw new MeshmirrorError('MM_AGENT_LOST', `agent ${this.name} cannot be written to: ${describeError(asError(err))}`, { cause: err });
    }
  }

  async #read(lp: LengthPrefixedStream<Stream>, signal?: AbortSignal, waitMs = this.#lostAfterMs): Promise<ControlReply> {
    let bytes;
    try {
      bytes = await lp.read({ signal: AbortSignal.any([AbortSignal.timeout(waitMs), ...(signal ? [signal] : [])]) });
    } catch (err) {
      if (signal?.aborted === true) throw abortError(signal);
      throw new MeshmirrorError('MM_AGENT_LOST', `agent ${this.name} stopped answering: ${describeError(asError(err))}`, { cause: err });
    }
    return parseMessage(bytes.subarray(), controlReplySchema, `control reply from agent ${this.name}`);
  }

  async #call<T extends ControlReply['type']>(request: ControlRequest, expected: T, options: AbortOptions): Promise<Extract<ControlReply, { type: T }>> {
    const { signal } = options;
    const { stream, lp } = await this.#open(signal);
    try {
      await this.#write(lp, request, signal);
      const answer = await this.#read(lp, signal, REQUEST_TIMEOUT_MS);
      if (answer.type === 'error') throw new MeshmirrorError(asCode(answer.code), `agent ${this.name}: ${answer.message}`);
      if (answer.type !== expected) throw new MeshmirrorError('MM_NETWORK', `agent ${this.name} answered "${answer.type}" to "${request.type}"`);
      await stream.close({ signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }).catch(() => undefined);
      return answer as Extract<ControlReply, { type: T }>;
    } catch (err) {
      stream.abort(asError(err));
      throw err;
    }
  }
}

/** Codes a push may end with on an agent, kept as they are so reports read the same as a local push. */
const PUSH_CODES = new Set<ErrorCode>([
  'MM_REGISTRY',
  'MM_UNAUTHORIZED',
  'MM_STALL',
  'MM_TRUNCATED',
  'MM_DIGEST_MISMATCH',
  'MM_SIZE_MISMATCH',
  'MM_NETWORK',
  'MM_TLS',
  'MM_ABORTED',
  'MM_STORE',
  'MM_NOT_FOUND',
  'MM_USAGE',
]);

function asPushCode(code: string): ErrorCode {
  return PUSH_CODES.has(code as ErrorCode) ? (code as ErrorCode) : 'MM_NETWORK';
}

/** An agent's error code as ours when it is one of ours, else `MM_NETWORK`. */
function asCode(code: string): 'MM_NETWORK' | 'MM_STORE' | 'MM_ABORTED' | 'MM_USAGE' {
  return code === 'MM_STORE' || code === 'MM_ABORTED' || code === 'MM_USAGE' ? code : 'MM_NETWORK';
}
