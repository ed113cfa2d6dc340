/**
 * `meshmirror serve DIR`: an OCI image layout or a folder of archive chunks served read-only as an
 * OCI distribution registry, so any registry client (skopeo, crane, oc, a cluster) can pull from a
 * disconnected site's disk without extracting anything.
 *
 * Every image of `index.json` is served under its repository path (`sample/app:1.0` →
 * `sample/app`, `registry.example.com/team/app:1.0` → `team/app`) and, when its name carries a
 * registry, also under `<registry>/<repository>`. Manifests by digest and blobs resolve under any
 * repository name. Nothing outside the folder is read: digests are validated before they become
 * paths, and repository names never touch the file system.
 *
 * The referrers API (distribution spec v1.1, `/v2/<name>/referrers/<digest>`) lists the signatures,
 * SBOMs and attestations held beside an image: every manifest of `index.json`, and every child of an
 * index there, whose `subject` is that digest. It too answers under any repository name.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pLimit from 'p-limit';
import {
  describeError,
  errorCode,
  isDigest,
  isIndexMediaType,
  isManifestMediaType,
  MediaType,
  MeshmirrorError,
  parseImageReference,
  referrerEntry,
  silentLogger,
  throwIfAborted,
  type Descriptor,
  type Digest,
  type Logger,
} from '@meshmirror/shared';
import { openImageFolder, type ImageFolder } from '../layout/image-folder.ts';

export interface RegistryServerOptions {
  /** An OCI image layout folder or a folder of archive chunks (`mirror_*.tar`); detected. */
  dir: string;
  /** Address to listen on. Default `127.0.0.1`. */
  host?: string;
  /** TCP port; `0` (the default) lets the system pick a free one. */
  port?: number;
  /** Component logger; silent when omitted. */
  logger?: Logger;
  /** Aborts start-up (opening and indexing the folder, binding the port). */
  signal?: AbortSignal;
}

export interface RunningRegistryServer {
  /** `http://HOST:PORT` */
  url: string;
  host: string;
  port: number;
  /** What is being served. */
  folder: ImageFolder;
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
}

/** Manifests are read whole to learn their media type; nothing this large is a manifest. */
const MAX_MANIFEST_BYTES = 8 * 1024 * 1024;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
/** Any digest the distribution spec allows; only sha256 ones can be held here. */
const ANY_DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const NAME_COMPONENT_RE = /^[a-zA-Z0-9](?:[a-zA-Z0-9._:-]*[a-zA-Z0-9])?$/;
/** Stands in for a registry host so that names without one keep their repository path as written. */
const NO_REGISTRY_HOST = 'meshmirror.invalid';

