/**
 * OpenShift release signatures: the OpenPGP-signed claims a cluster checks before it upgrades to a
 * release payload. For payload `sha256:<hex>` the signature store serves
 * `<base>sha256=<hex>/signature-1`, `-2`, … until a 404. Each is verified for real (unlike oc-mirror,
 * which trusts a known key id): signed by a trusted key, and a claim the cluster accepts (library-go's
 * rules: only the known fields, type `atomic container signature`, an identity, and the payload's own
 * digest). A release with no signature, or with one that fails, is an error for that release.
 */
import { Agent, type Dispatcher } from 'undici';
import type * as OpenPgp from 'openpgp';
import { z } from 'zod';
import { DEFAULT_RETRY_POLICY, describeError, MeshmirrorError, withRetries, type Digest, type Logger, type RetryPolicy } from '@meshmirror/shared';
import { RED_HAT_RELEASE_KEYS } from './redhat-release-keys.ts';

/** oc-mirror's default signature store. */
export const DEFAULT_SIGNATURE_URL = 'https://mirror.openshift.com/pub/openshift-v4/signatures/openshift/release/';
/** Signatures read per release at most (the store numbers them from 1). */
const MAX_SIGNATURES = 16;
const MAX_SIGNATURE_BYTES = 64 * 1024;

/** The claim inside a release signature, exactly as the cluster accepts it. */
const claimSchema = z
  .object({
    critical: z
      .object({
        type: z.literal('atomic container signature'),
        image: z.object({ 'docker-manifest-digest': z.string() }).strict(),
        identity: z.object({ 'docker-reference': z.string().min(1) }).strict(),
      })
      .strict(),
    optional: z.object({ creator: z.string().optional(), timestamp: z.number().optional() }).strict().optional(),
  })
  .strict();

export interface ReleaseSignatureStore {
  /** Every signature of the payload, each verified; throws `MM_SIGNATURE_MISSING` or `MM_SIGNATURE_INVALID`. */
  signaturesOf(digest: Digest, what: string, options?: { signal?: AbortSignal }): Promise<Uint8Array[]>;
  close(): Promise<void>;
}

export interface ReleaseSignatureStoreOptions {
  /** The store's base URL, ending in `/` (`OCP_SIGNATURE_URL`, else DEFAULT_SIGNATURE_URL). */
  baseUrl?: string;
  /** Armored public keys to trust (`OCP_SIGNATURE_VERIFICATION_PK`'s file), else Red Hat's. */
  armoredKeys?: string;
  tlsVerify: boolean;
  retry?: RetryPolicy;
  logger: Logger;
}

export async function openReleaseSignatureStore(options: ReleaseSignatureStoreOptions): Promise<ReleaseSignatureStore> {
  const base = options.baseUrl ?? DEFAULT_SIGNATURE_URL;
  // Loaded only for a run with a release (about 1 MB of code, 25-70 ms of every start otherwise).
  const openpgp = await import('openpgp');
  let keys: OpenPgp.PublicKey[];
  try {
    keys = await openpgp.readKeys({ armoredKeys: options.armoredKeys ?? RED_HAT_RELEASE_KEYS });
  } catch (cause) {
    throw new MeshmirrorError('MM_USAGE', `OCP_SIGNATURE_VERIFICATION_PK: not an armored OpenPGP public key (${describeError(cause)})`, { cause });
  }
  const agent = new Agent({ connect: { rejectUnauthorized: options.tlsVerify, timeout: 30_000 }, headersTimeout: 60_000, bodyTimeout: 60_000 });
  const log = options.logger.child({ component: 'coordinator:release-signatures' });

  /** One signature's bytes, or undefined when the store has no such number. */
  const fetchOne = (url: URL, signal: AbortSignal | undefined): Promise<Uint8Array | undefined> =>
    withRetries(
      async () => {
        let response: Dispatcher.ResponseData;
        try {
          response = await agent.request({ origin: url.origin, path: url.pathname, method: 'GET', ...(signal === undefined ? {} : { signal }) });
        } catch (cause) {
          throw new MeshmirrorError('MM_NETWORK', `GET ${url.href}: ${describeError(cause)}`, { cause });
        }
        if (response.statusCode === 404) {
          await response.body.dump();
          return undefined;
        }
        if (response.statusCode !== 200) {
          await response.body.dump();
          throw new MeshmirrorError('MM_REGISTRY', `GET ${url.href}: HTTP ${response.statusCode}`, {
            data: { status: response.statusCode, retryable: response.statusCode === 429 || response.statusCode >= 500 },
          });
        }
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of response.body as AsyncIterable<Buffer>) {
          size += chunk.length;
          if (size > MAX_SIGNATURE_BYTES) {
            response.body.destroy();
            throw new MeshmirrorError('MM_SIGNATURE_INVALID', `GET ${url.href}: more than ${MAX_SIGNATURE_BYTES} bytes, not a release signature`);
          }
          chunks.push(chunk);
        }
        return new Uint8Array(Buffer.concat(chunks));
      },
      {
        policy: options.retry ?? DEFAULT_RETRY_POLICY,
        host: url.host,
        logger: log,
        what: `release signature: GET ${url.href}`,
        ...(signal === undefined ? {} : { signal }),
      },
    );

  return {
    async signaturesOf(digest, what, { signal } = {}) {
      const hex = digest.slice('sha256:'.length);
      const found: Uint8Array[] = [];
      for (let n = 1; n <= MAX_SIGNATURES; n++) {
        const url = new URL(`${base}sha256=${hex}/signature-${n}`);
        const bytes = await fetchOne(url, signal);
        if (bytes === undefined) break;
        await verify(bytes, digest, keys, `signature-${n} of release ${what} (${url.href})`);
        found.push(bytes);
      }
      if (found.length === 0) {
        throw new MeshmirrorError('MM_SIGNATURE_MISSING', `release ${what}: no signature for ${digest} at ${base}sha256=${hex}/signature-1`, {
          data: { digest },
        });
      }
      log.debug({ release: what, digest, signatures: found.length }, 'release signatures verified');
      return found;
    },
    close: () => agent.close(),
  };
}

/** Checks one signature: signed by a trusted key, a claim the cluster accepts, for this payload. */
async function verify(bytes: Uint8Array, digest: Digest, keys: OpenPgp.PublicKey[], where: string): Promise<void> {
  let data: Uint8Array;
  try {
    const openpgp = await import('openpgp');
    const message = await openpgp.readMessage({ binaryMessage: bytes });
    // `expectSigned`: no valid signature by one of `keys` throws, before any data is returned.
    const verified: { data: Uint8Array } = await openpgp.verify({ message, verificationKeys: keys, format: 'binary', expectSigned: true });
    data = verified.data;
  } catch (cause) {
    throw new MeshmirrorError('MM_SIGNATURE_INVALID', `${where}: not signed by a trusted key (${describeError(cause)})`, { cause, data: { digest } });
  }
  let claim: z.infer<typeof claimSchema>;
  try {
    claim = claimSchema.parse(JSON.parse(Buffer.from(data).toString('utf8')));
  } catch (cause) {
    throw new MeshmirrorError('MM_SIGNATURE_INVALID', `${where}: the signed claim is not an atomic container signature (${describeError(cause)})`, {
      cause,
      data: { digest },
    });
  }
  const signed = claim.critical.image['docker-manifest-digest'];
  if (signed !== digest) {
    throw new MeshmirrorError('MM_SIGNATURE_INVALID', `${where}: signs ${signed}, not this release's ${digest}`, { data: { digest, signed } });
  }
}
