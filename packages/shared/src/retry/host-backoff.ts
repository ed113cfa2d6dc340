/**
 * Backoff state per host (or peer), in the manner of regclient's reghttp: when a host starts failing,
 * every request to it waits, not only the one that failed; successes, and time spent answering,
 * decay the state again.
 *
 * A host that cannot be reached at all (connections refused, reset, timing out) is probed by one
 * request at a time: when its pause ends, one caller goes and the others wait for what it meets.
 * An outage therefore costs a handful of probes per host, not one per waiting request.
 */
import { abortError, errorCode, throwIfAborted } from '../errors.ts';
import { backoffDelay, isConnectionFailure, isRetryable, retryAfterOf, type RetryPolicy } from './policy.ts';

interface HostState {
  /** How deep into backoff the host is; grows once per failure episode, shrinks per success and while it answers. */
  level: number;
  /** Epoch ms before which nobody sends this host a request. */
  notBefore: number;
  /** A pause the host itself asked for (`Retry-After`); a success does not lift it. */
  promisedUntil: number;
  /** When the host last went from answering to failing; cleared by any success. */
  failingSince: number | undefined;
  /** When the host answered again after its last failure (the first success since); cleared by a failure. */
  answeringSince: number | undefined;
  /** The last failure was a connection failure: only one probe at a time goes. */
  unreachable: boolean;
  /** A probe went and has not come back yet. */
  probing: boolean;
  /** The code of the last failure, for the progress line. */
  lastCode: string;
  /** Callers waiting for their turn, woken when the host answers again. */
  wakers: Set<() => void>;
}

/** A host that is failing, as the progress line shows it. */
export interface HostTrouble {
  host: string;
  /** Epoch ms since the host has been failing without a success in between. */
  failingSince: number;
  /** Epoch ms of the next request it is sent (the past, while a probe is out). */
  nextTryAt: number;
  /** Connections fail (refused, reset, timing out), as opposed to error answers. */
  unreachable: boolean;
  /** The code of the last failure (`MM_NETWORK`, `MM_REGISTRY`, …). */
  code: string;
}

export interface WaitTurnOptions {
  signal?: AbortSignal | undefined;
  /** Epoch ms after which the caller would rather give up than keep waiting. */
  until?: number | undefined;
  /** Take the turn (the probe, for an unreachable host) when it comes; default true. */
  claim?: boolean;
}

export class HostBackoff {
  readonly #policy: RetryPolicy;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #hosts = new Map<string, HostState>();
  /** Every transient failure recorded per host, for reports ("N failed requests"). */
  readonly #failedRequests = new Map<string, number>();
  /** Failure episodes begun per host; a request notes the one it was sent in (`ticket`). */
  readonly #episodes = new Map<string, number>();

  constructor(policy: RetryPolicy, options: { now?: () => number; random?: () => number } = {}) {
    this.#policy = policy;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
  }

  /**
   * Resolves true when `host` may be called (at once when it is not backing off), or false when
   * `until` comes first. An unreachable host lets one caller through after each pause (the probe);
   * the others wait for the probe's answer. With `claim: false` the caller only waits for the pause
   * to end and must take its turn with `tryTurn` as the request goes out (after queueing for a
   * slot, say, during which the host may have started failing).
   */
  async waitTurn(host: string, options: WaitTurnOptions = {}): Promise<boolean> {
    const { signal, until } = options;
    const claim = options.claim ?? true;
    throwIfAborted(signal);
    // The pause can grow while we wait (a probe failed, a Retry-After came), so look again after it.
    for (;;) {
      if (claim ? this.tryTurn(host) : this.pauseRemaining(host) === 0) return true;
      const state = this.#hosts.get(host);
      if (state === undefined) return true;
      const now = this.#now();
      if (until !== undefined && now >= until) return false;
      const wakeAt = Math.min(state.notBefore, until ?? Infinity);
      await this.#sleepUnlessWoken(state, Math.max(1, wakeAt - now), signal);
    }
  }

  /**
   * true when `host` may be called now, taking the probe when it is unreachable; false when the
   * caller must wait (`waitTurn`) first.
   */
  tryTurn(host: string): boolean {
    const state = this.#hosts.get(host);
    if (state === undefined) return true;
    const now = this.#now();
    // A probe whose caller never reported back (it was aborted) has had its time.
    if (state.probing && now >= state.notBefore) state.probing = false;
    if (now < state.notBefore) return false;
    if (state.unreachable && state.failingSince !== undefined) {
      state.probing = true;
      // Should the probe never report back (its caller aborted), the next caller probes after this.
      state.notBefore = now + this.#delay(state.level);
    }
    return true;
  }

