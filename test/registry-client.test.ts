/**
 * The registry client against distribution's real registry: manifests of every kind, digest checks,
 * ranged GETs, redirects, Basic and token auth, TLS, and the faults a long mirror run meets
 * (stalls, truncated bodies, 5xx/429, servers that ignore Range).
 */
import { createSign, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ANONYMOUS_CREDENTIALS,
  createLogger,
  createRegistryClient,
  HostBackoff,
  isRetryable,
  loadCredentialStore,
  MediaType,
  MeshmirrorError,
  RegistryError,
  sha256Digest,
  silentLogger,
  StallError,
  type CredentialStore,
  type Digest,
  type HttpRegistryClient,
  type RegistryClientOptions,
} from '@meshmirror/shared';
import { uploadBlob } from '../packages/agent/src/push/blob-uploader.ts';
import { startFaultProxy } from './support/fault-proxy.ts';
import { makeHtpasswd, makeSelfSignedCert, startRegistry, type RunningRegistry } from './support/registry.ts';

const REPO = 'team/app';

let workDir: string;
/** One storage folder that every registry in this file serves, each with its own auth and TLS. */
let storageDir: string;
let plain: RunningRegistry;
const clients: HttpRegistryClient[] = [];

/** Content pushed once into the shared storage. */
interface Content {
  config: Buffer;
  configDigest: Digest;
  layer: Buffer;
  layerDigest: Digest;
  ociManifest: Buffer;
  ociManifestDigest: Digest;
  dockerManifest: Buffer;
  dockerManifestDigest: Digest;
  ociIndex: Buffer;
  ociIndexDigest: Digest;
  dockerList: Buffer;
  dockerListDigest: Digest;
}
let content: Content;

function makeClient(overrides: Partial<RegistryClientOptions> = {}): HttpRegistryClient {
  const client = createRegistryClient({
    credentials: ANONYMOUS_CREDENTIALS,
    tlsVerify: false,
    connectTimeoutMs: 2_000,
    headersTimeoutMs: 5_000,
    stallTimeoutMs: 5_000,
    retry: { retries: 3, baseDelayMs: 20, maxDelayMs: 200, factor: 2, jitter: 0 },
    ...overrides,
  });
  clients.push(client);
  return client;
}

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function failureOf(work: Promise<unknown>): Promise<MeshmirrorError> {
  const error: unknown = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof MeshmirrorError)) throw new Error(`expected a MeshmirrorError, got ${String(error)}`);
  return error;
}

/** Pushes with plain fetch: an independent path into the registry, not the client under test. */
async function pushBlob(base: string, repository: string, data: Buffer): Promise<Digest> {
  const digest = sha256Digest(data);
  const started = await fetch(`${base}/v2/${repository}/blobs/uploads/`, { method: 'POST' });
  expect(started.status).toBe(202);
  const location = new URL(started.headers.get('location') ?? '', base);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } });
  expect(put.status).toBe(201);
  return digest;
}

async function pushManifest(base: string, repository: string, reference: string, bytes: Buffer, mediaType: string): Promise<Digest> {
  const put = await fetch(`${base}/v2/${repository}/manifests/${reference}`, {
    method: 'PUT',
    body: bytes,
    headers: { 'content-type': mediaType },
  });
  expect(put.status, await put.text()).toBe(201);
  return sha256Digest(bytes);
}

async function pushContent(base: string): Promise<Content> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const layer = randomBytes(300 * 1024);
  const configDigest = await pushBlob(base, REPO, config);
  const layerDigest = await pushBlob(base, REPO, layer);
  const ociManifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: configDigest, size: config.length },
      layers: [{ mediaType: MediaType.OciLayerGzip, digest: layerDigest, size: layer.length }],
    }),
  );
  const dockerManifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.DockerManifest,
      config: { mediaType: MediaType.DockerConfig, digest: configDigest, size: config.length },
      layers: [{ mediaType: MediaType.DockerLayerGzip, digest: layerDigest, size: layer.length }],
    }),
  );
  const ociManifestDigest = await pushManifest(base, REPO, 'oci', ociManifest, MediaType.OciManifest);
  const dockerManifestDigest = await pushManifest(base, REPO, 'docker', dockerManifest, MediaType.DockerManifest);
  const platform = { architecture: 'amd64', os: 'linux' };
  const ociIndex = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [{ mediaType: MediaType.OciManifest, digest: ociManifestDigest, size: ociManifest.length, platform }],
    }),
  );
  const dockerList = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.DockerManifestList,
      manifests: [{ mediaType: MediaType.DockerManifest, digest: dockerManifestDigest, size: dockerManifest.length, platform }],
    }),
  );
  const ociIndexDigest = await pushManifest(base, REPO, 'index', ociIndex, MediaType.OciIndex);
  const dockerListDigest = await pushManifest(base, REPO, 'list', dockerList, MediaType.DockerManifestList);
  return {
    config,
    configDigest,
    layer,
    layerDigest,
    ociManifest,
    ociManifestDigest,
    dockerManifest,
    dockerManifestDigest,
    ociIndex,
    ociIndexDigest,
    dockerList,
    dockerListDigest,
  };
}

