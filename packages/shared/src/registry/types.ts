import type { Readable } from 'node:stream';
import type { Digest } from '../oci/digest.ts';
import type { Descriptor } from '../oci/manifest.ts';

/** Where a blob can be fetched upstream: a registry host and a repository in it. */
export interface RepositoryLocation {
  registry: string;
  repository: string;
}

export interface AbortOptions {
  signal?: AbortSignal | undefined;
}

export interface FetchedManifest {
  bytes: Uint8Array;
  mediaType: string;
  /** sha256 of `bytes`; checked against the requested digest when the request named one. */
  digest: Digest;
}

/**
 * The manifests that refer to a subject: from the referrers API (`api`), from the referrers tag
 * schema's index when the registry has no API (`tag`), or none at all (`none`: no API and no tag).
 */
export interface Referrers {
  via: 'api' | 'tag' | 'none';
  manifests: Descriptor[];
}

/** One attempt at a byte range of a blob. The body must be consumed or destroyed. */
export interface BlobRangeResponse {
  /** The offset of the first body byte: the requested offset on a 206, 0 when the server ignored Range (200). */
  start: number;
  /** True when the server answered 206 with a Content-Range that starts at the requested offset. */
  rangeHonoured: boolean;
  /** The blob's total size when the server said (Content-Range total or Content-Length of a 200). */
  totalSize: number | undefined;
  /** Strong ETag when the server sent one (resumes compare it). */
  etag: string | undefined;
  /** The body. Errors: `StallError` when no bytes came for the stall timeout; `MM_TRUNCATED` on early EOF. */
  body: Readable;
}

export interface BlobRangeRequest extends AbortOptions {
  /** First byte wanted. */
  offset: number;
  /** Last byte wanted, inclusive (`Range: bytes=offset-end`); meshmirror always sends closed ranges. */
  end: number;
  /** ETag from an earlier response for the same blob; a different strong ETag restarts the piece. */
  ifMatchEtag?: string;
}

/**
 * The registry client: the only code that speaks the distribution API to a source registry.
 * Requests that fully complete inside the client (ping, manifests, small blobs) are retried
 * inside it by the shared retry policy; `fetchBlobRange` is one attempt (after auth and redirects)
 * because only the caller knows how many bytes it committed before a failure.
 */
export interface RegistryClient {
  ping(registry: string, options?: AbortOptions): Promise<void>;
  /** GET a manifest by tag or digest; `reference` is a tag or a digest. Digest verified. */
  getManifest(location: RepositoryLocation, reference: string, options?: AbortOptions): Promise<FetchedManifest>;
  /** GET a small blob (a config) whole; digest verified; refuses bodies above `maxBytes` (default 16 MiB). */
  getBlob(location: RepositoryLocation, digest: Digest, options?: AbortOptions & { maxBytes?: number }): Promise<Uint8Array>;
  /** One ranged GET of a blob; see `BlobRangeResponse`. Follows redirects, dropping Authorization across hosts. */
  fetchBlobRange(location: RepositoryLocation, digest: Digest, request: BlobRangeRequest): Promise<BlobRangeResponse>;
  /** The manifests whose `subject` is `digest`: the referrers API, else the `sha256-<hex>` tag index. */
  getReferrers(location: RepositoryLocation, digest: Digest, options?: AbortOptions): Promise<Referrers>;
  close(): Promise<void>;
}

/** An upload session on a target registry (a blob upload in the distribution API). */
export interface UploadSession {
  /** Absolute URL from the registry's latest `Location`: where the next request of this upload goes. */
  url: string;
  /** Bytes the registry has confirmed (its `Range: 0-N` is N + 1 bytes). */
  offset: number;
  /**
   * True when the registry answered `Range: 0-0`, which distribution sends both for an empty upload
   * and for one holding a single byte: the offset is then 0 or 1, and only a new session is sure.
   */
  ambiguous?: boolean;
  /** `OCI-Chunk-Min-Length` from the POST: every PATCH but the last must carry at least this many bytes. */
  minChunkBytes?: number;
}

