import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSwarmKey, readSwarmKeyFile, SwarmKey, writeSwarmKeyFile } from './swarm-key.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-swarm-key-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('swarm key', () => {
  it('writes the libp2p private-network format, owner-only, and reads back the same key', async () => {
    const file = join(dir, 'swarm.key');
    const key = SwarmKey.generate();
    await writeSwarmKeyFile(file, key);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const text = await readFile(file, 'utf8');
    expect(text).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/);
    const back = await readSwarmKeyFile(file);
    expect(Buffer.from(back.prologue()).equals(Buffer.from(key.prologue()))).toBe(true);
    expect(back.fingerprint()).toBe(key.fingerprint());
  });

  it('never overwrites a key file unless forced', async () => {
    const file = join(dir, 'kept.key');
    const first = SwarmKey.generate();
    await writeSwarmKeyFile(file, first);
    await expect(writeSwarmKeyFile(file, SwarmKey.generate())).rejects.toMatchObject({
      code: 'MM_SWARM_KEY_INVALID',
      message: expect.stringContaining('already exists'),
    });
    expect((await readSwarmKeyFile(file)).fingerprint()).toBe(first.fingerprint());
    const second = SwarmKey.generate();
    await writeSwarmKeyFile(file, second, { force: true });
    expect((await readSwarmKeyFile(file)).fingerprint()).toBe(second.fingerprint());
  });

  it('gives different keys different prologues, and never shows the key in strings, JSON or inspect', () => {
    const a = SwarmKey.generate();
    const b = SwarmKey.generate();
    expect(Buffer.from(a.prologue()).equals(Buffer.from(b.prologue()))).toBe(false);
    const hex = a.encode().split('\n')[2] ?? '';
    expect(hex).toHaveLength(64);
    for (const shown of [String(a), JSON.stringify({ key: a }), inspect(a, { showHidden: true, depth: 5 }), `${a.fingerprint()}`]) {
      expect(shown).not.toContain(hex);
      expect(shown).not.toContain(hex.slice(0, 16));
    }
  });

  it.each([
    ['', 'first line must be /key/swarm/psk/1.0.0/'],
    ['/key/swarm/psk/1.0.0/\n/base64/\nAAAA\n', 'second line must be /base16/'],
    ['/key/swarm/psk/1.0.0/\n/base16/\nabcd\n', 'third line must be 64 hex digits'],
    [`/key/swarm/psk/1.0.0/\n/base16/\n${'z'.repeat(64)}\n`, 'third line must be 64 hex digits'],
    [`/key/swarm/psk/1.0.0/\n/base16/\n${'a'.repeat(64)}\nmore\n`, 'unexpected lines after the key'],
  ])('rejects a malformed key file with the file name and the reason: %j', (text, reason) => {
    expect(() => parseSwarmKey(text, '/etc/mm/swarm.key')).toThrow(`swarm key /etc/mm/swarm.key: ${reason}`);
  });

  it('refuses a key file other users can read, and names a missing one', async () => {
    const file = join(dir, 'open.key');
    await writeFile(file, SwarmKey.generate().encode(), { mode: 0o644 });
    await chmod(file, 0o644);
    await expect(readSwarmKeyFile(file)).rejects.toMatchObject({ code: 'MM_SWARM_KEY_INVALID', message: expect.stringContaining('chmod 600') });
    await expect(readSwarmKeyFile(join(dir, 'missing.key'))).rejects.toMatchObject({
      code: 'MM_SWARM_KEY_INVALID',
      message: expect.stringContaining(join(dir, 'missing.key')),
    });
  });
});
