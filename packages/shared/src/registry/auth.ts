/**
 * Registry authentication: `WWW-Authenticate` challenges, the Docker/OCI token flow (Bearer) and
 * Basic. Tokens are cached per registry and scope and refreshed once when a registry rejects one.
 * Credentials and tokens never reach a log line or an error message.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Logger } from 'pino';
import { MeshmirrorError } from '../errors.ts';
import { raceAbort } from './abortable.ts';
import type { CredentialStore, Credentials } from './credentials.ts';
import { readBodyCapped, registryErrorFromResponse, type HttpTransport } from './http.ts';

export interface AuthChallenge {
  /** Lower-case scheme: `bearer`, `basic`, … */
  scheme: string;
  /** Lower-case parameter names → values (quotes and escapes removed). */
  params: Record<string, string>;
}

/**
 * Parses `WWW-Authenticate` (RFC 9110 §11.6.1): several challenges in one header or in several,
 * quoted values that contain commas and escaped quotes, unquoted values, any spacing.
 */
export function parseWwwAuthenticate(header: string | string[] | undefined): AuthChallenge[] {
  if (header === undefined) return [];
  if (Array.isArray(header)) return header.flatMap((h) => parseWwwAuthenticate(h));
  const challenges: AuthChallenge[] = [];
  const text = header;
  let i = 0;
  const isSpace = (c: string | undefined): boolean => c === ' ' || c === '\t';
  const skipSpaces = (): void => {
    while (isSpace(text[i])) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < text.length && !isSpace(text[i]) && text[i] !== ',' && text[i] !== '=' && text[i] !== '"') i++;
    return text.slice(start, i);
  };
  const readValue = (): string => {
    if (text[i] !== '"') {
      const start = i;
      while (i < text.length && text[i] !== ',' && !isSpace(text[i])) i++;
      return text.slice(start, i);
    }
    i++;
    let value = '';
    while (i < text.length && text[i] !== '"') {
      if (text[i] === '\\' && i + 1 < text.length) i++;
      value += text[i];
      i++;
    }
    i++; // closing quote (or past the end of a malformed header)
    return value;
  };

  let current: AuthChallenge | undefined;
  while (i < text.length) {
    while (i < text.length && (isSpace(text[i]) || text[i] === ',')) i++;
    if (i >= text.length) break;
    const tokenStart = i;
    const token = readToken();
    if (token === '') {
      i++; // a stray character; skip it rather than loop
      continue;
    }
    skipSpaces();
    if (text[i] === '=' && current !== undefined) {
      // `name=value`, unless it is token68 padding such as `Basic abc==`.
      if (text[i + 1] === '=' || i + 1 >= text.length || text[i + 1] === ',') {
        while (text[i] === '=') i++;
        current.params['token68'] = text.slice(tokenStart, i);
        continue;
      }
      i++;
      skipSpaces();
      current.params[token.toLowerCase()] = readValue();
      continue;
    }
    current = { scheme: token.toLowerCase(), params: {} };
    challenges.push(current);
  }
  return challenges;
}

interface CachedToken {
  value: string;
  /** Epoch ms after which we fetch a new one instead of sending this one. */
  refreshAt: number;
}

export interface RegistryAuthOptions {
  credentials: CredentialStore;
  transport: HttpTransport;
  logger: Logger;
  now?: () => number;
}

/** Token lifetime when the token server does not say (the Docker token spec's minimum). */
const DEFAULT_TOKEN_LIFETIME_S = 60;
const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;
const CLIENT_ID = 'meshmirror';

/**
 * Authentication state for all registries one client talks to. The registry name (`docker.io`,
 * `quay.io`, `localhost:5000`) keys challenges, credentials and tokens.
 */
export class RegistryAuth {
  readonly #credentials: CredentialStore;
  readonly #transport: HttpTransport;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #challenges = new Map<string, AuthChallenge>();
  readonly #tokens = new Map<string, CachedToken>();
  readonly #pending = new Map<string, Promise<CachedToken>>();

  constructor(options: RegistryAuthOptions) {
    this.#credentials = options.credentials;
    this.#transport = options.transport;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
  }

  /** Remembers how a registry asks for authentication (from a `/v2/` ping or a 401). */
  rememberChallenge(registry: string, headers: IncomingHttpHeaders): AuthChallenge | undefined {
    const challenge = pickChallenge(parseWwwAuthenticate(headers['www-authenticate']));
    if (challenge !== undefined) this.#challenges.set(registry, challenge);
    return challenge;
  }

  hasCredentials(registry: string, repository: string): boolean {
    return this.#credentials.get(registry, repository) !== undefined;
  }

