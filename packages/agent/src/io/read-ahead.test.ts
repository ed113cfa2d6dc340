import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readAhead } from './read-ahead.ts';

const MiB = 1024 * 1024;
let dir: string;
let path: string;
const data = randomBytes(2 * MiB + 777);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-read-ahead-'));
  path = join(dir, 'blob');
  await writeFile(path, data);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Copies every block as it comes: a block is only valid until the next one is asked for. */
async function collect(blocks: AsyncIterable<Buffer>): Promise<{ bytes: Buffer; sizes: number[] }> {
  const copies: Buffer[] = [];
  for await (const block of blocks) copies.push(Buffer.from(block));
  return { bytes: Buffer.concat(copies), sizes: copies.map((c) => c.length) };
}

describe('readAhead', () => {
  it('yields exactly the located bytes, in blocks of at most 1 MiB, across block boundaries', async () => {
    const { bytes, sizes } = await collect(readAhead({ path, offset: 13, size: MiB + 5_000 }));
    expect(bytes.equals(data.subarray(13, 13 + MiB + 5_000))).toBe(true);
    expect(sizes).toEqual([MiB, 5_000]);
    const whole = await collect(readAhead({ path, offset: 0, size: data.length }));
    expect(whole.bytes.equals(data)).toBe(true);
  });

  it('yields nothing for an empty location', async () => {
    expect((await collect(readAhead({ path, offset: 100, size: 0 }))).sizes).toEqual([]);
  });

  it('ends early when the file is shorter than the location says', async () => {
    const { bytes } = await collect(readAhead({ path, offset: data.length - 10, size: 1_000 }));
    expect(bytes.equals(data.subarray(data.length - 10))).toBe(true);
  });

  it('stops when aborted and when the caller stops early', async () => {
    const controller = new AbortController();
    const seen: number[] = [];
    await expect(async () => {
      for await (const block of readAhead({ path, offset: 0, size: data.length }, controller.signal)) {
        seen.push(block.length);
        controller.abort();
      }
    }).rejects.toMatchObject({ code: 'MM_ABORTED' });
    expect(seen).toEqual([MiB]);
    for await (const block of readAhead({ path, offset: 0, size: data.length })) {
      expect(block.length).toBe(MiB);
      break;
    }
  });

  it('refuses to follow a symbolic link', async () => {
    const link = join(dir, 'link');
    await symlink(path, link);
    await expect(collect(readAhead({ path: link, offset: 0, size: 10 }))).rejects.toMatchObject({ code: 'ELOOP' });
  });
});
