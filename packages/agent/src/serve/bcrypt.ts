/**
 * bcrypt password checking (Provos and Mazières, "A Future-Adaptable Password Scheme", 1999), for
 * the `$2y$` / `$2b$` / `$2a$` entries `htpasswd -B` writes: the only kind distribution's htpasswd
 * authentication accepts. Nothing in this workspace's dependencies implements it and node:crypto
 * has no Blowfish, so it is written here, checked against OpenBSD's test vectors and against hashes
 * made by apache2-utils' `htpasswd`.
 *
 * Blowfish's initial P-array and S-boxes are the fractional hex digits of pi. They are computed once
 * (Machin's formula in BigInt, a few tens of milliseconds) instead of being carried as a 4 KiB table.
 */
import { timingSafeEqual } from 'node:crypto';

const BCRYPT_ALPHABET = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const BASE64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const HASH_RE = /^\$(2[aby])\$(\d\d)\$([./A-Za-z0-9]{22})([./A-Za-z0-9]{31})$/;
/** "OrpheanBeholderScryDoubt", the text bcrypt encrypts 64 times. */
const MAGIC = Buffer.from('OrpheanBeholderScryDoubt', 'latin1');
const MAX_KEY_BYTES = 72;
const P_WORDS = 18;
const S_WORDS = 4 * 256;

/** A parsed bcrypt hash. */
export interface BcryptHash {
  cost: number;
  salt: Buffer;
  /** The 23 bytes of the hash proper. */
  digest: Buffer;
}

/** Parses `$2y$NN$<22 salt chars><31 hash chars>`, or returns undefined when `text` is not one. */
export function parseBcryptHash(text: string): BcryptHash | undefined {
  const match = HASH_RE.exec(text);
  if (match === null) return undefined;
  const cost = Number(match[2]);
  if (cost < 4 || cost > 31) return undefined;
  return { cost, salt: decodeBcryptBase64(match[3] ?? '', 16), digest: decodeBcryptBase64(match[4] ?? '', 23) };
}

/** True when `password` hashes to `hash` (compared in constant time). */
export function bcryptVerify(password: string, hash: BcryptHash): boolean {
  const computed = bcryptDigest(Buffer.from(password, 'utf8'), hash.salt, hash.cost);
  return timingSafeEqual(computed, hash.digest);
}

/** The full `$2y$` string for `password`: for tests and for hashes compared as text. */
export function bcryptHashString(password: string, salt: Buffer, cost: number): string {
  const digest = bcryptDigest(Buffer.from(password, 'utf8'), salt, cost);
  return `$2y$${String(cost).padStart(2, '0')}$${encodeBcryptBase64(salt)}${encodeBcryptBase64(digest)}`;
}

/** The 23-byte bcrypt output for a password (its bytes, NUL-terminated, at most 72 used). */
function bcryptDigest(password: Buffer, salt: Buffer, cost: number): Buffer {
  if (salt.length !== 16) throw new RangeError('bcrypt salt must be 16 bytes');
  const key = Buffer.concat([password, Buffer.alloc(1)]).subarray(0, MAX_KEY_BYTES);
  const state = new BlowfishState();
  state.expandKey(key, salt);
  for (let round = 0, rounds = 2 ** cost; round < rounds; round++) {
    state.expandKey(key);
    state.expandKey(salt);
  }
  const text = new Uint32Array(6);
  for (let i = 0; i < 6; i++) text[i] = MAGIC.readUInt32BE(i * 4);
  for (let i = 0; i < 64; i++) for (let j = 0; j < 6; j += 2) state.encipher(text, j);
  const out = Buffer.alloc(24);
  for (let i = 0; i < 6; i++) out.writeUInt32BE(text[i] ?? 0, i * 4);
  return out.subarray(0, 23);
}

class BlowfishState {
  readonly p: Uint32Array;
  readonly s: Uint32Array;

  constructor() {
    const digits = piWords();
    this.p = digits.slice(0, P_WORDS);
    this.s = digits.slice(P_WORDS, P_WORDS + S_WORDS);
  }