/** The answer to starting an upload: mounted from another repository, or a session to upload into. */
export type UploadStart = { mounted: true } | { mounted: false; session: UploadSession };

/** Bytes for one request body, streamed; `open` is called once per attempt. */
export interface UploadBody {
  length: number;
  stream: Readable;
}

/**
 * The push side of the distribution API. Requests that are safe to repeat (HEAD, POST to start an
 * upload, GET of an upload's status, manifest PUT) are retried inside by the shared policy; a PATCH
 * and the closing PUT are one attempt each, because only the uploader knows what the registry
 * confirmed before a failure.
 */
export interface RegistryPushClient {
  /** HEAD a blob: true when the repository has it. */
  blobExists(location: RepositoryLocation, digest: Digest, options?: AbortOptions): Promise<boolean>;
  /** POST an upload; with `mount`, asks for a cross-repository mount first (201 = mounted, 202 = a session instead). */
  startUpload(location: RepositoryLocation, options?: AbortOptions & { mount?: { digest: Digest; from: string } }): Promise<UploadStart>;
  /** GET an upload's status; undefined when the registry no longer knows the session (it expired or was cancelled). */
  uploadStatus(location: RepositoryLocation, url: string, options?: AbortOptions): Promise<UploadSession | undefined>;
  /** One PATCH with `Content-Range: start-end`; 202 (and 201, as ECR answers) give the next session state. */
  uploadChunk(location: RepositoryLocation, session: UploadSession, body: UploadBody, options?: AbortOptions): Promise<UploadSession>;
  /** The closing `PUT ?digest=`, with the remaining bytes as its body for a monolithic upload. */
  completeUpload(location: RepositoryLocation, session: UploadSession, digest: Digest, options?: AbortOptions & { body?: UploadBody }): Promise<void>;
  /** DELETE an upload session; best effort, never throws. */
  cancelUpload(location: RepositoryLocation, session: UploadSession): Promise<void>;
  /** HEAD a manifest: its digest when the repository has it under `reference`, else undefined. */
  manifestDigest(location: RepositoryLocation, reference: string, options?: AbortOptions): Promise<Digest | undefined>;
  /** PUT a manifest under a tag or its digest. */
  putManifest(location: RepositoryLocation, reference: string, manifest: { bytes: Uint8Array; mediaType: string }, options?: AbortOptions): Promise<void>;
  /** As the pull side's: whether the target has the referrers API, and what its tag index lists. */
  getReferrers(location: RepositoryLocation, digest: Digest, options?: AbortOptions): Promise<Referrers>;
}

/** What became of a manifest DELETE: removed now, or the registry did not have it (404). */
export type ManifestDeletion = 'deleted' | 'absent';

/**
 * The delete side of a target registry: what `meshmirror delete` needs to find what a repository
 * holds and remove manifests. Blobs are never deleted here: only the registry's garbage collector
 * knows every manifest that still needs one. Every call is safe to repeat and retried inside.
 */
export interface RegistryDeleteClient {
  /** As the pull side's: GET a manifest by tag or digest, digest verified. */
  getManifest(location: RepositoryLocation, reference: string, options?: AbortOptions): Promise<FetchedManifest>;
  /** Every tag of the repository, following `Link` pages; none when the registry does not know the repository. */
  listTags(location: RepositoryLocation, options?: AbortOptions): Promise<string[]>;
  /** As the pull side's: the manifests whose `subject` is `digest` (the referrers API, else the `sha256-<hex>` tag index). */
  getReferrers(location: RepositoryLocation, digest: Digest, options?: AbortOptions): Promise<Referrers>;
  /**
   * `DELETE /v2/<name>/manifests/<digest>`: the manifest goes, and with it every tag that points at
   * it (an index's children stay: they are manifests of their own). `absent` on a 404.
   */
  deleteManifest(location: RepositoryLocation, digest: Digest, options?: AbortOptions): Promise<ManifestDeletion>;
}
