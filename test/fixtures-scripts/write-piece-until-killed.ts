/**
 * Child process for the kill -9 test: writes one whole-blob piece of pattern bytes into a blob
 * store as fast as it can, printing `written W committed C` after every write (C is durable, the
 * bytes between C and W are in the file but not yet synced or journalled). The test SIGKILLs it
 * part-way; it is never meant to finish on its own schedule.
 *
 * Usage: node write-piece-until-killed.ts STORE_DIR DIGEST SIZE COMMIT_EVERY_BYTES CHUNK_BYTES
 */
import { isDigest, silentLogger } from '@meshmirror/shared';
import { createBlobStore } from '../../packages/agent/src/store/blob-store.ts';
import { patternBytes } from './pattern-bytes.ts';

const [dir, digest, sizeText, commitEveryText, chunkText] = process.argv.slice(2);
if (dir === undefined || digest === undefined || !isDigest(digest)) throw new Error('usage: STORE_DIR DIGEST SIZE EVERY CHUNK');
const size = Number(sizeText);
const chunkBytes = Number(chunkText);

const store = createBlobStore({ dir, logger: silentLogger(), commitEveryBytes: Number(commitEveryText) });
await store.open();
const writer = await store.openPiece({ digest, blobSize: size, offset: 0, length: size });
while (writer.written < size) {
  const at = writer.written;
  await writer.write(patternBytes(at, Math.min(chunkBytes, size - at)));
  process.stdout.write(`written ${writer.written} committed ${writer.committed}\n`);
}
await writer.finish();
process.stdout.write('finished\n');
await store.close();
