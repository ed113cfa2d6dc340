/**
 * Registry credentials from the auth files podman, skopeo, oc-mirror and docker write. Lookup order
 * (like containers/image): `--authfile`, `$REGISTRY_AUTH_FILE`, `${XDG_RUNTIME_DIR}/containers/auth.json`,
 * `~/.config/containers/auth.json`, `~/.docker/config.json`; the first file with an entry for the
 * registry wins, and inside a file the most specific `host/namespace` key wins.
 *
 * Inside a file, as docker decides: a credential helper named for the registry (`credHelpers`)
 * first, then the file's default helper (`credsStore`), then its `auths` entries. A helper is the
 * program `docker-credential-<name>` on PATH, asked `get` with the registry on stdin; it answers
 * `{ServerURL, Username, Secret}` (a `<token>` user means an identity token) or says the registry
 * is not known (anonymous). Each answer is asked once per process.
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { fileErrorReason, MeshmirrorError } from '../errors.ts';

/** A user name and password, or an identity token (an OAuth2 refresh token from `docker login`). */
export interface Credentials {
  username: string;
  password: string;
  /** When set, the token flow exchanges it for an access token (the password is unused). */
  identityToken?: string;
}

export interface CredentialStore {
  /**
   * Credentials for a registry (`quay.io`, `localhost:5000`, `docker.io`), optionally narrowed to a
   * repository so `host/namespace` entries apply; undefined means anonymous.
   */
  get(registry: string, repository?: string): Credentials | undefined;
}

export interface LoadCredentialStoreOptions {
  /** `--authfile`: must exist and parse, else `MM_AUTHFILE_INVALID`. */
  authfile?: string;
  /** Environment for `REGISTRY_AUTH_FILE` and `XDG_RUNTIME_DIR`; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Home folder for the default files; default the user's. */
  home?: string;
  /** Warned when a default auth file exists but cannot be used (it is then skipped). */
  logger?: Logger;
  /** Runs credential helpers; default: the `docker-credential-<name>` program on PATH. */
  runHelper?: CredentialHelperRunner;
}

interface AuthFile {
  path: string;
  /** Normalised key (`host[:port][/path]`) → credentials. */
  entries: Map<string, Credentials>;
  /** `credHelpers`: normalised registry host → helper name. */
  helpers: Map<string, string>;
  /** `credsStore`: the helper for every registry without one of its own. */
  store?: string;
}

/** Runs `docker-credential-<helper> get` for a server; undefined when the helper does not know it. */
export type CredentialHelperRunner = (helper: string, serverUrl: string) => Credentials | undefined;

/** How long a credential helper may take (it may ask a keychain); beyond that the lookup fails. */
const HELPER_TIMEOUT_MS = 30_000;

const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

/** A store that knows no credentials. */
export const ANONYMOUS_CREDENTIALS: CredentialStore = Object.freeze({ get: () => undefined });

