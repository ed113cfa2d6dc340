/**
 * Every timed benchmark run starts from the same machine state: dirty pages written out, the page
 * cache emptied, then the registry's storage read back in, so that each run finds the registry's
 * blobs cached and nothing else. Without it, a run paid for the page cache that the runs before it
 * had grown: on this VM a farm of three took 9.8 s as the first run of a session and 11.1-11.4 s as
 * a later one, with twice the writer's system time, and 9.8-10.1 s in every position with the cache
 * emptied first. Emptying the cache needs root; without it only the write-out happens, and the
 * benchmark says so.
 */
import { execFile } from 'node:child_process';
import { open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Whether `sameStart` can empty the page cache here (root). */
export const CAN_DROP_CACHES = process.getuid?.() === 0;

export async function sameStart(registryStorage: string): Promise<void> {
  await execFileAsync('sync');
  if (!CAN_DROP_CACHES) return;
  await writeFile('/proc/sys/vm/drop_caches', '3');
  await readAll(registryStorage);
}

/** Reads every file under `dir` once, through one buffer. */
async function readAll(dir: string): Promise<void> {
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const handle = await open(join(entry.parentPath, entry.name), 'r');
    try {
      let read = 1;
      while (read > 0) read = (await handle.read(buffer, 0, buffer.length, null)).bytesRead;
    } finally {
      await handle.close();
    }
  }
}

export function sameStartNote(): string {
  return CAN_DROP_CACHES
    ? 'every run starts with the page cache emptied and the registry storage read back in'
    : 'not root: runs start with the page cache of the runs before them (later runs can be slower)';
}
