import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorCode } from '@meshmirror/shared';
import { loadHtpasswd, parseBasicAuthorization } from './htpasswd.ts';

/** `htpasswd -Bbn alice s3cret` and `htpasswd -Bbn -C 4 bob 'U*U'` (apache2-utils). */
const ALICE = 'alice:$2y$05$EVKF9xeX0QUr8XLFuMhb0uYU9GeEj0V2P7bd1Ww/BLcleDWptyvtO';
const BOB = 'bob:$2y$04$FhZ25.5ddyg1tYOFvMO6.OJ1HUeVSBrkwjuKv4sWi2xXxq37KWT.e';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-htpasswd-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('loadHtpasswd', () => {
  it('accepts the right password only, for known users only', async () => {
    const file = join(dir, 'users');
    await writeFile(file, `# meshmirror serve users\n\n${ALICE}\r\n  ${BOB}  \n`);
    const auth = await loadHtpasswd(file);
    expect(auth.realm).toBe('meshmirror');
    expect(await auth.authenticate(basic('alice', 's3cret'))).toBe('alice');
    // Remembered, and still right.
    expect(await auth.authenticate(basic('alice', 's3cret'))).toBe('alice');
    expect(await auth.authenticate(basic('bob', 'U*U'))).toBe('bob');
    for (const header of [
      basic('alice', 'S3cret'),
      basic('carol', 's3cret'),
      basic('bob', 's3cret'),
      undefined,
      'Bearer abc',
      'Basic !!!',
      `Basic ${Buffer.from('alice').toString('base64')}`,
    ]) {
      expect(await auth.authenticate(header), header).toBeUndefined();
    }
  });

  it('reads the file again when it changes, and keeps the old users when the new file is broken', async () => {
    const file = join(dir, 'changing');
    await writeFile(file, `${ALICE}\n`);
    const auth = await loadHtpasswd(file);
    expect(await auth.authenticate(basic('bob', 'U*U'))).toBeUndefined();
    await writeFile(file, `${BOB}\n`);
    await utimes(file, new Date(), new Date(Date.now() + 10_000));
    expect(await auth.authenticate(basic('bob', 'U*U'))).toBe('bob');
    expect(await auth.authenticate(basic('alice', 's3cret'))).toBeUndefined();
    await writeFile(file, 'bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n');
    await utimes(file, new Date(), new Date(Date.now() + 20_000));
    expect(await auth.authenticate(basic('bob', 'U*U'))).toBe('bob');
  });

  it('names the file and line of an entry it cannot check', async () => {
    const cases: Array<[string, RegExp]> = [
      [`${ALICE}\nbob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n`, /:2: the entry of user "bob" is not a bcrypt hash; only bcrypt entries are supported \(htpasswd -B\)/],
      [`# users\nno-colon\n`, /:2: expected user:hash/],
      [`${ALICE}\n${ALICE}\n`, /:2: user "alice" has a second entry/],
    ];
    for (const [text, message] of cases) {
      const file = join(dir, 'bad');
      await writeFile(file, text);
      const error = await loadHtpasswd(file).catch((e: unknown) => e);
      expect(errorCode(error)).toBe('MM_USAGE');
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).toContain(`--htpasswd ${file}`);
    }
    const missing = await loadHtpasswd(join(dir, 'missing')).catch((e: unknown) => e);
    expect((missing as Error).message).toMatch(/--htpasswd .*missing: cannot be read/);
  });
});

describe('parseBasicAuthorization', () => {
  it('splits at the first colon and keeps the rest of the password', () => {
    expect(parseBasicAuthorization(basic('u', 'p:a:ss'))).toEqual({ user: 'u', password: 'p:a:ss' });
    expect(parseBasicAuthorization(`basic   ${Buffer.from('u:').toString('base64')}`)).toEqual({ user: 'u', password: '' });
    expect(parseBasicAuthorization('Digest abc')).toBeUndefined();
  });
});
