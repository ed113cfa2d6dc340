import { Transform, type TransformCallback } from 'node:stream';
import { createDigester, DigestMismatchError, MeshmirrorError, type Digest } from '@meshmirror/shared';

/**
 * A pass-through that checks the bytes against `expected` (sha256 and size). It holds back the
 * last chunk until the digest is known, so a consumer never receives the complete body of a blob
 * whose content is wrong: on a mismatch the stream errors with `DigestMismatchError` (or
 * `MM_SIZE_MISMATCH`) instead of delivering the final bytes. `where` names the blob's location for
 * the error message (file and tar entry).
 */
export function createVerifyingStream(expected: Digest, size: number, where: string): Transform {
  const hash = createDigester();
  let seen = 0;
  let held: Buffer | undefined;
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
      seen += chunk.length;
      if (seen > size) {
        callback(sizeMismatch(where, size, seen));
        return;
      }
      hash.update(chunk);
      if (held !== undefined) this.push(held);
      held = chunk;
      callback();
    },
    flush(callback: TransformCallback): void {
      if (seen !== size) {
        callback(sizeMismatch(where, size, seen));
        return;
      }
      const actual: Digest = `sha256:${hash.digest('hex')}`;
      if (actual !== expected) {
        callback(new DigestMismatchError(expected, actual, where));
        return;
      }
      if (held !== undefined) this.push(held);
      callback();
    },
  });
}

function sizeMismatch(where: string, expected: number, actual: number): MeshmirrorError {
  const got = actual > expected ? `more than ${expected}` : String(actual);
  return new MeshmirrorError('MM_SIZE_MISMATCH', `size mismatch for ${where}: expected ${expected} bytes, got ${got}`, {
    data: { expected, actual },
  });
}
