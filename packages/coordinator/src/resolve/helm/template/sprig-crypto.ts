/**
 * Sprig's encodings, hashes and crypto (strings.go, crypto.go). Hashes, base64/base32, `uuidv4`,
 * `randBytes`, `encryptAES`/`decryptAES`, `derivePassword` and `buildCustomCert` are real.
 * Generated keys and certificates (`genPrivateKey`, `genCA`, `genSelfSignedCert`,
 * `genSignedCert`, their `WithKey` forms) and `bcrypt`/`htpasswd` hashes are placeholders that say
 * so: Helm generates fresh random ones on every render anyway, they end up in Secrets, and they
 * never name an image, which is all meshmirror renders charts for.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, randomUUID, scryptSync } from 'node:crypto';
import { goFunc, type TemplateFunction } from './functions.ts';
import { GO_KIND, GO_TYPE_NAME } from './go-values.ts';

/** Sprig's certificate: what `genCA` and friends return (`.Cert`, `.Key`). */
export class Certificate {
  readonly Cert: string;
  readonly Key: string;

  constructor(cert: string, key: string) {
    this.Cert = cert;
    this.Key = key;
  }
}
Object.defineProperty(Certificate.prototype, GO_TYPE_NAME, { value: 'sprig.certificate' });
Object.defineProperty(Certificate.prototype, GO_KIND, { value: 'struct' });

function pem(type: string, text: string): string {
  const body = Buffer.from(text, 'utf8').toString('base64');
  return `-----BEGIN ${type}-----\n${body.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END ${type}-----\n`;
}

function placeholderKey(type: string): string {
  return pem(type, `meshmirror placeholder ${type.toLowerCase()}: helm template generates a new random key here`);
}

function placeholderCertificate(cn: string, what: string): Certificate {
  return new Certificate(pem('CERTIFICATE', `meshmirror placeholder ${what} for CN=${cn}: helm template generates a new one here`), placeholderKey('RSA PRIVATE KEY'));
}

