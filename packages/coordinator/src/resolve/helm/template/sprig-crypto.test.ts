/**
 * Sprig's crypto: real where the result is reproducible (derivePassword's vectors are sprig's own
 * test expectations), clearly marked placeholders where Helm would generate random keys.
 */
import { describe, expect, it } from 'vitest';
import { TemplateSet } from './template-set.ts';

function render(text: string): string {
  const set = new TemplateSet();
  set.parse('t', text);
  return set.execute('t', {});
}

describe('sprig crypto', () => {
  it.each([
    ['1 "long"', 'ZedaFaxcZaso9*'],
    ['2 "long"', 'Fovi2@JifpTupx'],
    ['1 "maximum"', 'pf4zS1LjCg&LjhsZ7T2~'],
    ['1 "medium"', 'ZedJuz8$'],
    ['1 "basic"', 'pIS54PLs'],
    ['1 "short"', 'Zed5'],
    ['1 "pin"', '6685'],
  ])('derivePassword %s', (args, expected) => {
    expect(render(`{{ derivePassword ${args} "password" "user" "example.com" }}`)).toBe(expected);
  });

  it('encryptAES and decryptAES round-trip', () => {
    expect(render('{{ "plaintext" | encryptAES "secretkey" | decryptAES "secretkey" }}')).toBe('plaintext');
  });

  it('generated keys and certificates are marked placeholders in PEM form', () => {
    const ca = render('{{ $ca := genCA "my-ca" 365 }}{{ $ca.Cert }}{{ $ca.Key }}');
    expect(ca).toMatch(/^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n-----BEGIN RSA PRIVATE KEY-----\n/);
    expect(Buffer.from(ca.split('\n').slice(1, -6).join(''), 'base64').toString()).toContain('meshmirror placeholder');
    expect(render('{{ $ca := genCA "ca" 1 }}{{ $c := genSignedCert "svc" (list "10.0.0.1") (list "svc.local") 365 $ca }}{{ $c.Cert | b64enc | len | lt 10 }}')).toBe(
      'true',
    );
    expect(render('{{ genPrivateKey "ecdsa" }}')).toMatch(/^-----BEGIN EC PRIVATE KEY-----/);
    expect(render('{{ genPrivateKey "nope" }}')).toBe('Unknown type nope');
  });

  it('htpasswd keeps the user name and rejects a colon in it', () => {
    expect(render('{{ htpasswd "admin" "secret" }}')).toMatch(/^admin:\$2a\$10\$/);
    expect(render('{{ htpasswd "a:b" "secret" }}')).toBe('invalid username: a:b');
  });

  it('uuidv4 is a version 4 UUID', () => {
    expect(render('{{ uuidv4 }}')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('buildCustomCert decodes its base64 arguments', () => {
    expect(render('{{ $c := buildCustomCert (b64enc "CERT") (b64enc "KEY") }}{{ $c.Cert }}/{{ $c.Key }}')).toBe('CERT/KEY');
  });
});
