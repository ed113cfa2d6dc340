/**
 * `meshmirror serve DIR`: an OCI image layout or a folder of archive chunks served read-only as an
 * OCI distribution registry (spec v1.1, pull and content discovery), so any registry client (skopeo,
 * podman, crane, oc, a cluster) can pull from a disconnected site's disk without extracting anything.
 *
 * Names are `served-catalog.ts`'s (the push's rule); what a repository holds is
 * `repository-content.ts`'s, and a manifest or blob by digest is served only where it is held.
 * Manifests answer the client's `Accept` as distribution does (`manifest-negotiation.ts`); errors
 * carry distribution's codes and statuses. Optional TLS and htpasswd basic authentication.
 *
 * The referrers API (`/v2/<name>/referrers/<digest>`) lists the manifests of the repository whose
 * `subject` is that digest. Nothing outside the folder is read: digests are validated before they
 * become paths, and repository names never touch the file system.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  describeError,
  errorCode,
  isDigest,
  MediaType,
  MeshmirrorError,
  silentLogger,
  throwIfAborted,
  type Descriptor,
  type Digest,
  type Logger,
  type RunMetadata,
} from '@meshmirror/shared';
import { openImageFolder, type ImageFolder } from '../layout/image-folder.ts';
import type { ArchiveReader } from '../archive/archive-reader.ts';
import type { OciLayoutReader } from '../layout/oci-layout-reader.ts';
import { parseRange } from './byte-range.ts';
import type { BasicAuthenticator } from './htpasswd.ts';
import { paginate, type Page } from './list-pagination.ts';
import { acceptedMediaTypes, negotiateListChild, negotiateManifest } from './manifest-negotiation.ts';
import { sendError, sendJson, type RegistryError } from './registry-errors.ts';
import { servedContent, type ManifestSummary, type ServedContent } from './repository-content.ts';
import { buildServedCatalog, findRepository, folderRepositoryName, isRepositoryName, TAG_RE, type ServedCatalog } from './served-catalog.ts';
import type { TlsMaterial } from './tls-files.ts';

export interface RegistryServerOptions {
  /** An OCI image layout folder or a folder of archive chunks (`mirror_*.tar`); detected. */
  dir: string;
  /** Address to listen on. Default `127.0.0.1`. */
  host?: string;
  /** TCP port; `0` (the default) lets the system pick a free one. */
  port?: number;
  /**
   * The repository of the folder's bare-tag names (`1.0`, as skopeo and buildah write them) and
   * unnamed entries. Default: the folder's name, made into a repository name.
   */
  repository?: string;
  /** Serve HTTPS with this certificate and key (`loadTlsFiles`). Default plain HTTP. */
  tls?: TlsMaterial;
  /** Require HTTP basic authentication on every request (`loadHtpasswd`). */
  authenticator?: BasicAuthenticator;
  /** Component logger; silent when omitted. */
  logger?: Logger;
  /** Aborts start-up (opening and indexing the folder, binding the port). */
  signal?: AbortSignal;
}

export interface RunningRegistryServer {
  /** `http://HOST:PORT`, or `https://` with TLS. */
  url: string;
  host: string;
  port: number;
  /** What is being served. */
  folder: ImageFolder;
  /** The repositories `_catalog` lists, sorted. */
  repositories: string[];
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
}

