import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MeshmirrorError } from '../errors.ts';
import { loadCredentialStore, normaliseKey, type Credentials } from './credentials.ts';

const basic = (user: string, password: string): string => Buffer.from(`${user}:${password}`).toString('base64');

let root: string;
let home: string;
let runtimeDir: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'mm-credentials-'));
  home = join(root, 'home');
  runtimeDir = join(root, 'run');
  await mkdir(home, { recursive: true });
  await mkdir(runtimeDir, { recursive: true });
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function writeJson(path: string, value: unknown): Promise<string> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, JSON.stringify(value));
  return path;
}

const authJson = (entries: Record<string, unknown>): unknown => ({ auths: entries });

describe('loadCredentialStore', () => {
  it('is anonymous when no auth file exists anywhere', async () => {
    const store = await loadCredentialStore({ env: {}, home });
    expect(store.get('quay.io')).toBeUndefined();
  });

  it('looks in --authfile, $REGISTRY_AUTH_FILE, containers auth.json (runtime, then config) and docker config, in that order', async () => {
    const authfile = await writeJson(join(root, 'flag.json'), authJson({ 'a.example': { auth: basic('from-flag', 'p1') } }));
    const envFile = await writeJson(
      join(root, 'env.json'),
      authJson({ 'a.example': { auth: basic('from-env', 'p2') }, 'b.example': { auth: basic('from-env', 'p2') } }),
    );
    await writeJson(
      join(runtimeDir, 'containers', 'auth.json'),
      authJson({ 'b.example': { auth: basic('from-runtime', 'p3') }, 'c.example': { auth: basic('from-runtime', 'p3') } }),
    );
    await writeJson(
      join(home, '.config', 'containers', 'auth.json'),
      authJson({ 'c.example': { auth: basic('from-config', 'p4') }, 'd.example': { auth: basic('from-config', 'p4') } }),
    );
    await writeJson(
      join(home, '.docker', 'config.json'),
      authJson({ 'd.example': { auth: basic('from-docker', 'p5') }, 'e.example': { username: 'from-docker', password: 'p5' } }),
    );
    const env = { REGISTRY_AUTH_FILE: envFile, XDG_RUNTIME_DIR: runtimeDir };

    const store = await loadCredentialStore({ authfile, env, home });
    expect(store.get('a.example')?.username).toBe('from-flag');
    expect(store.get('b.example')?.username).toBe('from-env');
    expect(store.get('c.example')?.username).toBe('from-runtime');
    expect(store.get('d.example')?.username).toBe('from-config');
    expect(store.get('e.example')).toEqual({ username: 'from-docker', password: 'p5' });
    expect(store.get('f.example')).toBeUndefined();

    const withoutFlag = await loadCredentialStore({ env, home });
    expect(withoutFlag.get('a.example')?.username).toBe('from-env');
  });

  it('decodes a password that contains colons', async () => {
    await writeJson(join(home, '.docker', 'config.json'), authJson({ 'localhost:5000': { auth: basic('robot$ci', 'pa:ss:word') } }));
    const store = await loadCredentialStore({ env: {}, home });
    expect(store.get('localhost:5000')).toEqual({ username: 'robot$ci', password: 'pa:ss:word' });
  });

  it('knows Docker Hub by all its names', async () => {
    await writeJson(join(home, '.docker', 'config.json'), authJson({ 'https://index.docker.io/v1/': { auth: basic('hubuser', 'hubpass') } }));
    const store = await loadCredentialStore({ env: {}, home });
    expect(store.get('docker.io')?.username).toBe('hubuser');
    expect(store.get('index.docker.io')?.username).toBe('hubuser');
    expect(store.get('registry-1.docker.io')?.username).toBe('hubuser');
  });

  it('prefers the most specific namespace entry for a repository', async () => {
    await writeJson(
      join(home, '.config', 'containers', 'auth.json'),
      authJson({
        'quay.io': { auth: basic('org-wide', 'x') },
        'quay.io/team': { auth: basic('team', 'y') },
        'http://registry.local:5000/': { auth: basic('local', 'z') },
      }),
    );
    const store = await loadCredentialStore({ env: {}, home });
    expect(store.get('quay.io', 'team/app')?.username).toBe('team');
    expect(store.get('quay.io', 'other/app')?.username).toBe('org-wide');
    expect(store.get('quay.io')?.username).toBe('org-wide');
    expect(store.get('registry.local:5000', 'x/y')?.username).toBe('local');
  });

  it('keeps an identity token for the OAuth2 token flow', async () => {
    await writeJson(join(home, '.docker', 'config.json'), authJson({ 'r.example': { auth: basic('<token>', ''), identitytoken: 'refresh-me' } }));
    const store = await loadCredentialStore({ env: {}, home });
    expect(store.get('r.example')).toEqual({ username: '<token>', password: '', identityToken: 'refresh-me' });
  });

  it('skips entries without credentials (credential-helper stubs)', async () => {
    await writeJson(join(home, '.docker', 'config.json'), { auths: { 'gcr.io': {} }, credHelpers: { 'gcr.io': 'gcloud' } });
    const store = await loadCredentialStore({ env: {}, home, runHelper: () => undefined });
    expect(store.get('gcr.io')).toBeUndefined();
  });
});

