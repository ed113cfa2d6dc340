/**
 * Real clients pulling from `meshmirror serve`: podman and skopeo take every image of an archive
 * (Docker and OCI formats, by tag and by digest, a platform of a multi-arch image), layouts written
 * by skopeo, umoci and buildah are served under their folder's name (or `--repository`), and serve
 * works behind TLS and htpasswd authentication as a client configured for a real registry expects.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaType, type Digest } from '@meshmirror/shared';
import { buildServeFixture, serveRefusal, startServeProcess, type ServedImage, type ServeFixture, type ServeProcess } from './support/serve-fixture.ts';
import { SKOPEO_BINARY } from './support/skopeo.ts';

const execFileAsync = promisify(execFile);

let fx: ServeFixture;
let work: string;
let archive: ServeProcess;

beforeAll(async () => {
  fx = await buildServeFixture();
  work = await mkdtemp(join(tmpdir(), 'mm-serve-clients-'));
  archive = await startServeProcess(fx.archiveDir);
}, 120_000);

afterAll(async () => {
  await archive?.stop();
  await fx?.close();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

async function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const failed = error as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')}: ${failed.stderr ?? failed.message}`);
  }
}

function skopeo(args: string[]): Promise<string> {
  return run(SKOPEO_BINARY, ['--insecure-policy', ...args]);
}

/** podman with storage of its own in a temporary folder (vfs: no overlay mounts needed). */
async function podman(args: string[]): Promise<string> {
  const root = join(work, 'podman');
  await mkdir(join(root, 'xdg'), { recursive: true, mode: 0o700 });
  return run('podman', ['--root', join(root, 'storage'), '--runroot', join(root, 'run'), '--storage-driver', 'vfs', ...args], { XDG_RUNTIME_DIR: join(root, 'xdg') });
}

/** A GET over HTTPS trusting `ca`: fetch cannot be given a CA of its own. */
async function httpsGet(
  url: string,
  options: { ca: Buffer; headers?: Record<string, string> },
): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return await new Promise((resolve, reject) => {
    const request = httpsRequest(url, { ca: options.ca, headers: options.headers ?? {} }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end();
  });
}

function sha256(bytes: Buffer): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function images(): Array<[string, ServedImage]> {
  return [
    ['OCI manifest', fx.ociApp],
    ['OCI index', fx.ociMulti],
    ['Docker schema 2', fx.dockerApp],
    ['Docker manifest list', fx.dockerMulti],
    ['mirrored by digest', fx.pinned],
  ];
}

describe('podman and skopeo pull every image from serve of an archive', () => {
  it('skopeo copies each by tag and by digest, every platform, with the digests intact', async () => {
    for (const [what, image] of images()) {
      for (const ref of [`${image.repository}:${image.tags[0]!}`, `${image.repository}@${image.digest}`]) {
        const dest = join(work, 'skopeo-copy', ref.replace(/[/:@]/g, '_'));
        await mkdir(join(work, 'skopeo-copy'), { recursive: true });
        await skopeo(['copy', '--all', '--preserve-digests', '--src-tls-verify=false', `docker://${archive.host}/${ref}`, `dir:${dest}`]);
        expect(sha256(await readFile(join(dest, 'manifest.json'))), `${what} ${ref}`).toBe(image.digest);
        for (const blob of image.blobs) expect(sha256(await readFile(join(dest, blob.slice('sha256:'.length)))), blob).toBe(blob);
      }
    }
  });

  it('skopeo takes the platform asked with --override-arch and --override-variant', async () => {
    for (const image of [fx.ociMulti, fx.dockerMulti]) {
      for (const [platform, child] of image.platforms) {
        const [arch = '', variant] = platform.split('/');
        const flags = ['--override-arch', arch, ...(variant === undefined ? [] : ['--override-variant', variant])];
        const ref = `docker://${archive.host}/${image.repository}:${image.tags[0]!}`;
        const inspected = JSON.parse(await skopeo(['inspect', ...flags, '--tls-verify=false', ref])) as { Architecture: string; Variant?: string };
        expect(inspected.Architecture).toBe(arch);
        const dest = join(work, 'skopeo-platform', `${image.repository.replace('/', '_')}-${arch}`);
        await mkdir(join(work, 'skopeo-platform'), { recursive: true });
        await skopeo(['copy', ...flags, '--preserve-digests', '--src-tls-verify=false', ref, `dir:${dest}`]);
        expect(sha256(await readFile(join(dest, 'manifest.json'))), `${image.mediaType} ${platform}`).toBe(child.digest);
      }
    }
  });

  it('podman pulls each by tag and by digest, and the arm64 image of a multi-arch one with --arch', async () => {
    for (const [what, image] of images()) {
      for (const ref of [`${archive.host}/${image.repository}:${image.tags[0]!}`, `${archive.host}/${image.repository}@${image.digest}`]) {
        const id = (await podman(['pull', '-q', '--tls-verify=false', ref])).trim();
        const [inspected] = JSON.parse(await podman(['image', 'inspect', id])) as Array<{ Architecture: string; RepoDigests: string[] }>;
        expect(inspected?.Architecture, `${what} ${ref}`).toBe('amd64');
        expect(inspected?.RepoDigests).toContain(`${archive.host}/${image.repository}@${image.digest}`);
      }
    }
    for (const image of [fx.ociMulti, fx.dockerMulti]) {
      const ref = `${archive.host}/${image.repository}:${image.tags[0]!}`;
      const id = (await podman(['pull', '-q', '--tls-verify=false', '--arch', 'arm64', '--variant', 'v8', ref])).trim();
      const [inspected] = JSON.parse(await podman(['image', 'inspect', id])) as Array<{ Architecture: string; Digest: string; RepoDigests: string[] }>;
      expect(inspected?.Architecture, image.mediaType).toBe('arm64');
      expect(inspected?.RepoDigests).toContain(`${archive.host}/${image.repository}@${image.platforms.get('arm64/v8')!.digest}`);
    }
  });
});

