/**
 * The registry client (distribution API, pull side) on undici. What it promises: no total deadline
 * on anything that is moving (connect, header and stall timeouts only); retries of whole requests
 * by the shared policy with per-host backoff; digests verified; credentials only ever sent to the
 * registry's own origin and never logged.
 */
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { DigestMismatchError, MeshmirrorError, redactUrl, RegistryError, throwIfAborted } from '../errors.ts';
import { silentLogger } from '../logging.ts';
import { isDigest, sha256Digest, type Digest } from '../oci/digest.ts';
import { isIndexMediaType, isManifestMediaType, MANIFEST_ACCEPT, MediaType } from '../oci/media-types.ts';
import { imageIndexSchema, type Descriptor } from '../oci/manifest.ts';
import { registryApiHost } from '../oci/reference.ts';
import { referrersTag } from '../oci/referrers.ts';
import { HostBackoff } from '../retry/host-backoff.ts';
import { isRetryable, type RetryPolicy } from '../retry/policy.ts';
import { withRetries } from '../retry/retry-loop.ts';
import { raceAbort } from './abortable.ts';
import { RegistryAuth, type RepositoryAccess } from './auth.ts';
import type { CredentialStore } from './credentials.ts';
import {
  abandonBody,
  contentLength,
  discardBody,
  guardBody,
  headerValue,
  HttpTransport,
  readBodyCapped,
  registryErrorFromResponse,
  type HttpMethod,
  type HttpResponse,
} from './http.ts';
import type {
  AbortOptions,
  BlobRangeRequest,
  BlobRangeResponse,
  FetchedManifest,
  ManifestDeletion,
  Referrers,
  RegistryClient,
  RegistryDeleteClient,
  RegistryPushClient,
  RepositoryLocation,
  UploadBody,
  UploadSession,
  UploadStart,
} from './types.ts';

export interface RegistryClientOptions {
  /** Where credentials come from (`loadCredentialStore`). */
  credentials: CredentialStore;
  /**
   * true: HTTPS with trusted certificates only. false: self-signed certificates are accepted and a
   * registry that does not speak TLS is reached over plain HTTP (containers/image's tls-verify=false).
   */
  tlsVerify: boolean;
  /** Time to establish a connection. */
  connectTimeoutMs: number;
  /** Time from request to response headers. */
  headersTimeoutMs: number;
  /** Longest silence while a body flows before `StallError`. There is no total timeout anywhere. */
  stallTimeoutMs: number;
  /** Retries of requests the client completes itself (ping, manifests, small blobs). */
  retry: RetryPolicy;
  /**
   * Backoff state, keyed by registry name (`docker.io`, `quay.io`); pass the fetcher's instance so
   * both see one host's trouble. Default: one of the client's own.
   */
  backoff?: HostBackoff;
  logger?: Logger;
  /** Default `meshmirror`. */
  userAgent?: string;
  /** Parallel connections per origin; default 16. */
  maxConnectionsPerHost?: number;
  /** Largest manifest accepted; default 4 MiB (distribution's own limit). */
  maxManifestBytes?: number;
}

export const DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
export const DEFAULT_MAX_SMALL_BLOB_BYTES = 16 * 1024 * 1024;

type Scheme = 'https' | 'http';

const TAG_RE = /^[\w][\w.-]{0,127}$/;

/** The `RegistryClient` interface plus the push (`RegistryPushClient`) and delete (`RegistryDeleteClient`) sides of a live registry. */
export interface HttpRegistryClient extends RegistryClient, RegistryPushClient, RegistryDeleteClient {}

export function createRegistryClient(options: RegistryClientOptions): HttpRegistryClient {
  return new UndiciRegistryClient(options);
}

class UndiciRegistryClient implements HttpRegistryClient {
  readonly #options: RegistryClientOptions;
  readonly #logger: Logger;
  readonly #transport: HttpTransport;
  readonly #auth: RegistryAuth;
  readonly #backoff: HostBackoff;
  /** Scheme per API host, found by `/v2/` pings; a failed probe is forgotten so the next call probes again. */
  readonly #schemes = new Map<string, Promise<Scheme>>();
  /** Registries that answered the referrers path as having no referrers API. */
  readonly #noReferrersApi = new Set<string>();
  #closed = false;

