/**
 * The certificate and key `meshmirror serve --tls-cert FILE --tls-key FILE` serves HTTPS with, read
 * and checked before the port is opened, so a wrong file is named instead of surfacing as a TLS
 * handshake failure in some client.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { describeError, MeshmirrorError } from '@meshmirror/shared';

/** PEM certificate chain (the server's first) and private key. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
}

/** Reads and checks a PEM certificate (chain) and its private key; `MM_USAGE` errors name the file. */
export async function loadTlsFiles(certFile: string, keyFile: string): Promise<TlsMaterial> {
  const cert = await readPem(certFile, '--tls-cert');
  const key = await readPem(keyFile, '--tls-key');
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (cause) {
    throw new MeshmirrorError('MM_USAGE', `--tls-cert ${certFile}: not a PEM certificate: ${describeError(cause)}`, { cause });
  }
  try {
    createPrivateKey(key);
  } catch (cause) {
    throw new MeshmirrorError('MM_USAGE', `--tls-key ${keyFile}: not a PEM private key (an encrypted key is not supported): ${describeError(cause)}`, { cause });
  }
  if (!certificate.checkPrivateKey(createPrivateKey(key))) {
    throw new MeshmirrorError('MM_USAGE', `--tls-key ${keyFile} is not the private key of the certificate in --tls-cert ${certFile}`);
  }
  try {
    createSecureContext({ cert, key });
  } catch (cause) {
    throw new MeshmirrorError('MM_USAGE', `--tls-cert ${certFile} with --tls-key ${keyFile} cannot serve TLS: ${describeError(cause)}`, { cause });
  }
  return { cert, key };
}

async function readPem(file: string, flag: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (cause) {
    throw new MeshmirrorError('MM_USAGE', `${flag} ${file}: cannot be read: ${describeError(cause)}`, { cause });
  }
}