export async function loadCredentialStore(options: LoadCredentialStoreOptions = {}): Promise<CredentialStore> {
  const env = options.env ?? process.env;
  const home = options.home ?? homedir();
  const files: AuthFile[] = [];

  if (options.authfile !== undefined && options.authfile !== '') {
    files.push(await readAuthFile(options.authfile, { required: true }));
  }
  const fromEnv = env['REGISTRY_AUTH_FILE'];
  if (fromEnv !== undefined && fromEnv !== '' && fromEnv !== options.authfile) {
    // Named by the user's environment: a missing file is fine, a broken one is an error they must see.
    const file = await readAuthFile(fromEnv, { required: false });
    if (file !== undefined) files.push(file);
  }
  const defaults: string[] = [];
  const runtimeDir = env['XDG_RUNTIME_DIR'];
  if (runtimeDir !== undefined && runtimeDir !== '') defaults.push(join(runtimeDir, 'containers', 'auth.json'));
  defaults.push(join(home, '.config', 'containers', 'auth.json'), join(home, '.docker', 'config.json'));
  for (const path of defaults) {
    try {
      const file = await readAuthFile(path, { required: false });
      if (file !== undefined) files.push(file);
    } catch (error) {
      // A broken default file must not stop anonymous pulls; say so once and go on.
      options.logger?.warn({ file: path }, error instanceof Error ? error.message : String(error));
    }
  }

  const runHelper = options.runHelper ?? runCredentialHelper;
  const asked = new Map<string, Credentials | undefined>();
  const ask = (file: AuthFile, helper: string, registry: string): Credentials | undefined => {
    const host = normaliseKey(registry).split('/')[0]!;
    // Docker Hub is known to helpers by its v1 address, as `docker login` stores it.
    const serverUrl = host === 'docker.io' ? 'https://index.docker.io/v1/' : host;
    const key = `${helper}\n${serverUrl}`;
    if (!asked.has(key)) {
      try {
        asked.set(key, runHelper(helper, serverUrl));
      } catch (err) {
        throw new MeshmirrorError('MM_AUTHFILE_INVALID', `${file.path}: credential helper docker-credential-${helper} for ${serverUrl}: ${describeHelperError(err)}`, {
          data: { file: file.path, helper },
        });
      }
    }
    return asked.get(key);
  };

  return {
    get(registry: string, repository?: string): Credentials | undefined {
      const candidates = lookupKeys(registry, repository);
      const host = normaliseKey(registry);
      for (const file of files) {
        const helper = file.helpers.get(host) ?? file.store;
        if (helper !== undefined) {
          const found = ask(file, helper, registry);
          if (found !== undefined) return found;
        }
        for (const key of candidates) {
          const found = file.entries.get(key);
          if (found !== undefined) return found;
        }
      }
      return undefined;
    },
  };
}

/**
 * The credential helper protocol (docker-credential-helpers): `get`, the server on stdin, JSON on
 * stdout. A helper that does not know the server exits non-zero saying "credentials not found".
 */
