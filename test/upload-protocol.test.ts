/**
 * The uploader against a real registry (distribution), with the fault proxy making it answer the
 * way other registries do: PATCH refused (monolithic PUT), 201 to a PATCH (ECR), a minimum chunk
 * length, an upload that cannot say whether it holds 0 or 1 byte, and a source whose bytes are not
 * what the digest says.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { uploadBlob, type UploadJournal, type UploadSource } from '../packages/agent/src/push/blob-uploader.ts';
import { ANONYMOUS_CREDENTIALS, createRegistryClient, HostBackoff, silentLogger, type Digest, type HttpRegistryClient, type RetryPolicy } from '@meshmirror/shared';
import { startFaultProxy, type FaultProxy } from './support/fault-proxy.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';

const MiB = 1024 * 1024;
const RETRY: RetryPolicy = { retries: 4, baseDelayMs: 20, maxDelayMs: 200, factor: 2, jitter: 0 };

let dir: string;
let registry: RunningRegistry;
let proxy: FaultProxy;
let client: HttpRegistryClient;
let blob: { path: string; data: Buffer; digest: Digest };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-upload-'));
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.url);
  client = createRegistryClient({
    credentials: ANONYMOUS_CREDENTIALS,
    tlsVerify: false,
    connectTimeoutMs: 2_000,
    headersTimeoutMs: 5_000,
    stallTimeoutMs: 5_000,
    retry: RETRY,
  });
  const data = randomBytes(5 * MiB + 123);
  blob = { path: join(dir, 'blob'), data, digest: `sha256:${createHash('sha256').update(data).digest('hex')}` };
  await writeFile(blob.path, data);
});
afterEach(() => {
  proxy.setRules([]);
  proxy.resetStats();
});
afterAll(async () => {
  await client?.close();
  await proxy?.close();
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

function fileSource(path: string, where = 'test blob'): UploadSource {
  return { where, openRange: async (start, end) => createReadStream(path, { start, end }) };
}

function memoryJournal(initial: Record<string, string> = {}): UploadJournal & { entries: Map<string, string> } {
  const entries = new Map(Object.entries(initial));
  return {
    entries,
    session: async (repository, digest) => entries.get(`${repository} ${digest}`),
    saveSession: async (repository, digest, url) => void entries.set(`${repository} ${digest}`, url),
    clearSession: async (repository, digest) => void entries.delete(`${repository} ${digest}`),
  };
}

function upload(repository: string, options: Partial<Parameters<typeof uploadBlob>[0]> = {}) {
  return uploadBlob({
    client,
    target: { registry: proxy.host, repository },
    digest: blob.digest,
    size: blob.data.length,
    source: fileSource(blob.path),
    chunkBytes: MiB,
    retry: RETRY,
    backoff: new HostBackoff(RETRY),
    stallTimeoutMs: 5_000,
    logger: silentLogger(),
    ...options,
  });
}

async function registryHas(repository: string, digest: Digest): Promise<boolean> {
  const response = await fetch(`${registry.url}/v2/${repository}/blobs/${digest}`, { method: 'HEAD' });
  return response.status === 200;
}

describe('uploading a blob', () => {
  it('uploads in chunks of the asked size, confirmed by the registry, and skips a blob the target has', async () => {
    const first = await upload('chunks/a');
    expect(first).toMatchObject({ action: 'uploaded', bytesSent: blob.data.length, retries: 0 });
    const patches = proxy.stats().log.filter((e) => e.method === 'PATCH');
    expect(patches.map((p) => p.requestBytes)).toEqual([MiB, MiB, MiB, MiB, MiB, 123]);
    expect(await registryHas('chunks/a', blob.digest)).toBe(true);

    proxy.resetStats();
    expect(await upload('chunks/a')).toMatchObject({ action: 'present', bytesSent: 0 });
    expect(proxy.stats().log.map((e) => e.method)).toEqual(['HEAD']);
  });

  it('mounts a blob another repository of the target holds instead of sending it', async () => {
    await upload('mount/from');
    proxy.resetStats();
    expect(await upload('mount/into', { mountFrom: ['mount/elsewhere', 'mount/from'] })).toMatchObject({ action: 'mounted', bytesSent: 0 });
    expect(proxy.stats().uploadBodyBytes).toBe(0);
    // The refused first candidate's session was cancelled, not left behind.
    expect(proxy.stats().log.filter((e) => e.method === 'DELETE')).toHaveLength(1);
    expect(await registryHas('mount/into', blob.digest)).toBe(true);
  });

  it('falls back to one monolithic PUT when the registry refuses PATCH', async () => {
    proxy.setRules([{ match: { method: 'PATCH' }, fault: { kind: 'status', status: 405, body: '{"errors":[{"code":"UNSUPPORTED","message":"no chunks"}]}' } }]);
    const modes = { monolithic: new Set<string>() };
    const outcome = await upload('mono/a', { modes, chunkBytes: 64 * 1024 });
    expect(outcome.action).toBe('uploaded');
    expect(modes.monolithic.has(proxy.host)).toBe(true);
    const puts = proxy.stats().log.filter((e) => e.method === 'PUT');
    expect(puts).toHaveLength(1);
    expect(puts[0]?.requestBytes).toBe(blob.data.length);
    expect(await registryHas('mono/a', blob.digest)).toBe(true);
  });

  it('accepts 201 to a PATCH, as ECR answers', async () => {
    proxy.setRules([{ match: { method: 'PATCH' }, fault: { kind: 'rewrite-status', from: 202, to: 201 } }]);
    expect(await upload('ecr/a')).toMatchObject({ action: 'uploaded', retries: 0 });
    expect(proxy.stats().log.filter((e) => e.method === 'PATCH' && e.status === 201)).toHaveLength(6);
    expect(await registryHas('ecr/a', blob.digest)).toBe(true);
  });

  it("raises its chunks to the registry's OCI-Chunk-Min-Length", async () => {
    proxy.setRules([{ match: { method: 'POST' }, fault: { kind: 'add-headers', headers: { 'oci-chunk-min-length': String(2 * MiB) } } }]);
    await upload('minchunk/a', { chunkBytes: 256 * 1024 });
    const sizes = proxy
      .stats()
      .log.filter((e) => e.method === 'PATCH')
      .map((e) => e.requestBytes);
    expect(sizes).toEqual([2 * MiB, 2 * MiB, MiB + 123]);
  });

  it('starts over when a journalled upload answers Range 0-0 (0 or 1 byte: distribution cannot say)', async () => {
    // An interrupted run left an upload holding one byte.
    const post = await fetch(`${registry.url}/v2/ambiguous/a/blobs/uploads/`, { method: 'POST' });
    const patch = await fetch(new URL(post.headers.get('location')!, registry.url), {
      method: 'PATCH',
      headers: { 'content-type': 'application/octet-stream', 'content-range': '0-0' },
      body: blob.data.subarray(0, 1),
    });
    expect(patch.headers.get('range')).toBe('0-0');
    const journal = memoryJournal({
      [`ambiguous/a ${blob.digest}`]: new URL(patch.headers.get('location')!, registry.url).toString().replace(registry.host, proxy.host),
    });
    const outcome = await upload('ambiguous/a', { journal });
    expect(outcome).toMatchObject({ action: 'uploaded', resumedFrom: 0, bytesSent: blob.data.length });
    const methods = proxy.stats().log.map((e) => e.method);
    expect(methods.slice(0, 3)).toEqual(['GET', 'DELETE', 'HEAD']);
    expect(journal.entries.size).toBe(0);
    expect(await registryHas('ambiguous/a', blob.digest)).toBe(true);
  });

  it('resumes a journalled upload from the offset the registry confirms', async () => {
    const post = await fetch(`${registry.url}/v2/resume/a/blobs/uploads/`, { method: 'POST' });
    const patch = await fetch(new URL(post.headers.get('location')!, registry.url), {
      method: 'PATCH',
      headers: { 'content-type': 'application/octet-stream', 'content-range': `0-${2 * MiB - 1}` },
      body: blob.data.subarray(0, 2 * MiB),
    });
    const url = new URL(patch.headers.get('location')!, registry.url).toString().replace(registry.host, proxy.host);
    const outcome = await upload('resume/a', { journal: memoryJournal({ [`resume/a ${blob.digest}`]: url }) });
    expect(outcome).toMatchObject({ action: 'uploaded', resumedFrom: 2 * MiB, bytesSent: blob.data.length - 2 * MiB });
    expect(await registryHas('resume/a', blob.digest)).toBe(true);
  });

  it('starts the blob over when distribution drops a session that a cut-off PATCH left longer than its state', async () => {
    // Straight to the registry (no buffering proxy): the first PATCH's body stops after 300 KiB,
    // the stall watchdog drops the request, and distribution has stored those bytes.
    let calls = 0;
    const source: UploadSource = {
      where: 'test blob',
      openRange: async (start, end) => {
        calls += 1;
        if (calls > 1) return createReadStream(blob.path, { start, end });
        const head = Readable.from([blob.data.subarray(start, start + 300 * 1024)]);
        return Readable.from(
          (async function* () {
            yield* head;
            await new Promise(() => {}); // and then nothing
          })(),
        );
      },
    };
    const outcome = await uploadBlob({
      client,
      target: { registry: registry.host, repository: 'restart/a' },
      digest: blob.digest,
      size: blob.data.length,
      source,
      chunkBytes: MiB,
      retry: RETRY,
      backoff: new HostBackoff(RETRY),
      stallTimeoutMs: 500,
      logger: silentLogger(),
    });
    expect(outcome).toMatchObject({ action: 'uploaded', restarts: 1, retries: 1 });
    expect(outcome.bytesSent).toBe(blob.data.length + 300 * 1024);
    expect(await registryHas('restart/a', blob.digest)).toBe(true);
  });

  it('never closes an upload whose bytes do not match the digest, and names the source', async () => {
    const bad = Buffer.from(blob.data);
    bad[4 * MiB] = (bad[4 * MiB] ?? 0) ^ 1;
    const badPath = join(dir, 'bad-blob');
    await writeFile(badPath, bad);
    const error = await upload('tampered/a', { source: fileSource(badPath, 'mirror_000002.tar entry blobs/sha256/x') }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'MM_DIGEST_MISMATCH' });
    expect((error as Error).message).toContain('mirror_000002.tar entry blobs/sha256/x');
    const log = proxy.stats().log;
    expect(log.some((e) => e.method === 'PUT')).toBe(false);
    expect(log.some((e) => e.method === 'DELETE')).toBe(true);
    expect(await registryHas('tampered/a', blob.digest)).toBe(false);
  });
});
