import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { throwIfAborted, type BlobFileLocation } from '@meshmirror/shared';

/** Block size of a read-ahead copy: large enough that a copy costs few system calls. */
const BLOCK_BYTES = 1024 * 1024;

/**
 * Yields the bytes of `location` in blocks of up to 1 MiB, reading the next block while the caller
 * works on the current one. Two buffers are reused for the whole file, so memory stays flat however
 * large it is; a yielded block is only valid until the caller asks for the next one.
 */
export async function* readAhead(location: BlobFileLocation, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const handle = await open(location.path, constants.O_RDONLY | constants.O_NOFOLLOW);
  const blocks = [Buffer.allocUnsafeSlow(Math.min(BLOCK_BYTES, location.size)), Buffer.allocUnsafeSlow(Math.min(BLOCK_BYTES, location.size))];
  const end = location.offset + location.size;
  let which = 0;
  const readBlock = (position: number): Promise<{ bytesRead: number; buffer: Buffer }> => {
    const block = blocks[which]!;
    return handle.read(block, 0, Math.min(block.length, end - position), position);
  };
  let position = location.offset;
  let pending = position < end ? readBlock(position) : undefined;
  try {
    while (pending !== undefined) {
      throwIfAborted(signal);
      const { bytesRead, buffer } = await pending;
      pending = undefined;
      if (bytesRead === 0) return;
      position += bytesRead;
      which ^= 1;
      if (position < end) pending = readBlock(position);
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await pending?.catch(() => undefined);
    await handle.close();
  }
}