/** A registry on the shared storage, with extra config (auth) and optional TLS. */
async function startSharedRegistry(config: Record<string, unknown> = {}, tls?: { certificate: string; key: string }): Promise<RunningRegistry> {
  return await startRegistry({
    config: { ...config, storage: { filesystem: { rootdirectory: storageDir } } },
    ...(tls === undefined ? {} : { tls }),
  });
}

async function authFile(entries: Record<string, { username: string; password: string }>): Promise<CredentialStore> {
  const auths: Record<string, { auth: string }> = {};
  for (const [host, { username, password }] of Object.entries(entries)) {
    auths[host] = { auth: Buffer.from(`${username}:${password}`).toString('base64') };
  }
  const path = join(workDir, `auth-${randomUUID()}.json`);
  await writeFile(path, JSON.stringify({ auths }));
  return await loadCredentialStore({ authfile: path, env: {}, home: workDir });
}

/** Captures JSON log lines at debug level. */
function captureLogs(): { lines: string[]; logger: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, logger: createLogger({ level: 'debug', destination: { write: (line: string) => void lines.push(line) } }) };
}

async function listen(server: Server, host: string): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return `${host}:${address.port}`;
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'mm-registry-client-'));
  storageDir = join(workDir, 'storage');
  plain = await startSharedRegistry();
  content = await pushContent(plain.url);
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await plain?.stop();
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
});

