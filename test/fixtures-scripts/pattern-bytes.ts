/**
 * Deterministic, non-repeating test bytes: byte `p` of the stream is a hash of `p`, so any chunk can
 * be regenerated from its offset alone (by a child process and by the test that checks it).
 */
export function patternBytes(offset: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) {
    let x = (offset + i) >>> 0;
    x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
    x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
    out[i] = (x ^ (x >>> 16)) & 0xff;
  }
  return out;
}