  constructor(options: RegistryClientOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger();
    this.#transport = new HttpTransport({
      tlsVerify: options.tlsVerify,
      connectTimeoutMs: options.connectTimeoutMs,
      headersTimeoutMs: options.headersTimeoutMs,
      stallTimeoutMs: options.stallTimeoutMs,
      logger: this.#logger,
      ...(options.userAgent === undefined ? {} : { userAgent: options.userAgent }),
      ...(options.maxConnectionsPerHost === undefined ? {} : { maxConnectionsPerHost: options.maxConnectionsPerHost }),
    });
    this.#auth = new RegistryAuth({ credentials: options.credentials, transport: this.#transport, logger: this.#logger });
    this.#backoff = options.backoff ?? new HostBackoff(options.retry);
  }

  async ping(registry: string, options: AbortOptions = {}): Promise<void> {
    await withRetries(
      async () => {
        this.#schemes.delete(registryApiHost(registry));
        await this.#scheme(registry, options.signal);
      },
      this.#retryOptions(registry, `ping ${registry}`, options.signal),
    );
  }

  async getManifest(location: RepositoryLocation, reference: string, options: AbortOptions = {}): Promise<FetchedManifest> {
    const { signal } = options;
    if (!isDigest(reference) && !TAG_RE.test(reference)) {
      throw new MeshmirrorError('MM_REFERENCE_INVALID', `"${reference}" is neither a tag nor a sha256 digest`);
    }
    const separator = isDigest(reference) ? '@' : ':';
    const what = `manifest ${location.registry}/${location.repository}${separator}${reference}`;
    const host = location.registry;
    const fetchOnce = async (): Promise<FetchedManifest> => {
      const response = await this.#send(location, {
        method: 'GET',
        path: `/v2/${location.repository}/manifests/${reference}`,
        headers: { accept: MANIFEST_ACCEPT },
        what: `GET ${what}`,
        ...(signal === undefined ? {} : { signal }),
      });
      if (response.status !== 200) throw await registryErrorFromResponse(response, `GET ${what}`, deniedHint(response, location));
      const bytes = await readBodyCapped(response, {
        maxBytes: this.#options.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES,
        what: `GET ${what}`,
        tooLargeCode: 'MM_MANIFEST_INVALID',
        stallTimeoutMs: this.#options.stallTimeoutMs,
        ...(signal === undefined ? {} : { signal }),
      });
      const digest = sha256Digest(bytes);
      if (isDigest(reference) && digest !== reference) throw new DigestMismatchError(reference, digest, what);
      const announced = headerValue(response.headers, 'docker-content-digest');
      if (announced !== undefined && isDigest(announced) && announced !== digest) {
        throw new DigestMismatchError(announced, digest, `${what} (Docker-Content-Digest)`);
      }
      return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), mediaType: manifestMediaType(response, bytes), digest };
    };
    return await withRetries(() => this.#verifiedTwice(fetchOnce, what), this.#retryOptions(host, `GET ${what}`, signal));
  }

  async getBlob(location: RepositoryLocation, digest: Digest, options: AbortOptions & { maxBytes?: number } = {}): Promise<Uint8Array> {
    const { signal } = options;
    const what = `blob ${digest} in ${location.registry}/${location.repository}`;
    const host = location.registry;
    const maxBytes = options.maxBytes ?? DEFAULT_MAX_SMALL_BLOB_BYTES;
    const fetchOnce = async (): Promise<Uint8Array> => {
      const response = await this.#send(location, {
        method: 'GET',
        path: `/v2/${location.repository}/blobs/${digest}`,
        what: `GET ${what}`,
        ...(signal === undefined ? {} : { signal }),
      });
      if (response.status !== 200) throw await registryErrorFromResponse(response, `GET ${what}`, deniedHint(response, location));
      const bytes = await readBodyCapped(response, {
        maxBytes,
        what: `GET ${what}`,
        tooLargeCode: 'MM_SIZE_MISMATCH',
        stallTimeoutMs: this.#options.stallTimeoutMs,
        ...(signal === undefined ? {} : { signal }),
      });
      const actual = sha256Digest(bytes);
      if (actual !== digest) throw new DigestMismatchError(digest, actual, what);
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    };
    return await withRetries(() => this.#verifiedTwice(fetchOnce, what), this.#retryOptions(host, `GET ${what}`, signal));
  }

  async blobExists(location: RepositoryLocation, digest: Digest, options: AbortOptions = {}): Promise<boolean> {
    const { signal } = options;
    const what = `blob ${digest} in ${location.registry}/${location.repository}`;
    const host = location.registry;
    return await withRetries(
      async () => {
        const response = await this.#send(location, {
          method: 'HEAD',
          path: `/v2/${location.repository}/blobs/${digest}`,
          what: `HEAD ${what}`,
          ...(signal === undefined ? {} : { signal }),
        });
        await discardBody(response.body);
        if (response.status === 200) return true;
        if (response.status === 404) return false;
        throw await registryErrorFromResponse(response, `HEAD ${what}`);
      },
      this.#retryOptions(host, `HEAD ${what}`, signal),
    );
  }

  async fetchBlobRange(location: RepositoryLocation, digest: Digest, request: BlobRangeRequest): Promise<BlobRangeResponse> {
    const { offset, end, signal } = request;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(end) || offset < 0 || end < offset) {
      throw new MeshmirrorError('MM_USAGE', `invalid byte range ${offset}-${end} for ${digest}`);
    }
    const what = `blob ${digest} bytes ${offset}-${end} in ${location.registry}/${location.repository}`;
    const headers: Record<string, string> = { range: `bytes=${offset}-${end}` };
    // If-Range turns "the blob changed under us" into a 200 on servers that support it; the caller
    // then starts the piece over. (Content is addressed by digest, so this is belt and braces.)
    if (request.ifMatchEtag !== undefined && isStrongEtag(request.ifMatchEtag)) headers['if-range'] = request.ifMatchEtag;

    // One attempt: the caller waits for the host's turn and records what it met, so the host's
    // backoff sees each attempt once.
    const response = await this.#send(location, {
      method: 'GET',
      path: `/v2/${location.repository}/blobs/${digest}`,
      headers,
      what: `GET ${what}`,
      ...(signal === undefined ? {} : { signal }),
    });
    if (response.status !== 206 && response.status !== 200) {
      throw await registryErrorFromResponse(response, `GET ${what}`, deniedHint(response, location));
    }

    const etagHeader = headerValue(response.headers, 'etag');
    const etag = etagHeader !== undefined && isStrongEtag(etagHeader) ? etagHeader : undefined;
    const bodyOptions = {
      url: response.url,
      stallTimeoutMs: this.#options.stallTimeoutMs,
      ...(signal === undefined ? {} : { signal }),
    };
    const declared = contentLength(response.headers);

    if (response.status === 200) {
      this.#logger.debug({ host: response.url.host, digest, offset }, 'server ignored Range and sent the whole blob');
      return {
        start: 0,
        rangeHonoured: false,
        totalSize: declared,
        etag,
        body: guardBody(response.body, { ...bodyOptions, expectedBytes: declared }),
      };
    }

    const range = parseContentRange(headerValue(response.headers, 'content-range'));
    if (range === undefined || range.start !== offset) {
      abandonBody(response.body);
      const got = range === undefined ? 'no usable Content-Range' : `Content-Range starting at ${range.start}`;
      throw new RegistryError(`GET ${what}: 206 with ${got}, not the requested offset ${offset}; the range will be requested again`, {
        status: 206,
        url: redactUrl(response.url.toString()),
        data: { retryable: true, requestedOffset: offset, ...(range === undefined ? {} : { servedOffset: range.start }) },
      });
    }
    return {
      start: range.start,
      rangeHonoured: true,
      totalSize: range.total,
      etag,
      body: guardBody(response.body, { ...bodyOptions, expectedBytes: declared ?? range.end - range.start + 1 }),
    };
  }

  async startUpload(location: RepositoryLocation, options: AbortOptions & { mount?: { digest: Digest; from: string } } = {}): Promise<UploadStart> {
    const { signal, mount } = options;
    const path = `/v2/${location.repository}/blobs/uploads/`;
    const query = mount === undefined ? '' : `?mount=${encodeURIComponent(mount.digest)}&from=${encodeURIComponent(mount.from)}`;
    const what =
      mount === undefined
        ? `POST upload to ${location.registry}/${location.repository}`
        : `POST mount of ${mount.digest} from ${mount.from} into ${location.registry}/${location.repository}`;
    return await withRetries(
      async () => {
        const response = await this.#send(location, {
          method: 'POST',
          path: `${path}${query}`,
          headers: { 'content-length': '0' },
          body: '',
          what,
          access: { push: true, ...(mount === undefined ? {} : { mountFrom: mount.from }) },
          ...(signal === undefined ? {} : { signal }),
        });
        if (response.status === 201 && mount !== undefined) {
          await discardBody(response.body);
          return { mounted: true as const };
        }
        if (response.status !== 202) throw await registryErrorFromResponse(response, what, deniedHint(response, location));
        await discardBody(response.body);
        const minChunk = Number(headerValue(response.headers, 'oci-chunk-min-length'));
        return {
          mounted: false as const,
          session: {
            url: this.#uploadUrl(response, what),
            offset: 0,
            ...(Number.isSafeInteger(minChunk) && minChunk > 0 ? { minChunkBytes: minChunk } : {}),
          },
        };
      },
      this.#retryOptions(location.registry, what, signal),
    );
  }

  async uploadStatus(location: RepositoryLocation, url: string, options: AbortOptions = {}): Promise<UploadSession | undefined> {
    const { signal } = options;
    const what = `GET upload status in ${location.registry}/${location.repository}`;
    return await withRetries(
      async () => {
        const response = await this.#send(location, {
          method: 'GET',
          url: new URL(url),
          what,
          access: { push: true },
          ...(signal === undefined ? {} : { signal }),
        });
        if (response.status === 404 || response.status === 400) {
          // BLOB_UPLOAD_UNKNOWN (expired, committed or cancelled) and distribution's
          // BLOB_UPLOAD_INVALID (it cancels an upload whose stored size disagrees with its state).
          await discardBody(response.body);
          return undefined;
        }
        if (response.status !== 204 && response.status !== 200) throw await registryErrorFromResponse(response, what);
        await discardBody(response.body);
        return { url: this.#uploadUrl(response, what), ...uploadRange(response, what, 0) };
      },
      this.#retryOptions(location.registry, what, signal),
    );
  }

  async uploadChunk(location: RepositoryLocation, session: UploadSession, body: UploadBody, options: AbortOptions = {}): Promise<UploadSession> {
    const { signal } = options;
    const end = session.offset + body.length - 1;
    const what = `PATCH bytes ${session.offset}-${end} to ${location.registry}/${location.repository}`;
    const response = await this.#send(location, {
      method: 'PATCH',
      url: new URL(session.url),
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': String(body.length),
        // The distribution spec's form: no `bytes ` prefix.
        'content-range': `${session.offset}-${end}`,
      },
      body: body.stream,
      what,
      access: { push: true },
      ...(signal === undefined ? {} : { signal }),
    });
    // 202 is the spec's answer; ECR answers 201 and means the same.
    if (response.status !== 202 && response.status !== 201) {
      const error = await registryErrorFromResponse(response, what);
      // 416: the registry holds a different offset than we sent from; the caller asks it which.
      if (response.status === 416) error.data['retryable'] = true;
      throw error;
    }
    await discardBody(response.body);
    const next: UploadSession = {
      url: this.#uploadUrl(response, what),
      ...uploadRange(response, what, end + 1),
      ...(session.minChunkBytes === undefined ? {} : { minChunkBytes: session.minChunkBytes }),
    };
    // After a PATCH of the first byte, `0-0` is that byte, not a doubt.
    if (next.ambiguous === true && end === 0) return { ...next, offset: 1, ambiguous: false };
    return next;
  }

  async completeUpload(location: RepositoryLocation, session: UploadSession, digest: Digest, options: AbortOptions & { body?: UploadBody } = {}): Promise<void> {
    const { signal, body } = options;
    const url = new URL(session.url);
    url.searchParams.set('digest', digest);
    const what = `PUT ${digest} (closing the upload) to ${location.registry}/${location.repository}`;
    const response = await this.#send(location, {
      method: 'PUT',
      url,
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': String(body?.length ?? 0),
        ...(body === undefined || body.length === 0 ? {} : { 'content-range': `${session.offset}-${session.offset + body.length - 1}` }),
      },
      body: body?.stream ?? '',
      what,
      access: { push: true },
      ...(signal === undefined ? {} : { signal }),
    });
    if (response.status !== 201 && response.status !== 204) throw await registryErrorFromResponse(response, what);
    await discardBody(response.body);
  }

  async cancelUpload(location: RepositoryLocation, session: UploadSession): Promise<void> {
    try {
      const response = await this.#send(location, {
        method: 'DELETE',
        url: new URL(session.url),
        what: `DELETE upload in ${location.registry}/${location.repository}`,
        access: { push: true },
        signal: AbortSignal.timeout(this.#options.headersTimeoutMs),
      });
      await discardBody(response.body);
    } catch (error) {
      this.#logger.debug({ registry: location.registry, error: describe(error) }, 'could not cancel an upload session');
    }
  }

  async manifestDigest(location: RepositoryLocation, reference: string, options: AbortOptions = {}): Promise<Digest | undefined> {
    const { signal } = options;
    const what = `HEAD manifest ${location.registry}/${location.repository}${isDigest(reference) ? '@' : ':'}${reference}`;
    return await withRetries(
      async () => {
        const response = await this.#send(location, {
          method: 'HEAD',
          path: `/v2/${location.repository}/manifests/${reference}`,
          headers: { accept: MANIFEST_ACCEPT },
          what,
          access: { push: true },
          ...(signal === undefined ? {} : { signal }),
        });
        await discardBody(response.body);
        if (response.status === 404) return undefined;
        if (response.status !== 200) throw await registryErrorFromResponse(response, what);
        const announced = headerValue(response.headers, 'docker-content-digest');
        if (announced !== undefined && isDigest(announced)) return announced;
        return isDigest(reference) ? reference : undefined;
      },
      this.#retryOptions(location.registry, what, signal),
    );
  }

  async getReferrers(location: RepositoryLocation, digest: Digest, options: AbortOptions = {}): Promise<Referrers> {
    const { signal } = options;
    const what = `GET referrers ${location.registry}/${location.repository}@${digest}`;
    const fromApi = this.#noReferrersApi.has(location.registry)
      ? undefined
      : await withRetries(
          async (): Promise<Referrers | undefined> => {
            const response = await this.#send(location, {
              method: 'GET',
              path: `/v2/${location.repository}/referrers/${digest}`,
              headers: { accept: MediaType.OciIndex },
              what,
              ...(signal === undefined ? {} : { signal }),
            });
            // The spec's answer from a registry without the API is 404; older ones refuse the path otherwise.
            if (REFERRERS_UNSUPPORTED.has(response.status)) {
              await discardBody(response.body);
              // The API is the registry's, not the repository's: the next subjects go straight to the tag.
              this.#noReferrersApi.add(location.registry);
              return undefined;
            }
            if (response.status !== 200) throw await registryErrorFromResponse(response, what);
            const bytes = await readBodyCapped(response, {
              maxBytes: this.#options.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES,
              what,
              tooLargeCode: 'MM_MANIFEST_INVALID',
              stallTimeoutMs: this.#options.stallTimeoutMs,
              ...(signal === undefined ? {} : { signal }),
            });
            return { via: 'api', manifests: referrersOf(bytes, what) };
          },
          this.#retryOptions(location.registry, what, signal),
        );
    if (fromApi !== undefined) return fromApi;
    try {
      const index = await this.getManifest(location, referrersTag(digest), options);
      return { via: 'tag', manifests: referrersOf(index.bytes, `${what} (tag ${referrersTag(digest)})`) };
    } catch (error) {
      if (error instanceof RegistryError && error.status === 404) return { via: 'none', manifests: [] };
      throw error;
    }
  }

  async putManifest(location: RepositoryLocation, reference: string, manifest: { bytes: Uint8Array; mediaType: string }, options: AbortOptions = {}): Promise<void> {
    const { signal } = options;
    if (!isDigest(reference) && !TAG_RE.test(reference)) {
      throw new MeshmirrorError('MM_REFERENCE_INVALID', `"${reference}" is neither a tag nor a sha256 digest`);
    }
    const what = `PUT manifest ${location.registry}/${location.repository}${isDigest(reference) ? '@' : ':'}${reference}`;
    await withRetries(
      async () => {
        const response = await this.#send(location, {
          method: 'PUT',
          path: `/v2/${location.repository}/manifests/${reference}`,
          headers: { 'content-type': manifest.mediaType, 'content-length': String(manifest.bytes.byteLength) },
          body: manifest.bytes,
          what,
          access: { push: true },
          ...(signal === undefined ? {} : { signal }),
        });
        if (response.status !== 201 && response.status !== 200 && response.status !== 202) {
          throw await registryErrorFromResponse(response, what, deniedHint(response, location));
        }
        await discardBody(response.body);
      },
      this.#retryOptions(location.registry, what, signal),
    );
  }

  async listTags(location: RepositoryLocation, options: AbortOptions = {}): Promise<string[]> {
    const { signal } = options;
    const tags: string[] = [];
    let path: string | undefined = `/v2/${location.repository}/tags/list?n=${TAGS_PAGE}`;
    for (let page = 0; path !== undefined; page++) {
      if (page >= MAX_TAG_PAGES) throw new MeshmirrorError('MM_REGISTRY', `GET tags of ${location.registry}/${location.repository}: more than ${MAX_TAG_PAGES} pages`);
      const what = `GET tags ${location.registry}/${location.repository}${page === 0 ? '' : ` (page ${page + 1})`}`;
      const current: string = path;
      const answer = await withRetries(
        async (): Promise<{ tags: string[]; next: string | undefined }> => {
          const response = await this.#send(location, {
            method: 'GET',
            path: current,
            headers: { accept: 'application/json' },
            what,
            ...(signal === undefined ? {} : { signal }),
          });
          // A repository the registry never heard of has no tags (distribution: 404 NAME_UNKNOWN).
          if (response.status === 404) {
            await discardBody(response.body);
            return { tags: [], next: undefined };
          }
          if (response.status !== 200) throw await registryErrorFromResponse(response, what, deniedHint(response, location));
          const bytes = await readBodyCapped(response, {
            maxBytes: this.#options.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES,
            what,
            tooLargeCode: 'MM_MANIFEST_INVALID',
            stallTimeoutMs: this.#options.stallTimeoutMs,
            ...(signal === undefined ? {} : { signal }),
          });
          return { tags: tagsOf(bytes, what), next: nextPagePath(headerValue(response.headers, 'link'), response.url) };
        },
        this.#retryOptions(location.registry, what, signal),
      );
      tags.push(...answer.tags);
      path = answer.next;
    }
    return [...new Set(tags)];
  }

  async deleteManifest(location: RepositoryLocation, digest: Digest, options: AbortOptions = {}): Promise<ManifestDeletion> {
    const { signal } = options;
    // A tag here would be a bug: some registries delete a tag's manifest, others only the tag.
    if (!isDigest(digest)) throw new MeshmirrorError('MM_REFERENCE_INVALID', `"${String(digest)}" is not a sha256 digest: manifests are deleted by digest`);
    const what = `DELETE manifest ${location.registry}/${location.repository}@${digest}`;
    return await withRetries(
      async (): Promise<ManifestDeletion> => {
        const response = await this.#send(location, {
          method: 'DELETE',
          path: `/v2/${location.repository}/manifests/${digest}`,
          headers: { accept: MANIFEST_ACCEPT },
          what,
          access: { push: true, delete: true },
          ...(signal === undefined ? {} : { signal }),
        });
        // 202 is the distribution spec's answer; a few registries answer 200 or 204.
        if (response.status === 202 || response.status === 200 || response.status === 204) {
          await discardBody(response.body);
          return 'deleted';
        }
        // Gone already (MANIFEST_UNKNOWN), or the whole repository is (NAME_UNKNOWN): what a delete wants.
        if (response.status === 404) {
          await discardBody(response.body);
          return 'absent';
        }
        const hint =
          response.status === 405
            ? { hint: `${location.registry} does not allow deleting manifests (distribution: storage.delete.enabled: true)` }
            : deniedHint(response, location);
        throw await registryErrorFromResponse(response, what, hint);
      },
      this.#retryOptions(location.registry, what, signal),
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#transport.close();
  }

  /**
   * A registry that sent wrong bytes once may have been hit by a transient fault; one that sends the
   * same wrong bytes twice is wrong, and we say so instead of retrying.
   */
  async #verifiedTwice<T>(fetchOnce: () => Promise<T>, what: string): Promise<T> {
    try {
      return await fetchOnce();
    } catch (error) {
      if (!(error instanceof DigestMismatchError)) throw error;
      this.#logger.warn({ what, error: error.message }, 'digest mismatch; fetching once more');
      return await fetchOnce();
    }
  }

  /** Backoff state is keyed by registry name (`docker.io`), as the fetcher keys it, so both share it. */
  #retryOptions(registry: string, what: string, signal: AbortSignal | undefined): Parameters<typeof withRetries>[1] {
    return {
      policy: this.#options.retry,
      host: registry,
      backoff: this.#backoff,
      logger: this.#logger,
      what,
      ...(signal === undefined ? {} : { signal }),
    };
  }

  /**
   * One authenticated request to a repository: anonymous or with what the registry asked for
   * before; on a 401 learn the challenge (or drop the rejected token) and try once more. A streamed
   * body cannot be sent twice: its 401 becomes a retryable error, and the caller's next attempt
   * carries the new token.
   */
  async #send(location: RepositoryLocation, request: SendRequest): Promise<HttpResponse> {
    if (this.#closed) throw new MeshmirrorError('MM_USAGE', 'registry client is closed');
    const { registry, repository } = location;
    const { signal } = request;
    const access = request.access ?? { push: false };
    let url: URL;
    if (request.url !== undefined) {
      url = request.url;
    } else {
      const scheme = await this.#scheme(registry, signal);
      url = new URL(`${scheme}://${registryApiHost(registry)}${request.path ?? '/v2/'}`);
    }
    let authorization = await this.#auth.authorization(registry, repository, signal, access);
    for (let attempt = 1; ; attempt++) {
      throwIfAborted(signal);
      const response = await this.#transport.request({
        method: request.method,
        url,
        ...(request.headers === undefined ? {} : { headers: request.headers }),
        ...(request.body === undefined ? {} : { body: request.body }),
        ...(authorization === undefined ? {} : { authorization }),
        ...(signal === undefined ? {} : { signal }),
      });
      // A 401 from blob storage after a redirect is not the registry's challenge.
      if (response.status !== 401 || response.url.origin !== url.origin) return response;
      const retry = this.#auth.onUnauthorized(registry, repository, response.headers, authorization, access);
      if (attempt === 1 && retry && !(request.body instanceof Readable)) {
        await discardBody(response.body);
        authorization = await this.#auth.authorization(registry, repository, signal, access);
        continue;
      }
      const hint = this.#auth.hasCredentials(registry, repository)
        ? `the registry rejected the credentials for ${registry} from the auth file`
        : `${registry} requires credentials and none were found for it in the auth files (--authfile, $REGISTRY_AUTH_FILE, containers auth.json, ~/.docker/config.json)`;
      const error = await registryErrorFromResponse(response, request.what, { hint });
      // The token expired while a body was streaming: the next attempt gets a fresh one.
      if (attempt === 1 && retry) error.data['retryable'] = true;
      throw error;
    }
  }

  /** An upload URL from a `Location` header: relative ones are resolved against the request's URL. */
  #uploadUrl(response: HttpResponse, what: string): string {
    const location = headerValue(response.headers, 'location');
    if (location === undefined || location === '') {
      throw new RegistryError(`${what}: ${response.status} without a Location header`, {
        status: response.status,
        url: redactUrl(response.url.toString()),
        data: { retryable: true },
      });
    }
    return new URL(location, response.url).toString();
  }

  /** The scheme to reach a registry's API host with, found once by `GET /v2/`. */
  async #scheme(registry: string, signal: AbortSignal | undefined): Promise<Scheme> {
    const host = registryApiHost(registry);
    let probe = this.#schemes.get(host);
    if (probe === undefined) {
      // Shared by every caller and so not tied to any one caller's signal; timeouts bound it. A
      // failed probe is forgotten, so the next attempt (after the host's backoff) probes again.
      probe = this.#probe(registry, host);
      this.#schemes.set(host, probe);
      probe.catch(() => {
        if (this.#schemes.get(host) === probe) this.#schemes.delete(host);
      });
    }
    return await raceAbort(probe, signal);
  }

  async #probe(registry: string, host: string): Promise<Scheme> {
    let httpsError: unknown;
    try {
      await this.#ping(registry, new URL(`https://${host}/v2/`));
      return 'https';
    } catch (error) {
      if (this.#options.tlsVerify || error instanceof RegistryError) throw error;
      httpsError = error;
    }
    // tls-verify=false: like containers/image, a registry that fails over HTTPS is tried over HTTP.
    try {
      await this.#ping(registry, new URL(`http://${host}/v2/`));
    } catch (httpError) {
      if (httpError instanceof RegistryError) throw httpError;
      throw new MeshmirrorError('MM_NETWORK', `cannot reach registry ${host}: ${describe(httpsError)}; over plain HTTP: ${describe(httpError)}`, {
        cause: httpsError,
        data: { host, retryable: isRetryable(httpsError) || isRetryable(httpError) },
      });
    }
    this.#logger.info({ host }, 'registry does not answer HTTPS; using plain HTTP (tls-verify is off)');
    return 'http';
  }

  /** `GET /v2/`: 200 or 401 means a registry answers there; a 401 also tells how it wants auth. */
  async #ping(registry: string, url: URL): Promise<void> {
    const response = await this.#transport.request({ method: 'GET', url, maxRedirects: 3 });
    if (response.status === 200 || response.status === 401) {
      if (response.status === 401) this.#auth.rememberChallenge(registry, response.headers);
      await discardBody(response.body);
      return;
    }
    throw await registryErrorFromResponse(response, `GET ${redactUrl(url.toString())} (registry API check)`);
  }
}

