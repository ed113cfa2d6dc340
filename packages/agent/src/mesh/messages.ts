/** What both mesh protocols share: JSON messages validated on receipt, and libp2p's error shapes. */
import { appendFileSync } from 'node:fs';
import type { z } from 'zod';
import { MeshmirrorError } from '@meshmirror/shared';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeMessage(message: unknown): Uint8Array {
  const bytes = encoder.encode(JSON.stringify(message));
  traceMessage('sent', undefined, bytes);
  return bytes;
}

/**
 * An audit aid, off unless `MESHMIRROR_MESH_TRACE` names a file: every mesh message this process
 * sends or receives (the JSON messages and blob headers, never blob bytes) is appended to it as one
 * line, received ones before validation. The wire is Noise-encrypted, so this is how a test checks
 * what crosses the mesh (for instance that no registry credential ever does).
 */
function traceMessage(direction: 'sent' | 'received', what: string | undefined, bytes: Uint8Array): void {
  const file = process.env['MESHMIRROR_MESH_TRACE'];
  if (file === undefined || file === '') return;
  appendFileSync(file, `${JSON.stringify({ pid: process.pid, direction, what, message: decoder.decode(bytes) })}\n`);
}

/** Decodes and validates one message; anything else is `MM_NETWORK` naming the first bad field. */
export function parseMessage<T>(bytes: Uint8Array, schema: z.ZodType<T>, what: string): T {
  traceMessage('received', what, bytes);
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(bytes));
  } catch {
    throw new MeshmirrorError('MM_NETWORK', `${what} is not JSON`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new MeshmirrorError('MM_NETWORK', `${what} is malformed at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? ''}`);
  }
  return parsed.data;
}

/** libp2p's stream helpers reject with the stream's close Event when the stream goes away. */
export function asError(err: unknown): Error {
  if (err instanceof Error) return err;
  if (typeof Event !== 'undefined' && err instanceof Event) {
    return (err as Event & { error?: Error }).error ?? new MeshmirrorError('MM_NETWORK', `peer stream ${err.type} while waiting`);
  }
  return new Error(String(err));
}
