/**
 * Support for the `input` and `hostile archive` rows of the fault matrix: a table runner for bad
 * command lines (each case a real CLI process, a few at a time, killed if it hangs), the check that
 * a refusal is one clear line, and a raw tar writer that can write what no well-behaved tar tool
 * writes (links, devices, `..` names, lying size fields).
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnMeshmirror, type CliResult } from '../support/cli.ts';

export interface InputCase {
  /** Short name shown in the list a reviewer reads. */
  name: string;
  /** The CLI arguments; `work` is a fresh folder of the case's own (inputs go there). */
  args: (work: string) => string[] | Promise<string[]>;
  /** What the one line must contain: the field path, file, reference or flag at fault. */
  names: Array<string | RegExp> | ((work: string) => Array<string | RegExp>);
  /** Run the CLI through this program (e.g. `setpriv` to drop root); gets the CLI argv. */
  wrap?: (argv: string[]) => { command: string; args: string[] };
  /** Exit code the README documents for this input; default 2 (bad input). */
  code?: number;
}

export interface CaseResult {
  name: string;
  ok: boolean;
  code: number | null;
  line: string;
  problems: string[];
  ms: number;
}

/**
 * Commander's hints after a flag error: not a second error, a pointer to help (`showHelpAfterError`)
 * or to the flag the user probably meant.
 */
const HINT_LINES = [/^\(run with --help for usage\)$/, /^\(Did you mean [^)]*\?\)$/];

/** stderr without blank lines and without commander's hint lines. */
export function stderrLines(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line.trim() !== '' && !HINT_LINES.some((hint) => hint.test(line.trim())));
}

/** What is wrong with a refusal: anything but exit `code` and one line naming `names`, plainly. */
export function refusalProblems(result: CliResult, names: Array<string | RegExp>, code = 2): string[] {
  const problems: string[] = [];
  if (result.signal !== null) problems.push(`killed by ${result.signal} (hung?)`);
  if (result.code !== code) problems.push(`exit ${String(result.code)}, expected ${code}`);
  const lines = stderrLines(result.stderr);
  if (lines.length !== 1) problems.push(`${lines.length} lines on stderr`);
  const line = lines[0] ?? '';
  if (line.length > 600) problems.push(`the line is ${line.length} characters long`);
  if (/\n\s+at /.test(result.stderr) || /^\s+at /m.test(result.stderr)) problems.push('stack trace');
  if (result.stderr.includes('[object Object]')) problems.push('[object Object]');
  if (/\bundefined\b/.test(result.stderr)) problems.push('"undefined"');
  if (/\bNaN\b/.test(result.stderr) && !names.some((n) => String(n).includes('NaN'))) problems.push('"NaN"');
  for (const needle of names) {
    const found = typeof needle === 'string' ? line.includes(needle) : needle.test(line);
    if (!found) problems.push(`line does not name ${String(needle)}`);
  }
  return problems;
}

/** Runs `meshmirror ...` and kills it after `timeoutMs` (a hang is a failure, not a stuck suite). */
export async function runCli(argv: string[], wrap?: InputCase['wrap'], timeoutMs = 45_000): Promise<CliResult> {
  if (wrap === undefined) {
    const { child, result } = spawnMeshmirror(argv);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    try {
      return await result;
    } finally {
      clearTimeout(timer);
    }
  }
  const { spawn } = await import('node:child_process');
  const { CLI_ENTRY } = await import('../support/cli.ts');
  const { CLI_NODE_FLAGS } = await import('../../packages/coordinator/src/cli/node-flags.ts');
  const wrapped = wrap([process.execPath, ...CLI_NODE_FLAGS, CLI_ENTRY, ...argv]);
  const child = spawn(wrapped.command, wrapped.args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  try {
    return await new Promise<CliResult>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    });
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `items` through `fn`, at most `limit` at once, keeping their order. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      out[index] = await fn(items[index] as T, index);
    }
  });
  await Promise.all(workers);
  return out;
}

/** Every file under `dir`, relative, sorted (missing folder: none). */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (sub: string): Promise<void> => {
    const entries = await readdir(join(dir, sub), { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const rel = sub === '' ? entry.name : `${sub}/${entry.name}`;
      if (entry.isDirectory()) await walk(rel);
      else out.push(rel);
    }
  };
  await walk('');
  return out.sort();
}