/** Any digest the distribution spec's grammar allows; only sha256 ones can be held here. */
const ANY_DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
/** Digests of algorithms distribution knows besides sha256: well formed, so simply not held. */
const OTHER_KNOWN_DIGEST_RE = /^(?:sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$/;
/** `_catalog` pages as distribution's defaults: 100 names unless `n` asks for more, at most 1000. */
const CATALOG_PAGE = { defaultSize: 100, maxSize: 1000 };

interface ServeContext {
  folder: ImageFolder;
  catalog: ServedCatalog;
  content: ServedContent;
  authenticator: BasicAuthenticator | undefined;
  logger: Logger;
}

/** Starts the read-only registry; resolves once it listens. */
export async function startRegistryServer(options: RegistryServerOptions): Promise<RunningRegistryServer> {
  const { signal } = options;
  const logger = options.logger ?? silentLogger();
  const host = options.host ?? '127.0.0.1';
  throwIfAborted(signal);
  const folder = await openImageFolder(options.dir, signal === undefined ? {} : { signal });
  const folderRepository = folderRepositoryName(folder.dir, options.repository);
  const catalog = buildServedCatalog({
    images: await folder.images(),
    runImages: (await readRunMetadata(folder, logger))?.images ?? [],
    folderRepository,
    logger,
  });
  throwIfAborted(signal);
  const context: ServeContext = { folder, catalog, content: servedContent(folder, catalog, logger), authenticator: options.authenticator, logger };

  const onRequest = (request: IncomingMessage, response: ServerResponse): void => {
    handleRequest(context, request, response).catch((error: unknown) => {
      logger.error({ err: describeError(error), code: errorCode(error), method: request.method, url: request.url }, 'request failed');
      if (response.headersSent) response.destroy();
      else if (errorCode(error) === 'MM_ARCHIVE_INVALID') {
        // The folder holds this digest only as something it refuses to read (a symbolic link, not a
        // regular file): for the client it is not there, and the answer names no path of this host.
        const manifest = /\/manifests\//.test(request.url ?? '');
        sendError(response, request.method === 'HEAD', {
          code: manifest ? 'MANIFEST_UNKNOWN' : 'BLOB_UNKNOWN',
          message: 'not held here in a form this registry serves',
        });
      } else sendError(response, request.method === 'HEAD', { code: 'UNKNOWN', message: describeError(error) });
    });
  };
  const server = options.tls === undefined ? createHttpServer(onRequest) : createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, onRequest);
  await listen(server, host, options.port ?? 0);
  const { port } = server.address() as AddressInfo;
  const scheme = options.tls === undefined ? 'http' : 'https';
  const url = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const repositories = [...catalog.repositories.keys()].sort();
  if (options.authenticator !== undefined && options.tls === undefined) {
    logger.warn({ url }, 'basic authentication without TLS: passwords cross the network in clear text');
  }
  logger.info(
    {
      url,
      dir: folder.dir,
      kind: folder.kind,
      repositories: repositories.length,
      tls: options.tls !== undefined,
      basicAuthentication: options.authenticator !== undefined,
    },
    `serving ${folder.kind === 'archive' ? 'an archive' : 'an OCI layout'} read-only`,
  );

  let closing: Promise<void> | undefined;
  return {
    url,
    host,
    port,
    folder,
    repositories,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/**
 * An archive's run.json, or an extracted archive's: names the images' roles and target names. A
 * layout's broken run.json is reported and left aside; the images are still served by their names.
 */
async function readRunMetadata(folder: OciLayoutReader | ArchiveReader, logger: Logger): Promise<RunMetadata | undefined> {
  if (folder.kind === 'archive') return await folder.runMetadata();
  try {
    return await folder.runMetadata();
  } catch (error) {
    logger.warn({ err: describeError(error) }, 'the layout has a meshmirror/run.json that cannot be read; images are served by their index.json names alone');
    return undefined;
  }
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

async function handleRequest(context: ServeContext, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const started = Date.now();
  response.on('finish', () => {
    // Method, path and status only: never a header (Authorization) or a body.
    context.logger.debug({ method: request.method, url: request.url, status: response.statusCode, ms: Date.now() - started }, 'request');
  });
  response.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
  const head = request.method === 'HEAD';
  if (context.authenticator !== undefined && (await context.authenticator.authenticate(request.headers.authorization)) === undefined) {
    request.resume();
    response.setHeader('WWW-Authenticate', `Basic realm="${context.authenticator.realm}"`);
    return sendError(response, head, { code: 'UNAUTHORIZED', message: 'authentication required', detail: null });
  }
  if (request.method !== 'GET' && !head) {
    request.resume();
    response.setHeader('Allow', 'GET, HEAD');
    return sendError(response, false, { code: 'UNSUPPORTED', message: 'this registry is read-only' });
  }
  const url = new URL(request.url ?? '/', 'http://registry.invalid');
  const path = url.pathname;
  if (path === '/v2/' || path === '/v2') return sendJson(response, head, 200, {});
  if (path === '/v2/_catalog') {
    const page = paginate([...context.catalog.repositories.keys()].sort(), url.searchParams, CATALOG_PAGE);
    return sendPage(response, head, page, '/v2/_catalog', (items) => ({ repositories: items }));
  }
  const route = /^\/v2\/(.+)\/(tags\/list|manifests\/[^/]+|blobs\/[^/]+|referrers\/[^/]+)$/.exec(path);
  const rawName = route?.[1];
  const rest = route?.[2];
  if (rawName === undefined || rest === undefined) {
    return sendError(response, head, { code: 'UNSUPPORTED', message: `no such endpoint: ${path}`, status: 404 });
  }
  const name = decodeSegment(rawName);
  if (name === undefined || !isRepositoryName(name))
    return sendError(response, head, { code: 'NAME_INVALID', message: 'invalid repository name', detail: { name: rawName } });
  if (rest === 'tags/list') return serveTags(context, name, url, head, response);
  const slash = rest.indexOf('/');
  const reference = decodeSegment(rest.slice(slash + 1)) ?? '';
  const kind = rest.slice(0, slash);
  if (kind === 'manifests') return await serveManifest(context, name, reference, request, response);
  if (kind === 'blobs') return await serveBlob(context, name, reference, request, response);
  return await serveReferrers(context, name, reference, url, head, response);
}

function serveTags(context: ServeContext, name: string, url: URL, head: boolean, response: ServerResponse): void {
  const repository = findRepository(context.catalog, name);
  if (repository === undefined) return sendError(response, head, { code: 'NAME_UNKNOWN', message: 'repository name not known to registry', detail: { name } });
  const page = paginate([...repository.tags.keys()].sort(), url.searchParams);
  sendPage(response, head, page, `/v2/${name}/tags/list`, (items) => ({ name, tags: items }));
}

function sendPage(response: ServerResponse, head: boolean, page: Page, path: string, body: (items: string[]) => unknown): void {
  if ('invalid' in page) {
    return sendError(response, head, { code: 'PAGINATION_NUMBER_INVALID', message: 'invalid number of results requested', detail: { n: page.invalid } });
  }
  if (page.next !== undefined) response.setHeader('Link', `<${path}?${page.next}>; rel="next"`);
  sendJson(response, head, 200, body(page.items));
}

async function serveManifest(context: ServeContext, name: string, reference: string, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const head = request.method === 'HEAD';
  const byTag = !isDigest(reference);
  // Distribution's routes take only tags and digests; anything else is simply not found.
  if (byTag && !TAG_RE.test(reference)) {
    return sendError(response, head, { code: 'MANIFEST_UNKNOWN', message: `"${reference}" is neither a tag nor a sha256 digest`, detail: { reference } });
  }
  const unknown = (): void =>
    sendError(response, head, { code: 'MANIFEST_UNKNOWN', message: 'manifest unknown', detail: byTag ? { Tag: reference } : { Name: name, Revision: reference } });
  const repository = findRepository(context.catalog, name);
  if (repository === undefined) return unknown();
  let stored: ManifestSummary | undefined;
  if (byTag) {
    const descriptor = repository.tags.get(reference);
    if (descriptor === undefined) return unknown();
    stored = await context.content.tagged(descriptor);
  } else {
    if (!(await context.content.contentOf(repository)).manifests.has(reference)) return unknown();
    stored = await context.content.summary(reference);
  }
  if (stored === undefined) return unknown();
  const digest = stored.digest;
  if (matchesEtag(request, digest)) {
    response.writeHead(304).end();
    return;
  }
  const accepted = acceptedMediaTypes(request.headers.accept);
  const choice = negotiateManifest(stored, accepted, byTag);
  let served: ManifestSummary | undefined = stored;
  if (choice.kind === 'refused') return sendError(response, head, choice.error);
  if (choice.kind === 'platform-child') {
    served = await context.content.summary(choice.digest);
    if (served === undefined)
      return sendError(response, head, { code: 'MANIFEST_UNKNOWN', message: `the linux/amd64 manifest ${choice.digest} of the list is not held` });
    const refused = negotiateListChild(served.mediaType, accepted);
    if (refused !== undefined) return sendError(response, head, refused);
    context.logger.debug({ list: digest, manifest: served.digest }, 'manifest list answered with its linux/amd64 manifest for a client that does not accept lists');
  }
  const headers = { 'Content-Type': served.mediaType, 'Content-Length': String(served.size), 'Docker-Content-Digest': served.digest, ETag: `"${served.digest}"` };
  if (head) {
    response.writeHead(200, headers).end();
    return;
  }
  // Read whole (and checked against its digest) before the first byte goes out: a manifest is small.
  const bytes = await context.content.bytesOf(served);
  response.writeHead(200, headers).end(bytes);
}

/** Distribution's check: an `If-None-Match` naming the digest, quoted or not. */
function matchesEtag(request: IncomingMessage, digest: Digest): boolean {
  const header = request.headers['if-none-match'];
  if (header === undefined) return false;
  return header.split(',').some((value) => {
    const tag = value.trim();
    return tag === digest || tag === `"${digest}"`;
  });
}

/**
 * The referrers API: an image index of this repository's manifests whose `subject` is `reference`,
 * optionally filtered by artifact type. A subject with no referrers, or a repository not served
 * here, answers an empty list, never 404: the spec reserves 404 for registries without the API, and
 * clients would then fall back to the `sha256-<hex>` tag schema.
 */
async function serveReferrers(context: ServeContext, name: string, reference: string, url: URL, head: boolean, response: ServerResponse): Promise<void> {
  if (!ANY_DIGEST_RE.test(reference) || (reference.startsWith('sha256:') && !isDigest(reference))) {
    return sendError(response, head, { code: 'DIGEST_INVALID', message: `"${reference}" is not a digest`, detail: { digest: reference } });
  }
  const repository = findRepository(context.catalog, name);
  let manifests: Descriptor[] = [];
  if (repository !== undefined) {
    const content = await context.content.contentOf(repository);
    for (const manifest of content.manifests.values()) {
      if (manifest.referrer?.subject === reference) manifests.push(manifest.referrer.descriptor);
    }
    manifests.sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  }
  const artifactType = url.searchParams.get('artifactType') ?? '';
  if (artifactType !== '') {
    manifests = manifests.filter((descriptor) => descriptor.artifactType === artifactType);
    response.setHeader('OCI-Filters-Applied', 'artifactType');
  }
  sendJson(response, head, 200, { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }, MediaType.OciIndex);
}

/**
 * A blob reference that is not a sha256 digest: 400 DIGEST_INVALID for a malformed sha256 digest or
 * an algorithm distribution does not know, 404 for a well-formed sha384/sha512 one (not held here)
 * and for anything that is no digest at all (distribution's routes do not match it).
 */
function notSha256Blob(reference: string): RegistryError {
  if (reference.startsWith('sha256:') || (ANY_DIGEST_RE.test(reference) && !OTHER_KNOWN_DIGEST_RE.test(reference))) {
    return { code: 'DIGEST_INVALID', message: `"${reference}" is not a valid digest`, detail: { digest: reference } };
  }
  return { code: 'BLOB_UNKNOWN', message: 'blob unknown to registry', detail: reference };
}

async function serveBlob(context: ServeContext, name: string, reference: string, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const head = request.method === 'HEAD';
  if (!isDigest(reference)) return sendError(response, head, notSha256Blob(reference));
  const digest = reference;
  const unknown = (): void => sendError(response, head, { code: 'BLOB_UNKNOWN', message: 'blob unknown to registry', detail: digest });
  const repository = findRepository(context.catalog, name);
  if (repository === undefined || !(await context.content.contentOf(repository)).blobs.has(digest)) return unknown();
  const size = await context.folder.blobSize(digest);
  if (size === undefined) return unknown();
  const etag = `"${digest}"`;
  response.setHeader('Accept-Ranges', 'bytes');
  response.setHeader('ETag', etag);
  response.setHeader('Docker-Content-Digest', digest);
  if (matchesEtag(request, digest)) {
    response.writeHead(304).end();
    return;
  }
  const ifRange = request.headers['if-range'];
  const rangeHeader = ifRange === undefined || ifRange === etag ? request.headers.range : undefined;
  const range = rangeHeader === undefined ? undefined : parseRange(rangeHeader, size);
  if (range === 'unsatisfiable') {
    // RFC 9110's answer; the spec has no error code for it, so no JSON body.
    response.writeHead(416, { 'Content-Range': `bytes */${size}`, 'Content-Length': '0' }).end();
    return;
  }
  const headers: Record<string, string> = {
    'Content-Type': 'application/octet-stream',
    'Content-Length': String(range === undefined ? size : range.end - range.start + 1),
  };
  if (range !== undefined) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`;
  const status = range === undefined ? 200 : 206;
  if (head) {
    response.writeHead(status, headers).end();
    return;
  }
  await streamBlob(context, digest, range, response, status, headers);
}

/**
 * Streams a blob (or a range) into the response. Whole blobs are verified by the folder reader as
 * they stream; on a mismatch the connection is cut before the last bytes, so the client sees a
 * short body rather than a complete wrong one.
 */
async function streamBlob(
  context: ServeContext,
  digest: Digest,
  range: { start: number; end: number } | undefined,
  response: ServerResponse,
  status: number,
  headers: Record<string, string>,
): Promise<void> {
  const { logger } = context;
  let body: Readable;
  try {
    body = await context.folder.openBlob(digest, range ?? {});
  } catch (error) {
    if (errorCode(error) === 'MM_NOT_FOUND') return sendError(response, false, { code: 'BLOB_UNKNOWN', message: 'blob unknown to registry', detail: digest });
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
      return sendError(response, false, { code: 'UNKNOWN', message: `blob ${digest} cannot be served: ${describeError(error)}` });
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

function decodeSegment(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}