function describe(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0] ?? text;
}

function deniedHint(response: HttpResponse, location: RepositoryLocation): { hint?: string } {
  if (response.status === 403) return { hint: `access to ${location.registry}/${location.repository} is denied for these credentials` };
  return {};
}

/** The manifest's media type: the registry's Content-Type when it names a manifest type, else the body's own `mediaType`. */
function manifestMediaType(response: HttpResponse, bytes: Buffer): string {
  const contentType = headerValue(response.headers, 'content-type')?.split(';')[0]?.trim() ?? '';
  const known: string[] = [MediaType.OciManifest, MediaType.OciIndex, MediaType.DockerManifest, MediaType.DockerManifestList];
  if (known.includes(contentType)) return contentType;
  try {
    const json: unknown = JSON.parse(bytes.toString('utf8'));
    if (typeof json === 'object' && json !== null && 'mediaType' in json && typeof json.mediaType === 'string') return json.mediaType;
  } catch {
    // Not JSON: the caller's parser reports that with the reference in the message.
  }
  return contentType;
}

interface SendRequest {
  method: HttpMethod;
  /** Path on the registry's API host; or `url`, an absolute URL the registry gave (an upload's Location). */
  path?: string;
  url?: URL;
  headers?: Record<string, string>;
  body?: string | Uint8Array | Readable;
  what: string;
  /** Push (and mount) requests need a token with push scope. */
  access?: RepositoryAccess;
  signal?: AbortSignal;
}

