/**
 * Pushes images from an OCI image layout into a registry with the distribution HTTP API: an
 * independent path (not meshmirror's own client) for putting known content into a test registry.
 * Monolithic uploads (POST, then PUT ?digest=) with streamed file bodies; HEAD skips blobs the
 * registry has; child manifests before their index.
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { digestHex, isIndexMediaType, parseManifest, REF_NAME_ANNOTATION, sha256Digest, throwIfAborted, type Descriptor, type Digest } from '@meshmirror/shared';

export interface PushLayoutOptions {
  /** Names (index.json `org.opencontainers.image.ref.name`) to push. Default: every named image. */
  images?: string[];
  /**
   * Target `repository:tag` for a layout name. Default: the name itself, without a leading registry
   * host (a first path component with `.` or `:`, or `localhost`).
   */
  rename?: (name: string) => string;
  /** Basic credentials for the registry. */
  credentials?: { username: string; password: string };
  /** Extra CA (PEM) trusted for `https://` registries. */
  ca?: string | Buffer;
  /** Skip certificate verification for `https://` registries. */
  insecureSkipVerify?: boolean;
  signal?: AbortSignal;
}

export interface PushedImage {
  /** The name in the layout's index.json. */
  name: string;
  /** `host/repository:tag` as pushed. */
  reference: string;
  digest: Digest;
}

interface IndexJsonEntry {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations?: Record<string, string>;
}

export async function pushLayout(layoutDir: string, registryUrl: string, options: PushLayoutOptions = {}): Promise<PushedImage[]> {
  const base = new URL(registryUrl);
  const client = new RegistryHttp(base, options);
  const indexJson = JSON.parse(await readFile(join(layoutDir, 'index.json'), 'utf8')) as {
    manifests?: IndexJsonEntry[];
  };
  const named = new Map<string, IndexJsonEntry>();
  for (const entry of indexJson.manifests ?? []) {
    const name = entry.annotations?.[REF_NAME_ANNOTATION];
    if (name !== undefined) named.set(name, entry);
  }
  const wanted = options.images ?? [...named.keys()];
  const pushed: PushedImage[] = [];
  for (const name of wanted) {
    throwIfAborted(options.signal);
    const entry = named.get(name);
    if (entry === undefined) throw new Error(`${layoutDir}/index.json has no image named "${name}"`);
    const target = options.rename?.(name) ?? stripRegistryHost(name);
    const { repository, tag } = splitRepositoryTag(target);
    const pusher = new TreePusher(layoutDir, repository, client, options.signal);
    await pusher.pushManifest(entry.digest, entry.mediaType, tag);
    pushed.push({ name, reference: `${base.host}/${repository}:${tag}`, digest: entry.digest });
  }
  return pushed;
}

/** `repository:tag` split at the last colon that follows the last slash. */
export function splitRepositoryTag(name: string): { repository: string; tag: string } {
  const slash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  if (colon <= slash || colon === name.length - 1) throw new Error(`"${name}" is not "repository:tag"`);
  return { repository: name.slice(0, colon), tag: name.slice(colon + 1) };
}

function stripRegistryHost(name: string): string {
  const slash = name.indexOf('/');
  if (slash < 0) return name;
  const first = name.slice(0, slash);
  const isHost = first.includes('.') || first.includes(':') || first === 'localhost';
  return isHost ? name.slice(slash + 1) : name;
}

class TreePusher {
  readonly #layoutDir: string;
  readonly #repository: string;
  readonly #client: RegistryHttp;
  readonly #signal: AbortSignal | undefined;
  readonly #doneBlobs = new Set<Digest>();

  constructor(layoutDir: string, repository: string, client: RegistryHttp, signal: AbortSignal | undefined) {
    this.#layoutDir = layoutDir;
    this.#repository = repository;
    this.#client = client;
    this.#signal = signal;
  }

