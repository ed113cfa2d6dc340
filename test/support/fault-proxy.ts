/**
 * A reverse proxy between a client and a registry that injects faults into responses and counts
 * the body bytes it delivers. Tests use the counts to prove that a transfer resumed instead of
 * starting over.
 */
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http';
import type { Socket } from 'node:net';

export type Fault =
  /** Send N body bytes, then close the connection. */
  | { kind: 'reset-after'; bytes: number }
  /** Send N body bytes, then nothing for `ms` (then the rest; `Infinity` stalls until the proxy closes). */
  | { kind: 'stall-after'; bytes: number; ms: number }
  /** Answer with this instead of asking the upstream (e.g. 500, or 429 with Retry-After). */
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string }
  /** Send N body bytes, then end the response and close the connection: a body shorter than Content-Length. */
  | { kind: 'truncate-after'; bytes: number }
  /** Strip Range (and If-Range) upstream, so a ranged request gets 200 with the full body. */
  | { kind: 'ignore-range' }
  /** Flip the byte at body offset `at`. */
  | { kind: 'corrupt'; at: number };

export interface FaultRule {
  /** All given fields must match. `path` is tested against the request path including the query. */
  match: { method?: string; path?: RegExp };
  fault: Fault;
  /** How many matching requests get the fault. Default: all of them. */
  times?: number;
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
}

export interface FaultProxy {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** `127.0.0.1:PORT` */
  host: string;
  /** Replaces the rules; takes effect for requests that arrive afterwards. */
  setRules(rules: FaultRule[]): void;
  stats(): FaultProxyStats;
  resetStats(): void;
  /** Stops listening and ends every open connection, stalled ones included. */
  close(): Promise<void>;
}

const BLOB_GET_PATH = /^\/v2\/.+\/blobs\/[^/]+$/;
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
  let closed = false;
  let stats = emptyStats();
  let proxyOrigin = '';

  const takeFault = (req: IncomingMessage): Fault | undefined => {
    const method = (req.method ?? 'GET').toUpperCase();
    const path = req.url ?? '/';
    for (const active of rules) {
      if (active.remaining <= 0) continue;
      const { match } = active.rule;
      if (match.method !== undefined && match.method.toUpperCase() !== method) continue;
      if (match.path !== undefined) {
        match.path.lastIndex = 0;
        if (!match.path.test(path)) continue;
      }
      active.remaining -= 1;
      return active.rule.fault;
    }
    return undefined;
  };

  const countBody = (req: IncomingMessage, bytes: number): void => {
    const pathname = (req.url ?? '/').split('?')[0] ?? '/';
    stats.byPath.set(pathname, (stats.byPath.get(pathname) ?? 0) + bytes);
    if (req.method === 'GET' && BLOB_GET_PATH.test(pathname)) stats.blobBodyBytes += bytes;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    stats.requests += 1;
    const fault = takeFault(req);
    if (fault !== undefined) stats.faultsInjected += 1;

    if (fault?.kind === 'status') {
      req.resume();
      const body = Buffer.from(fault.body ?? '', 'utf8');
      res.writeHead(fault.status, { 'content-length': body.length, ...fault.headers });
      res.end(body);
      countBody(req, body.length);
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

    const upstreamReq = httpRequest(
      { protocol: 'http:', host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent },
      (upstreamRes) => relayResponse(req, res, upstreamRes, fault),
    );
    upstreamReq.once('error', (error) => {
      if (!res.headersSent) {
        const body = Buffer.from(`fault proxy: upstream error: ${error.message}`);
        res.writeHead(502, { 'content-length': body.length, connection: 'close' });
        res.end(body);
      } else {
        res.destroy(error);
      }
    });
    // A client that goes away mid-request must not leave the upstream request hanging.
    res.once('close', () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    req.pipe(upstreamReq);
  };

  const relayResponse = (
    req: IncomingMessage,
    res: ServerResponse,
    upstreamRes: IncomingMessage,
    fault: Fault | undefined,
  ): void => {
    const headers: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(upstreamRes.headers)) {
      if (value !== undefined && !HOP_BY_HOP.includes(name)) headers[name] = value;
    }
    const location = upstreamRes.headers.location;
    if (location !== undefined && location.startsWith(upstreamOrigin)) {
      headers['location'] = proxyOrigin + location.slice(upstreamOrigin.length);
    }
    const cuts = fault?.kind === 'truncate-after' || fault?.kind === 'reset-after';
    // The client must see the connection close: a short body on a kept-alive connection would
    // look like a stall, not a truncation.
    if (cuts) headers['connection'] = 'close';
    res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, headers);
    res.flushHeaders();

    let cutAt = cuts || fault?.kind === 'stall-after' ? fault.bytes : Infinity;
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
    setRules(next) {
      rules = next.map((rule) => ({ rule, remaining: rule.times ?? Infinity }));
    },
    stats() {
      return { ...stats, byPath: new Map(stats.byPath) };
    },
    resetStats() {
      stats = emptyStats();
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      agent.destroy();
      await stopped;
    },
  };
}

function emptyStats(): FaultProxyStats {
  return { requests: 0, blobBodyBytes: 0, byPath: new Map(), faultsInjected: 0 };
}