describe('manifests', () => {
  it('fetches an OCI image manifest by tag and by digest, byte for byte', async () => {
    const client = makeClient();
    const location = { registry: plain.host, repository: REPO };
    const byTag = await client.getManifest(location, 'oci');
    expect(Buffer.from(byTag.bytes).equals(content.ociManifest)).toBe(true);
    expect(byTag.digest).toBe(content.ociManifestDigest);
    expect(byTag.mediaType).toBe(MediaType.OciManifest);
    const byDigest = await client.getManifest(location, content.ociManifestDigest);
    expect(byDigest.digest).toBe(content.ociManifestDigest);
    expect(Buffer.from(byDigest.bytes).equals(content.ociManifest)).toBe(true);
  });

  it('fetches an OCI index, a Docker manifest list and a Docker manifest with their media types', async () => {
    const client = makeClient();
    const location = { registry: plain.host, repository: REPO };
    const index = await client.getManifest(location, 'index');
    expect([index.mediaType, index.digest]).toEqual([MediaType.OciIndex, content.ociIndexDigest]);
    const list = await client.getManifest(location, 'list');
    expect([list.mediaType, list.digest]).toEqual([MediaType.DockerManifestList, content.dockerListDigest]);
    const docker = await client.getManifest(location, content.dockerManifestDigest);
    expect([docker.mediaType, docker.digest]).toEqual([MediaType.DockerManifest, content.dockerManifestDigest]);
    expect(Buffer.from(docker.bytes).equals(content.dockerManifest)).toBe(true);
  });

  it('reports a missing manifest as a 404 with the registry error code, without retrying', async () => {
    const proxy = await startFaultProxy(plain.url);
    try {
      const client = makeClient();
      const error = await failureOf(client.getManifest({ registry: proxy.host, repository: REPO }, 'no-such-tag'));
      expect(error).toBeInstanceOf(RegistryError);
      expect((error as RegistryError).status).toBe(404);
      expect((error as RegistryError).registryCodes).toEqual(['MANIFEST_UNKNOWN']);
      expect(error.message).toContain(`${proxy.host}/${REPO}:no-such-tag`);
      expect(isRetryable(error)).toBe(false);
      expect(proxy.stats().byPath.has(`/v2/${REPO}/manifests/no-such-tag`)).toBe(true);
      // One ping and one GET: a 404 is an answer, not a fault.
      expect(proxy.stats().requests).toBe(2);
    } finally {
      await proxy.close();
    }
  });

  it('lists referrers through the sha256-<hex> tag index of a registry without the API, asking for the API once per registry', async () => {
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciIndex,
        manifests: [{ mediaType: MediaType.OciManifest, digest: content.ociManifestDigest, size: content.ociManifest.length, artifactType: 'application/spdx+json' }],
      }),
    );
    const tag = content.dockerManifestDigest.replace(':', '-');
    const put = await fetch(`${plain.url}/v2/${REPO}/manifests/${tag}`, { method: 'PUT', headers: { 'content-type': MediaType.OciIndex }, body: index });
    expect(put.status).toBe(201);
    const proxy = await startFaultProxy(plain.url);
    try {
      const client = makeClient();
      const location = { registry: proxy.host, repository: REPO };
      expect(await client.getReferrers(location, content.dockerManifestDigest)).toEqual({
        via: 'tag',
        manifests: [{ mediaType: MediaType.OciManifest, digest: content.ociManifestDigest, size: content.ociManifest.length, artifactType: 'application/spdx+json' }],
      });
      expect(await client.getReferrers(location, content.ociIndexDigest)).toEqual({ via: 'none', manifests: [] });
      const apiAsks = proxy.stats().log.filter((e) => e.path.includes('/referrers/'));
      expect(apiAsks).toHaveLength(1);
    } finally {
      await proxy.close();
    }
  });

  it('verifies digests: a corrupted copy is fetched again, consistently wrong bytes fail as a digest mismatch', async () => {
    const proxy = await startFaultProxy(plain.url);
    try {
      const client = makeClient();
      const location = { registry: proxy.host, repository: REPO };
      const path = new RegExp(`/manifests/${content.ociManifestDigest}$`);
      proxy.setRules([{ match: { method: 'GET', path }, fault: { kind: 'corrupt', at: 5 }, times: 1 }]);
      const recovered = await client.getManifest(location, content.ociManifestDigest);
      expect(recovered.digest).toBe(content.ociManifestDigest);

      proxy.setRules([{ match: { method: 'GET', path }, fault: { kind: 'corrupt', at: 5 } }]);
      proxy.resetStats();
      const error = await failureOf(client.getManifest(location, content.ociManifestDigest));
      expect(error.code).toBe('MM_DIGEST_MISMATCH');
      expect(error.message).toContain(`expected ${content.ociManifestDigest}`);
      expect(proxy.stats().faultsInjected).toBe(2);

      // By tag, the registry's Docker-Content-Digest is the reference the bytes must match.
      proxy.setRules([{ match: { method: 'GET', path: /\/manifests\/oci$/ }, fault: { kind: 'corrupt', at: 5 } }]);
      const byTag = await failureOf(client.getManifest(location, 'oci'));
      expect(byTag.code).toBe('MM_DIGEST_MISMATCH');
      expect(byTag.message).toContain('Docker-Content-Digest');
    } finally {
      await proxy.close();
    }
  });

  it('retries 5xx and honours Retry-After on 429', async () => {
    const proxy = await startFaultProxy(plain.url);
    try {
      const { lines, logger } = captureLogs();
      const client = makeClient({ logger });
      const location = { registry: proxy.host, repository: REPO };
      proxy.setRules([{ match: { path: /\/manifests\/oci$/ }, fault: { kind: 'status', status: 503 }, times: 2 }]);
      const manifest = await client.getManifest(location, 'oci');
      expect(manifest.digest).toBe(content.ociManifestDigest);
      expect(proxy.stats().faultsInjected).toBe(2);
      const warnings = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level === 40);
      expect(warnings).toHaveLength(2);
      expect(warnings[0]?.msg).toContain('failed (attempt 1 of 4)');

      proxy.setRules([
        {
          match: { path: /\/manifests\/docker$/ },
          fault: {
            kind: 'status',
            status: 429,
            headers: { 'retry-after': '1', 'content-type': 'application/json' },
            body: JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }),
          },
          times: 1,
        },
      ]);
      const started = performance.now();
      const docker = await client.getManifest(location, 'docker');
      expect(docker.digest).toBe(content.dockerManifestDigest);
      expect(performance.now() - started).toBeGreaterThanOrEqual(900);
    } finally {
      await proxy.close();
    }
  });

  it('gives up after the policy retries with the last error', async () => {
    const proxy = await startFaultProxy(plain.url);
    try {
      const client = makeClient({ retry: { retries: 2, baseDelayMs: 10, maxDelayMs: 50, factor: 2, jitter: 0 } });
      proxy.setRules([{ match: { path: /\/manifests\/oci$/ }, fault: { kind: 'status', status: 502 } }]);
      const error = await failureOf(client.getManifest({ registry: proxy.host, repository: REPO }, 'oci'));
      expect((error as RegistryError).status).toBe(502);
      expect(proxy.stats().faultsInjected).toBe(3);
    } finally {
      await proxy.close();
    }
  });
});

