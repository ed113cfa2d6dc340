import { randomBytes } from 'node:crypto';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { Uint8ArrayList } from 'uint8arraylist';
import { describe, expect, it } from 'vitest';
import { noiseCrypto } from './noise-crypto.ts';

const bytesOf = (data: Uint8Array | Uint8ArrayList): Buffer => Buffer.from(data instanceof Uint8Array ? data : data.subarray());

describe('noiseCrypto', () => {
  const k = randomBytes(32);
  const nonce = randomBytes(12);
  const ad = randomBytes(32);

  for (const size of [0, 100, 1_199, 1_200, 65_519]) {
    it(`seals and opens ${size} bytes exactly as the default does, in both directions`, () => {
      const plaintext = randomBytes(size);
      const ours = noiseCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k);
      const theirs = defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k);
      expect(bytesOf(ours).equals(bytesOf(theirs))).toBe(true);
      expect(bytesOf(defaultCrypto.chaCha20Poly1305Decrypt(bytesOf(ours), nonce, ad, k)).equals(plaintext)).toBe(true);
      expect(bytesOf(noiseCrypto.chaCha20Poly1305Decrypt(bytesOf(theirs), nonce, ad, k)).equals(plaintext)).toBe(true);
    });
  }

  it('takes a message in several parts, as the transport hands it over', () => {
    const plaintext = randomBytes(40_000);
    const parts = new Uint8ArrayList(plaintext.subarray(0, 10_000), plaintext.subarray(10_000, 25_000), plaintext.subarray(25_000));
    const sealed = bytesOf(noiseCrypto.chaCha20Poly1305Encrypt(parts, nonce, ad, k));
    const received = new Uint8ArrayList(sealed.subarray(0, 7_000), sealed.subarray(7_000, 30_016), sealed.subarray(30_016));
    expect(bytesOf(noiseCrypto.chaCha20Poly1305Decrypt(received, nonce, ad, k)).equals(plaintext)).toBe(true);
  });

  it('refuses a message whose bytes or tag were changed, and one sealed with another key', () => {
    const sealed = bytesOf(noiseCrypto.chaCha20Poly1305Encrypt(randomBytes(8_000), nonce, ad, k));
    const flipped = Buffer.from(sealed);
    flipped[100] = (flipped[100] ?? 0) ^ 1;
    expect(() => noiseCrypto.chaCha20Poly1305Decrypt(flipped, nonce, ad, k)).toThrow();
    const badTag = Buffer.from(sealed);
    badTag[badTag.length - 1] = (badTag[badTag.length - 1] ?? 0) ^ 1;
    expect(() => noiseCrypto.chaCha20Poly1305Decrypt(badTag, nonce, ad, k)).toThrow();
    expect(() => noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, ad, randomBytes(32))).toThrow();
  });
});