/** Go's base64.StdEncoding.DecodeString error, or the decoded bytes. */
function decodeBase64(text: string): Buffer | string {
  const clean = text.replace(/[\r\n]/g, '');
  const bad = clean.search(/[^A-Za-z0-9+/=]/);
  if (bad >= 0) return `illegal base64 data at input byte ${bad}`;
  const padAt = clean.indexOf('=');
  if (clean.length % 4 !== 0 || (padAt >= 0 && (padAt < clean.length - 2 || /[^=]/.test(clean.slice(padAt))))) {
    return `illegal base64 data at input byte ${padAt >= 0 ? padAt : clean.length - (clean.length % 4)}`;
  }
  return Buffer.from(clean, 'base64');
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32Encode(bytes: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  while (out.length % 8 !== 0) out += '=';
  return out;
}

function base32Decode(text: string): Buffer | string {
  const clean = text.replace(/[\r\n]/g, '');
  if (clean.length % 8 !== 0) return `illegal base32 data at input byte ${clean.length - (clean.length % 8)}`;
  const bytes: number[] = [];
  let bits = 0;
  let value = 0;
  const data = clean.replace(/=+$/, '');
  for (let i = 0; i < data.length; i++) {
    const index = BASE32.indexOf(data[i]!);
    if (index < 0) return `illegal base32 data at input byte ${i}`;
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  return Buffer.from(bytes);
}

function adler32(text: string): number {
  let a = 1;
  let b = 0;
  for (const byte of Buffer.from(text, 'utf8')) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return (b * 65536 + a) >>> 0;
}

const PASSWORD_TEMPLATES: Record<string, string[]> = {
  maximum: ['anoxxxxxxxxxxxxxxxxx', 'axxxxxxxxxxxxxxxxxno'],
  long: [
    'CvcvnoCvcvCvcv',
    'CvcvCvcvnoCvcv',
    'CvcvCvcvCvcvno',
    'CvccnoCvcvCvcv',
    'CvccCvcvnoCvcv',
    'CvccCvcvCvcvno',
    'CvcvnoCvccCvcv',
    'CvcvCvccnoCvcv',
    'CvcvCvccCvcvno',
    'CvcvnoCvcvCvcc',
    'CvcvCvcvnoCvcc',
    'CvcvCvcvCvccno',
    'CvccnoCvccCvcv',
    'CvccCvccnoCvcv',
    'CvccCvccCvcvno',
    'CvcvnoCvccCvcc',
    'CvcvCvccnoCvcc',
    'CvcvCvccCvccno',
    'CvccnoCvcvCvcc',
    'CvccCvcvnoCvcc',
    'CvccCvcvCvccno',
  ],
  medium: ['CvcnoCvc', 'CvcCvcno'],
  short: ['Cvcn'],
  basic: ['aaanaaan', 'aannaaan', 'aaannaaa'],
  pin: ['nnnn'],
};

const TEMPLATE_CHARACTERS: Record<string, string> = {
  V: 'AEIOU',
  C: 'BCDFGHJKLMNPQRSTVWXYZ',
  v: 'aeiou',
  c: 'bcdfghjklmnpqrstvwxyz',
  A: 'AEIOUBCDFGHJKLMNPQRSTVWXYZ',
  a: 'AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz',
  n: '0123456789',
  o: "@&%?,=[]_:-+*$#!'^~;()/.",
  x: 'AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz0123456789!@#$%^&*()',
};

const MASTER_PASSWORD_SEED = 'com.lyndir.masterpassword';

function uint32BE(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** Sprig's derivePassword: the Master Password algorithm (scrypt, then HMAC-SHA256 into a template). */
function derivePassword(counter: bigint, passwordType: string, password: string, user: string, site: string): string {
  const templates = PASSWORD_TEMPLATES[passwordType];
  if (templates === undefined) return `cannot find password template ${passwordType}`;
  const userBytes = Buffer.from(user, 'utf8');
  const salt = Buffer.concat([Buffer.from(MASTER_PASSWORD_SEED), uint32BE(userBytes.length), userBytes]);
  const key = scryptSync(Buffer.from(password, 'utf8'), salt, 64, { N: 32768, r: 8, p: 2, maxmem: 128 * 1024 * 1024 });
  const siteBytes = Buffer.from(site, 'utf8');
  const message = Buffer.concat([Buffer.from(MASTER_PASSWORD_SEED), uint32BE(siteBytes.length), siteBytes, uint32BE(Number(BigInt.asUintN(32, counter)))]);
  const seed = createHmac('sha256', key).update(message).digest();
  const template = templates[seed[0]! % templates.length]!;
  return [...template]
    .map((element, i) => {
      const chars = TEMPLATE_CHARACTERS[element]!;
      return chars[seed[i + 1]! % chars.length]!;
    })
    .join('');
}

/** AES-256-CBC with the password zero-padded to 32 bytes and a random IV first, as sprig does. */
function encryptAES(password: string, plaintext: string): string {
  if (plaintext === '') return '';
  const key = Buffer.alloc(32);
  Buffer.from(password, 'utf8').copy(key);
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-cbc', key, iv);
  return Buffer.concat([iv, cipher.update(plaintext, 'utf8'), cipher.final()]).toString('base64');
}

function decryptAES(password: string, crypt64: string): string {
  if (crypt64 === '') return '';
  const key = Buffer.alloc(32);
  Buffer.from(password, 'utf8').copy(key);
  const data = decodeBase64(crypt64);
  if (typeof data === 'string') throw new Error(data);
  const decipher = createDecipheriv('aes-256-cbc', key, data.subarray(0, 16));
  return Buffer.concat([decipher.update(data.subarray(16)), decipher.final()]).toString('utf8');
}

const hash = (algorithm: string) => goFunc(['string'], (input) => createHash(algorithm).update(input, 'utf8').digest('hex'));

export const SPRIG_CRYPTO_FUNCTIONS: ReadonlyArray<[string, TemplateFunction]> = [
  ['b64enc', goFunc(['string'], (s) => Buffer.from(s, 'utf8').toString('base64'))],
  [
    'b64dec',
    goFunc(['string'], (s) => {
      const data = decodeBase64(s);
      return typeof data === 'string' ? data : data.toString('utf8');
    }),
  ],
  ['b32enc', goFunc(['string'], (s) => base32Encode(Buffer.from(s, 'utf8')))],
  [
    'b32dec',
    goFunc(['string'], (s) => {
      const data = base32Decode(s);
      return typeof data === 'string' ? data : data.toString('utf8');
    }),
  ],
  ['sha1sum', hash('sha1')],
  ['sha256sum', hash('sha256')],
  ['sha512sum', hash('sha512')],
  ['adler32sum', goFunc(['string'], (s) => String(adler32(s)))],
  ['uuidv4', goFunc([], () => randomUUID())],
  [
    'randBytes',
    goFunc(['int'], (count) => {
      if (count < 0n) throw new Error('runtime error: makeslice: len out of range');
      return randomBytes(Number(count)).toString('base64');
    }),
  ],
  ['bcrypt', goFunc(['string'], () => '$2a$10$meshmirror.placeholder.bcrypt.hash.helm.template.makes.new')],
  [
    'htpasswd',
    goFunc(['string', 'string'], (user) =>
      user.includes(':') ? `invalid username: ${user}` : `${user}:$2a$10$meshmirror.placeholder.bcrypt.hash.helm.template.makes.new`,
    ),
  ],
  ['derivePassword', goFunc(['uint32', 'string', 'string', 'string', 'string'], derivePassword)],
  [
    'genPrivateKey',
    goFunc(['string'], (type) => {
      switch (type) {
        case '':
        case 'rsa':
          return placeholderKey('RSA PRIVATE KEY');
        case 'dsa':
          return placeholderKey('DSA PRIVATE KEY');
        case 'ecdsa':
          return placeholderKey('EC PRIVATE KEY');
        case 'ed25519':
          return placeholderKey('PRIVATE KEY');
        default:
          return `Unknown type ${type}`;
      }
    }),
  ],
  [
    'buildCustomCert',
    goFunc(['string', 'string'], (cert, key) => {
      const certBytes = decodeBase64(cert);
      if (typeof certBytes === 'string') throw new Error('unable to decode base64 certificate');
      const keyBytes = decodeBase64(key);
      if (typeof keyBytes === 'string') throw new Error('unable to decode base64 private key');
      return new Certificate(certBytes.toString('utf8'), keyBytes.toString('utf8'));
    }),
  ],
  ['genCA', goFunc(['string', 'int'], (cn) => placeholderCertificate(cn, 'CA certificate'))],
  ['genCAWithKey', goFunc(['string', 'int', 'string'], (cn, _days, key) => new Certificate(placeholderCertificate(cn, 'CA certificate').Cert, key))],
  ['genSelfSignedCert', goFunc(['string', 'slice', 'slice', 'int'], (cn) => placeholderCertificate(cn, 'self-signed certificate'))],
  [
    'genSelfSignedCertWithKey',
    goFunc(
      ['string', 'slice', 'slice', 'int', 'string'],
      (cn, _ips, _dns, _days, key) => new Certificate(placeholderCertificate(cn, 'self-signed certificate').Cert, key),
    ),
  ],
  ['genSignedCert', goFunc(['string', 'slice', 'slice', 'int', 'any'], (cn) => placeholderCertificate(cn, 'signed certificate'))],
  [
    'genSignedCertWithKey',
    goFunc(
      ['string', 'slice', 'slice', 'int', 'any', 'string'],
      (cn, _ips, _dns, _days, _ca, key) => new Certificate(placeholderCertificate(cn, 'signed certificate').Cert, key),
    ),
  ],
  ['encryptAES', goFunc(['string', 'string'], encryptAES)],
  ['decryptAES', goFunc(['string', 'string'], decryptAES)],
];
