/**
 * A reverse proxy between a client and a registry that injects faults into requests and responses
 * and counts the body bytes it delivers and receives. Tests use the counts to prove that a transfer
 * resumed instead of starting over.
 *
 * Request bodies (uploads) are buffered whole before they are forwarded, as nginx does by default
 * (`proxy_request_buffering on`) in front of most registries: a client cut off mid-PATCH never
 * reaches the registry with half a chunk.
 */
import { Agent, createServer, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';

export type Fault =
  /** Send N body bytes, then close the connection. */
  | { kind: 'reset-after'; bytes: number }
  /**
   * Close the connection at a body offset drawn from the proxy's seeded random source, uniformly in
   * [0, Content-Length). A response without a body passes untouched.
   */
  | { kind: 'reset-random' }
  /** Send N body bytes, then nothing for `ms` (then the rest; `Infinity` stalls until the proxy closes). */
  | { kind: 'stall-after'; bytes: number; ms: number }
  /** Answer with this instead of asking the upstream (e.g. 500, or 429 with Retry-After). */
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string }
  /** Send N body bytes, then end the response and close the connection: a body shorter than Content-Length. */
  | { kind: 'truncate-after'; bytes: number }
  /** Strip Range (and If-Range) upstream, so a ranged request gets 200 with the full body. */
  | { kind: 'ignore-range' }
  /** Flip the byte at body offset `at`. */
  | { kind: 'corrupt'; at: number }
  /** Take N bytes of the request body, then close the client's connection; nothing reaches the registry. */
  | { kind: 'reset-request-after'; bytes: number }
  /** Take N bytes of the request body, then read nothing for `ms` (then the rest, if the client is still there). */
  | { kind: 'stall-request-after'; bytes: number; ms: number }
  /** Forward the request, but answer with status `to` where the registry said `from` (e.g. 202 → 201). */
  | { kind: 'rewrite-status'; from: number; to: number }
  /** Forward the request and add these headers to the registry's answer. */
  | { kind: 'add-headers'; headers: Record<string, string> };

export interface FaultRule {
  /** All given fields must match. `path` is tested against the request path including the query. */
  match: { method?: string; path?: RegExp; /** A request header's value, e.g. `['content-range', /^4194304-/]`. */ header?: [string, RegExp] };
  fault: Fault;
  /** How many matching requests get the fault. Default: all of them. */
  times?: number;
  /**
   * 0..1: the share of matching requests that get the fault, drawn from the proxy's seeded random
   * source (see `setRules`). Default 1. `times` counts only the requests that got it.
   */
  probability?: number;
}

export interface FaultRuleOptions {
  /**
   * Seed of the random draws (`probability`, `reset-random`). A draw depends only on the seed, the
   * rule, the request's method and path and how many times that request was seen before, not on
   * the order in which parallel requests arrive, so a seed replays the same faults. Default 1.
   */
  seed?: number;
}

export interface FaultProxyStats {
  /** Requests received, faulted or not. */
  requests: number;
  /** Response body bytes delivered to clients for GET `/v2/…/blobs/…` requests. */
  blobBodyBytes: number;
  /** Response body bytes delivered to clients, by request path (without query), for every method. */
  byPath: Map<string, number>;
  /** Requests answered or altered by a fault rule. */
  faultsInjected: number;
  /** Request body bytes received from clients on blob upload URLs (`/v2/…/blobs/uploads/…`). */
  uploadBodyBytes: number;
  /** Every request: method, path without query, request body bytes received, status sent (0: none), fault applied. */
  log: Array<{
    method: string;
    path: string;
    requestBytes: number;
    status: number;
    fault?: Fault['kind'];
    /** Epoch ms when the request arrived. */
    at: number;
    /** Epoch ms when the whole response had been handed to the socket, if it was. */
    finishedAt?: number;
    /** The request's Range header, if any. */
    range?: string;
    /** The client's TCP port: with /proc, which process sent the request. */
    clientPort: number;
    /** Response body bytes delivered so far (grows while the response is being sent). */
    bytes: number;
  }>;
}

