import type { Readable } from 'node:stream';
import type { Digest } from '../oci/digest.ts';

/** Where a blob can be fetched upstream: a registry host and a repository in it. */
export interface RepositoryLocation {
  registry: string;
  repository: string;
}

export interface AbortOptions {
  signal?: AbortSignal;
}

export interface FetchedManifest {
  bytes: Uint8Array;
  mediaType: string;
  /** sha256 of `bytes`; checked against the requested digest when the request named one. */
  digest: Digest;
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
  close(): Promise<void>;
}
