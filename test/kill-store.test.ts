/**
 * `kill -9` safety of the blob store: a process writing a large piece is killed mid-write after a
 * commit was observed; a new process resumes from the committed offset, never trusts the unflushed
 * tail, and the blob becomes held only once its bytes verify.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { createDigester, digestHex, digestOf, silentLogger } from '@meshmirror/shared';
import { createBlobStore } from '../packages/agent/src/store/blob-store.ts';
import { patternBytes } from './fixtures-scripts/pattern-bytes.ts';

const MiB = 1024 * 1024;
const BLOB_SIZE = 64 * MiB;
const COMMIT_EVERY = 1 * MiB;
const CHUNK = 256 * 1024;
const KILL_AFTER_COMMITTED = 8 * MiB;
const WRITER_SCRIPT = join(import.meta.dirname, 'fixtures-scripts', 'write-piece-until-killed.ts');

function patternDigest(size: number): `sha256:${string}` {
  const hash = createDigester();
  for (let at = 0; at < size; at += CHUNK) hash.update(patternBytes(at, Math.min(CHUNK, size - at)));
  return digestOf(hash);
}

async function overwrite(path: string, position: number, length: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    for (let at = 0; at < length; at += CHUNK) {
      const garbage = randomBytes(Math.min(CHUNK, length - at));
      await handle.write(garbage, 0, garbage.length, position + at);
    }
  } finally {
    await handle.close();
  }
}

describe('blob store under kill -9', () => {
  const children: ChildProcess[] = [];
  const dirs: string[] = [];

  afterEach(async () => {
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  it('resumes a piece from the last commit after the writer is SIGKILLed mid-write', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mm-kill-store-'));
    dirs.push(dir);
    const digest = patternDigest(BLOB_SIZE);

    const child = spawn(process.execPath, [WRITER_SCRIPT, dir, digest, String(BLOB_SIZE), String(COMMIT_EVERY), String(CHUNK)], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = once(child, 'exit');

    // Kill once a commit past the threshold is durable and at least two more chunks sit in the file
    // uncommitted; the child keeps writing flat out until the signal lands.
    let observedCommitted = 0;
    let observedWritten = 0;
    let finishedBeforeKill = false;
    for await (const line of createInterface({ input: child.stdout })) {
      if (line === 'finished') finishedBeforeKill = true;
      const match = /^written (\d+) committed (\d+)$/.exec(line);
      if (match === null) continue;
      observedWritten = Number(match[1]);
      observedCommitted = Number(match[2]);
      if (observedCommitted >= KILL_AFTER_COMMITTED && observedWritten - observedCommitted >= 2 * CHUNK) {
        child.kill('SIGKILL');
        break;
      }
    }
    const [exitCode, signal] = (await exited) as [number | null, NodeJS.Signals | null];
    expect(stderr).toBe('');
    expect(finishedBeforeKill).toBe(false);
    expect({ exitCode, signal }).toEqual({ exitCode: null, signal: 'SIGKILL' });

    const partialFile = join(dir, 'partial', digestHex(digest));
    const sizeAtKill = (await stat(partialFile)).size;
    // The file holds more than was ever committed: the unflushed tail the reopen must not trust.
    expect(sizeAtKill).toBeGreaterThanOrEqual(observedWritten);
    expect(observedWritten).toBeGreaterThan(observedCommitted);

    const store = createBlobStore({ dir, logger: silentLogger(), commitEveryBytes: COMMIT_EVERY });
    await store.open();
    try {
      const [holding] = await store.holdings([{ digest, size: BLOB_SIZE }]);
      expect(holding?.held).toBe(false);
      const committed = holding?.pieces[0]?.committed ?? 0;
      // At least what the child reported as durable; it may have committed once more before dying.
      expect(committed).toBeGreaterThanOrEqual(observedCommitted);
      expect(committed).toBeLessThanOrEqual(sizeAtKill);
      expect(committed).toBeLessThan(BLOB_SIZE);

      // Past the committed offset the file may hold anything a crash left (here: garbage in place of
      // the unsynced tail). The resumed piece must neither hash nor keep those bytes.
      await overwrite(partialFile, committed, sizeAtKill - committed);
      const writer = await store.openPiece({ digest, blobSize: BLOB_SIZE, offset: 0, length: BLOB_SIZE });
      expect(writer.committed).toBe(committed);
      expect(writer.written).toBe(committed);

      for (let at = committed; at < BLOB_SIZE; at += CHUNK) {
        await writer.write(patternBytes(at, Math.min(CHUNK, BLOB_SIZE - at)));
      }
      const { sha256 } = await writer.finish();
      expect(sha256).toBe(digest);
      expect(await store.has(digest)).toBe(false);

      await store.completeBlob(digest, BLOB_SIZE);
      expect(await store.has(digest)).toBe(true);
      const hash = createDigester();
      for await (const chunk of await store.openBlob(digest)) hash.update(chunk as Buffer);
      expect(digestOf(hash)).toBe(digest);
    } finally {
      await store.close();
    }
  });
});