/**
 * An upload's confirmed bytes from its `Range` header (`0-N`, also seen as `bytes=0-N`), or
 * `fallback` when there is none. `0-0` is flagged: distribution sends it for 0 and for 1 byte.
 */
function uploadRange(response: HttpResponse, what: string, fallback: number): { offset: number; ambiguous?: true } {
  const value = headerValue(response.headers, 'range');
  if (value === undefined) return { offset: fallback };
  const match = /^\s*(?:bytes=)?0-(\d+)\s*$/i.exec(value);
  if (match === null) {
    throw new RegistryError(`${what}: unreadable Range header "${value}"`, {
      status: response.status,
      url: redactUrl(response.url.toString()),
      data: { retryable: false },
    });
  }
  const end = Number(match[1]);
  return end === 0 ? { offset: 0, ambiguous: true } : { offset: end + 1 };
}

/** Tags asked per page of a tags list; registries may send fewer and a `Link` to the rest. */
const TAGS_PAGE = 1000;
/** Far beyond any real repository (a million tags); a registry that links on forever is stopped. */
const MAX_TAG_PAGES = 1000;

/** The `tags` of a tags-list answer; distribution sends `null` for a repository whose tags were all deleted. */
function tagsOf(bytes: Uint8Array, what: string): string[] {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (cause) {
    throw new MeshmirrorError('MM_REGISTRY', `${what}: the answer is not JSON`, { cause });
  }
  const tags = typeof json === 'object' && json !== null && 'tags' in json ? json.tags : undefined;
  if (tags === null || tags === undefined) return [];
  if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string')) throw new MeshmirrorError('MM_REGISTRY', `${what}: "tags" is not a list of names`);
  return tags as string[];
}