export interface FaultProxy {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** `127.0.0.1:PORT` */
  host: string;
  /** Replaces the rules; takes effect for requests that arrive afterwards. */
  setRules(rules: FaultRule[], options?: FaultRuleOptions): void;
  /**
   * true: the registry is down. The proxy stops listening (new connections are refused) and ends
   * every open connection; false: it listens on the same port again. Resolves once done.
   */
  setDown(down: boolean): Promise<void>;
  stats(): FaultProxyStats;
  resetStats(): void;
  /** Stops listening and ends every open connection, stalled ones included. */
  close(): Promise<void>;
}

const BLOB_GET_PATH = /^\/v2\/.+\/blobs\/[^/]+$/;
const UPLOAD_PATH = /^\/v2\/.+\/blobs\/uploads\//;
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'];

interface ActiveRule {
  rule: FaultRule;
  remaining: number;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  if (upstream.protocol !== 'http:') throw new Error(`fault proxy supports http upstreams only, got ${target}`);
  const upstreamOrigin = upstream.origin;
  const agent = new Agent({ keepAlive: true });
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let rules: ActiveRule[] = [];
  let seed = 1;
  /** How many times each `METHOD path?query` was seen, for draws that do not depend on arrival order. */
  const seen = new Map<string, number>();
  let closed = false;
  let down = false;
  let stats = emptyStats();
  /** Each request's log entry, for the body bytes counted against it. */
  const entries = new WeakMap<IncomingMessage, FaultProxyStats['log'][number]>();
  let proxyOrigin = '';

  const takeFault = (req: IncomingMessage, drawKey: string): Fault | undefined => {
    const method = (req.method ?? 'GET').toUpperCase();
    const path = req.url ?? '/';
    for (const [index, active] of rules.entries()) {
      if (active.remaining <= 0) continue;
      const { match } = active.rule;
      if (match.method !== undefined && match.method.toUpperCase() !== method) continue;
      if (match.path !== undefined) {
        match.path.lastIndex = 0;
        if (!match.path.test(path)) continue;
      }
      if (match.header !== undefined) {
        const value = req.headers[match.header[0].toLowerCase()];
        match.header[1].lastIndex = 0;
        if (typeof value !== 'string' || !match.header[1].test(value)) continue;
      }
      const probability = active.rule.probability ?? 1;
      if (probability < 1 && draw(seed, `${drawKey} rule ${index}`) >= probability) continue;
      active.remaining -= 1;
      return active.rule.fault;
    }
    return undefined;
  };

