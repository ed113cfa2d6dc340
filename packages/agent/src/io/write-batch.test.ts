import { describe, expect, it } from 'vitest';
import { WriteBatch } from './write-batch.ts';

/** A sink that records copies of what it was handed (the batch reuses its buffer). */
function recorder(): { writes: Buffer[]; sink: (bytes: Buffer) => Promise<void> } {
  const writes: Buffer[] = [];
  return { writes, sink: async (bytes) => void writes.push(Buffer.from(bytes)) };
}

describe('WriteBatch', () => {
  it('gathers small chunks into writes of the capacity, in order, and flushes the rest', async () => {
    const { writes, sink } = recorder();
    const batch = new WriteBatch(sink, 1000, { capacity: 8 });
    const input = Buffer.from('abcdefghijklmnopqrstu');
    for (let i = 0; i < input.length; i += 3) await batch.push(input.subarray(i, i + 3));
    expect(writes.map((w) => w.length)).toEqual([8, 8]);
    expect(batch.pending).toBe(5);
    await batch.flush();
    expect(Buffer.concat(writes).toString()).toBe(input.toString());
    expect(writes.map((w) => w.length)).toEqual([8, 8, 5]);
  });

  it('splits a chunk larger than the capacity and never writes an empty batch', async () => {
    const { writes, sink } = recorder();
    const batch = new WriteBatch(sink, 1000, { capacity: 4 });
    await batch.push(Buffer.from('0123456789'));
    await batch.flush();
    await batch.flush();
    expect(writes.map((w) => w.toString())).toEqual(['0123', '4567', '89']);
  });

  it('sizes its buffer to the bytes expected, and leaves a full batch for the next push', async () => {
    const { writes, sink } = recorder();
    const batch = new WriteBatch(sink, 3, { capacity: 1024, idleFlushMs: 60_000 });
    await batch.push(Buffer.from('xyz'));
    // Full, but nothing more came: the caller may stop reading before anything waits on the sink.
    expect(writes).toEqual([]);
    expect(batch.pending).toBe(3);
    await batch.push(Buffer.from('!'));
    expect(writes.map((w) => w.toString())).toEqual(['xyz']);
    await batch.flush();
    expect(writes.map((w) => w.toString())).toEqual(['xyz', '!']);
  });

  it('is empty again after a failed write, so a retry does not write those bytes twice', async () => {
    let fail = true;
    const writes: string[] = [];
    const batch = new WriteBatch(
      async (bytes) => {
        if (fail) throw new Error('disk full');
        writes.push(bytes.toString());
      },
      100,
      { capacity: 4 },
    );
    await batch.push(Buffer.from('ab'));
    await expect(batch.flush()).rejects.toThrow('disk full');
    expect(batch.pending).toBe(0);
    fail = false;
    await batch.push(Buffer.from('cd'));
    await batch.flush();
    expect(writes).toEqual(['cd']);
  });

  it('writes out what a paused stream left in the batch once no chunk came for idleFlushMs', async () => {
    let wrote: (bytes: string) => void;
    const written = new Promise<string>((resolve) => (wrote = resolve));
    const batch = new WriteBatch(async (bytes) => wrote(bytes.toString()), 1000, { capacity: 64, idleFlushMs: 5 });
    await batch.push(Buffer.from('paused'));
    expect(await written).toBe('paused');
    expect(batch.pending).toBe(0);
    await batch.flush();
  });

  it('never hands the sink a buffer that a push is filling: the idle write and pushes take turns', async () => {
    const writes: string[] = [];
    let release!: () => void;
    const slow = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inSink = new Promise<void>((resolve) => (entered = resolve));
    let first = true;
    const batch = new WriteBatch(
      async (bytes) => {
        const copy = bytes.toString();
        if (first) {
          first = false;
          entered();
          await slow;
        }
        // What the sink was given is unchanged until it resolves.
        expect(bytes.toString()).toBe(copy);
        writes.push(copy);
      },
      1000,
      { capacity: 8, idleFlushMs: 1 },
    );
    await batch.push(Buffer.from('abc'));
    await inSink; // the idle write has started and waits in the sink
    const pushed = batch.push(Buffer.from('defgh'));
    release();
    await pushed;
    await batch.flush();
    expect(writes).toEqual(['abc', 'defgh']);
  });
});
