/**
 * The swarm key: 32 random bytes every host of a mirroring farm shares, in the file format of
 * libp2p/IPFS private networks, so existing tooling recognises it:
 *
 *     /key/swarm/psk/1.0.0/
 *     /base16/
 *     <64 hex digits>
 *
 * It is never sent anywhere: a value derived from it is bound into every Noise handshake as the
 * prologue (`swarmPrologue`), so a peer without the same key cannot complete a handshake.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { MeshmirrorError, errorCode, fileErrorReason } from '../errors.ts';

export const SWARM_KEY_BYTES = 32;
const HEADER = '/key/swarm/psk/1.0.0/';
const ENCODING = '/base16/';
const PROLOGUE_LABEL = 'meshmirror swarm key v1\n';

/** A swarm key in memory. `toString` and `toJSON` never reveal it, so it cannot leak into a log line. */
export class SwarmKey {
  readonly #bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    if (bytes.length !== SWARM_KEY_BYTES) throw new RangeError(`a swarm key has ${SWARM_KEY_BYTES} bytes, got ${bytes.length}`);
    this.#bytes = Uint8Array.from(bytes);
  }

  static generate(): SwarmKey {
    return new SwarmKey(randomBytes(SWARM_KEY_BYTES));
  }

  /** The key file's text. */
  encode(): string {
    return `${HEADER}\n${ENCODING}\n${Buffer.from(this.#bytes).toString('hex')}\n`;
  }

  /**
   * What both sides bind into the Noise handshake: a hash of the key under a label of our own, so
   * the key itself is never handed to the transport, and a key file reused elsewhere gives another value.
   */
  prologue(): Uint8Array {
    return createHash('sha256').update(PROLOGUE_LABEL).update(this.#bytes).digest();
  }

  /** Short, non-secret fingerprint for logs: operators can check two hosts hold the same key. */
  fingerprint(): string {
    return createHash('sha256').update('meshmirror swarm key fingerprint\n').update(this.#bytes).digest('hex').slice(0, 12);
  }

  toString(): string {
    return `SwarmKey(${this.fingerprint()})`;
  }

  toJSON(): string {
    return this.toString();
  }
}

function invalid(file: string, why: string): MeshmirrorError {
  return new MeshmirrorError('MM_SWARM_KEY_INVALID', `swarm key ${file}: ${why}`, { data: { file } });
}

/** Parses a swarm key file's text; errors name the file and never quote its content. */
export function parseSwarmKey(text: string, file: string): SwarmKey {
  const lines = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
  if (lines[0] !== HEADER) throw invalid(file, `first line must be ${HEADER}`);
  if (lines[1] !== ENCODING) throw invalid(file, `second line must be ${ENCODING} (other encodings are not supported)`);
  const hex = lines[2] ?? '';
  if (lines.length > 3) throw invalid(file, 'unexpected lines after the key');
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw invalid(file, `third line must be ${SWARM_KEY_BYTES * 2} hex digits`);
  return new SwarmKey(Buffer.from(hex, 'hex'));
}

/** Reads a swarm key file. Refuses a file other users can read or write. */
export async function readSwarmKeyFile(file: string): Promise<SwarmKey> {
  let text: string;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw invalid(file, 'not a regular file');
    if ((info.mode & 0o077) !== 0) {
      throw invalid(file, `other users can access it (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 ${file}`);
    }
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof MeshmirrorError) throw err;
    throw invalid(file, fileErrorReason(err));
  }
  return parseSwarmKey(text, file);
}

/** Writes a new key file readable by its owner only; never overwrites an existing file unless `force`. */
export async function writeSwarmKeyFile(file: string, key: SwarmKey, options: { force?: boolean } = {}): Promise<void> {
  let handle;
  try {
    handle = await open(file, options.force === true ? 'w' : 'wx', 0o600);
    await handle.chmod(0o600);
    await handle.writeFile(key.encode());
    await handle.sync();
  } catch (err) {
    if (errorCode(err) === 'EEXIST') throw invalid(file, 'already exists; keep using it, or pass --force to replace it (every agent then needs the new key)');
    throw invalid(file, fileErrorReason(err));
  } finally {
    await handle?.close();
  }
}
