import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { demoImageSet, writeSampleLayout, type SampleLayoutResult } from '../../packages/coordinator/src/demo/sample-image-set.ts';
import { startFaultProxy, type FaultProxy } from './fault-proxy.ts';
import { pushLayout } from './push-layout.ts';
import { makeHtpasswd, makeSelfSignedCert, startRegistry, type RunningRegistry } from './registry.ts';
import { skopeoCopy, skopeoInspectDigest } from './skopeo.ts';

interface Fetched {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** Set when the body ended with a network error (reset, premature close). */
  error?: Error;
}

/** GET/HEAD with node:http, keeping whatever body arrived even when the connection breaks. */
function fetchRaw(url: string, options: { method?: string; headers?: Record<string, string>; ca?: Buffer } = {}): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    const request = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers, ca: options.ca, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      const done = (error?: Error): void => {
        const result: Fetched = { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) };
        if (error !== undefined) result.error = error;
        resolve(result);
      };
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('end', () => done());
      res.once('error', (error) => done(error));
      res.once('aborted', () => done(new Error('aborted')));
    });
    req.once('error', reject);
    req.end();
  });
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

let workDir: string;
let layoutDir: string;
let layout: SampleLayoutResult;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'mm-harness-'));
  layoutDir = join(workDir, 'layout');
  layout = await writeSampleLayout(layoutDir, demoImageSet());
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

describe('startRegistry', () => {
  it('serves the registry API on a loopback port and stops cleanly', async () => {
    const registry = await startRegistry();
    expect(registry.host).toMatch(/^127\.0\.0\.1:\d+$/);
    const answer = await fetchRaw(`${registry.url}/v2/`);
    expect(answer.status).toBe(200);
    expect(answer.headers['docker-distribution-api-version']).toBe('registry/2.0');
    expect((await stat(registry.logFile)).isFile()).toBe(true);

    await registry.stop();
    await expect(fetchRaw(`${registry.url}/v2/`)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(stat(registry.storageDir)).rejects.toMatchObject({ code: 'ENOENT' });
    await registry.stop();
  });

  it('serves TLS with htpasswd auth', async () => {
    const dir = join(workDir, 'tls');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir);
    const tls = await makeSelfSignedCert(dir, ['127.0.0.1', 'localhost']);
    const htpasswd = await makeHtpasswd(dir, 'alice', 'wonder land');
    expect(await readFile(htpasswd, 'utf8')).toMatch(/^alice:\$2y\$/);
    const registry = await startRegistry({ tls, config: { auth: { htpasswd: { realm: 'test', path: htpasswd } } } });
    try {
      expect(registry.url).toBe(`https://${registry.host}`);
      const ca = await readFile(tls.certificate);
      expect((await fetchRaw(`${registry.url}/v2/`, { ca })).status).toBe(401);
      const authorization = `Basic ${Buffer.from('alice:wonder land').toString('base64')}`;
      expect((await fetchRaw(`${registry.url}/v2/`, { ca, headers: { authorization } })).status).toBe(200);

      const [pushed] = await pushLayout(layoutDir, registry.url, {
        images: ['sample/base:1.0'],
        credentials: { username: 'alice', password: 'wonder land' },
        ca,
      });
      const expected = layout.images.find((image) => image.name === 'sample/base:1.0')?.digest;
      expect(pushed?.digest).toBe(expected);
      expect(await skopeoInspectDigest(`docker://${pushed?.reference}`, { creds: 'alice:wonder land' })).toBe(expected);
    } finally {
      await registry.stop();
    }
  });
});

