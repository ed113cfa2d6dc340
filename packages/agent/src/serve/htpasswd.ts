/**
 * HTTP basic authentication against an htpasswd file, as distribution's `auth.htpasswd` does it:
 * bcrypt entries only (`htpasswd -B`), `#` comments, the file read again when it changes, and an
 * unknown user costing the same bcrypt work as a known one so that timing does not tell them apart.
 *
 * Unlike distribution, a file with an entry it cannot check is refused when serving starts (named by
 * file and line) instead of failing that user at every request. Passwords and Authorization headers
 * are never logged; a user name is, on a failed attempt.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { describeError, MeshmirrorError, silentLogger, type Logger } from '@meshmirror/shared';
import { bcryptVerify, parseBcryptHash, type BcryptHash } from './bcrypt.ts';

/** The realm distribution's examples use is the operator's choice; ours names the tool. */
export const BASIC_AUTH_REALM = 'meshmirror';
/** How long a checked Authorization header is remembered: bcrypt is slow by design, and clients send one per request. */
const VERIFIED_TTL_MS = 5 * 60 * 1000;
const VERIFIED_MAX_ENTRIES = 1000;

export interface BasicAuthenticator {
  readonly realm: string;
  /** The user an `Authorization` header authenticates, or undefined (missing, malformed or wrong). */
  authenticate(authorization: string | undefined): Promise<string | undefined>;
}

/** Reads an htpasswd file; fails with `MM_USAGE` naming the file (and line) when it cannot be used. */
export async function loadHtpasswd(file: string, options: { logger?: Logger } = {}): Promise<BasicAuthenticator> {
  const logger = options.logger ?? silentLogger();
  let users = await readHtpasswd(file);
  let modified = (await stat(file)).mtimeMs;
  /** HMAC of accepted headers with a per-process key: what is kept in memory is never the password. */
  const key = randomBytes(32);
  let verified = new Map<string, { user: string; expires: number }>();

  /** Picks up an edited file as distribution does; an edit that breaks it keeps the previous users. */
  const refresh = async (): Promise<void> => {
    const now = await stat(file).catch(() => undefined);
    if (now === undefined || now.mtimeMs === modified) return;
    modified = now.mtimeMs;
    try {
      users = await readHtpasswd(file);
      verified = new Map();
      logger.info({ file, users: users.size }, 'htpasswd file changed; read again');
    } catch (error) {
      logger.error({ file, err: describeError(error) }, 'htpasswd file changed but cannot be used; keeping the users read before');
    }
  };

  return {
    realm: BASIC_AUTH_REALM,
    async authenticate(authorization) {
      const credentials = parseBasicAuthorization(authorization);
      if (credentials === undefined) return undefined;
      await refresh();
      const cacheKey = createHmac('sha256', key)
        .update(authorization ?? '')
        .digest('base64');
      const remembered = verified.get(cacheKey);
      if (remembered !== undefined && remembered.expires > Date.now()) return remembered.user;
      const hash = users.get(credentials.user);
      // An unknown user is checked against some entry anyway, so that answering takes as long.
      const ok = bcryptVerify(credentials.password, hash ?? users.values().next().value ?? DUMMY_HASH) && hash !== undefined;
      if (!ok) {
        logger.warn({ user: credentials.user }, 'basic authentication failed');
        return undefined;
      }
      if (verified.size >= VERIFIED_MAX_ENTRIES) verified.clear();
      verified.set(cacheKey, { user: credentials.user, expires: Date.now() + VERIFIED_TTL_MS });
      return credentials.user;
    },
  };
}

/** Checked when the file has no users at all, so that the answer still costs one bcrypt. */
const DUMMY_HASH: BcryptHash = { cost: 5, salt: Buffer.alloc(16), digest: Buffer.alloc(23) };

async function readHtpasswd(file: string): Promise<Map<string, BcryptHash>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new MeshmirrorError('MM_USAGE', `--htpasswd ${file}: cannot be read: ${describeError(cause)}`, { cause });
  }
  const users = new Map<string, BcryptHash>();
  const lines = text.split(/\r?\n/);
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const where = `--htpasswd ${file}:${index + 1}`;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new MeshmirrorError('MM_USAGE', `${where}: expected user:hash`);
    const user = line.slice(0, colon);
    const hash = parseBcryptHash(line.slice(colon + 1).trim());
    if (hash === undefined) {
      throw new MeshmirrorError(
        'MM_USAGE',
        `${where}: the entry of user "${user}" is not a bcrypt hash; only bcrypt entries are supported (htpasswd -B), as in distribution`,
      );
    }
    if (users.has(user)) throw new MeshmirrorError('MM_USAGE', `${where}: user "${user}" has a second entry`);
    users.set(user, hash);
  }
  return users;
}

/** User and password of a `Basic` Authorization header, or undefined when it is not one. */
export function parseBasicAuthorization(header: string | undefined): { user: string; password: string } | undefined {
  const match = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (match?.[1] === undefined) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
