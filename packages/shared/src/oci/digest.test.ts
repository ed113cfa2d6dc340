import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createDigester, digestOf, hashedBytes, sha256Digest } from './digest.ts';

describe('hashedBytes', () => {
  it('counts every byte put through sha256, copies included, and the digests stay sha256', () => {
    const before = hashedBytes();
    const hash = createDigester();
    hash.update(Buffer.alloc(1000, 1));
    const copy = hash.copy();
    copy.update('é', 'utf8');
    expect(sha256Digest('abc')).toBe(`sha256:${createHash('sha256').update('abc').digest('hex')}`);
    expect(hashedBytes() - before).toBe(1000 + 2 + 3);
    expect(digestOf(hash)).toBe(`sha256:${createHash('sha256').update(Buffer.alloc(1000, 1)).digest('hex')}`);
  });
});