  /**
   * Notes a failed request to `host`. Only transient failures count (a 404 says nothing about the
   * host's health). Failures that land while the host is already paused belong to the same episode
   * (requests that were in flight together) and do not deepen the backoff, except the probe's; a
   * `Retry-After` always extends the pause to at least its end. The first failure after the host
   * has answered again starts from a level unwound by the time it answered: one level per
   * `baseDelayMs`.
   */
  recordFailure(host: string, err: unknown): void {
    if (!isRetryable(err)) return;
    this.#failedRequests.set(host, (this.#failedRequests.get(host) ?? 0) + 1);
    const now = this.#now();
    const state = this.#hosts.get(host) ?? this.#fresh();
    if (state.failingSince === undefined && state.answeringSince !== undefined) {
      // Answering unwinds the backoff, one level per first pause's length answered: a host that
      // came back from an outage and served for a while meets its next hiccup with a short pause,
      // not the outage's last one. Successes alone cannot do this: while the host is paused none
      // come in, so a sporadic failure every pause would hold it at its deepest level for good.
      state.level = Math.max(0, state.level - Math.floor((now - state.answeringSince) / this.#policy.baseDelayMs));
    }
    state.answeringSince = undefined;
    if (state.probing || now >= state.notBefore) {
      state.level += 1;
      state.notBefore = now + this.#delay(state.level);
    }
    state.probing = false;
    if (state.failingSince === undefined) {
      state.failingSince = now;
      this.#episodes.set(host, (this.#episodes.get(host) ?? 0) + 1);
    }
    state.unreachable = isConnectionFailure(err);
    state.lastCode = errorCode(err);
    const retryAfterMs = retryAfterOf(err);
    if (retryAfterMs !== undefined) {
      const pause = backoffDelay(this.#policy, state.level, { retryAfterMs });
      state.promisedUntil = Math.max(state.promisedUntil, now + pause);
      state.notBefore = Math.max(state.notBefore, state.promisedUntil);
    }
    this.#hosts.set(host, state);
  }

  /** Transient failures of requests to `host` since this backoff was made, whoever sent them. */
  failedRequests(host: string): number {
    return this.#failedRequests.get(host) ?? 0;
  }

  /**
   * What a request notes as it is sent, to hand to `recordSuccess`: the failure episode it was sent
   * in. An answer to a request sent before the host started failing says nothing about it now.
   */
  ticket(host: string): number {
    return this.#episodes.get(host) ?? 0;
  }

  /**
   * Notes that the host answered: the backoff decays by one level (and goes on decaying while it
   * answers, see `recordFailure`), the host counts as reachable again and waiting callers go at
   * once; a pause the host asked for (Retry-After) stays. With the `ticket` the request was sent
   * with: an answer to a request sent before the current failure episode began (a response that was
   * already on its way when the host went away) is ignored.
   */
  recordSuccess(host: string, ticket?: number): void {
    const state = this.#hosts.get(host);
    if (state === undefined) return;
    if (ticket !== undefined && state.failingSince !== undefined && ticket !== this.ticket(host)) return;
    const now = this.#now();
    state.level = Math.max(0, state.level - 1);
    state.failingSince = undefined;
    state.answeringSince ??= now;
    state.unreachable = false;
    state.probing = false;
    state.notBefore = state.promisedUntil;
    if (state.level === 0 && state.promisedUntil <= now) this.#hosts.delete(host);
    for (const wake of state.wakers) wake();
    state.wakers.clear();
  }

  /** Milliseconds until `host` may be called (0 when it may be called now). */
  pauseRemaining(host: string): number {
    const state = this.#hosts.get(host);
    return state === undefined ? 0 : Math.max(0, state.notBefore - this.#now());
  }

  /** Epoch ms since `host` has been failing without a success in between, or undefined. */
  failingSince(host: string): number | undefined {
    return this.#hosts.get(host)?.failingSince;
  }

  /** True while `host` is failing: its requests wait on the host's pause, not on delays of their own. */
  isFailing(host: string): boolean {
    return this.#hosts.get(host)?.failingSince !== undefined;
  }

  /** The hosts failing now, longest first. */
  troubles(): HostTrouble[] {
    const list: HostTrouble[] = [];
    for (const [host, state] of this.#hosts) {
      if (state.failingSince === undefined) continue;
      list.push({ host, failingSince: state.failingSince, nextTryAt: state.notBefore, unreachable: state.unreachable, code: state.lastCode });
    }
    return list.sort((a, b) => a.failingSince - b.failingSince);
  }

  #fresh(): HostState {
    return {
      level: 0,
      notBefore: 0,
      promisedUntil: 0,
      failingSince: undefined,
      answeringSince: undefined,
      unreachable: false,
      probing: false,
      lastCode: '',
      wakers: new Set(),
    };
  }

  #delay(level: number): number {
    return backoffDelay(this.#policy, Math.max(1, level), { random: this.#random });
  }

  /** Waits `ms`, or until the host answers again; an abort rejects with `MM_ABORTED`. */
  #sleepUnlessWoken(state: HostState, ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        state.wakers.delete(done);
        resolve();
      };
      const onAbort = (): void => {
        clearTimeout(timer);
        state.wakers.delete(done);
        reject(abortError(signal));
      };
      const timer = setTimeout(done, ms);
      state.wakers.add(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
