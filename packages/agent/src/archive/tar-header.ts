/**
 * The few pieces of the tar format the archive writer needs: one ustar header per regular file,
 * data padded to 512-byte blocks, two zero blocks at the end. Writing headers ourselves (rather
 * than through a tar stream) lets the writer put every entry at an offset it chose, and roll an
 * entry back by truncating the file to where that entry began.
 */
import { MeshmirrorError } from '@meshmirror/shared';

export const TAR_BLOCK = 512;
export const END_OF_ARCHIVE_BYTES = 2 * TAR_BLOCK;
/** ustar keeps names up to 100 bytes in the header itself; longer names would need pax headers. */
const USTAR_NAME_MAX = 100;
/** Sizes up to 8 GiB - 1 fit the 11 octal digits of the size field; larger ones use GNU base-256. */
const MAX_OCTAL_SIZE = 0o77777777777;

/** Bytes one regular-file entry takes in a tar: its header and its data padded to whole blocks. */
export function tarEntryBytes(dataBytes: number): number {
  return TAR_BLOCK + Math.ceil(dataBytes / TAR_BLOCK) * TAR_BLOCK;
}

/** Zero bytes after `dataBytes` of data up to the next block boundary. */
export function tarPaddingBytes(dataBytes: number): number {
  return (TAR_BLOCK - (dataBytes % TAR_BLOCK)) % TAR_BLOCK;
}

/** Entry sizes are computed with one 512-byte header per entry: no pax headers for long names. */
export function assertUstarName(name: string): void {
  if (Buffer.byteLength(name) > USTAR_NAME_MAX) {
    throw new MeshmirrorError('MM_ARCHIVE_INVALID', `tar entry name "${name}" is longer than ${USTAR_NAME_MAX} bytes`);
  }
  if (!/^[\x21-\x7e]+$/.test(name)) throw new MeshmirrorError('MM_ARCHIVE_INVALID', `tar entry name "${name}" is not plain ASCII`);
}

/** The 512-byte ustar header of a regular file (mode 0644, owner 0:0), as GNU tar and skopeo read it. */
export function encodeTarHeader(entry: { name: string; size: number; mtime: Date }): Buffer {
  assertUstarName(entry.name);
  if (!Number.isSafeInteger(entry.size) || entry.size < 0) {
    throw new MeshmirrorError('MM_ARCHIVE_INVALID', `tar entry "${entry.name}" has an invalid size ${entry.size}`);
  }
  const header = Buffer.alloc(TAR_BLOCK);
  header.write(entry.name, 0, 'ascii');
  writeOctal(header, 100, 6, 0o644);
  writeOctal(header, 108, 6, 0);
  writeOctal(header, 116, 6, 0);
  writeSize(header, entry.size);
  writeOctal(header, 136, 11, Math.max(0, Math.floor(entry.mtime.getTime() / 1000)));
  header[156] = 0x30; // '0': regular file
  header.write('ustar\0', 257, 'latin1');
  header.write('00', 263, 'latin1');
  writeOctal(header, 329, 6, 0);
  writeOctal(header, 337, 6, 0);
  // The checksum is computed with its own field taken as eight spaces.
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return header;
}

/** Writes `value` as `digits` zero-padded octal digits and a space (the field's last byte, if any, stays NUL). */
function writeOctal(header: Buffer, offset: number, digits: number, value: number): void {
  header.write(`${value.toString(8).padStart(digits, '0')} `, offset, 'latin1');
}

function writeSize(header: Buffer, size: number): void {
  if (size <= MAX_OCTAL_SIZE) {
    writeOctal(header, 124, 11, size);
    return;
  }
  // GNU base-256: a 0x80 marker, then the size big-endian in the remaining 11 bytes.
  header[124] = 0x80;
  let rest = size;
  for (let i = 11; i > 0; i--) {
    header[124 + i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
}