  const countBody = (req: IncomingMessage, bytes: number): void => {
    const entry = entries.get(req);
    if (entry !== undefined) entry.bytes += bytes;
    const pathname = (req.url ?? '/').split('?')[0] ?? '/';
    stats.byPath.set(pathname, (stats.byPath.get(pathname) ?? 0) + bytes);
    if (req.method === 'GET' && BLOB_GET_PATH.test(pathname)) stats.blobBodyBytes += bytes;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    stats.requests += 1;
    const method = (req.method ?? 'GET').toUpperCase();
    const requestKey = `${method} ${req.url ?? '/'}`;
    const occurrence = seen.get(requestKey) ?? 0;
    seen.set(requestKey, occurrence + 1);
    const drawKey = `${requestKey} #${occurrence}`;
    const fault = takeFault(req, drawKey);
    if (fault !== undefined) stats.faultsInjected += 1;
    const entry: FaultProxyStats['log'][number] = {
      method,
      path: (req.url ?? '/').split('?')[0] ?? '/',
      requestBytes: 0,
      status: 0,
      at: Date.now(),
      clientPort: req.socket.remotePort ?? 0,
      bytes: 0,
    };
    entries.set(req, entry);
    if (typeof req.headers.range === 'string') entry.range = req.headers.range;
    if (fault !== undefined) entry.fault = fault.kind;
    stats.log.push(entry);
    res.once('finish', () => {
      entry.status = res.statusCode;
      entry.finishedAt = Date.now();
    });
    const received = (bytes: number): void => {
      entry.requestBytes += bytes;
      if (UPLOAD_PATH.test(entry.path)) stats.uploadBodyBytes += bytes;
    };

    if (fault?.kind === 'status') {
      req.on('data', (chunk: Buffer) => received(chunk.length));
      req.resume();
      const body = Buffer.from(fault.body ?? '', 'utf8');
      const answer = (): void => {
        if (res.headersSent || res.destroyed) return;
        res.writeHead(fault.status, { 'content-length': body.length, ...fault.headers });
        res.end(body);
        countBody(req, body.length);
      };
      req.once('end', answer);
      req.once('error', () => res.destroy());
      return;
    }

    const headers: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && !HOP_BY_HOP.includes(name)) headers[name] = value;
    }
    headers['host'] = upstream.host;
    if (fault?.kind === 'ignore-range') {
      delete headers['range'];
      delete headers['if-range'];
    }

    const forward = (body: Buffer | undefined): void => {
      if (closed) return;
      if (body !== undefined) {
        headers['content-length'] = String(body.length);
        delete headers['transfer-encoding'];
      }
      const upstreamReq = httpRequest(
        { protocol: 'http:', host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent },
        (upstreamRes) => relayResponse(req, res, upstreamRes, fault, draw(seed, `${drawKey} offset`)),
      );
      upstreamReq.once('error', (error) => {
        if (!res.headersSent) {
          const text = Buffer.from(`fault proxy: upstream error: ${error.message}`);
          res.writeHead(502, { 'content-length': text.length, connection: 'close' });
          res.end(text);
        } else {
          res.destroy(error);
        }
      });
      // A client that goes away mid-request must not leave the upstream request hanging.
      res.once('close', () => {
        if (!res.writableFinished) upstreamReq.destroy();
      });
      if (body === undefined) req.pipe(upstreamReq);
      else upstreamReq.end(body);
    };

    if (method === 'GET' || method === 'HEAD') {
      forward(undefined);
      return;
    }
    // Buffer the whole request body, then forward it (or never, when the fault cuts it).
    const chunks: Buffer[] = [];
    let taken = 0;
    let cut = false;
    req.on('data', (chunk: Buffer) => {
      if (cut) return;
      received(chunk.length);
      chunks.push(chunk);
      taken += chunk.length;
      if (fault?.kind === 'reset-request-after' && taken >= fault.bytes) {
        cut = true;
        req.socket.destroy();
        return;
      }
      if (fault?.kind === 'stall-request-after' && taken >= fault.bytes && !stalledOnce) {
        stalledOnce = true;
        req.pause();
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!closed && !req.destroyed) req.resume();
        }, fault.ms);
        timers.add(timer);
      }
    });
    let stalledOnce = false;
    req.once('end', () => {
      if (!cut) forward(Buffer.concat(chunks));
    });
    req.once('error', () => {
      cut = true;
    });
  };

  const relayResponse = (
    req: IncomingMessage,
    res: ServerResponse,
    upstreamRes: IncomingMessage,
    fault: Fault | undefined,
    /** A seeded draw in [0, 1), for `reset-random`. */
    offsetDraw: number,
  ): void => {
    const headers: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(upstreamRes.headers)) {
      if (value !== undefined && !HOP_BY_HOP.includes(name)) headers[name] = value;
    }
    const location = upstreamRes.headers.location;
    if (location !== undefined && location.startsWith(upstreamOrigin)) {
      headers['location'] = proxyOrigin + location.slice(upstreamOrigin.length);
    }
    if (fault?.kind === 'add-headers') Object.assign(headers, fault.headers);
    let status = upstreamRes.statusCode ?? 502;
    if (fault?.kind === 'rewrite-status' && status === fault.from) status = fault.to;
    const declaredLength = Number(upstreamRes.headers['content-length']);
    const randomCut =
      fault?.kind === 'reset-random' && req.method !== 'HEAD' && Number.isSafeInteger(declaredLength) && declaredLength > 0
        ? Math.floor(offsetDraw * declaredLength)
        : undefined;
    const cuts = fault?.kind === 'truncate-after' || fault?.kind === 'reset-after' || randomCut !== undefined;
    // The client must see the connection close: a short body on a kept-alive connection would
    // look like a stall, not a truncation.
    if (cuts) headers['connection'] = 'close';
    res.writeHead(status, status === upstreamRes.statusCode ? upstreamRes.statusMessage : undefined, headers);
    res.flushHeaders();

    let cutAt =
      randomCut !== undefined ? randomCut : fault?.kind === 'truncate-after' || fault?.kind === 'reset-after' || fault?.kind === 'stall-after' ? fault.bytes : Infinity;
    let offset = 0;
    let stalled = false;
    let upstreamEnded = false;

    const write = (chunk: Buffer): void => {
      if (closed || chunk.length === 0) return;
      if (!res.write(chunk)) upstreamRes.pause();
      countBody(req, chunk.length);
      offset += chunk.length;
    };

    const cut = (): void => {
      upstreamRes.destroy();
      if (fault?.kind === 'truncate-after') {
        // Ends the response as if complete; `connection: close` then closes the socket.
        res.end();
      } else {
        // Flush what was written, then close the connection without finishing the response.
        res.socket?.destroySoon();
      }
    };

    res.on('drain', () => {
      if (!stalled) upstreamRes.resume();
    });
    upstreamRes.on('data', (data: Buffer) => {
      let chunk = data;
      if (fault?.kind === 'corrupt' && fault.at >= offset && fault.at < offset + chunk.length) {
        chunk = Buffer.from(chunk);
        const index = fault.at - offset;
        chunk[index] = (chunk[index] ?? 0) ^ 0xff;
      }
      if (offset + chunk.length <= cutAt) {
        write(chunk);
        return;
      }
      const head = chunk.subarray(0, cutAt - offset);
      const tail = chunk.subarray(head.length);
      write(head);
      if (fault?.kind !== 'stall-after') {
        cut();
        return;
      }
      // Stall: hold the rest back and read nothing from upstream for `ms` (or until close).
      stalled = true;
      upstreamRes.pause();
      if (fault.ms === Infinity) return;
      const timer = setTimeout(() => {
        timers.delete(timer);
        stalled = false;
        cutAt = Infinity;
        if (closed) return;
        write(tail);
        if (upstreamEnded) res.end();
        else upstreamRes.resume();
      }, fault.ms);
      timers.add(timer);
    });
    upstreamRes.on('end', () => {
      upstreamEnded = true;
      if (stalled) return;
      if (!res.writableEnded && !res.destroyed) res.end();
    });
    upstreamRes.on('error', (error) => res.destroy(error));
  };

  const server = createServer({ keepAlive: true }, handle);
  server.on('connection', (socket) => {
    // Accepted just before the listener closed: a registry that is down answers nothing.
    if (down) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // A client that cuts its own connection is an expected event for a fault proxy, not a crash.
  server.on('clientError', (_error, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('fault proxy has no port');
  const host = `127.0.0.1:${address.port}`;
  proxyOrigin = `http://${host}`;

  return {
    url: proxyOrigin,
    host,
    setRules(next, options = {}) {
      rules = next.map((rule) => ({ rule, remaining: rule.times ?? Infinity }));
      seed = options.seed ?? 1;
      seen.clear();
    },
    async setDown(value) {
      if (closed || value === down) return;
      down = value;
      if (value) {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        await stopped;
        return;
      }
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(address.port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
    },
    stats() {
      return { ...stats, byPath: new Map(stats.byPath), log: stats.log.map((e) => ({ ...e })) };
    },
    resetStats() {
      stats = emptyStats();
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      const stopped = down ? Promise.resolve() : new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      agent.destroy();
      await stopped;
    },
  };
}

/** A number in [0, 1) that depends only on the seed and the key. */
function draw(seed: number, key: string): number {
  return createHash('sha256').update(`${seed}:${key}`).digest().readUInt32BE(0) / 2 ** 32;
}

function emptyStats(): FaultProxyStats {
  return { requests: 0, blobBodyBytes: 0, byPath: new Map(), faultsInjected: 0, uploadBodyBytes: 0, log: [] };
}