/**
 * The next page of a tags list from `Link: </v2/…/tags/list?last=x&n=y>; rel="next"`, as a path on
 * the same registry (a link to another origin is not followed: credentials never leave it).
 */
function nextPagePath(link: string | undefined, base: URL): string | undefined {
  const match = link === undefined ? null : /<([^>]+)>\s*;\s*rel="?next"?/i.exec(link);
  if (match === null) return undefined;
  const next = new URL(match[1]!, base);
  return next.origin === base.origin ? `${next.pathname}${next.search}` : undefined;
}

/** Answers to the referrers path that mean the registry has no referrers API. */
const REFERRERS_UNSUPPORTED = new Set([400, 404, 405, 406, 501]);

/** The entries of a referrers index that are manifests (anything else cannot be mirrored as one). */
function referrersOf(bytes: Uint8Array, what: string): Descriptor[] {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (cause) {
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `${what}: the referrers list is not JSON`, { cause });
  }
  const parsed = imageIndexSchema.safeParse(json);
  if (!parsed.success) throw new MeshmirrorError('MM_MANIFEST_INVALID', `${what}: the referrers list is not an image index: ${parsed.error.issues[0]?.message ?? ''}`);
  return parsed.data.manifests.filter((d) => isIndexMediaType(d.mediaType) || isManifestMediaType(d.mediaType));
}

export interface ContentRange {
  start: number;
  end: number;
  /** undefined for `*`. */
  total: number | undefined;
}

/** `bytes 100-199/1000` → {start 100, end 199, total 1000}. */
export function parseContentRange(value: string | undefined): ContentRange | undefined {
  const match = value === undefined ? null : /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(value);
  if (match === null) return undefined;
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (end < start) return undefined;
  return { start, end, total: match[3] === '*' ? undefined : Number(match[3]) };
}

function isStrongEtag(etag: string): boolean {
  return !etag.startsWith('W/') && etag.startsWith('"');
}
