/**
 * What the soak does to the farm and when, worked out from its length alone, so a 3-minute sample
 * and a 20-minute soak meet the same kinds of faults: the coordinator killed once, one agent killed
 * and restarted every few minutes, one upstream outage (2 minutes, or a tenth of a shorter soak),
 * and bursts of 5xx and 429 under a steady drizzle of resets and stalls.
 */
import type { FaultRule } from '../support/fault-proxy.ts';

export type SoakEvent =
  | { kind: 'kill-coordinator'; atMs: number }
  | { kind: 'kill-agent'; atMs: number; restartAfterMs: number }
  | { kind: 'outage'; atMs: number; forMs: number }
  | { kind: 'burst'; atMs: number; burst: number };

/** An agent killed this long ago is started again: long enough for the coordinator to move its work. */
const AGENT_DOWN_MS = 3_000;
const MINUTE = 60_000;
/** One burst of 5xx or 429 (they alternate) this often. */
export const BURST_EVERY_MS = 15_000;
/**
 * A burst's rules hold this long, then the steady ones alone again: a burst is a bad moment of the
 * registry's, not a trap for whichever requests come next. Left in place, it would catch every
 * retry of a run's last piece for minutes, as a registry that is down does.
 */
export const BURST_WINDOW_MS = 3_000;

/**
 * The events of a soak of `durationMs`, in time order. Everything disruptive happens before 85% of
 * the time, so a run sized for the whole soak is still going when the last kill comes.
 */
export function soakEvents(durationMs: number): SoakEvent[] {
  const events: SoakEvent[] = [];
  const coordinatorAt = Math.round(0.25 * durationMs);
  events.push({ kind: 'kill-coordinator', atMs: coordinatorAt });
  // Every few minutes: a fifth of the soak, at least a minute, at most four.
  const every = Math.min(4 * MINUTE, Math.max(MINUTE, durationMs / 5));
  for (let at = every / 2; at < 0.85 * durationMs; at += every) {
    // Not while the coordinator is down: each kill should be met by a running coordinator.
    const shifted = Math.abs(at - coordinatorAt) < 10_000 ? coordinatorAt + 10_000 : at;
    events.push({ kind: 'kill-agent', atMs: Math.round(shifted), restartAfterMs: AGENT_DOWN_MS });
  }
  events.push({ kind: 'outage', atMs: Math.round(0.55 * durationMs), forMs: Math.round(Math.min(2 * MINUTE, durationMs / 10)) });
  for (let at = BURST_EVERY_MS / 2, n = 0; at < durationMs; at += BURST_EVERY_MS, n += 1) events.push({ kind: 'burst', atMs: at, burst: n });
  return events.sort((a, b) => a.atMs - b.atMs);
}

const BLOB_GET = /\/v2\/.+\/blobs\/sha256:/;
const MANIFEST_GET = /\/v2\/.+\/manifests\//;

/**
 * The steady faults, always on: a reset at a random body offset in 3% of blob and manifest GETs,
 * and a stall of 15 s (beyond the soak's --stall-timeout) in 1.5% of blob GETs, after a few bytes
 * or well into the body.
 */
export function steadyRules(): FaultRule[] {
  return [
    { match: { method: 'GET', path: BLOB_GET }, fault: { kind: 'reset-random' }, probability: 0.03 },
    { match: { method: 'GET', path: MANIFEST_GET }, fault: { kind: 'reset-random' }, probability: 0.03 },
    { match: { method: 'GET', path: BLOB_GET }, fault: { kind: 'stall-after', bytes: 1000, ms: 15_000 }, probability: 0.0075 },
    { match: { method: 'GET', path: BLOB_GET }, fault: { kind: 'stall-after', bytes: 700_000, ms: 15_000 }, probability: 0.0075 },
  ];
}

/**
 * Burst `n`: even ones answer the next blob GETs 503, 500, 502, 503 and the next manifest GETs 502,
 * 500; odd ones answer the next three blob GETs and a manifest GET 429 TOOMANYREQUESTS with
 * Retry-After: 2. They come before the steady rules, so a burst takes the next matching requests
 * in its window.
 */
export function burstRules(n: number): FaultRule[] {
  const blobs = { method: 'GET', path: BLOB_GET };
  const manifests = { method: 'GET', path: MANIFEST_GET };
  if (n % 2 === 0) {
    return [
      ...[503, 500, 502, 503].map((status) => ({ match: blobs, fault: { kind: 'status' as const, status }, times: 1 })),
      ...[502, 500].map((status) => ({ match: manifests, fault: { kind: 'status' as const, status }, times: 1 })),
    ];
  }
  const tooMany = {
    kind: 'status' as const,
    status: 429,
    headers: { 'retry-after': '2', 'content-type': 'application/json' },
    body: '{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
  };
  return [
    { match: blobs, fault: tooMany, times: 3 },
    { match: manifests, fault: tooMany, times: 1 },
  ];
}