describe('blobs', () => {
  it('gets a small blob whole, checks existence, and refuses one above the size limit', async () => {
    const client = makeClient();
    const location = { registry: plain.host, repository: REPO };
    const config = await client.getBlob(location, content.configDigest);
    expect(Buffer.from(config).equals(content.config)).toBe(true);
    expect(await client.blobExists(location, content.layerDigest)).toBe(true);
    expect(await client.blobExists(location, sha256Digest('not pushed'))).toBe(false);
    const tooBig = await failureOf(client.getBlob(location, content.layerDigest, { maxBytes: 1024 }));
    expect(tooBig.code).toBe('MM_SIZE_MISMATCH');
    const missing = await failureOf(client.getBlob(location, sha256Digest('not pushed')));
    expect((missing as RegistryError).registryCodes).toEqual(['BLOB_UNKNOWN']);
  });

  it('fetches an exact byte range with 206', async () => {
    const client = makeClient();
    const range = await client.fetchBlobRange({ registry: plain.host, repository: REPO }, content.layerDigest, {
      offset: 1_000,
      end: 200_999,
    });
    expect(range.rangeHonoured).toBe(true);
    expect(range.start).toBe(1_000);
    expect(range.totalSize).toBe(content.layer.length);
    const bytes = await readAll(range.body);
    expect(bytes.equals(content.layer.subarray(1_000, 201_000))).toBe(true);
  });

  it('reports a 200 to a ranged request as "start over from 0" with the whole body', async () => {
    const proxy = await startFaultProxy(plain.url);
    try {
      proxy.setRules([{ match: { path: /\/blobs\// }, fault: { kind: 'ignore-range' } }]);
      const client = makeClient();
      const range = await client.fetchBlobRange({ registry: proxy.host, repository: REPO }, content.layerDigest, {
        offset: 5_000,
        end: 9_999,
      });
      expect(range.rangeHonoured).toBe(false);
      expect(range.start).toBe(0);
      expect(range.totalSize).toBe(content.layer.length);
      expect((await readAll(range.body)).equals(content.layer)).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('fails a stalled body with StallError after about the stall timeout', async () => {
    const proxy = await startFaultProxy(plain.url);
    try {
      proxy.setRules([{ match: { path: /\/blobs\// }, fault: { kind: 'stall-after', bytes: 10_000, ms: Infinity } }]);
      const client = makeClient({ stallTimeoutMs: 500 });
      const range = await client.fetchBlobRange({ registry: proxy.host, repository: REPO }, content.layerDigest, {
        offset: 0,
        end: content.layer.length - 1,
      });
      const started = performance.now();
      const error = await failureOf(readAll(range.body));
      const elapsed = performance.now() - started;
      expect(error).toBeInstanceOf(StallError);
      expect(error.code).toBe('MM_STALL');
      expect(isRetryable(error)).toBe(true);
      expect(elapsed).toBeGreaterThanOrEqual(400);
      expect(elapsed).toBeLessThan(3_000);
    } finally {
      await proxy.close();
    }
  });

  it('never reports a truncated or reset body as a short success', async () => {
    const proxy = await startFaultProxy(plain.url);
    try {
      const client = makeClient();
      const location = { registry: proxy.host, repository: REPO };
      for (const kind of ['truncate-after', 'reset-after'] as const) {
        proxy.setRules([{ match: { path: /\/blobs\// }, fault: { kind, bytes: 20_000 } }]);
        const range = await client.fetchBlobRange(location, content.layerDigest, { offset: 100, end: 150_099 });
        expect(range.rangeHonoured).toBe(true);
        const error = await failureOf(readAll(range.body));
        expect(error.code, kind).toBe('MM_TRUNCATED');
        expect(error.message).toContain('of 150000 bytes');
        expect(isRetryable(error)).toBe(true);
      }
      // Small blobs read inside the client are retried past the fault.
      proxy.setRules([{ match: { path: /\/blobs\// }, fault: { kind: 'truncate-after', bytes: 10 }, times: 1 }]);
      expect(Buffer.from(await client.getBlob(location, content.configDigest)).equals(content.config)).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('aborts a body that is being read', async () => {
    const proxy = await startFaultProxy(plain.url);
    try {
      proxy.setRules([{ match: { path: /\/blobs\// }, fault: { kind: 'stall-after', bytes: 1_000, ms: Infinity } }]);
      const client = makeClient();
      const controller = new AbortController();
      const range = await client.fetchBlobRange({ registry: proxy.host, repository: REPO }, content.layerDigest, {
        offset: 0,
        end: 99_999,
        signal: controller.signal,
      });
      const reading = failureOf(readAll(range.body));
      controller.abort();
      expect((await reading).code).toBe('MM_ABORTED');
    } finally {
      await proxy.close();
    }
  });
});

describe('servers that misbehave in ways the fault proxy cannot', () => {
  let server: Server;
  let host: string;
  let blobHandler: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void;

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/v2/') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
        return;
      }
      blobHandler(req, res);
    });
    host = await listen(server, '127.0.0.1');
  });
  afterAll(async () => {
    await closeServer(server);
  });

  it('refuses a 206 that starts somewhere else than asked, as a retryable error', async () => {
    blobHandler = (_req, res) => {
      res.writeHead(206, { 'content-range': 'bytes 0-99/1000', 'content-length': '100' });
      res.end(Buffer.alloc(100));
    };
    const client = makeClient();
    const error = await failureOf(client.fetchBlobRange({ registry: host, repository: REPO }, content.layerDigest, { offset: 500, end: 599 }));
    expect(error.code).toBe('MM_REGISTRY');
    expect(error.message).toContain('not the requested offset 500');
    expect(isRetryable(error)).toBe(true);
  });

  it('times out waiting for response headers, retryably', async () => {
    blobHandler = () => {
      // Never answer.
    };
    const client = makeClient({ headersTimeoutMs: 300 });
    const started = performance.now();
    const error = await failureOf(client.fetchBlobRange({ registry: host, repository: REPO }, content.layerDigest, { offset: 0, end: 9 }));
    expect(error.code).toBe('MM_NETWORK');
    expect(error.message).toContain('no response headers');
    expect(isRetryable(error)).toBe(true);
    expect(performance.now() - started).toBeLessThan(3_000);
  });
});

describe('redirects to blob storage', () => {
  let front: Server;
  let storage: Server;
  let frontHost: string;
  const seen: Array<{ where: 'front' | 'front-storage' | 'storage'; authorization: string | undefined; range: string | undefined }> = [];

  beforeAll(async () => {
    // "storage" on 127.0.0.1 records what reaches it and serves bytes from the real registry.
    storage = createServer((req, res) => {
      seen.push({ where: 'storage', authorization: req.headers.authorization, range: req.headers.range });
      const headers: IncomingHttpHeaders = { ...req.headers, host: plain.host };
      delete headers.authorization;
      const upstream = httpRequest(`${plain.url}${req.url ?? '/'}`, { method: req.method, headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      upstream.end();
    });
    const storageHost = await listen(storage, '127.0.0.1');
    // The "registry" on 127.0.0.2 wants Basic auth and redirects blob GETs: once to itself, then away.
    front = createServer((req, res) => {
      const authorization = req.headers.authorization;
      if (req.url === '/v2/' || authorization === undefined) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="front"', 'content-length': '0' });
        res.end();
        return;
      }
      const url = req.url ?? '/';
      if (url.startsWith('/v2/')) {
        seen.push({ where: 'front', authorization, range: req.headers.range });
        res.writeHead(307, { location: `/same-host-storage${url}?sig=secret-signature`, 'content-length': '0' });
        res.end();
        return;
      }
      seen.push({ where: 'front-storage', authorization, range: req.headers.range });
      const original = url.slice('/same-host-storage'.length).split('?')[0] ?? '';
      res.writeHead(302, { location: `http://${storageHost}${original}`, 'content-length': '0' });
      res.end();
    });
    frontHost = await listen(front, '127.0.0.2');
  });
  afterAll(async () => {
    await closeServer(front);
    await closeServer(storage);
  });

  it('follows them, keeps Authorization on the same host and drops it on another, and never logs query strings', async () => {
    const credentials = await authFile({ [frontHost]: { username: 'puller', password: 'front-password' } });
    const { lines, logger } = captureLogs();
    const client = makeClient({ credentials, logger });
    const range = await client.fetchBlobRange({ registry: frontHost, repository: REPO }, content.layerDigest, {
      offset: 10,
      end: 1_009,
    });
    expect(range.rangeHonoured).toBe(true);
    expect((await readAll(range.body)).equals(content.layer.subarray(10, 1_010))).toBe(true);

    const basic = `Basic ${Buffer.from('puller:front-password').toString('base64')}`;
    expect(seen).toEqual([
      { where: 'front', authorization: basic, range: 'bytes=10-1009' },
      { where: 'front-storage', authorization: basic, range: 'bytes=10-1009' },
      { where: 'storage', authorization: undefined, range: 'bytes=10-1009' },
    ]);
    const log = lines.join('');
    expect(log).not.toContain('front-password');
    expect(log).not.toContain(basic.slice('Basic '.length));
    expect(log).not.toContain('secret-signature');
    const requests = lines.map((l) => JSON.parse(l) as { msg: string; status?: number; path?: string }).filter((l) => l.msg === 'registry request');
    expect(requests.map((r) => r.status)).toEqual(expect.arrayContaining([401, 307, 302, 206]));
  });
});

describe('Basic auth (htpasswd)', () => {
  let registry: RunningRegistry;

  beforeAll(async () => {
    const htpasswd = await makeHtpasswd(workDir, 'alice', 'alice-secret');
    registry = await startSharedRegistry({ auth: { htpasswd: { realm: 'test', path: htpasswd } } });
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it('pulls with the credentials from the auth file', async () => {
    const credentials = await authFile({ [registry.host]: { username: 'alice', password: 'alice-secret' } });
    const client = makeClient({ credentials });
    const manifest = await client.getManifest({ registry: registry.host, repository: REPO }, 'oci');
    expect(manifest.digest).toBe(content.ociManifestDigest);
    const range = await client.fetchBlobRange({ registry: registry.host, repository: REPO }, content.layerDigest, { offset: 0, end: 99 });
    expect((await readAll(range.body)).equals(content.layer.subarray(0, 100))).toBe(true);
  });

  it('says clearly when credentials are missing or wrong, without retrying and without the password', async () => {
    const anonymous = makeClient();
    const missing = await failureOf(anonymous.getManifest({ registry: registry.host, repository: REPO }, 'oci'));
    expect(missing.code).toBe('MM_UNAUTHORIZED');
    expect(missing.message).toContain('requires credentials and none were found');
    expect(isRetryable(missing)).toBe(false);

    const credentials = await authFile({ [registry.host]: { username: 'alice', password: 'wrong-secret' } });
    const { lines, logger } = captureLogs();
    const wrong = makeClient({ credentials, logger });
    const rejected = await failureOf(wrong.getManifest({ registry: registry.host, repository: REPO }, 'oci'));
    expect(rejected.code).toBe('MM_UNAUTHORIZED');
    expect((rejected as RegistryError).status).toBe(401);
    expect(rejected.message).toContain('rejected the credentials');
    expect(rejected.message).not.toContain('wrong-secret');
    expect(lines.join('')).not.toContain('wrong-secret');
    expect(lines.some((l) => l.includes('"level":40'))).toBe(false);
  });
});

/** A token server in the manner of docker/distribution's token spec: RS256 JWTs with an x5c chain. */
interface TokenServer {
  url: string;
  /**
   * Starts over in a mode: `valid` issues good tokens; `expired-first` issues one that is already
   * expired, then good ones; `always-expired` only expired ones. Clears `requests`.
   */
  reset(mode: 'valid' | 'expired-first' | 'always-expired'): void;
  requests: Array<{ scope: string | null; service: string | null; account: string | null; authorized: boolean }>;
  close(): Promise<void>;
}

const SERVICE = 'meshmirror-test-registry';
const ISSUER = 'meshmirror-test-issuer';

async function startTokenServer(cert: { certificate: string; key: string }, user: { username: string; password: string }): Promise<TokenServer> {
  const certificatePem = await readFile(cert.certificate, 'utf8');
  const keyPem = await readFile(cert.key, 'utf8');
  const x5c = certificatePem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
  const expected = `Basic ${Buffer.from(`${user.username}:${user.password}`).toString('base64')}`;
  let issued = 0;
  let mode: 'valid' | 'expired-first' | 'always-expired' = 'valid';
  const state: TokenServer = {
    url: '',
    reset(next) {
      mode = next;
      issued = 0;
      state.requests.length = 0;
    },
    requests: [],
    close: async () => closeServer(server),
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://token');
    const authorized = req.headers.authorization === expected;
    state.requests.push({
      scope: url.searchParams.getAll('scope').join(' ') || null,
      service: url.searchParams.get('service'),
      account: url.searchParams.get('account'),
      authorized,
    });
    if (!authorized) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ details: 'incorrect username or password' }));
      return;
    }
    const access = url.searchParams.getAll('scope').map((scope) => {
      const parts = scope.split(':');
      // Exactly what was asked for, as a real token server grants it to a user allowed everything.
      return { type: parts[0], name: parts.slice(1, -1).join(':'), actions: (parts[parts.length - 1] ?? '').split(',') };
    });
    const expired = mode === 'always-expired' || (mode === 'expired-first' && issued === 0);
    issued++;
    const now = Math.floor(Date.now() / 1_000);
    const claims = {
      iss: ISSUER,
      sub: user.username,
      aud: SERVICE,
      exp: expired ? now - 3_600 : now + 300,
      nbf: expired ? now - 7_200 : now - 10,
      iat: expired ? now - 7_200 : now - 10,
      jti: randomUUID(),
      access,
    };
    const header = { alg: 'RS256', typ: 'JWT', x5c: [x5c] };
    const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    const signature = createSign('RSA-SHA256').update(input).sign(keyPem).toString('base64url');
    // Only `access_token` (OAuth2's name): the client must accept it as well as `token`.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ access_token: `${input}.${signature}`, expires_in: 300 }));
  });
  state.url = `http://${await listen(server, '127.0.0.1')}`;
  return state;
}

describe('token auth (distribution auth: token)', () => {
  let registry: RunningRegistry;
  let tokens: TokenServer;
  const user = { username: 'bob', password: 'bob-secret' };

  beforeAll(async () => {
    const certDir = await mkdtemp(join(workDir, 'token-cert-'));
    const cert = await makeSelfSignedCert(certDir, ['token-issuer']);
    tokens = await startTokenServer(cert, user);
    registry = await startSharedRegistry({
      auth: { token: { realm: `${tokens.url}/token`, service: SERVICE, issuer: ISSUER, rootcertbundle: cert.certificate } },
    });
  });
  afterAll(async () => {
    await registry?.stop();
    await tokens?.close();
  });

  it('gets a token with the stored credentials, caches it, and keeps it out of logs', async () => {
    tokens.reset('valid');
    const credentials = await authFile({ [registry.host]: user });
    const { lines, logger } = captureLogs();
    const client = makeClient({ credentials, logger });
    const location = { registry: registry.host, repository: REPO };
    expect((await client.getManifest(location, 'index')).digest).toBe(content.ociIndexDigest);
    expect((await client.getManifest(location, content.ociManifestDigest)).digest).toBe(content.ociManifestDigest);
    const range = await client.fetchBlobRange(location, content.layerDigest, { offset: 0, end: 9 });
    expect((await readAll(range.body)).equals(content.layer.subarray(0, 10))).toBe(true);
    expect(tokens.requests).toEqual([{ scope: `repository:${REPO}:pull`, service: SERVICE, account: 'bob', authorized: true }]);
    const log = lines.join('');
    expect(log).not.toContain('bob-secret');
    expect(log).not.toMatch(/eyJ[\w-]+\.eyJ/);
  });

  it('refreshes a token the registry rejects, once', async () => {
    tokens.reset('expired-first');
    const client = makeClient({ credentials: await authFile({ [registry.host]: user }) });
    const manifest = await client.getManifest({ registry: registry.host, repository: REPO }, 'list');
    expect(manifest.digest).toBe(content.dockerListDigest);
    expect(tokens.requests).toHaveLength(2);
  });

  it('fails with 401 when the refreshed token is rejected too, without retrying', async () => {
    tokens.reset('always-expired');
    const client = makeClient({ credentials: await authFile({ [registry.host]: user }) });
    const error = await failureOf(client.getManifest({ registry: registry.host, repository: REPO }, 'oci'));
    expect(error).toBeInstanceOf(RegistryError);
    expect((error as RegistryError).status).toBe(401);
    expect(error.code).toBe('MM_UNAUTHORIZED');
    expect(isRetryable(error)).toBe(false);
    expect(tokens.requests).toHaveLength(2);
  });

  it('pushes with a pull,push token, and mounts with pull on the repository mounted from', async () => {
    tokens.reset('valid');
    const client = makeClient({ credentials: await authFile({ [registry.host]: user }) });
    const data = randomBytes(300_000);
    const digest = sha256Digest(data);
    const openRange = async (start: number, end: number) => Readable.from([data.subarray(start, end + 1)]);
    const common = {
      client,
      digest,
      size: data.length,
      source: { where: 'test', openRange },
      chunkBytes: 128 * 1024,
      retry: { retries: 2, baseDelayMs: 20, maxDelayMs: 100, factor: 2, jitter: 0 },
      backoff: new HostBackoff({ retries: 2, baseDelayMs: 20, maxDelayMs: 100, factor: 2, jitter: 0 }),
      stallTimeoutMs: 5_000,
      logger: silentLogger(),
    };
    expect(await uploadBlob({ ...common, target: { registry: registry.host, repository: 'pushed/a' } })).toMatchObject({ action: 'uploaded' });
    expect(await uploadBlob({ ...common, target: { registry: registry.host, repository: 'pushed/b' }, mountFrom: ['pushed/a'] })).toMatchObject({
      action: 'mounted',
    });
    const scopes = tokens.requests.map((r) => r.scope);
    expect(scopes).toContain('repository:pushed/a:pull,push');
    expect(scopes).toContain('repository:pushed/b:pull,push repository:pushed/a:pull');
    expect(tokens.requests.every((r) => r.authorized)).toBe(true);
  });

  it('reports credentials the token server refuses', async () => {
    tokens.reset('valid');
    const client = makeClient({ credentials: await authFile({ [registry.host]: { username: 'bob', password: 'nope' } }) });
    const error = await failureOf(client.getManifest({ registry: registry.host, repository: REPO }, 'oci'));
    expect(error.code).toBe('MM_UNAUTHORIZED');
    expect(error.message).toContain(`the credentials for ${registry.host} from the auth file were rejected`);
    expect(error.message).not.toContain('nope');
    expect(tokens.requests).toEqual([{ scope: `repository:${REPO}:pull`, service: SERVICE, account: 'bob', authorized: false }]);
  });
});

describe('TLS', () => {
  let registry: RunningRegistry;

  beforeAll(async () => {
    const certDir = await mkdtemp(join(workDir, 'tls-cert-'));
    registry = await startSharedRegistry({}, await makeSelfSignedCert(certDir, ['127.0.0.1', 'localhost']));
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it('accepts a self-signed certificate with tls-verify off', async () => {
    const client = makeClient({ tlsVerify: false });
    const manifest = await client.getManifest({ registry: registry.host, repository: REPO }, 'oci');
    expect(manifest.digest).toBe(content.ociManifestDigest);
  });

  it('refuses it with tls-verify on, at once and with a clear message', async () => {
    const client = makeClient({ tlsVerify: true });
    const started = performance.now();
    const error = await failureOf(client.getManifest({ registry: registry.host, repository: REPO }, 'oci'));
    expect(error.code).toBe('MM_TLS');
    expect(error.message).toContain(`the TLS certificate of ${registry.host} is not trusted`);
    expect(error.message).toContain('tls-verify=false');
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('does not fall back to plain HTTP with tls-verify on', async () => {
    const client = makeClient({ tlsVerify: true });
    const error = await failureOf(client.ping(plain.host));
    expect(error.code).toBe('MM_TLS');
    expect(error.message).toContain('does not speak TLS');
  });
});