  /** Pushes what the manifest references, then the manifest under `reference` (a tag or its digest). */
  async pushManifest(digest: Digest, mediaType: string, reference: string): Promise<void> {
    const bytes = await readFile(this.#blobPath(digest));
    const actual = sha256Digest(bytes);
    if (actual !== digest) throw new Error(`layout blob ${digest} has digest ${actual}`);
    const parsed = parseManifest(bytes, mediaType, `${this.#layoutDir} ${digest}`);
    if (parsed.kind === 'index') {
      for (const child of parsed.index.manifests) {
        if (isIndexMediaType(child.mediaType) || child.mediaType.includes('manifest')) {
          await this.pushManifest(child.digest, child.mediaType, child.digest);
        } else {
          await this.#pushBlob(child);
        }
      }
    } else {
      await this.#pushBlob(parsed.manifest.config);
      for (const layer of parsed.manifest.layers) await this.#pushBlob(layer);
    }
    const response = await this.#client.send('PUT', `/v2/${this.#repository}/manifests/${reference}`, {
      headers: { 'content-type': parsed.mediaType, 'content-length': bytes.length },
      body: bytes,
      signal: this.#signal,
    });
    await expectStatus(response, [201], `PUT manifest ${this.#repository}:${reference}`);
  }

  async #pushBlob(descriptor: Descriptor): Promise<void> {
    const { digest } = descriptor;
    if (this.#doneBlobs.has(digest)) return;
    throwIfAborted(this.#signal);
    const path = `/v2/${this.#repository}/blobs/${digest}`;
    const head = await this.#client.send('HEAD', path, { signal: this.#signal });
    await drain(head);
    if (head.statusCode !== 200) {
      const file = this.#blobPath(digest);
      const { size } = await stat(file);
      const start = await this.#client.send('POST', `/v2/${this.#repository}/blobs/uploads/`, {
        headers: { 'content-length': 0 },
        signal: this.#signal,
      });
      await expectStatus(start, [202], `start upload of ${digest} to ${this.#repository}`);
      const location = start.headers.location;
      if (location === undefined) throw new Error(`registry gave no upload Location for ${digest}`);
      const uploadUrl = new URL(location, this.#client.base);
      uploadUrl.searchParams.set('digest', digest);
      const put = await this.#client.send('PUT', uploadUrl, {
        headers: { 'content-type': 'application/octet-stream', 'content-length': size },
        body: createReadStream(file),
        signal: this.#signal,
      });
      await expectStatus(put, [201], `upload ${digest} to ${this.#repository}`);
    }
    this.#doneBlobs.add(digest);
  }

  #blobPath(digest: Digest): string {
    return join(this.#layoutDir, 'blobs', 'sha256', digestHex(digest));
  }
}

interface SendOptions {
  headers?: OutgoingHttpHeaders;
  body?: Buffer | Readable;
  signal?: AbortSignal | undefined;
}

class RegistryHttp {
  readonly base: URL;
  readonly #options: PushLayoutOptions;

  constructor(base: URL, options: PushLayoutOptions) {
    this.base = base;
    this.#options = options;
  }

  async send(method: string, target: string | URL, options: SendOptions = {}): Promise<IncomingMessage> {
    const url = new URL(target, this.base);
    const headers: OutgoingHttpHeaders = { ...options.headers };
    const { credentials } = this.#options;
    if (credentials !== undefined) {
      headers['authorization'] = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
    }
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(url, {
        method,
        headers,
        signal: options.signal,
        ...(this.#options.ca === undefined ? {} : { ca: this.#options.ca }),
        ...(this.#options.insecureSkipVerify === true ? { rejectUnauthorized: false } : {}),
      });
      req.once('response', resolve);
      req.once('error', reject);
      const { body } = options;
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else pipeline(body, req).catch(reject);
    });
  }
}

async function drain(response: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function expectStatus(response: IncomingMessage, expected: number[], what: string): Promise<void> {
  const body = await drain(response);
  const status = response.statusCode ?? 0;
  if (!expected.includes(status)) throw new Error(`${what}: HTTP ${status} ${body.slice(0, 500)}`);
}
