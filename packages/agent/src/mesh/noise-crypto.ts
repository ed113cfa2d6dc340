/**
 * The Noise transport's ciphers, as `@chainsafe/libp2p-noise`'s default for Node.js, with two
 * changes that matter when gigabytes cross a connection in 64 KiB messages: each session key becomes
 * a `KeyObject` once, instead of once per message inside `createCipheriv`, and a sealed message is
 * handed on as its two parts (ciphertext, tag) instead of being copied into one buffer. Small
 * messages (below 1,200 bytes) keep the default's WebAssembly cipher, which is faster there.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { Uint8ArrayList } from 'uint8arraylist';

const ALGORITHM = 'chacha20-poly1305';
const TAG_BYTES = 16;
const SMALL_MESSAGE_BYTES = 1200;

/** A session's key is the same array for every message of that session. */
const keys = new WeakMap<Uint8Array, KeyObject>();

function keyObject(k: Uint8Array): KeyObject {
  let key = keys.get(k);
  if (key === undefined) {
    key = createSecretKey(k);
    keys.set(k, key);
  }
  return key;
}

export const noiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    if (plaintext.byteLength < SMALL_MESSAGE_BYTES) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k);
    const cipher = createCipheriv(ALGORITHM, keyObject(k), nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(ad, { plaintextLength: plaintext.byteLength });
    const output = new Uint8ArrayList();
    if (plaintext instanceof Uint8Array) output.append(cipher.update(plaintext));
    else for (const part of plaintext) output.append(cipher.update(part));
    const final = cipher.final();
    if (final.byteLength > 0) output.append(final);
    output.append(cipher.getAuthTag());
    return output;
  },
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
    if (ciphertext.byteLength < SMALL_MESSAGE_BYTES) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst);
    const textBytes = ciphertext.byteLength - TAG_BYTES;
    const decipher = createDecipheriv(ALGORITHM, keyObject(k), nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(ad, { plaintextLength: textBytes });
    decipher.setAuthTag(ciphertext.subarray(textBytes));
    const output = new Uint8ArrayList();
    if (ciphertext instanceof Uint8Array) output.append(decipher.update(ciphertext.subarray(0, textBytes)));
    else for (const part of ciphertext.sublist(0, textBytes)) output.append(decipher.update(part));
    // Throws when the tag does not match: the connection is dropped.
    const final = decipher.final();
    if (final.byteLength > 0) output.append(final);
    return output;
  },
};
