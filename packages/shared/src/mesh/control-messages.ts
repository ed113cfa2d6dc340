/**
 * `/meshmirror/control/1`: the messages the coordinator and an agent exchange, one request per
 * stream. Each is a length-prefixed JSON object, validated with these schemas on receipt, so a peer
 * that sends something else gets a clear error naming the field instead of a crash. No message
 * carries a secret: agents read registry credentials from their own host.
 */
import { z } from 'zod';
import { isDigest, type Digest } from '../oci/digest.ts';

export const CONTROL_PROTOCOL_VERSION = 1;
/** Blobs per holdings request, so one message stays well under the size limit. */
export const HOLDINGS_BATCH = 2_000;
/** Largest control message accepted (a holdings answer for a full batch fits with room to spare). */
export const MAX_CONTROL_MESSAGE_BYTES = 4 * 1024 * 1024;

const digest = z.string().refine((value) => isDigest(value), 'not a sha256 digest') as unknown as z.ZodType<Digest>;
const count = z.number().int().nonnegative();
const code = z.string().max(64);
const text = z.string().max(4_000);

const location = z.strictObject({ registry: z.string().min(1).max(255), repository: z.string().min(1).max(255) });

const pieceTask = z.strictObject({
  digest,
  blobSize: count,
  offset: count,
  length: count,
  sources: z.array(location).min(1).max(64),
});

/** Transfer settings an agent applies to the pieces of one assignment (no credentials). */
export const fetchSettingsSchema = z.strictObject({
  tlsVerify: z.boolean(),
  connectTimeoutMs: count,
  headersTimeoutMs: count,
  stallTimeoutMs: count,
  /** Absent: attempts go on until `noProgressTimeoutMs` passes without progress. */
  retryTimes: count.optional(),
  retryDelayMs: count,
  /** Pieces the agent fetches at once for this assignment. */
  parallel: z.number().int().min(1).max(1_000),
  /** A piece with no byte for this long is given up (`--image-timeout`). */
  noProgressTimeoutMs: count.optional(),
});
export type FetchSettings = z.infer<typeof fetchSettingsSchema>;

/** Upload settings for mirror to mirror (no credentials: the agent reads its own for the target). */
export const pushSettingsSchema = z.strictObject({
  tlsVerify: z.boolean(),
  connectTimeoutMs: count,
  headersTimeoutMs: count,
  stallTimeoutMs: count,
  /** Absent: attempts go on until `noProgressTimeoutMs` passes without progress. */
  retryTimes: count.optional(),
  retryDelayMs: count,
  /** An upload with no byte confirmed for this long is given up (`--image-timeout`). */
  noProgressTimeoutMs: count.optional(),
  /** Bytes per PATCH. */
  chunkBytes: z
    .number()
    .int()
    .min(1)
    .max(1024 * 1024 * 1024),
});
export type PushSettings = z.infer<typeof pushSettingsSchema>;

const pushResult = z.strictObject({
  action: z.enum(['present', 'mounted', 'uploaded']),
  bytesSent: count,
  resumedFrom: count,
  restarts: count,
  retries: count,
});

const pieceHolding = z.strictObject({ offset: count, length: count, committed: count, sha256: digest.optional() });
const blobHolding = z.strictObject({ digest, held: z.boolean(), pieces: z.array(pieceHolding) });

const pieceEvent = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('progress'), digest, offset: count, bytes: count }),
  z.strictObject({ type: z.literal('piece-done'), digest, offset: count, length: count, sha256: digest, upstreamBytes: count }),
  z.strictObject({ type: z.literal('piece-failed'), digest, offset: count, length: count, code, message: text, upstreamBytes: count }),
  z.strictObject({ type: z.literal('piece-cancelled'), digest, offset: count, length: count, upstreamBytes: count }),
  z.strictObject({ type: z.literal('blob-held'), digest, size: count }),
  z.strictObject({ type: z.literal('range-ignored'), digest, offset: count }),
  z.strictObject({
    type: z.literal('retry'),
    digest,
    offset: count,
    attempt: count,
    delayMs: count,
    code,
    message: text,
    host: text.optional(),
    failingForMs: count.optional(),
    unreachable: z.boolean().optional(),
  }),
]);

/** The first message on a stream, from the coordinator. */
export const controlRequestSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('hello'), version: count }),
  z.strictObject({ type: z.literal('holdings'), blobs: z.array(z.strictObject({ digest, size: count })).max(HOLDINGS_BATCH) }),
  z.strictObject({ type: z.literal('assign'), settings: fetchSettingsSchema, tasks: z.array(pieceTask).min(1).max(1_000) }),
  z.strictObject({ type: z.literal('evict'), digests: z.array(digest).max(HOLDINGS_BATCH) }),
  z.strictObject({
    type: z.literal('push'),
    settings: pushSettingsSchema,
    digest,
    size: count,
    target: location,
    mountFrom: z.array(z.string().min(1).max(255)).max(16),
  }),
]);
export type ControlRequest = z.infer<typeof controlRequestSchema>;

/** Later messages from the coordinator on an assignment's stream. */
export const controlFollowUpSchema = z.strictObject({ type: z.literal('cancel') });

/** Messages from the agent. */
export const controlReplySchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('hello'), version: count, peer: z.string().max(128) }),
  z.strictObject({ type: z.literal('holdings'), holdings: z.array(blobHolding).max(HOLDINGS_BATCH) }),
  z.strictObject({ type: z.literal('event'), event: pieceEvent }),
  /** Sent every second while an assignment runs, so a silent agent is noticed within seconds. */
  z.strictObject({ type: z.literal('heartbeat') }),
  z.strictObject({ type: z.literal('done') }),
  /** While a push runs: body bytes sent since the last such message. */
  z.strictObject({ type: z.literal('sent'), bytes: count }),
  z.strictObject({ type: z.literal('pushed'), result: pushResult }),
  z.strictObject({ type: z.literal('error'), code, message: text }),
]);
export type ControlReply = z.infer<typeof controlReplySchema>;
