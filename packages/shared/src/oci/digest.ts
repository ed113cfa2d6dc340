import { createHash, type BinaryLike, type Encoding, type Hash } from 'node:crypto';
import { MeshmirrorError } from '../errors.ts';

/** A content digest such as `sha256:` followed by 64 lower-case hex characters. */
export type Digest = `sha256:${string}`;

/**
 * A blob named by its digest, with its size in bytes: how every part of the pipeline (plan, agents,
 * archive, pusher) names a blob it asks for, holds or writes.
 */
export interface BlobRef {
  digest: Digest;
  size: number;
}

const SHA256_RE = /^sha256:[a-f0-9]{64}$/;

export function isDigest(value: string): value is Digest {
  return SHA256_RE.test(value);
}

/** Validates a digest string; meshmirror stores and verifies sha256 only. */
export function parseDigest(value: string, where = 'digest'): Digest {
  if (!isDigest(value)) {
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: unsupported or malformed digest "${value}"`);
  }
  return value;
}

/** The 64 hex characters of a sha256 digest: the file name under `blobs/sha256/`. */
export function digestHex(digest: Digest): string {
  return digest.slice('sha256:'.length);
}

export function sha256Digest(data: Uint8Array | string): Digest {
  return digestOf(createDigester().update(data));
}

/** Bytes this process has put through sha256 (blob and manifest digests), for the run's figures. */
let hashed = 0;

/** Bytes hashed by this process so far: compared with the unique bytes, how often each byte was read to be checked. */
export function hashedBytes(): number {
  return hashed;
}

/** Adds bytes hashed where no digester of this thread saw them (a worker thread's sha256), when its result arrives. */
export function countHashedBytes(bytes: number): void {
  hashed += bytes;
}

/** A sha256 that counts what it hashes (see `hashedBytes`). */
export function createDigester(): Hash {
  return counting(createHash('sha256'));
}

function counting(hash: Hash): Hash {
  const update = hash.update.bind(hash);
  const copy = hash.copy.bind(hash);
  hash.update = (data: BinaryLike, encoding?: Encoding): Hash => {
    hashed += typeof data === 'string' ? Buffer.byteLength(data, encoding) : data.byteLength;
    return typeof data === 'string' && encoding !== undefined ? update(data, encoding) : update(data);
  };
  hash.copy = (options) => counting(copy(options));
  return hash;
}

export function digestOf(hash: Hash): Digest {
  return `sha256:${hash.digest('hex')}`;
}
