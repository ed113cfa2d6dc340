import { describe, expect, it } from 'vitest';
import { bcryptHashString, bcryptVerify, parseBcryptHash } from './bcrypt.ts';

/** OpenBSD's and crypt_blowfish's test vectors ($2a$, cost 5). */
const REFERENCE_VECTORS: Array<[string, string]> = [
  ['U*U', '$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW'],
  ['U*U*', '$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK'],
  ['U*U*U', '$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a'],
  ['', '$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy'],
  [
    '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored',
    '$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui',
  ],
];

/** Made by apache2-utils' `htpasswd -Bbn [-C cost] user password`, the tool the README points to. */
const HTPASSWD_VECTORS: Array<[string, string]> = [
  ['s3cret', '$2y$05$EVKF9xeX0QUr8XLFuMhb0uYU9GeEj0V2P7bd1Ww/BLcleDWptyvtO'],
  ['U*U', '$2y$04$FhZ25.5ddyg1tYOFvMO6.OJ1HUeVSBrkwjuKv4sWi2xXxq37KWT.e'],
  ['pässwörd€', '$2y$10$qLKqXUqgMDe54hEKJBx3K.nnx84PFW1GLZEiww1OfjxLanr36jTiS'],
];

describe('bcrypt', () => {
  it.each([...REFERENCE_VECTORS, ...HTPASSWD_VECTORS])('checks %j against its hash, and nothing else', (password, hash) => {
    const parsed = parseBcryptHash(hash);
    expect(parsed).toBeDefined();
    expect(bcryptVerify(password, parsed!)).toBe(true);
    // Only the first 72 bytes count, as in every bcrypt.
    expect(bcryptVerify(`${password}!`, parsed!)).toBe(Buffer.byteLength(password) >= 72);
    expect(bcryptVerify(`x${password}`, parsed!)).toBe(false);
  });

  it('writes the same string it checks', () => {
    const parsed = parseBcryptHash(HTPASSWD_VECTORS[0]![1])!;
    expect(bcryptHashString('s3cret', parsed.salt, parsed.cost)).toBe(HTPASSWD_VECTORS[0]![1]);
  });

  it('refuses what is not a bcrypt hash', () => {
    for (const text of [
      '{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=',
      '$apr1$abc$def',
      '$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW',
      '$2y$03$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW',
      'plain',
    ]) {
      expect(parseBcryptHash(text), text).toBeUndefined();
    }
  });
});