  /**
   * The `Authorization` header for a request to a repository, or undefined when the registry has
   * not asked for authentication (or asks for Basic and we have no credentials).
   */
  async authorization(registry: string, repository: string, signal?: AbortSignal, access: RepositoryAccess = PULL): Promise<string | undefined> {
    const challenge = this.#challenges.get(registry);
    if (challenge === undefined) return undefined;
    const credentials = this.#credentials.get(registry, repository);
    if (challenge.scheme === 'basic') return credentials === undefined ? undefined : basicHeader(credentials);
    if (challenge.scheme !== 'bearer') return undefined;
    const scope = tokenScope(repository, access);
    const key = tokenKey(registry, scope);
    const cached = this.#tokens.get(key);
    if (cached !== undefined && cached.refreshAt > this.#now()) return `Bearer ${cached.value}`;
    let pending = this.#pending.get(key);
    if (pending === undefined) {
      // Parallel requests for one repository share one token request. It runs without any one
      // caller's signal so a caller that gives up does not fail the others.
      pending = this.#fetchToken(registry, challenge, scope, credentials).finally(() => this.#pending.delete(key));
      this.#pending.set(key, pending);
    }
    const token = await raceAbort(pending, signal);
    return `Bearer ${token.value}`;
  }

  /**
   * Learns from a 401 answer to `sent` (the Authorization we had sent, if any): records the
   * challenge and forgets a rejected token. Returns whether a new attempt could authenticate
   * differently; the caller makes at most one such attempt.
   */
  onUnauthorized(registry: string, repository: string, headers: IncomingHttpHeaders, sent: string | undefined, access: RepositoryAccess = PULL): boolean {
    const challenge = this.rememberChallenge(registry, headers);
    if (challenge === undefined) return false;
    if (challenge.scheme === 'bearer') {
      const key = tokenKey(registry, tokenScope(repository, access));
      const cached = this.#tokens.get(key);
      if (cached !== undefined && sent === `Bearer ${cached.value}`) this.#tokens.delete(key);
      return true;
    }
    if (challenge.scheme === 'basic') {
      const credentials = this.#credentials.get(registry, repository);
      return credentials !== undefined && sent !== basicHeader(credentials);
    }
    return false;
  }

  async #fetchToken(registry: string, challenge: AuthChallenge, scope: string, credentials: Credentials | undefined): Promise<CachedToken> {
    const realm = challenge.params['realm'];
    if (realm === undefined || realm === '') {
      throw new MeshmirrorError('MM_REGISTRY', `${registry} asks for a bearer token but names no realm`, { data: { retryable: false } });
    }
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new MeshmirrorError('MM_REGISTRY', `${registry} names an invalid token realm`, { data: { retryable: false } });
    }
    const service = challenge.params['service'];
    const what = `token for ${registry} (${scope}) from ${url.host}`;
    const identityToken = credentials?.identityToken;
    let response;
    if (identityToken !== undefined) {
      // docker login's identity token is an OAuth2 refresh token (distribution's token spec, POST form).
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: identityToken, client_id: CLIENT_ID, scope });
      if (service !== undefined) form.set('service', service);
      response = await this.#transport.request({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
      });
    } else {
      if (service !== undefined) url.searchParams.set('service', service);
      for (const one of scope.split(' ')) url.searchParams.append('scope', one);
      if (credentials !== undefined) url.searchParams.set('account', credentials.username);
      response = await this.#transport.request({
        method: 'GET',
        url,
        ...(credentials === undefined ? {} : { authorization: basicHeader(credentials) }),
      });
    }
    if (response.status !== 200) {
      const hint =
        response.status === 401 || response.status === 403
          ? credentials === undefined
            ? `${registry} requires credentials and none were found in the auth files`
            : `the credentials for ${registry} from the auth file were rejected`
          : undefined;
      throw await registryErrorFromResponse(response, `GET ${what}`, hint === undefined ? {} : { hint });
    }
    const body = await readBodyCapped(response, {
      maxBytes: MAX_TOKEN_RESPONSE_BYTES,
      what: `GET ${what}`,
      tooLargeCode: 'MM_SIZE_MISMATCH',
      stallTimeoutMs: this.#transport.stallTimeoutMs,
    });
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      throw new MeshmirrorError('MM_REGISTRY', `GET ${what}: the token server answered with something that is not JSON`, {
        data: { retryable: false },
      });
    }
    const record = typeof json === 'object' && json !== null ? (json as Record<string, unknown>) : {};
    const value = typeof record['token'] === 'string' && record['token'] !== '' ? record['token'] : record['access_token'];
    if (typeof value !== 'string' || value === '') {
      throw new MeshmirrorError('MM_REGISTRY', `GET ${what}: the token server's answer has no token`, { data: { retryable: false } });
    }
    const expiresIn = typeof record['expires_in'] === 'number' && record['expires_in'] > 0 ? record['expires_in'] : DEFAULT_TOKEN_LIFETIME_S;
    const lifetimeMs = expiresIn * 1_000;
    // Renew a little early so a token does not expire between our check and the registry's.
    const token = { value, refreshAt: this.#now() + lifetimeMs - Math.min(10_000, lifetimeMs / 10) };
    this.#tokens.set(tokenKey(registry, scope), token);
    this.#logger.debug({ registry, scope, expiresIn }, 'registry token issued');
    return token;
  }
}

/** Bearer wins over Basic when a registry offers both (it is what it prefers). */
function pickChallenge(challenges: AuthChallenge[]): AuthChallenge | undefined {
  return challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
}

/**
 * What a request needs of a repository: pulling, or pushing (which also needs pull, as every
 * registry checks existence before it accepts an upload), plus pull on the repository a blob is
 * mounted from; or deleting, asked as `*` as containers/image asks it (distribution's token auth
 * wants `delete` or `*`, Quay and Harbor know `*`).
 */
export interface RepositoryAccess {
  push: boolean;
  delete?: boolean;
  mountFrom?: string;
}

const PULL: RepositoryAccess = { push: false };

/** Space-separated scopes: one `scope` query parameter each (GET), one space-joined field (POST form). */
function tokenScope(repository: string, access: RepositoryAccess): string {
  const own = `repository:${repository}:${access.delete === true ? '*' : access.push ? 'pull,push' : 'pull'}`;
  return access.mountFrom === undefined || access.mountFrom === repository ? own : `${own} repository:${access.mountFrom}:pull`;
}

function tokenKey(registry: string, scope: string): string {
  return `${registry} ${scope}`;
}

function basicHeader(credentials: Credentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}