describe('pushLayout and skopeo', () => {
  let registry: RunningRegistry;
  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(async () => {
    await registry.stop();
  });

  it('pushes every image so that skopeo sees the layout digests, index and Docker format included', async () => {
    const pushed = await pushLayout(layoutDir, registry.url);
    expect(pushed.map((image) => image.name)).toEqual(layout.images.map((image) => image.name));
    for (const image of layout.images) {
      const entry = pushed.find((p) => p.name === image.name);
      expect(entry?.reference).toBe(`${registry.host}/${image.name}`);
      expect(await skopeoInspectDigest(`docker://${registry.host}/${image.name}`)).toBe(image.digest);
    }
  });

  it('renames targets and pushes only the images asked for', async () => {
    const pushed = await pushLayout(layoutDir, registry.url, {
      images: ['sample/multiarch:1.0'],
      rename: (name) => `renamed/${name}`,
    });
    expect(pushed.map((image) => image.reference)).toEqual([`${registry.host}/renamed/sample/multiarch:1.0`]);
    const expected = layout.images.find((image) => image.name === 'sample/multiarch:1.0')?.digest;
    expect(await skopeoInspectDigest(`docker://${registry.host}/renamed/sample/multiarch:1.0`)).toBe(expected);
  });

  it('skopeo copies a layout image named "host:port/repo:tag" into the registry with the same digest', async () => {
    const dir = join(workDir, 'named-layout');
    const [written] = (
      await writeSampleLayout(dir, [
        {
          name: `${registry.host}/copied/app:2.0`,
          platforms: [
            { architecture: 'amd64', layers: [{ seed: 'copy-a', size: 4096 }] },
            { architecture: 'arm64', layers: [{ seed: 'copy-b', size: 4096 }] },
          ],
        },
      ])
    ).images;
    expect(await skopeoInspectDigest(`oci:${dir}:${registry.host}/copied/app:2.0`)).toBe(written?.digest);
    await skopeoCopy(`oci:${dir}:${registry.host}/copied/app:2.0`, `docker://${registry.host}/copied/app:2.0`, {
      preserveDigests: true,
    });
    expect(await skopeoInspectDigest(`docker://${registry.host}/copied/app:2.0`)).toBe(written?.digest);
  });
});

