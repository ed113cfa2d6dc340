import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashedBytes } from '@meshmirror/shared';
import { HashPool } from './hash-pool.ts';

const MiB = 1024 * 1024;
let dir: string;
let path: string;
const data = randomBytes(5 * MiB + 777);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-hash-pool-'));
  path = join(dir, 'blob');
  await writeFile(path, data);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sha256 = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

describe('HashPool', () => {
  it('hashes a range across block boundaries as node:crypto does, and counts the bytes as hashed', async () => {
    const pool = new HashPool({ workers: 2 });
    try {
      const before = hashedBytes();
      const [range, whole] = await Promise.all([pool.hashFileRange(path, 13, 3 * MiB + 5_000), pool.hashFileRange(path, 0, data.length)]);
      expect(range).toEqual({ digest: sha256(data.subarray(13, 13 + 3 * MiB + 5_000)), bytesRead: 3 * MiB + 5_000 });
      expect(whole).toEqual({ digest: sha256(data), bytesRead: data.length });
      expect(hashedBytes() - before).toBe(3 * MiB + 5_000 + data.length);
    } finally {
      await pool.close();
    }
  });

  it('queues ranges beyond its workers and answers each', async () => {
    const pool = new HashPool({ workers: 1 });
    try {
      const offsets = [0, MiB, 2 * MiB, 3 * MiB];
      const hashes = await Promise.all(offsets.map((o) => pool.hashFileRange(path, o, MiB)));
      expect(hashes.map((h) => h.digest)).toEqual(offsets.map((o) => sha256(data.subarray(o, o + MiB))));
    } finally {
      await pool.close();
    }
  });

  it('reads what there is of a range past the end of the file, and says how much', async () => {
    const pool = new HashPool({ workers: 1 });
    try {
      const offset = data.length - 1_000;
      expect(await pool.hashFileRange(path, offset, 2 * MiB)).toEqual({ digest: sha256(data.subarray(offset)), bytesRead: 1_000 });
      expect(await pool.hashFileRange(path, data.length + 5, 10)).toEqual({ digest: sha256(Buffer.alloc(0)), bytesRead: 0 });
    } finally {
      await pool.close();
    }
  });

  it('rejects with the error of a file that cannot be opened, and goes on working', async () => {
    const pool = new HashPool({ workers: 1 });
    try {
      await expect(pool.hashFileRange(join(dir, 'absent'), 0, 10)).rejects.toMatchObject({ code: 'ENOENT' });
      expect((await pool.hashFileRange(path, 0, 10)).digest).toBe(sha256(data.subarray(0, 10)));
    } finally {
      await pool.close();
    }
  });

  it('rejects a running and a queued hash when aborted, and works on with a fresh worker', async () => {
    const pool = new HashPool({ workers: 1 });
    try {
      const controller = new AbortController();
      const running = pool.hashFileRange(path, 0, data.length, controller.signal);
      const queued = pool.hashFileRange(path, 0, data.length, controller.signal);
      controller.abort();
      await expect(running).rejects.toMatchObject({ code: 'MM_ABORTED' });
      await expect(queued).rejects.toMatchObject({ code: 'MM_ABORTED' });
      await expect(pool.hashFileRange(path, 0, 10, controller.signal)).rejects.toMatchObject({ code: 'MM_ABORTED' });
      expect((await pool.hashFileRange(path, 0, 10)).digest).toBe(sha256(data.subarray(0, 10)));
    } finally {
      await pool.close();
    }
  });

  it('ends a worker idle for idleMs: its thread goes, and the next hash starts a new one', async () => {
    const threads = (): number => readdirSync('/proc/self/task').length;
    const before = threads();
    const pool = new HashPool({ workers: 1, idleMs: 50 });
    try {
      await pool.hashFileRange(path, 0, 10);
      expect(pool.workers).toBe(1);
      expect(threads()).toBe(before + 1);
      await vi.waitFor(() => expect(threads()).toBe(before), { timeout: 5_000, interval: 20 });
      expect(pool.workers).toBe(0);
      expect(await pool.hashFileRange(path, 0, data.length)).toEqual({ digest: sha256(data), bytesRead: data.length });
      expect(pool.workers).toBe(1);
    } finally {
      await pool.close();
    }
  });

  it('keeps a worker that is given work within idleMs', async () => {
    const pool = new HashPool({ workers: 1, idleMs: 60_000 });
    try {
      await pool.hashFileRange(path, 0, 10);
      const threads = readdirSync('/proc/self/task').length;
      await pool.hashFileRange(path, 0, 10);
      expect(pool.workers).toBe(1);
      expect(readdirSync('/proc/self/task').length).toBe(threads);
    } finally {
      await pool.close();
    }
  });

  it('terminates its workers when closed: their threads are gone, pending hashes reject and later ones are refused', async () => {
    const threads = (): number => readdirSync('/proc/self/task').length;
    const before = threads();
    const pool = new HashPool({ workers: 2 });
    await Promise.all([pool.hashFileRange(path, 0, 10), pool.hashFileRange(path, 0, 10)]);
    expect(threads()).toBe(before + 2);
    const pending = [0, 1, 2].map(async () => expect(pool.hashFileRange(path, 0, data.length)).rejects.toMatchObject({ code: 'MM_ABORTED' }));
    await pool.close();
    expect(threads()).toBeLessThanOrEqual(before);
    await Promise.all(pending);
    await expect(pool.hashFileRange(path, 0, 10)).rejects.toMatchObject({ code: 'MM_ABORTED' });
  });
});
