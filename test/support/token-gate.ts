/**
 * A Bearer-token gate in front of a registry, as Docker Hub, Quay and Harbor put one: every `/v2/`
 * request needs a token for its repository's scope, `/token` issues tokens to Basic credentials,
 * and a token stops working after `tokenLifetimeMs` while the token server still says it lasts
 * `expires_in` seconds (a token revoked early, or clocks that disagree). A request with a missing,
 * unknown or expired token gets a 401 with a fresh `WWW-Authenticate: Bearer realm=…,service=…,
 * scope=…` challenge, as distribution's token auth answers.
 *
 * distribution's own token auth would need a signing token server; this gate checks tokens itself
 * and forwards what it admits to `upstream` (the registry, or a fault proxy in front of it).
 */
import { randomBytes } from 'node:crypto';
import { Agent, createServer, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface TokenGateOptions {
  /** `http://host:port` of what admitted requests go to. */
  upstream: string;
  username: string;
  password: string;
  /** How long an issued token is accepted. */
  tokenLifetimeMs: number;
  /** The `expires_in` the token server announces. Default 60 (the token spec's minimum). */
  advertisedExpiresInS?: number;
  /** `service` of the challenge. Default `meshmirror-token-gate`. */
  service?: string;
}

export interface TokenGateStats {
  /** `/token` requests answered with a token. */
  tokensIssued: number;
  /** `/token` requests refused (no or wrong credentials). */
  tokenRequestsRefused: number;
  /** Registry requests refused because their token had expired. */
  expiredTokenRejections: number;
  /** Registry requests refused without a token, or with one the gate never issued or for another scope. */
  otherRejections: number;
  /** Registry requests admitted and forwarded. */
  admitted: number;
}

export interface TokenGate {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** `127.0.0.1:PORT`: the registry part of image references. */
  host: string;
  stats(): TokenGateStats;
  /** Every token string the gate issued, to check that none leaks into output or files. */
  issuedTokens(): string[];
  close(): Promise<void>;
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host', 'authorization'];

interface IssuedToken {
  scopes: Set<string>;
  expiresAt: number;
}

export async function startTokenGate(options: TokenGateOptions): Promise<TokenGate> {
  const upstream = new URL(options.upstream);
  const service = options.service ?? 'meshmirror-token-gate';
  const expectedBasic = `Basic ${Buffer.from(`${options.username}:${options.password}`).toString('base64')}`;
  const agent = new Agent({ keepAlive: true });
  const tokens = new Map<string, IssuedToken>();
  const sockets = new Set<Socket>();
  const stats: TokenGateStats = { tokensIssued: 0, tokenRequestsRefused: 0, expiredTokenRejections: 0, otherRejections: 0, admitted: 0 };
  let origin = '';

  const sendJson = (res: ServerResponse, status: number, body: unknown, headers: OutgoingHttpHeaders = {}): void => {
    const text = Buffer.from(JSON.stringify(body));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': text.length, ...headers });
    res.end(text);
  };

  const issueToken = (req: IncomingMessage, res: ServerResponse, url: URL): void => {
    if (req.headers.authorization !== expectedBasic) {
      stats.tokenRequestsRefused += 1;
      sendJson(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }, { 'www-authenticate': `Basic realm="${service}"` });
      return;
    }
    const scopes = new Set(
      url.searchParams
        .getAll('scope')
        .flatMap((s) => s.split(' '))
        .filter((s) => s !== ''),
    );
    const token = `gate-${randomBytes(24).toString('hex')}`;
    tokens.set(token, { scopes, expiresAt: Date.now() + options.tokenLifetimeMs });
    stats.tokensIssued += 1;
    sendJson(res, 200, { token, access_token: token, expires_in: options.advertisedExpiresInS ?? 60, issued_at: new Date().toISOString() });
  };

  /** `repository:sample/app:pull` for `/v2/sample/app/blobs/…`; undefined for `/v2/`. */
  const scopeOf = (path: string): string | undefined => {
    const match = /^\/v2\/(.+?)\/(manifests|blobs|tags)\//.exec(path);
    return match === null ? undefined : `repository:${match[1]}:pull`;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', origin);
    if (url.pathname === '/token') {
      issueToken(req, res, url);
      return;
    }
    const scope = scopeOf(url.pathname);
    const header = req.headers.authorization;
    const presented = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice('Bearer '.length) : undefined;
    const token = presented === undefined ? undefined : tokens.get(presented);
    const expired = token !== undefined && token.expiresAt <= Date.now();
    if (token === undefined || expired || (scope !== undefined && !token.scopes.has(scope))) {
      if (expired) stats.expiredTokenRejections += 1;
      else stats.otherRejections += 1;
      const challenge = `Bearer realm="${origin}/token",service="${service}"${scope === undefined ? '' : `,scope="${scope}"`}`;
      req.resume();
      sendJson(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: expired ? 'token expired' : 'authentication required' }] }, { 'www-authenticate': challenge });
      return;
    }
    stats.admitted += 1;
    const headers: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) if (value !== undefined && !HOP_BY_HOP.includes(name)) headers[name] = value;
    headers['host'] = upstream.host;
    const forwarded = httpRequest(
      { protocol: 'http:', host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent },
      (upstreamRes) => {
        const out: OutgoingHttpHeaders = {};
        for (const [name, value] of Object.entries(upstreamRes.headers)) if (value !== undefined && !HOP_BY_HOP.includes(name)) out[name] = value;
        // A cut-off upstream body must reach the client as a cut-off body, not as a clean end.
        if (upstreamRes.headers.connection === 'close') out['connection'] = 'close';
        res.writeHead(upstreamRes.statusCode ?? 502, out);
        upstreamRes.pipe(res);
        upstreamRes.once('aborted', () => res.destroy());
        upstreamRes.once('error', () => res.destroy());
      },
    );
    forwarded.once('error', () => {
      if (!res.headersSent) sendJson(res, 502, { errors: [{ code: 'UNAVAILABLE', message: 'upstream unreachable' }] });
      else res.destroy();
    });
    res.once('close', () => {
      if (!res.writableFinished) forwarded.destroy();
    });
    req.pipe(forwarded);
  };

  const server = createServer({ keepAlive: true }, handle);
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('clientError', (_error, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('token gate has no port');
  const host = `127.0.0.1:${address.port}`;
  origin = `http://${host}`;

  return {
    url: origin,
    host,
    stats: () => ({ ...stats }),
    issuedTokens: () => [...tokens.keys()],
    async close() {
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      agent.destroy();
      await stopped;
    },
  };
}