/** Starts the read-only registry; resolves once it listens. */
export async function startRegistryServer(options: RegistryServerOptions): Promise<RunningRegistryServer> {
  const { signal } = options;
  const logger = options.logger ?? silentLogger();
  const host = options.host ?? '127.0.0.1';
  throwIfAborted(signal);
  const folder = await openImageFolder(options.dir, { signal });
  const catalog = await buildCatalog(folder, logger);
  throwIfAborted(signal);

  const server = createServer((request, response) => {
    handleRequest(folder, catalog, logger, request, response).catch((error: unknown) => {
      logger.error({ err: error, method: request.method, url: request.url }, 'request failed');
      if (response.headersSent) response.destroy();
      else if (errorCode(error) === 'MM_ARCHIVE_INVALID') {
        // The folder holds this digest only as something it refuses to read (a symbolic link, not a
        // regular file): for the client it is not there, and the answer names no path of this host.
        const manifest = /\/manifests\//.test(request.url ?? '');
        sendError(response, request.method === 'HEAD', 404, manifest ? 'MANIFEST_UNKNOWN' : 'BLOB_UNKNOWN', 'not held here in a form this registry serves');
      } else sendError(response, request.method === 'HEAD', 500, 'UNKNOWN', describeError(error));
    });
  });
  await listen(server, host, options.port ?? 0);
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  logger.info(
    { url, dir: folder.dir, kind: folder.kind, repositories: catalog.repositories.size },
    `serving ${folder.kind === 'archive' ? 'an archive' : 'an OCI layout'} read-only`,
  );

  let closing: Promise<void> | undefined;
  return {
    url,
    host,
    port,
    folder,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

async function listen(server: Server, host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (cause: Error): void => {
      reject(new MeshmirrorError('MM_USAGE', `cannot listen on ${host}:${port}: ${describeError(cause)}`, { cause }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

interface Catalog {
  /** Repository → tag → manifest descriptor. */
  repositories: Map<string, Map<string, Descriptor>>;
  /** Media types of manifests by digest: from index.json, then learned by reading manifests. */
  manifestTypes: Map<Digest, string | null>;
  /** Referrer descriptors by subject digest, sorted by digest; built by the first referrers request. */
  referrers: Promise<Map<string, Descriptor[]>> | undefined;
}

/** The repositories and tags to serve, from the folder's `index.json` names. */
async function buildCatalog(folder: ImageFolder, logger: Logger): Promise<Catalog> {
  const catalog: Catalog = { repositories: new Map(), manifestTypes: new Map(), referrers: undefined };
  for (const image of await folder.images()) {
    catalog.manifestTypes.set(image.descriptor.digest, image.descriptor.mediaType);
    if (image.name === undefined) continue;
    let served: ServedName;
    try {
      served = servedName(image.name);
    } catch (error) {
      logger.warn({ name: image.name, err: describeError(error) }, 'index.json name is not an image reference; the image is served by digest only');
      continue;
    }
    if (served.tag === undefined) continue;
    for (const repository of served.repositories) {
      let tags = catalog.repositories.get(repository);
      if (tags === undefined) {
        tags = new Map();
        catalog.repositories.set(repository, tags);
      }
      const existing = tags.get(served.tag);
      if (existing !== undefined && existing.digest !== image.descriptor.digest) {
        logger.warn({ repository, tag: served.tag, kept: existing.digest, ignored: image.descriptor.digest }, 'two index.json entries give one tag; keeping the first');
        continue;
      }
      tags.set(served.tag, image.descriptor);
    }
  }
  return catalog;
}

interface ServedName {
  repositories: string[];
  tag: string | undefined;
}

/**
 * Where an `index.json` name is served. A name with a registry host is served under its repository
 * and under `<registry>/<repository>`; a name without one keeps its path as written (`sample/app`,
 * not Docker Hub's `library/…`).
 */
export function servedName(name: string): ServedName {
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  const hasRegistry = first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[');
  if (hasRegistry) {
    const ref = parseImageReference(name);
    return { repositories: [ref.repository, `${ref.registry}/${ref.repository}`], tag: ref.tag };
  }
  const ref = parseImageReference(`${NO_REGISTRY_HOST}/${name}`);
  return { repositories: [ref.repository], tag: ref.tag };
}

async function handleRequest(folder: ImageFolder, catalog: Catalog, logger: Logger, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const started = Date.now();
  response.on('finish', () => {
    logger.debug({ method: request.method, url: request.url, status: response.statusCode, ms: Date.now() - started }, 'request');
  });
  response.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
  const head = request.method === 'HEAD';
  if (request.method !== 'GET' && !head) {
    response.setHeader('Allow', 'GET, HEAD');
    sendError(response, false, 405, 'UNSUPPORTED', 'this registry is read-only');
    request.resume();
    return;
  }
  const url = new URL(request.url ?? '/', 'http://registry.invalid');
  const path = url.pathname;
  if (path === '/v2/' || path === '/v2') {
    sendJson(response, head, 200, {});
    return;
  }
  if (path === '/v2/_catalog') {
    const page = paginate([...catalog.repositories.keys()].sort(), url);
    if (page.next !== undefined) response.setHeader('Link', `</v2/_catalog?${page.next}>; rel="next"`);
    sendJson(response, head, 200, { repositories: page.items });
    return;
  }
  const tagsMatch = /^\/v2\/(.+)\/tags\/list$/.exec(path);
  if (tagsMatch?.[1] !== undefined) {
    const name = repositoryName(tagsMatch[1]);
    if (name === undefined) return sendError(response, head, 400, 'NAME_INVALID', 'invalid repository name');
    const tags = catalog.repositories.get(name);
    if (tags === undefined) return sendError(response, head, 404, 'NAME_UNKNOWN', `repository ${name} is not known`);
    const page = paginate([...tags.keys()].sort(), url);
    if (page.next !== undefined) response.setHeader('Link', `</v2/${name}/tags/list?${page.next}>; rel="next"`);
    sendJson(response, head, 200, { name, tags: page.items });
    return;
  }
  const objectMatch = /^\/v2\/(.+)\/(manifests|blobs|referrers)\/([^/]+)$/.exec(path);
  if (objectMatch?.[1] === undefined || objectMatch[3] === undefined) {
    sendError(response, head, 404, 'NOT_FOUND', `no such endpoint: ${path}`);
    return;
  }
  const name = repositoryName(objectMatch[1]);
  if (name === undefined) return sendError(response, head, 400, 'NAME_INVALID', 'invalid repository name');
  const reference = decodeSegment(objectMatch[3]);
  if (reference === undefined) return sendError(response, head, 400, 'NAME_INVALID', 'invalid reference');
  if (objectMatch[2] === 'manifests') await serveManifest(folder, catalog, logger, name, reference, request, response);
  else if (objectMatch[2] === 'referrers') await serveReferrers(folder, catalog, logger, reference, url, head, response);
  else await serveBlob(folder, logger, reference, request, response);
}

async function serveManifest(
  folder: ImageFolder,
  catalog: Catalog,
  logger: Logger,
  name: string,
  reference: string,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const head = request.method === 'HEAD';
  let digest: Digest;
  let mediaType: string | undefined;
  if (reference.includes(':')) {
    if (!isDigest(reference)) {
      if (ANY_DIGEST_RE.test(reference)) return sendError(response, head, 404, 'MANIFEST_UNKNOWN', `manifest ${reference} is not held`);
      return sendError(response, head, 400, 'DIGEST_INVALID', `"${reference}" is not a digest`);
    }
    digest = reference;
  } else {
    if (!TAG_RE.test(reference)) return sendError(response, head, 400, 'TAG_INVALID', `"${reference}" is not a valid tag`);
    const tags = catalog.repositories.get(name);
    if (tags === undefined) return sendError(response, head, 404, 'NAME_UNKNOWN', `repository ${name} is not known`);
    const descriptor = tags.get(reference);
    if (descriptor === undefined) return sendError(response, head, 404, 'MANIFEST_UNKNOWN', `manifest ${name}:${reference} is not known`);
    digest = descriptor.digest;
    mediaType = descriptor.mediaType;
  }
  const size = await folder.blobSize(digest);
  if (size === undefined) return sendError(response, head, 404, 'MANIFEST_UNKNOWN', `manifest ${digest} is not held`);
  mediaType ??= await manifestMediaType(folder, catalog, digest, size, logger);
  if (mediaType === undefined) return sendError(response, head, 404, 'MANIFEST_UNKNOWN', `${digest} is not a manifest`);

  const headers = { 'Content-Type': mediaType, 'Docker-Content-Digest': digest, ETag: `"${digest}"`, 'Content-Length': String(size) };
  if (head) {
    response.writeHead(200, headers).end();
    return;
  }
  await streamBlob(folder, logger, digest, undefined, response, 200, headers);
}

/** The media type of a manifest held only as a blob (an index's child): read from its JSON body. */
async function manifestMediaType(folder: ImageFolder, catalog: Catalog, digest: Digest, size: number, logger: Logger): Promise<string | undefined> {
  const known = catalog.manifestTypes.get(digest);
  if (known !== undefined) return known ?? undefined;
  let mediaType: string | null = null;
  if (size <= MAX_MANIFEST_BYTES) {
    const body = await readWhole(await folder.openBlob(digest));
    mediaType = sniffManifestType(body);
    if (mediaType === null) logger.debug({ digest }, 'blob requested as a manifest is not one');
  }
  catalog.manifestTypes.set(digest, mediaType);
  return mediaType ?? undefined;
}

function sniffManifestType(body: Buffer): string | null {
  return readManifestJson(body)?.mediaType ?? null;
}

interface ManifestJson {
  /** An index or image manifest media type. */
  mediaType: string;
  json: Record<string, unknown>;
}

/** A manifest's JSON and media type, or null when the bytes are not JSON or not a manifest. */
function readManifestJson(body: Buffer): ManifestJson | null {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return null;
  }
  if (!isRecord(json)) return null;
  if (typeof json['mediaType'] === 'string') {
    const type = json['mediaType'];
    return isIndexMediaType(type) || isManifestMediaType(type) ? { mediaType: type, json } : null;
  }
  // OCI lets mediaType be absent: tell an index from a manifest by its shape.
  if (json['schemaVersion'] !== 2) return null;
  if (Array.isArray(json['manifests'])) return { mediaType: MediaType.OciIndex, json };
  if (typeof json['config'] === 'object' && Array.isArray(json['layers'])) return { mediaType: MediaType.OciManifest, json };
  return null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The referrers API: an image index of the manifests whose `subject` is `reference`, optionally
 * filtered by artifact type. A subject with no referrers (or not held at all) answers an empty
 * list, never 404: the spec reserves 404 for registries without the API, and clients then fall
 * back to the `sha256-<hex>` tag schema.
 */
async function serveReferrers(
  folder: ImageFolder,
  catalog: Catalog,
  logger: Logger,
  reference: string,
  url: URL,
  head: boolean,
  response: ServerResponse,
): Promise<void> {
  if (!ANY_DIGEST_RE.test(reference)) return sendError(response, head, 400, 'DIGEST_INVALID', `"${reference}" is not a digest`);
  const all = (await referrersBySubject(folder, catalog, logger)).get(reference) ?? [];
  const artifactType = url.searchParams.get('artifactType') ?? '';
  let manifests = all;
  if (artifactType !== '') {
    manifests = all.filter((descriptor) => descriptor.artifactType === artifactType);
    response.setHeader('OCI-Filters-Applied', 'artifactType');
  }
  sendJson(response, head, 200, { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }, MediaType.OciIndex);
}

/**
 * Referrers by subject digest. Built on the first referrers request, not at start-up: an archive can
 * hold thousands of images, and reading all their manifests would delay serving for clients that
 * never ask. A failed build is not kept, so a later request tries again.
 */
function referrersBySubject(folder: ImageFolder, catalog: Catalog, logger: Logger): Promise<Map<string, Descriptor[]>> {
  catalog.referrers ??= buildReferrers(folder, catalog, logger).catch((error: unknown) => {
    catalog.referrers = undefined;
    throw error;
  });
  return catalog.referrers;
}

/** Manifests read at once while indexing referrers: archive reads overlap without flooding the disk. */
const REFERRER_SCAN_CONCURRENCY = 8;

/**
 * Reads every manifest of `index.json` and every child of an index there, and files each one that
 * has a `subject` under that subject. meshmirror archives referrers as top-level entries; children
 * are read too because a referrer can itself be an index's child (per-platform attestations).
 */
async function buildReferrers(folder: ImageFolder, catalog: Catalog, logger: Logger): Promise<Map<string, Descriptor[]>> {
  const bySubject = new Map<string, Descriptor[]>();
  const seen = new Set<Digest>();
  const children: Digest[] = [];
  const scan = async (digests: Digest[], collectChildren: boolean): Promise<void> => {
    const fresh = [...new Set(digests)].filter((digest) => !seen.has(digest));
    for (const digest of fresh) seen.add(digest);
    const limit = pLimit(REFERRER_SCAN_CONCURRENCY);
    await Promise.all(
      fresh.map((digest) =>
        limit(async () => {
          const manifest = await readHeldManifest(folder, catalog, logger, digest);
          if (manifest === undefined) return;
          const referrer = referrerOf(manifest);
          if (referrer !== undefined) {
            const list = bySubject.get(referrer.subject);
            if (list === undefined) bySubject.set(referrer.subject, [referrer.descriptor]);
            else list.push(referrer.descriptor);
          }
          if (collectChildren && isIndexMediaType(manifest.mediaType)) children.push(...childDigests(manifest.json));
        }),
      ),
    );
  };
  await scan(
    (await folder.images()).map((image) => image.descriptor.digest),
    true,
  );
  await scan(children, false);
  for (const list of bySubject.values()) list.sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  logger.debug({ manifests: seen.size, subjects: bySubject.size }, 'referrers indexed');
  return bySubject;
}

interface HeldManifest extends ManifestJson {
  digest: Digest;
  bytes: Buffer;
}

/**
 * A manifest held in the folder, or undefined when it is absent, too large, not a manifest or
 * unreadable: one bad blob leaves out its referrers instead of failing the whole API.
 */
async function readHeldManifest(folder: ImageFolder, catalog: Catalog, logger: Logger, digest: Digest): Promise<HeldManifest | undefined> {
  let body: Buffer;
  try {
    const size = await folder.blobSize(digest);
    if (size === undefined || size > MAX_MANIFEST_BYTES) return undefined;
    body = await readWhole(await folder.openBlob(digest));
  } catch (error) {
    logger.warn({ digest, err: describeError(error), code: errorCode(error) }, 'manifest cannot be read; its referrers are not listed');
    return undefined;
  }
  const manifest = readManifestJson(body);
  // Learned for free: a later manifest request by digest need not read it again.
  if (!catalog.manifestTypes.has(digest)) catalog.manifestTypes.set(digest, manifest?.mediaType ?? null);
  return manifest === null ? undefined : { ...manifest, digest, bytes: body };
}

/** The subject a manifest refers to and its descriptor in a referrers list; undefined without one (or when it does not parse). */
function referrerOf(manifest: HeldManifest): { subject: Digest; descriptor: Descriptor } | undefined {
  try {
    return referrerEntry(manifest, manifest.digest);
  } catch {
    return undefined;
  }
}

/** The sha256 digests an index lists; anything else could not be held here. */
function childDigests(index: Record<string, unknown>): Digest[] {
  const manifests = index['manifests'];
  if (!Array.isArray(manifests)) return [];
  return manifests.flatMap((child: unknown) => (isRecord(child) && typeof child['digest'] === 'string' && isDigest(child['digest']) ? [child['digest']] : []));
}

async function serveBlob(folder: ImageFolder, logger: Logger, reference: string, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const head = request.method === 'HEAD';
  if (!isDigest(reference)) {
    if (ANY_DIGEST_RE.test(reference)) return sendError(response, head, 404, 'BLOB_UNKNOWN', `blob ${reference} is not held`);
    return sendError(response, head, 400, 'DIGEST_INVALID', `"${reference}" is not a digest`);
  }
  const digest = reference;
  const size = await folder.blobSize(digest);
  if (size === undefined) return sendError(response, head, 404, 'BLOB_UNKNOWN', `blob ${digest} is not held`);
  const etag = `"${digest}"`;
  response.setHeader('Accept-Ranges', 'bytes');
  const ifRange = request.headers['if-range'];
  const rangeHeader = ifRange === undefined || ifRange === etag ? request.headers.range : undefined;
  const range = rangeHeader === undefined ? undefined : parseRange(rangeHeader, size);
  if (range === 'unsatisfiable') {
    response.setHeader('Content-Range', `bytes */${size}`);
    return sendError(response, head, 416, 'BLOB_UNKNOWN', `range ${rangeHeader ?? ''} is outside the blob (${size} bytes)`);
  }
  const headers: Record<string, string> = {
    'Content-Type': 'application/octet-stream',
    'Docker-Content-Digest': digest,
    ETag: etag,
    'Content-Length': String(range === undefined ? size : range.end - range.start + 1),
  };
  if (range !== undefined) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`;
  const status = range === undefined ? 200 : 206;
  if (head) {
    response.writeHead(status, headers).end();
    return;
  }
  await streamBlob(folder, logger, digest, range, response, status, headers);
}

/**
 * Streams a blob (or a range) into the response. Whole blobs are verified by the folder reader as
 * they stream; on a mismatch the connection is cut before the last bytes, so the client sees a
 * short body rather than a complete wrong one.
 */
async function streamBlob(
  folder: ImageFolder,
  logger: Logger,
  digest: Digest,
  range: { start: number; end: number } | undefined,
  response: ServerResponse,
  status: number,
  headers: Record<string, string>,
): Promise<void> {
  let body: Readable;
  try {
    body = await folder.openBlob(digest, range ?? {});
  } catch (error) {
    if (errorCode(error) === 'MM_NOT_FOUND') return sendError(response, false, 404, 'BLOB_UNKNOWN', `blob ${digest} is not held`);
    throw error;
  }
  // Headers go out with the first bytes: a blob that fails before any (a small blob held back by
  // the digest check) still gets a proper error answer instead of a cut connection.
  const chunks = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  try {
    let first: IteratorResult<Buffer>;
    try {
      first = await chunks.next();
    } catch (error) {
      logger.error({ digest, err: describeError(error), code: errorCode(error) }, 'serving a blob failed');
      return sendError(response, false, 500, 'UNKNOWN', `blob ${digest} cannot be served: ${describeError(error)}`);
    }
    response.writeHead(status, headers);
    const rest = async function* (): AsyncGenerator<Buffer> {
      if (first.done === true) return;
      yield first.value;
      for (let next = await chunks.next(); next.done !== true; next = await chunks.next()) yield next.value;
    };
    await pipeline(rest(), response);
  } catch (error) {
    const clientGone = response.destroyed && errorCode(error) === 'ERR_STREAM_PREMATURE_CLOSE';
    if (clientGone) logger.debug({ digest }, 'client closed the connection during a blob');
    else logger.error({ digest, err: describeError(error), code: errorCode(error) }, 'serving a blob failed; connection cut');
    response.destroy();
  } finally {
    body.destroy();
  }
}

/**
 * Parses a single `bytes=` range. Returns undefined when the header should be ignored (malformed,
 * several ranges), which answers the whole blob as RFC 9110 allows.
 */
export function parseRange(header: string, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (match === null) return undefined;
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return undefined;
  if (first === '') {
    const suffix = Number(last);
    if (!Number.isSafeInteger(suffix)) return undefined;
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) return undefined;
  if (last !== '' && Number(last) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

function paginate(items: string[], url: URL): { items: string[]; next: string | undefined } {
  const last = url.searchParams.get('last');
  const n = url.searchParams.get('n');
  let from = 0;
  if (last !== null) {
    from = items.findIndex((item) => item > last);
    if (from < 0) from = items.length;
  }
  const limit = n !== null && /^\d+$/.test(n) ? Number(n) : undefined;
  if (limit === undefined) return { items: items.slice(from), next: undefined };
  const page = items.slice(from, from + limit);
  const lastItem = page[page.length - 1];
  const more = from + limit < items.length && lastItem !== undefined;
  return { items: page, next: more ? `last=${encodeURIComponent(lastItem)}&n=${limit}` : undefined };
}

/** A repository name from the URL, or undefined when it is not one (`..`, empty components, odd bytes). */
function repositoryName(raw: string): string | undefined {
  const name = decodeSegment(raw);
  if (name === undefined || name.includes('..') || name.length > 512) return undefined;
  return name.split('/').every((component) => NAME_COMPONENT_RE.test(component)) ? name : undefined;
}

function decodeSegment(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

async function readWhole(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function sendJson(response: ServerResponse, head: boolean, status: number, body: unknown, contentType = 'application/json'): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'Content-Type': contentType, 'Content-Length': String(Buffer.byteLength(text)) });
  response.end(head ? undefined : text);
}

/** An error in the distribution spec's JSON form. */
function sendError(response: ServerResponse, head: boolean, status: number, code: string, message: string): void {
  sendJson(response, head, status, { errors: [{ code, message, detail: {} }] });
}
