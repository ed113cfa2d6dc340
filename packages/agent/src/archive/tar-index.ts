/**
 * A header-only walk over a tar file: reads each 512-byte header and seeks past the entry's data,
 * so indexing a chunk of hundreds of GiB reads a few KiB per entry. Understands ustar, GNU long
 * names and pax extended headers (path, size). Refuses what must never be extracted from an
 * archive: absolute paths, `..` components, links and special files.
 */
import type { FileHandle } from 'node:fs/promises';
import { MeshmirrorError, throwIfAborted } from '@meshmirror/shared';

const BLOCK = 512;
/** Headers are read through a window of this size: consecutive small entries cost one read. */
const WINDOW_BYTES = 64 * 1024;
/** Pax records and GNU long names are a few bytes; anything bigger is not a sane archive. */
const MAX_EXTENSION_BYTES = 1024 * 1024;

export interface TarEntry {
  /** Normalised path (no leading `./`, no trailing `/`). */
  name: string;
  type: 'file' | 'directory';
  /** Offset of the entry's first data byte in the file. */
  dataOffset: number;
  size: number;
}

/**
 * Lists the entries of the tar file behind `handle`. `file` names the file in errors, which also
 * carry `data: { file, entry }`.
 */
export async function indexTarEntries(handle: FileHandle, fileSize: number, file: string, signal?: AbortSignal): Promise<TarEntry[]> {
  const reader = new WindowedReader(handle, fileSize);
  const entries: TarEntry[] = [];
  let position = 0;
  let pendingPath: string | undefined;
  let pendingSize: number | undefined;
  let entryCount = 0;
  for (;;) {
    if (entryCount++ % 1024 === 0) throwIfAborted(signal);
    if (position + BLOCK > fileSize) {
      throw invalid(file, undefined, `ends at byte ${fileSize} without the end-of-archive blocks (truncated?)`);
    }
    const header = await reader.read(position, BLOCK);
    if (header.every((byte) => byte === 0)) break;
    checkChecksum(header, file, position);

    const typeflag = String.fromCharCode(header[156] ?? 0);
    const rawName = pendingPath ?? headerName(header);
    const size = pendingSize ?? headerSize(header, file, rawName);
    pendingPath = undefined;
    pendingSize = undefined;
    const dataOffset = position + BLOCK;
    const next = dataOffset + Math.ceil(size / BLOCK) * BLOCK;
    if (dataOffset + size > fileSize) {
      throw invalid(file, rawName, `entry data (${size} bytes at offset ${dataOffset}) runs past the end of the file (${fileSize} bytes)`);
    }

    switch (typeflag) {
      case 'x': {
        const records = parsePax(await readExtension(reader, dataOffset, size, file, rawName), file, rawName);
        pendingPath = records.get('path');
        const paxSize = records.get('size');
        if (paxSize !== undefined) {
          if (!/^\d+$/.test(paxSize) || !Number.isSafeInteger(Number(paxSize))) throw invalid(file, rawName, `bad pax size "${paxSize}"`);
          pendingSize = Number(paxSize);
        }
        break;
      }
      case 'L':
        pendingPath = (await readExtension(reader, dataOffset, size, file, rawName)).toString('utf8').replace(/\0+$/, '');
        break;
      case 'g':
      case 'K':
        // Global pax records and GNU long link names change nothing we read (links are refused below).
        break;
      case '0':
      case '\0':
      case '7':
        entries.push({ name: safeEntryName(rawName, file), type: 'file', dataOffset, size });
        break;
      case '5':
        entries.push({ name: safeEntryName(rawName, file), type: 'directory', dataOffset, size: 0 });
        break;
      case '1':
        throw invalid(file, rawName, 'is a hard link; archives must hold only regular files');
      case '2':
        throw invalid(file, rawName, 'is a symbolic link; archives must hold only regular files');
      default:
        throw invalid(file, rawName, `has unsupported tar entry type "${typeflag}"; archives must hold only regular files`);
    }
    position = next;
  }
  return entries;
}

/** Refuses absolute paths and `..` components; returns the name without `./` or trailing `/`. */
export function safeEntryName(raw: string, file: string): string {
  if (raw === '') throw invalid(file, raw, 'has an empty name');
  if (raw.includes('\0')) throw invalid(file, raw, 'has a NUL byte in its name');
  if (raw.startsWith('/') || /^[A-Za-z]:[\\/]/.test(raw)) throw invalid(file, raw, 'has an absolute path; refusing it');
  const parts = raw.split(/[\\/]/);
  if (parts.includes('..')) throw invalid(file, raw, 'has a ".." path component (path traversal); refusing it');
  const kept = parts.filter((part) => part !== '' && part !== '.');
  if (kept.length === 0) throw invalid(file, raw, 'names no file');
  return kept.join('/');
}