describe('credential helpers', () => {
  /** A fake helper: answers from `known` by helper and server, and records each question. */
  const fakeHelpers = (known: Record<string, Credentials>) => {
    const asked: string[] = [];
    const runHelper = (helper: string, server: string): Credentials | undefined => {
      asked.push(`${helper} ${server}`);
      return known[`${helper} ${server}`];
    };
    return { asked, runHelper };
  };

  it("asks the registry's own helper first, then the file's credsStore, then auths, each once", async () => {
    await writeJson(join(home, '.docker', 'config.json'), {
      credsStore: 'pass',
      credHelpers: { 'https://quay.io': 'ecr-login' },
      auths: { 'r.example': { auth: basic('file-user', 'file-pass') }, 'quay.io': {} },
    });
    const { asked, runHelper } = fakeHelpers({
      'ecr-login quay.io': { username: 'quay-user', password: 'quay-pass' },
      'pass https://index.docker.io/v1/': { username: '<token>', password: '', identityToken: 'hub-token' },
    });
    const store = await loadCredentialStore({ env: {}, home, runHelper });
    expect(store.get('quay.io', 'org/app')).toEqual({ username: 'quay-user', password: 'quay-pass' });
    expect(store.get('quay.io', 'org/other')).toEqual({ username: 'quay-user', password: 'quay-pass' });
    // Docker Hub is asked for by its v1 address.
    expect(store.get('registry-1.docker.io')?.identityToken).toBe('hub-token');
    // credsStore does not know r.example: the file's own entry answers.
    expect(store.get('r.example')).toEqual({ username: 'file-user', password: 'file-pass' });
    store.get('r.example');
    expect(asked).toEqual(['ecr-login quay.io', 'pass https://index.docker.io/v1/', 'pass r.example']);
  });

  it('names the helper and the file when the helper cannot be run, never what it printed', async () => {
    const file = join(home, 'auth.json');
    await writeJson(file, { credHelpers: { 'quay.io': 'missing-helper-xyz' } });
    const store = await loadCredentialStore({ authfile: file, env: {}, home });
    expect(() => store.get('quay.io')).toThrow(`${file}: credential helper docker-credential-missing-helper-xyz for quay.io: not found on PATH`);
  });

  it('refuses a helper name that is not one', async () => {
    const file = join(home, 'auth.json');
    await writeJson(file, { credHelpers: { 'quay.io': '../../bin/sh' } });
    await expect(loadCredentialStore({ authfile: file, env: {}, home })).rejects.toThrow('credHelpers "quay.io": expected a helper name');
    await writeJson(file, { credsStore: 7 });
    await expect(loadCredentialStore({ authfile: file, env: {}, home })).rejects.toThrow('"credsStore": expected a helper name');
  });
});

describe('a bad --authfile', () => {
  async function failure(authfile: string): Promise<MeshmirrorError> {
    const error: unknown = await loadCredentialStore({ authfile, env: {}, home }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MeshmirrorError);
    return error as MeshmirrorError;
  }

  it('that does not exist is a one-line MM_AUTHFILE_INVALID naming the file', async () => {
    const path = join(root, 'missing.json');
    const error = await failure(path);
    expect(error.code).toBe('MM_AUTHFILE_INVALID');
    expect(error.message).toBe(`${path}: cannot read auth file: no such file`);
  });

  it('that is not JSON fails without quoting its contents', async () => {
    const path = join(root, 'broken.json');
    await writeFile(path, '{"auths": {"quay.io": {"auth": "c2VjcmV0OnMzY3IzdA=="}}, oops');
    const error = await failure(path);
    expect(error.message).toBe(`${path}: cannot read auth file: not valid JSON`);
    expect(error.message).not.toContain('c2VjcmV0');
    expect(error.message.split('\n')).toHaveLength(1);
  });

  it('with an auth value that is not user:password names the entry, not the value', async () => {
    const path = await writeJson(join(root, 'bad-entry.json'), authJson({ 'quay.io': { auth: Buffer.from('no-colon-here').toString('base64') } }));
    const error = await failure(path);
    expect(error.message).toBe(`${path}: cannot read auth file: entry "quay.io": "auth" is not base64 of user:password`);
  });

  // root reads every file, so the case cannot be made there.
  it.skipIf(process.getuid?.() === 0)('that is unreadable says so', async () => {
    const path = await writeJson(join(root, 'secret.json'), authJson({}));
    await chmod(path, 0o000);
    const error = await failure(path);
    expect(error.message).toBe(`${path}: cannot read auth file: permission denied`);
  });

  it('from $REGISTRY_AUTH_FILE is an error when broken but fine when absent', async () => {
    const broken = join(root, 'env-broken.json');
    await writeFile(broken, 'not json');
    await expect(loadCredentialStore({ env: { REGISTRY_AUTH_FILE: broken }, home })).rejects.toMatchObject({ code: 'MM_AUTHFILE_INVALID' });
    const store = await loadCredentialStore({ env: { REGISTRY_AUTH_FILE: join(root, 'absent.json') }, home });
    expect(store.get('quay.io')).toBeUndefined();
  });

  it('in a default location is skipped so anonymous pulls still work', async () => {
    await mkdir(join(home, '.docker'), { recursive: true });
    await writeFile(join(home, '.docker', 'config.json'), '{ broken');
    await writeJson(join(home, '.config', 'containers', 'auth.json'), authJson({ 'quay.io': { auth: basic('u', 'p') } }));
    const store = await loadCredentialStore({ env: {}, home });
    expect(store.get('quay.io')?.username).toBe('u');
  });
});

describe('normaliseKey', () => {
  it.each([
    ['https://index.docker.io/v1/', 'docker.io'],
    ['index.docker.io', 'docker.io'],
    ['http://Registry.Local:5000/', 'registry.local:5000'],
    ['https://quay.io/v2/', 'quay.io'],
    ['quay.io/team/app', 'quay.io/team/app'],
  ])('%s → %s', (key, expected) => {
    expect(normaliseKey(key)).toBe(expected);
  });
});