describe('layouts written by skopeo, umoci and buildah (bare tags)', () => {
  it('are served under the folder name, or --repository, and pulled by podman and skopeo', async () => {
    const skopeoLayout = join(work, 'skopeo-layout');
    await skopeo(['copy', '--src-tls-verify=false', `docker://${archive.host}/${fx.ociApp.repository}:1.0`, `oci:${skopeoLayout}:1.0`]);
    const umociLayout = join(work, 'umoci-layout');
    await run('umoci', ['init', '--layout', umociLayout]);
    await run('umoci', ['new', '--image', `${umociLayout}:base`]);
    await run('umoci', ['tag', '--image', `${umociLayout}:base`, 'latest']);
    const buildahLayout = join(work, 'buildah-layout');
    const buildahRoot = join(work, 'buildah');
    await mkdir(join(buildahRoot, 'xdg'), { recursive: true, mode: 0o700 });
    const buildah = (args: string[]): Promise<string> =>
      run('buildah', ['--root', join(buildahRoot, 'storage'), '--runroot', join(buildahRoot, 'run'), '--storage-driver', 'vfs', ...args], {
        XDG_RUNTIME_DIR: join(buildahRoot, 'xdg'),
      });
    const container = (await buildah(['from', 'scratch'])).trim();
    await buildah(['config', '--cmd', '/hello', container]);
    await buildah(['commit', '-q', container, 'meshmirror-serve-test']);
    await buildah(['push', '-q', 'meshmirror-serve-test', `oci:${buildahLayout}:2.0`]);

    const layouts: Array<[string, string, string]> = [
      [skopeoLayout, 'skopeo-layout', '1.0'],
      [umociLayout, 'umoci-layout', 'latest'],
      [buildahLayout, 'buildah-layout', '2.0'],
    ];
    for (const [dir, repository, tag] of layouts) {
      const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: Digest; annotations: Record<string, string> }> };
      const digest = index.manifests.find((m) => m.annotations['org.opencontainers.image.ref.name'] === tag)!.digest;
      for (const [flags, name] of [
        [[], repository],
        [['--repository', 'tools/app'], 'tools/app'],
      ] as const) {
        const server = await startServeProcess(dir, [...flags]);
        try {
          const catalog = (await (await fetch(`${server.url}/v2/_catalog`)).json()) as { repositories: string[] };
          expect(catalog.repositories, dir).toEqual([name]);
          const tags = (await (await fetch(`${server.url}/v2/${name}/tags/list`)).json()) as { tags: string[] };
          expect(tags.tags).toContain(tag);
          const raw = Buffer.from(await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${server.host}/${name}:${tag}`]));
          expect(sha256(raw)).toBe(digest);
          const id = (await podman(['pull', '-q', '--tls-verify=false', `${server.host}/${name}:${tag}`])).trim();
          const [inspected] = JSON.parse(await podman(['image', 'inspect', id])) as Array<{ RepoDigests: string[] }>;
          expect(inspected?.RepoDigests).toContain(`${server.host}/${name}@${digest}`);
        } finally {
          await server.stop();
        }
      }
    }
  });
});

describe('TLS and htpasswd', () => {
  let certs: string;
  let cert: string;
  let key: string;
  let htpasswdFile: string;

  beforeAll(async () => {
    certs = join(work, 'certs');
    await mkdir(certs, { recursive: true });
    cert = join(certs, 'ca.crt');
    key = join(work, 'server.key');
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    htpasswdFile = join(work, 'htpasswd');
    await writeFile(htpasswdFile, await run('htpasswd', ['-Bbn', 'alice', 's3cret']));
  });

  it('serves HTTPS that skopeo and podman trust through --cert-dir, and refuses to verify without it', async () => {
    const server = await startServeProcess(fx.archiveDir, ['--tls-cert', cert, '--tls-key', key]);
    try {
      expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const ref = `docker://${server.host}/${fx.ociApp.repository}:1.0`;
      expect(sha256(Buffer.from(await skopeo(['inspect', '--raw', '--cert-dir', certs, ref])))).toBe(fx.ociApp.digest);
      await expect(skopeo(['inspect', '--raw', ref])).rejects.toThrow(/certificate/);
      expect(sha256(Buffer.from(await skopeo(['inspect', '--raw', '--tls-verify=false', ref])))).toBe(fx.ociApp.digest);
      const id = (await podman(['pull', '-q', '--cert-dir', certs, `${server.host}/${fx.dockerMulti.repository}:2.0`])).trim();
      expect(id).toMatch(/^[0-9a-f]{64}$/);
    } finally {
      await server.stop();
    }
  });

  it('refuses bad TLS files by name, before listening', async () => {
    const otherKey = join(work, 'other.key');
    await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', otherKey]);
    const notPem = join(work, 'not-a-cert.pem');
    await writeFile(notPem, 'not a certificate\n');
    const cases: Array<[string[], RegExp]> = [
      [['--tls-cert', cert], /--tls-cert and --tls-key go together: --tls-cert was given alone/],
      [['--tls-key', key], /--tls-cert and --tls-key go together: --tls-key was given alone/],
      [['--tls-cert', join(work, 'missing.crt'), '--tls-key', key], /--tls-cert .*missing\.crt: cannot be read/],
      [['--tls-cert', notPem, '--tls-key', key], /--tls-cert .*not-a-cert\.pem: not a PEM certificate/],
      [['--tls-cert', cert, '--tls-key', notPem], /--tls-key .*not-a-cert\.pem: not a PEM private key/],
      [['--tls-cert', cert, '--tls-key', otherKey], /--tls-key .*other\.key is not the private key of the certificate in --tls-cert .*ca\.crt/],
    ];
    for (const [flags, message] of cases) {
      const refused = await serveRefusal(fx.archiveDir, flags);
      expect(refused.code, flags.join(' ')).toBe(2);
      expect(refused.stderr).toMatch(message);
      expect(refused.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('asks for credentials with 401 and a Basic challenge, lets the right ones through, and never logs a password', async () => {
    const server = await startServeProcess(fx.archiveDir, ['--tls-cert', cert, '--tls-key', key, '--htpasswd', htpasswdFile, '--log-level', 'debug']);
    try {
      const ref = `docker://${server.host}/${fx.ociApp.repository}:1.0`;
      const tlsFlags = ['--cert-dir', certs];
      await expect(skopeo(['inspect', '--raw', ...tlsFlags, ref])).rejects.toThrow(/unauthorized|authentication required|401/i);
      await expect(skopeo(['inspect', '--raw', ...tlsFlags, '--creds', 'alice:wrong-password', ref])).rejects.toThrow(/unauthorized|authentication required|401/i);
      await expect(skopeo(['inspect', '--raw', ...tlsFlags, '--creds', 'mallory:s3cret', ref])).rejects.toThrow(/unauthorized|authentication required|401/i);
      expect(sha256(Buffer.from(await skopeo(['inspect', '--raw', ...tlsFlags, '--creds', 'alice:s3cret', ref])))).toBe(fx.ociApp.digest);
      const id = (await podman(['pull', '-q', '--cert-dir', certs, '--creds', 'alice:s3cret', `${server.host}/${fx.dockerApp.repository}:1.0`])).trim();
      expect(id).toMatch(/^[0-9a-f]{64}$/);

      // What a client sees on its first request, as distribution's htpasswd authentication answers.
      const ca = await readFile(cert);
      const challenge = await httpsGet(`https://${server.host}/v2/`, { ca });
      expect(challenge.status).toBe(401);
      expect(challenge.headers['www-authenticate']).toBe('Basic realm="meshmirror"');
      const body = JSON.parse(challenge.body.toString()) as { errors: Array<{ code: string; message: string }> };
      expect(body.errors[0]).toMatchObject({ code: 'UNAUTHORIZED', message: 'authentication required' });
      const manifest = await httpsGet(`https://${server.host}/v2/${fx.ociApp.repository}/manifests/1.0`, {
        ca,
        headers: { Accept: MediaType.OciManifest, Authorization: `Basic ${Buffer.from('alice:s3cret').toString('base64')}` },
      });
      expect(manifest.status).toBe(200);
      expect(sha256(manifest.body)).toBe(fx.ociApp.digest);
    } finally {
      await server.stop();
    }
    const logs = server.stderr();
    expect(logs).toMatch(/"msg":"basic authentication failed"/);
    expect(logs).toMatch(/"user":"mallory"/);
    for (const secret of ['s3cret', 'wrong-password', Buffer.from('alice:s3cret').toString('base64'), 'Basic ']) expect(logs).not.toContain(secret);
    expect(logs.toLowerCase()).not.toContain('authorization');
  });

  it('refuses an htpasswd file with an entry it cannot check, naming the file and line', async () => {
    const sha = join(work, 'sha-htpasswd');
    await writeFile(sha, `${await run('htpasswd', ['-bn', '-s', 'bob', 'pw'])}`);
    const refused = await serveRefusal(fx.archiveDir, ['--htpasswd', sha]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--htpasswd .*sha-htpasswd:1: the entry of user "bob" is not a bcrypt hash; only bcrypt entries are supported \(htpasswd -B\)/);
  });
});
