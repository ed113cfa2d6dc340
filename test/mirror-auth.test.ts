import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSampleLayout } from '../packages/coordinator/src/demo/sample-image-set.ts';
import { runMeshmirror } from './support/cli.ts';
import { extractChunks } from './support/mirror-fixture.ts';
import { pushLayout, type PushedImage } from './support/push-layout.ts';
import { makeHtpasswd, startRegistry, type RunningRegistry } from './support/registry.ts';
import { skopeoInspectDigest } from './support/skopeo.ts';

const USER = 'mirror-bot';
const PASSWORD = 'S3cret-pa55word-that-must-not-leak';

/** Every file below `dir`, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe('mirror from a registry that needs credentials', () => {
  let dir: string;
  let registry: RunningRegistry;
  let pushed: PushedImage[];
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshmirror-auth-'));
    const htpasswd = await makeHtpasswd(dir, USER, PASSWORD);
    registry = await startRegistry({ config: { auth: { htpasswd: { realm: 'meshmirror-test', path: htpasswd } } } });
    await writeSampleLayout(join(dir, 'layout'), [{ name: 'private/app:1.0', platforms: [{ architecture: 'amd64', layers: [{ seed: 'private', size: 300_000 }] }] }]);
    pushed = await pushLayout(join(dir, 'layout'), registry.url, { credentials: { username: USER, password: PASSWORD } });
  });
  afterAll(async () => {
    await registry?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('uses --authfile, and the password appears in no log line, report or archive', async () => {
    const auth = Buffer.from(`${USER}:${PASSWORD}`).toString('base64');
    const authfile = join(dir, 'auth.json');
    await writeFile(authfile, JSON.stringify({ auths: { [registry.host]: { auth } } }));
    const config = join(dir, 'isc.yaml');
    await writeFile(
      config,
      `kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\nmirror:\n  additionalImages:\n    - name: ${registry.host}/private/app:1.0\n`,
    );
    const out = join(dir, 'out');
    const args = ['mirror', '-c', config, `file://${out}`, '--cache-dir', join(dir, 'cache'), '--src-tls-verify=false', '--log-level', 'trace'];

    // No credentials anywhere (a HOME of its own, no $REGISTRY_AUTH_FILE): the image fails by name.
    const anonymous = await runMeshmirror(args, { env: { HOME: dir, XDG_RUNTIME_DIR: dir, REGISTRY_AUTH_FILE: undefined } });
    expect(anonymous.code).toBe(68);
    expect(anonymous.stdout).toMatch(/401|UNAUTHORIZED|unauthorized/i);

    const result = await runMeshmirror([...args, '--authfile', authfile]);
    expect(result.code, result.stderr).toBe(0);
    // Off a TTY, progress comes as plain lines and the summary as text.
    expect(result.stderr).toMatch(/^progress: done .* images 1\/1 done, 0 failed$/m);
    expect(result.stdout).toMatch(/1 archived, 0 failed/);

    for (const secret of [PASSWORD, auth]) {
      expect(result.stdout).not.toContain(secret);
      expect(result.stderr).not.toContain(secret);
      for (const file of await filesUnder(out)) expect((await readFile(file)).includes(secret), file).toBe(false);
    }
    const layout = join(dir, 'layout-out');
    await extractChunks(out, layout);
    expect(await skopeoInspectDigest(`oci:${layout}:${registry.host}/private/app:1.0`)).toBe(pushed[0]!.digest);
  });

  it('asks credential helpers (credHelpers, credsStore) as docker does, and the secret appears nowhere', async () => {
    // A real helper program on PATH, speaking the docker-credential-helpers protocol; it logs each question.
    const bin = join(dir, 'helper-bin');
    await mkdir(bin, { recursive: true });
    const questions = join(dir, 'helper-questions.log');
    const helper = join(bin, 'docker-credential-mmtest');
    await writeFile(
      helper,
      [
        '#!/bin/sh',
        '[ "$1" = get ] || exit 2',
        'read -r server',
        `echo "$server" >> '${questions}'`,
        `if [ "$server" = '${registry.host}' ]; then`,
        `  printf '{"ServerURL":"%s","Username":"${USER}","Secret":"${PASSWORD}"}' "$server"`,
        'else',
        '  echo "credentials not found in native keychain"; exit 1',
        'fi',
        '',
      ].join('\n'),
    );
    await chmod(helper, 0o755);
    const config = join(dir, 'isc-helper.yaml');
    await writeFile(
      config,
      `kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\nmirror:\n  additionalImages:\n    - name: ${registry.host}/private/app:1.0\n`,
    );
    const env = { PATH: `${bin}:${process.env['PATH'] ?? ''}`, XDG_RUNTIME_DIR: dir, REGISTRY_AUTH_FILE: undefined };

    // credHelpers in an --authfile, for this registry only.
    const authfile = join(dir, 'helper-auth.json');
    await writeFile(authfile, JSON.stringify({ credHelpers: { [registry.host]: 'mmtest' } }));
    const args = (name: string) => [
      'mirror',
      '-c',
      config,
      `file://${join(dir, name)}`,
      '--cache-dir',
      join(dir, `${name}-cache`),
      '--src-tls-verify=false',
      '--log-level',
      'trace',
    ];
    const viaHelpers = await runMeshmirror([...args('out-helpers'), '--authfile', authfile], { env: { ...env, HOME: join(dir, 'no-home') } });
    expect(viaHelpers.code, viaHelpers.stderr).toBe(0);
    expect(viaHelpers.stdout).toMatch(/1 archived, 0 failed/);

    // credsStore in ~/.docker/config.json, docker's default helper for every registry.
    const home = join(dir, 'home');
    await mkdir(join(home, '.docker'), { recursive: true });
    await writeFile(join(home, '.docker', 'config.json'), JSON.stringify({ credsStore: 'mmtest', auths: { [registry.host]: {} } }));
    const viaStore = await runMeshmirror(args('out-store'), { env: { ...env, HOME: home } });
    expect(viaStore.code, viaStore.stderr).toBe(0);
    expect(viaStore.stdout).toMatch(/1 archived, 0 failed/);

    // Asked with the registry, once per run (cached), never with anything secret.
    expect((await readFile(questions, 'utf8')).trim().split('\n')).toEqual([registry.host, registry.host]);
    for (const result of [viaHelpers, viaStore]) {
      expect(result.stdout).not.toContain(PASSWORD);
      expect(result.stderr).not.toContain(PASSWORD);
    }
    for (const name of ['out-helpers', 'out-store']) {
      for (const file of await filesUnder(join(dir, name))) expect((await readFile(file)).includes(PASSWORD), file).toBe(false);
    }

    // A helper that is not installed: the image fails, naming the helper and the file.
    await writeFile(authfile, JSON.stringify({ credHelpers: { [registry.host]: 'not-installed' } }));
    const missing = await runMeshmirror([...args('out-missing'), '--authfile', authfile], { env: { ...env, HOME: join(dir, 'no-home') } });
    expect(missing.code).not.toBe(0);
    expect(`${missing.stdout}${missing.stderr}`).toContain(`${authfile}: credential helper docker-credential-not-installed for ${registry.host}: not found on PATH`);
  });
});