  /** Encrypts the 64-bit block at `data[at]`, `data[at + 1]` in place. */
  encipher(data: Uint32Array, at: number): void {
    const { p, s } = this;
    let left = (data[at] ?? 0) ^ (p[0] ?? 0);
    let right = data[at + 1] ?? 0;
    for (let i = 1; i <= 15; i += 2) {
      right ^= feistel(s, left) ^ (p[i] ?? 0);
      left ^= feistel(s, right) ^ (p[i + 1] ?? 0);
    }
    data[at] = right ^ (p[17] ?? 0);
    data[at + 1] = left;
  }

  /**
   * Blowfish's key schedule; with `salt`, bcrypt's salted variant, where each block is mixed with
   * the next salt words before it is encrypted.
   */
  expandKey(key: Buffer, salt?: Buffer): void {
    const keyStream = new WordStream(key);
    for (let i = 0; i < P_WORDS; i++) this.p[i] = (this.p[i] ?? 0) ^ keyStream.next();
    const saltStream = salt === undefined ? undefined : new WordStream(salt);
    const block = new Uint32Array(2);
    const fill = (table: Uint32Array): void => {
      for (let i = 0; i < table.length; i += 2) {
        if (saltStream !== undefined) {
          block[0] = (block[0] ?? 0) ^ saltStream.next();
          block[1] = (block[1] ?? 0) ^ saltStream.next();
        }
        this.encipher(block, 0);
        table[i] = block[0] ?? 0;
        table[i + 1] = block[1] ?? 0;
      }
    };
    fill(this.p);
    fill(this.s);
  }
}

function feistel(s: Uint32Array, x: number): number {
  const a = s[x >>> 24] ?? 0;
  const b = s[256 + ((x >>> 16) & 0xff)] ?? 0;
  const c = s[512 + ((x >>> 8) & 0xff)] ?? 0;
  const d = s[768 + (x & 0xff)] ?? 0;
  return ((((a + b) >>> 0) ^ c) + d) >>> 0;
}

/** Big-endian 32-bit words read cyclically from a byte string, as Blowfish's key schedule reads keys. */
class WordStream {
  #at = 0;
  readonly #bytes: Buffer;

  constructor(bytes: Buffer) {
    this.#bytes = bytes;
  }

  next(): number {
    let word = 0;
    for (let i = 0; i < 4; i++) {
      word = ((word << 8) | (this.#bytes[this.#at] ?? 0)) >>> 0;
      this.#at = (this.#at + 1) % this.#bytes.length;
    }
    return word;
  }
}

let piTable: Uint32Array | undefined;

/** The first 18 + 1024 32-bit words of pi's fractional part: Blowfish's P-array, then its S-boxes. */
function piWords(): Uint32Array {
  piTable ??= computePiWords(P_WORDS + S_WORDS);
  return piTable;
}

function computePiWords(count: number): Uint32Array {
  const bits = BigInt(count * 32);
  const guard = 64n;
  const one = 1n << (bits + guard);
  // Machin: pi = 16 arctan(1/5) - 4 arctan(1/239); each term's truncation costs less than one guard ulp.
  const pi = 16n * arctanInverse(5n, one) - 4n * arctanInverse(239n, one);
  const fraction = (pi - 3n * one) >> guard;
  const words = new Uint32Array(count);
  for (let i = 0; i < count; i++) words[i] = Number((fraction >> (bits - 32n * BigInt(i + 1))) & 0xffffffffn);
  return words;
}

/** arctan(1/x) scaled by `one`, by its Taylor series. */
function arctanInverse(x: bigint, one: bigint): bigint {
  const xSquared = x * x;
  let power = one / x;
  let sum = power;
  for (let k = 1n; power !== 0n; k++) {
    power /= xSquared;
    const term = power / (2n * k + 1n);
    sum = k % 2n === 1n ? sum - term : sum + term;
  }
  return sum;
}

/** bcrypt's base64: standard base64's bit order with its own alphabet and no padding. */
function encodeBcryptBase64(bytes: Buffer): string {
  const standard = bytes.toString('base64').replace(/=+$/, '');
  let out = '';
  for (const char of standard) out += BCRYPT_ALPHABET[BASE64_ALPHABET.indexOf(char)] ?? '';
  return out;
}

function decodeBcryptBase64(text: string, length: number): Buffer {
  let standard = '';
  for (const char of text) standard += BASE64_ALPHABET[BCRYPT_ALPHABET.indexOf(char)] ?? '';
  return Buffer.from(standard, 'base64').subarray(0, length);
}