describe('startFaultProxy', () => {
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  let blobPath: string;
  let blob: Buffer;

  beforeAll(async () => {
    registry = await startRegistry();
    proxy = await startFaultProxy(registry.url);
    // Pushing through the proxy also proves that upload Locations are rewritten to stay behind it.
    await pushLayout(layoutDir, proxy.url, { images: ['sample/base:1.0'] });
    const manifestDigest = layout.images.find((image) => image.name === 'sample/base:1.0')?.digest ?? '';
    const manifest = JSON.parse(await readFile(join(layoutDir, 'blobs', 'sha256', manifestDigest.slice(7)), 'utf8'));
    const layerDigest: string = manifest.layers[0].digest;
    blobPath = `/v2/sample/base/blobs/${layerDigest}`;
    blob = await readFile(join(layoutDir, 'blobs', 'sha256', layerDigest.slice(7)));
  });
  afterAll(async () => {
    await proxy.close();
    await registry.stop();
  });
  beforeEach(() => {
    proxy.setRules([]);
    proxy.resetStats();
  });

  it('passes requests through and counts blob body bytes', async () => {
    const whole = await fetchRaw(proxy.url + blobPath);
    expect(whole.status).toBe(200);
    expect(sha256(whole.body)).toBe(sha256(blob));
    const ranged = await fetchRaw(proxy.url + blobPath, { headers: { range: 'bytes=1000-' } });
    expect(ranged.status).toBe(206);
    expect(ranged.body.equals(blob.subarray(1000))).toBe(true);
    const stats = proxy.stats();
    expect(stats.requests).toBe(2);
    expect(stats.blobBodyBytes).toBe(blob.length * 2 - 1000);
    expect(stats.byPath.get(blobPath)).toBe(blob.length * 2 - 1000);
  });

  it('rewrites upload Locations to the proxy', async () => {
    const started = await new Promise<IncomingHttpHeaders>((resolve, reject) => {
      const req = httpRequest(`${proxy.url}/v2/sample/base/blobs/uploads/`, { method: 'POST', headers: { 'content-length': 0 } }, (res) => {
        res.resume();
        resolve(res.headers);
      });
      req.once('error', reject);
      req.end();
    });
    expect(started.location).toMatch(new RegExp(`^${proxy.url}/v2/sample/base/blobs/uploads/`));
  });

  it('ignore-range answers a ranged GET with 200 and the full body', async () => {
    proxy.setRules([{ match: { method: 'GET', path: /\/blobs\// }, fault: { kind: 'ignore-range' }, times: 1 }]);
    const first = await fetchRaw(proxy.url + blobPath, { headers: { range: 'bytes=1000-' } });
    expect(first.status).toBe(200);
    expect(first.body.equals(blob)).toBe(true);
    const second = await fetchRaw(proxy.url + blobPath, { headers: { range: 'bytes=1000-' } });
    expect(second.status).toBe(206);
    expect(proxy.stats().faultsInjected).toBe(1);
  });

  it('reset-after breaks the body after exactly that many bytes', async () => {
    proxy.setRules([{ match: { path: /\/blobs\// }, fault: { kind: 'reset-after', bytes: 100_000 } }]);
    const broken = await fetchRaw(proxy.url + blobPath);
    expect(broken.status).toBe(200);
    expect(broken.error).toBeDefined();
    expect(broken.body.length).toBe(100_000);
    expect(broken.body.equals(blob.subarray(0, 100_000))).toBe(true);
    expect(proxy.stats().blobBodyBytes).toBe(100_000);
  });

  it('truncate-after ends the body short of its Content-Length', async () => {
    proxy.setRules([{ match: { path: /\/blobs\// }, fault: { kind: 'truncate-after', bytes: 5000 } }]);
    const short = await fetchRaw(proxy.url + blobPath);
    expect(Number(short.headers['content-length'])).toBe(blob.length);
    expect(short.body.length).toBe(5000);
    expect(short.error).toBeDefined();
  });

  it('corrupt flips one byte', async () => {
    proxy.setRules([{ match: { path: /\/blobs\// }, fault: { kind: 'corrupt', at: 300_000 } }]);
    const corrupted = await fetchRaw(proxy.url + blobPath);
    expect(corrupted.body.length).toBe(blob.length);
    const differing = [...corrupted.body.keys()].filter((i) => corrupted.body[i] !== blob[i]);
    expect(differing).toEqual([300_000]);
  });

  it('status answers instead of the registry, for as many times as asked', async () => {
    proxy.setRules([
      {
        match: { method: 'GET', path: /\/blobs\// },
        fault: { kind: 'status', status: 429, headers: { 'retry-after': '2' }, body: '{"errors":[{"code":"TOOMANYREQUESTS"}]}' },
        times: 2,
      },
    ]);
    const answers = [await fetchRaw(proxy.url + blobPath), await fetchRaw(proxy.url + blobPath), await fetchRaw(proxy.url + blobPath)];
    expect(answers.map((a) => a.status)).toEqual([429, 429, 200]);
    expect(answers[0]?.headers['retry-after']).toBe('2');
    expect(answers[0]?.body.toString()).toContain('TOOMANYREQUESTS');
  });

  it('stall-after holds the body for a while and then completes it', async () => {
    proxy.setRules([{ match: { path: /\/blobs\// }, fault: { kind: 'stall-after', bytes: 1000, ms: 300 } }]);
    const started = Date.now();
    const stalled = await fetchRaw(proxy.url + blobPath);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(stalled.error).toBeUndefined();
    expect(sha256(stalled.body)).toBe(sha256(blob));
  });

  it('close() ends a response stalled forever', async () => {
    const own = await startFaultProxy(registry.url);
    own.setRules([{ match: { path: /\/blobs\// }, fault: { kind: 'stall-after', bytes: 10, ms: Infinity } }]);
    const pending = fetchRaw(own.url + blobPath);
    // Close once the first 10 bytes have been delivered, i.e. the response is stalled.
    const deadline = Date.now() + 10_000;
    while (own.stats().blobBodyBytes < 10 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
    await own.close();
    const result = await pending;
    expect(result.body.length).toBe(10);
    expect(result.error).toBeDefined();
  });
});