export function archiveEntryError(file: string, entry: string | undefined, problem: string): MeshmirrorError {
  return invalid(file, entry, problem);
}

function invalid(file: string, entry: string | undefined, problem: string): MeshmirrorError {
  const subject = entry === undefined ? file : `${file}: entry "${entry}"`;
  return new MeshmirrorError('MM_ARCHIVE_INVALID', `${subject} ${problem}`, { data: { file, entry } });
}

function checkChecksum(header: Buffer, file: string, position: number): void {
  const stored = parseOctal(header.subarray(148, 156));
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  if (stored !== unsigned && stored !== signed) {
    throw invalid(file, undefined, `has a corrupt tar header at offset ${position} (checksum mismatch)`);
  }
}

function headerName(header: Buffer): string {
  const name = cString(header.subarray(0, 100));
  // POSIX ustar ("ustar\0") keeps a prefix of long names at offset 345; GNU ("ustar  ") does not.
  const posix = header.subarray(257, 263).toString('latin1') === 'ustar\0';
  const prefix = posix ? cString(header.subarray(345, 500)) : '';
  return prefix === '' ? name : `${prefix}/${name}`;
}

function headerSize(header: Buffer, file: string, name: string): number {
  const field = header.subarray(124, 136);
  let size: number;
  if (((field[0] ?? 0) & 0x80) !== 0) {
    // GNU base-256: big-endian in the remaining 11 bytes (tar-stream writes this above 8 GiB).
    if (field[0] !== 0x80) throw invalid(file, name, 'has a negative size');
    size = 0;
    for (let i = 1; i < field.length; i++) size = size * 256 + (field[i] ?? 0);
  } else {
    size = parseOctal(field);
  }
  if (!Number.isSafeInteger(size) || size < 0) throw invalid(file, name, 'has an unreadable size');
  return size;
}

function parseOctal(field: Buffer): number {
  const text = field.toString('latin1').replace(/\0.*$/s, '').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) return Number.NaN;
  return parseInt(text, 8);
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.subarray(0, end < 0 ? bytes.length : end).toString('utf8');
}

async function readExtension(reader: WindowedReader, offset: number, size: number, file: string, name: string): Promise<Buffer> {
  if (size > MAX_EXTENSION_BYTES) throw invalid(file, name, `extended header is ${size} bytes; refusing more than ${MAX_EXTENSION_BYTES}`);
  return await reader.read(offset, size);
}

function parsePax(data: Buffer, file: string, name: string): Map<string, string> {
  const records = new Map<string, string>();
  let position = 0;
  while (position < data.length) {
    if (data[position] === 0) break;
    const space = data.indexOf(0x20, position);
    const length = space < 0 ? Number.NaN : Number(data.subarray(position, space).toString('latin1'));
    if (!Number.isSafeInteger(length) || length <= 0 || position + length > data.length) {
      throw invalid(file, name, 'has a malformed pax record');
    }
    const record = data.subarray(space + 1, position + length - 1).toString('utf8');
    const equals = record.indexOf('=');
    if (equals < 0) throw invalid(file, name, 'has a malformed pax record');
    records.set(record.slice(0, equals), record.slice(equals + 1));
    position += length;
  }
  return records;
}

/** Positional reads through a window, so runs of small entries do not cost a read each. */
class WindowedReader {
  readonly #handle: FileHandle;
  readonly #fileSize: number;
  #window = Buffer.alloc(0);
  #windowStart = 0;

  constructor(handle: FileHandle, fileSize: number) {
    this.#handle = handle;
    this.#fileSize = fileSize;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const inWindow = offset >= this.#windowStart && offset + length <= this.#windowStart + this.#window.length;
    if (!inWindow) {
      const windowLength = Math.min(Math.max(length, WINDOW_BYTES), this.#fileSize - offset);
      const buffer = Buffer.alloc(windowLength);
      let filled = 0;
      while (filled < windowLength) {
        const { bytesRead } = await this.#handle.read(buffer, filled, windowLength - filled, offset + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      this.#window = buffer.subarray(0, filled);
      this.#windowStart = offset;
      if (filled < length) throw new MeshmirrorError('MM_ARCHIVE_INVALID', `unexpected end of file at offset ${offset + filled}`);
    }
    const start = offset - this.#windowStart;
    return this.#window.subarray(start, start + length);
  }
}