export function runCredentialHelper(helper: string, serverUrl: string): Credentials | undefined {
  let stdout: string;
  try {
    stdout = execFileSync(`docker-credential-${helper}`, ['get'], { input: serverUrl, encoding: 'utf8', timeout: HELPER_TIMEOUT_MS, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    const out = err !== null && typeof err === 'object' && 'stdout' in err ? String(err.stdout) : '';
    if (/credentials not found/i.test(out)) return undefined;
    throw err;
  }
  let answer: unknown;
  try {
    answer = JSON.parse(stdout);
  } catch {
    // The output may hold a secret: it is not quoted.
    throw new Error('its answer is not JSON');
  }
  const { Username: username, Secret: secret } = (answer ?? {}) as { Username?: unknown; Secret?: unknown };
  if (typeof username !== 'string' || typeof secret !== 'string') throw new Error('its answer has no Username and Secret');
  if (secret === '') return undefined;
  return username === '<token>' ? { username, password: '', identityToken: secret } : { username, password: secret };
}

/** Why a helper failed, without anything it printed (its output may hold a secret). */
function describeHelperError(err: unknown): string {
  const code = errorCodeOf(err);
  if (code === 'ENOENT') return 'not found on PATH';
  if (code === 'ETIMEDOUT') return `no answer within ${HELPER_TIMEOUT_MS / 1000} s`;
  if (err !== null && typeof err === 'object' && 'status' in err && typeof err.status === 'number') return `exited with ${err.status}`;
  return err instanceof Error ? err.message : String(err);
}

/** Keys to try for a registry and repository, most specific first: `host/a/b`, `host/a`, `host`. */
function lookupKeys(registry: string, repository: string | undefined): string[] {
  const host = normaliseKey(registry);
  const keys: string[] = [];
  if (repository !== undefined && repository !== '') {
    const parts = repository.split('/');
    for (let n = parts.length; n >= 1; n--) keys.push(`${host}/${parts.slice(0, n).join('/')}`);
  }
  keys.push(host);
  return keys;
}

/**
 * `https://index.docker.io/v1/` → `docker.io`; `http://host:5000/` → `host:5000`;
 * `quay.io/org` stays. Docker Hub's aliases all become `docker.io`.
 */
export function normaliseKey(key: string): string {
  let k = key.trim().replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  k = k.replace(/\/+$/, '');
  k = k.replace(/\/v[12]$/, '');
  const slash = k.indexOf('/');
  const host = (slash < 0 ? k : k.slice(0, slash)).toLowerCase();
  const path = slash < 0 ? '' : k.slice(slash);
  return (DOCKER_HUB_ALIASES.has(host) ? 'docker.io' : host) + path;
}

async function readAuthFile(path: string, options: { required: true }): Promise<AuthFile>;
async function readAuthFile(path: string, options: { required: false }): Promise<AuthFile | undefined>;
async function readAuthFile(path: string, options: { required: boolean }): Promise<AuthFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = errorCodeOf(error);
    if (!options.required && code === 'ENOENT') return undefined;
    throw invalid(path, fileErrorReason(error));
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // JSON.parse messages quote the text around the error, which may be a password.
    throw invalid(path, 'not valid JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw invalid(path, 'not a JSON object');
  const { auths, credHelpers, credsStore } = json as Record<string, unknown>;
  const entries = new Map<string, Credentials>();
  const helpers = new Map<string, string>();
  if (credHelpers !== undefined) {
    if (typeof credHelpers !== 'object' || credHelpers === null || Array.isArray(credHelpers)) throw invalid(path, '"credHelpers" is not an object');
    for (const [key, name] of Object.entries(credHelpers)) {
      if (typeof name !== 'string' || !HELPER_NAME.test(name)) throw invalid(path, `credHelpers "${safeKey(key)}": expected a helper name such as "ecr-login"`);
      helpers.set(normaliseKey(key), name);
    }
  }
  if (credsStore !== undefined && credsStore !== '' && (typeof credsStore !== 'string' || !HELPER_NAME.test(credsStore))) {
    throw invalid(path, '"credsStore": expected a helper name such as "pass" or "secretservice"');
  }
  const store = typeof credsStore === 'string' && credsStore !== '' ? { store: credsStore } : {};
  if (auths === undefined) return { path, entries, helpers, ...store };
  if (typeof auths !== 'object' || auths === null || Array.isArray(auths)) throw invalid(path, '"auths" is not an object');
  for (const [key, value] of Object.entries(auths)) {
    const credentials = parseEntry(path, key, value);
    if (credentials !== undefined) entries.set(normaliseKey(key), credentials);
  }
  return { path, entries, helpers, ...store };
}

/** A helper name is the suffix of a program name: nothing that could reach another path. */
const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** One `auths` entry. Entries without credentials (docker's credential-helper stubs) are skipped. */
function parseEntry(path: string, key: string, value: unknown): Credentials | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(path, `entry "${safeKey(key)}" is not an object`);
  }
  const entry = value as Record<string, unknown>;
  const identityToken = typeof entry['identitytoken'] === 'string' && entry['identitytoken'] !== '' ? entry['identitytoken'] : undefined;
  let username = typeof entry['username'] === 'string' ? entry['username'] : '';
  let password = typeof entry['password'] === 'string' ? entry['password'] : '';
  const auth = entry['auth'];
  if (typeof auth === 'string' && auth !== '') {
    const decoded = decodeBasic(auth);
    if (decoded === undefined) throw invalid(path, `entry "${safeKey(key)}": "auth" is not base64 of user:password`);
    username = decoded.username;
    password = decoded.password;
  }
  if (identityToken !== undefined) return { username, password, identityToken };
  if (username === '' && password === '') return undefined;
  return { username, password };
}

function decodeBasic(auth: string): { username: string; password: string } | undefined {
  if (!/^[A-Za-z0-9+/=\s_-]+$/.test(auth)) return undefined;
  const decoded = Buffer.from(auth, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Registry keys are not secrets, but a malformed file could hold anything there; keep it short. */
function safeKey(key: string): string {
  return key.length > 100 ? `${key.slice(0, 100)}…` : key;
}

function invalid(path: string, reason: string): MeshmirrorError {
  return new MeshmirrorError('MM_AUTHFILE_INVALID', `${path}: cannot read auth file: ${reason}`, { data: { file: path } });
}

function errorCodeOf(error: unknown): string | undefined {
  return error !== null && typeof error === 'object' && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}