// ---- raw tar ----

export interface RawEntry {
  name: string;
  data?: Buffer;
  /** Tar typeflag: '0' file, '1' hard link, '2' symlink, '3' char device, '5' directory, '6' fifo, 'x' pax, 'L' GNU long name. */
  type?: string;
  linkname?: string;
  /** Written in the size field instead of the data's length (a lying header). */
  sizeField?: string;
  /** GNU base-256 size (0x80 marker) instead of octal. */
  base256Size?: bigint;
}

const BLOCK = 512;

/** One 512-byte header, with a correct checksum unless the caller breaks it afterwards. */
export function rawHeader(entry: RawEntry): Buffer {
  const header = Buffer.alloc(BLOCK);
  const nameBytes = Buffer.from(entry.name, 'utf8');
  nameBytes.copy(header, 0, 0, Math.min(100, nameBytes.length));
  header.write('0000644\0', 100, 'latin1');
  header.write('0000000\0', 108, 'latin1');
  header.write('0000000\0', 116, 'latin1');
  const size = entry.data?.length ?? 0;
  if (entry.base256Size !== undefined) {
    header[124] = 0x80;
    let rest = entry.base256Size;
    for (let i = 11; i > 0; i--) {
      header[124 + i] = Number(rest % 256n);
      rest /= 256n;
    }
  } else {
    header.write(entry.sizeField ?? `${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  }
  header.write('00000000000\0', 136, 'latin1');
  header.write(entry.type ?? '0', 156, 'latin1');
  if (entry.linkname !== undefined) header.write(entry.linkname, 157, 100, 'utf8');
  header.write('ustar\0', 257, 'latin1');
  header.write('00', 263, 'latin1');
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return header;
}

/** A whole entry: header and data padded to blocks. */
export function rawEntry(entry: RawEntry): Buffer {
  const data = entry.data ?? Buffer.alloc(0);
  const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
  return Buffer.concat([rawHeader(entry), data, Buffer.alloc(pad)]);
}

/** A pax extended header record `LEN key=value\n`. */
export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length = String(length).length + body.length;
  return `${length}${body}`;
}

/** Entries of a tar file (regular files only; what meshmirror writes). */
export function readTarEntries(tar: Buffer): Array<{ name: string; data: Buffer }> {
  const out: Array<{ name: string; data: Buffer }> = [];
  let position = 0;
  while (position + BLOCK <= tar.length) {
    const header = tar.subarray(position, position + BLOCK);
    if (header.every((b) => b === 0)) break;
    const end = header.indexOf(0);
    const name = header.subarray(0, end < 0 || end > 100 ? 100 : end).toString('utf8');
    const size = parseInt(header.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim() || '0', 8);
    out.push({ name, data: Buffer.from(tar.subarray(position + BLOCK, position + BLOCK + size)) });
    position += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
  return out;
}

/**
 * Writes entries as a meshmirror chunk: blob entries get their offsets recorded in a fresh
 * `meshmirror/chunk-NNNNNN.json` (so the chunk passes the consistency checks and only the hostile
 * part is left to be caught). `extra` entries go before the chunk manifest, raw.
 */
export function buildChunk(
  entries: Array<{ name: string; data: Buffer }>,
  options: { chunk?: number; archiveId: string; extra?: Buffer[]; extraFirst?: Buffer[] },
): Buffer {
  const chunk = options.chunk ?? 1;
  const manifestName = `meshmirror/chunk-${String(chunk).padStart(6, '0')}.json`;
  const parts: Buffer[] = [...(options.extraFirst ?? [])];
  let offset = parts.reduce((n, b) => n + b.length, 0);
  const blobs: Array<{ digest: string; size: number; offset: number }> = [];
  for (const entry of entries) {
    if (entry.name === manifestName) continue;
    const bytes = rawEntry({ name: entry.name, data: entry.data });
    if (entry.name.startsWith('blobs/sha256/'))
      blobs.push({ digest: `sha256:${entry.name.slice('blobs/sha256/'.length)}`, size: entry.data.length, offset: offset + BLOCK });
    parts.push(bytes);
    offset += bytes.length;
  }
  for (const extra of options.extra ?? []) parts.push(extra);
  parts.push(rawEntry({ name: manifestName, data: Buffer.from(JSON.stringify({ chunk, archiveId: options.archiveId, blobs })) }));
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}
