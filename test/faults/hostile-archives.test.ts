/**
 * Hostile archives and serve confinement (fault matrix). A real archive of a small set is written
 * by `meshmirror mirror`, then its chunk is rewritten by hand into hostile variants: path traversal,
 * links and special files, lying or oversized headers, truncation, blobs whose bytes do not match
 * their names, index.json that is not JSON or names what is not there, duplicate entries. Each must
 * be refused by `meshmirror mirror --from` (disk to mirror, into a real registry that must hold
 * nothing of the refused entry) and by `meshmirror serve`, with nothing written outside the target
 * folders. Last, `meshmirror serve DIR` must never read outside DIR whatever the URL or the links in
 * DIR say.
 */
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { scenario } from './matrix.ts';
import { buildChunk, listFiles, mapLimit, paxRecord, rawEntry, rawHeader, readTarEntries, stderrLines } from './hostile-inputs.ts';
import { runMeshmirror, spawnMeshmirror, waitFor, type CliResult } from '../support/cli.ts';
import { extractChunks, fixtureImages, mirrorArgs, startMirrorFixture, type MirrorFixture } from '../support/mirror-fixture.ts';
import { startRegistry, type RunningRegistry } from '../support/registry.ts';
import { skopeoInspectDigest } from '../support/skopeo.ts';

const KiB = 1024;
const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

interface Entry {
  name: string;
  data: Buffer;
}

let fx: MirrorFixture;
let target: RunningRegistry;
let root: string;
let config: string;
let original: Entry[];
let archiveId: string;
/** The app image: its index.json entry, manifest and top (unique) layer. */
let app: { ref: string; manifestDigest: string; manifest: { layers: Array<{ digest: string; size: number }> }; topLayer: string };
let caseNo = 0;

/** A hostile variant of the archive: how to build its one chunk, and what the refusal must say. */
interface HostileCase {
  name: string;
  chunk: (sentinel: string) => Buffer;
  /** The push refuses the whole archive (exit 1) or fails only the images it touches (exit 68). */
  push: { code: number; says: RegExp; intactImages?: number };
  /** serve refuses to start (exit 1), or starts and refuses the bad content (`blob`: GET of it fails). */
  serve: { refuses: true; says: RegExp } | { refuses: false; badBlob?: string; missingRef?: string };
  /** Entry names that must not appear anywhere (written outside the targets). */
  escapes?: string[];
}

const copy = (): Entry[] => original.map((e) => ({ name: e.name, data: Buffer.from(e.data) }));
const chunkOf = (entries: Entry[], extra: { extra?: Buffer[]; extraFirst?: Buffer[] } = {}) => buildChunk(entries, { archiveId, ...extra });
const indexJson = (entries: Entry[]) =>
  JSON.parse((entries.find((e) => e.name === 'index.json') as Entry).data.toString('utf8')) as {
    manifests: Array<{ digest: string; mediaType: string; size: number; annotations?: Record<string, string> }>;
  };
const setEntry = (entries: Entry[], name: string, data: Buffer): Entry[] => entries.map((e) => (e.name === name ? { name, data } : e));

/** Raw GET/HEAD with the path exactly as given (no URL normalisation, unlike fetch). */
async function rawGet(base: string, path: string, method = 'GET'): Promise<{ status: number; body: string; error?: string }> {
  const { hostname, port } = new URL(base);
  return await new Promise((resolve) => {
    const req = request({ host: hostname, port, path, method }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (s: string) => (body += s));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (err) => resolve({ status: res.statusCode ?? 0, body, error: String(err) }));
      res.on('aborted', () => resolve({ status: res.statusCode ?? 0, body, error: 'aborted' }));
    });
    req.on('error', (err) => resolve({ status: 0, body: '', error: String(err) }));
    req.end();
  });
}

/** Starts `meshmirror serve DIR`; resolves with its URL once it listens, or with its result if it exits first. */
async function tryServe(dir: string): Promise<{ url?: string; exited?: CliResult; stop(): Promise<void> }> {
  const { child, result } = spawnMeshmirror(['serve', dir, '--listen', '127.0.0.1:0', '--log-level', 'warn']);
  let out = '';
  let exited: CliResult | undefined;
  child.stdout?.on('data', (s: string) => (out += s));
  void result.then((r) => (exited = r));
  await waitFor(() => exited !== undefined || /serving .* at http:\/\/\S+/.test(out), 'serve to listen or exit');
  const url = /serving .* at (http:\/\/\S+)/.exec(out)?.[1]?.replace(/\/$/, '');
  return {
    ...(url === undefined ? {} : { url }),
    ...(exited === undefined ? {} : { exited }),
    async stop() {
      if (exited === undefined) {
        child.kill('SIGTERM');
        await result;
      }
    },
  };
}

interface HostileOutcome {
  name: string;
  ok: boolean;
  problems: string[];
  pushLine: string;
  serveLine: string;
  pushCode: number | null;
}

/** Pushes and serves one hostile archive; returns what went wrong (nothing, when refused as it must be). */
async function runHostile(c: HostileCase): Promise<HostileOutcome> {
  const dir = join(root, `case-${String(++caseNo).padStart(2, '0')}`);
  const archive = join(dir, 'archive');
  const sentinel = join(dir, 'sentinel');
  await mkdir(archive, { recursive: true });
  await mkdir(sentinel, { recursive: true });
  await writeFile(join(archive, 'mirror_000001.tar'), c.chunk(sentinel));
  const prefix = `hostile-${caseNo}`;
  const problems: string[] = [];

  const push = await runMeshmirror([
    'mirror',
    '-c',
    config,
    '--from',
    `file://${archive}`,
    `docker://${target.host}/${prefix}`,
    '--cache-dir',
    join(dir, 'cache'),
    '--dest-tls-verify=false',
    '--output',
    'json',
    '--retry-times',
    '0',
  ]);
  const pushLines = stderrLines(push.stderr).filter((l) => !l.startsWith('progress:'));
  let pushLine = (pushLines.find((l) => c.push.says.test(l)) ?? pushLines[0] ?? '').replaceAll(root, '$T');
  if (push.code !== c.push.code) problems.push(`push exit ${String(push.code)}, expected ${c.push.code}`);
  const errorFiles = (await listFiles(join(archive, 'working-dir', 'logs'))).filter((f) => f.startsWith('mirroring_errors'));
  const errorText = (await Promise.all(errorFiles.map((f) => readFile(join(archive, 'working-dir', 'logs', f), 'utf8')))).join('');
  if (c.push.code === 68) pushLine = `exit ${String(push.code)}; error file: ${errorText.trim().split('\n')[0] ?? ''}`.replaceAll(root, '$T');
  if (c.push.code === 68 && !c.push.says.test(errorText)) problems.push(`error file does not say ${String(c.push.says)}: ${errorText.slice(0, 200)}`);
  if (c.push.code !== 68 && !pushLines.some((l) => c.push.says.test(l)))
    problems.push(`push does not say ${String(c.push.says)}: ${pushLines.join(' | ').slice(0, 300)}`);
  if (/^\s+at /m.test(push.stderr)) problems.push('push: stack trace');
  const catalog = JSON.parse((await rawGet(target.url, '/v2/_catalog?n=1000')).body) as { repositories: string[] };
  const pushedRepos = catalog.repositories.filter((r) => r.startsWith(`${prefix}/`));
  if (c.push.code === 1 && pushedRepos.length > 0) problems.push(`target holds ${pushedRepos.join(', ')} from a refused archive`);
  if (c.push.code === 68) {
    // The images the hostile entry touches are not in the target; the others are, whole.
    const appTag = await rawGet(target.url, `/v2/${prefix}/sample/app/manifests/1.0`, 'HEAD');
    if (appTag.status !== 404) problems.push(`target has ${prefix}/sample/app:1.0 (HTTP ${appTag.status})`);
    if (c.serve.refuses === false && c.serve.badBlob !== undefined) {
      const blob = await rawGet(target.url, `/v2/${prefix}/sample/app/blobs/${c.serve.badBlob}`, 'HEAD');
      if (blob.status !== 404) problems.push(`target holds the bad blob (HTTP ${blob.status})`);
    }
    for (const image of fx.pushed.filter((p) => p.name !== 'sample/app:1.0').slice(0, c.push.intactImages ?? 1)) {
      const digest = await skopeoInspectDigest(`docker://${target.host}/${prefix}/${image.name}`).catch((err: unknown) => String(err));
      if (digest !== image.digest) problems.push(`${image.name} not intact in the target: ${digest.slice(0, 120)}`);
    }
  }

  // serve: of the archive folder as it is.
  const served = await tryServe(archive);
  let serveLine = '';
  try {
    if (c.serve.refuses) {
      if (served.exited === undefined) problems.push('serve started on a hostile archive');
      else {
        const lines = stderrLines(served.exited.stderr);
        serveLine = (lines[0] ?? '').replaceAll(root, '$T');
        if (served.exited.code !== 1) problems.push(`serve exit ${String(served.exited.code)}`);
        if (lines.length !== 1 || !c.serve.says.test(lines[0] ?? ''))
          problems.push(`serve does not say ${String(c.serve.says)} on one line: ${lines.join(' | ').slice(0, 300)}`);
      }
    } else if (served.url === undefined) {
      problems.push(`serve did not start: ${served.exited?.stderr.slice(0, 200) ?? ''}`);
    } else {
      if (c.serve.badBlob !== undefined) {
        const got = await rawGet(served.url, `/v2/sample/app/blobs/${c.serve.badBlob}`);
        const whole = got.status === 200 && got.error === undefined && sha256(Buffer.from(got.body, 'latin1')) !== c.serve.badBlob.slice(7) && got.body.length > 0;
        serveLine = `GET bad blob: HTTP ${got.status}${got.error === undefined ? '' : `, ${got.error}`}, ${got.body.length} bytes`;
        if (whole) problems.push('serve sent the whole mismatching blob as a success');
        if (got.status === 200 && got.error === undefined) problems.push('serve answered the bad blob with a clean 200');
      }
      if (c.serve.missingRef !== undefined) {
        const got = await rawGet(served.url, c.serve.missingRef);
        serveLine = `GET ${c.serve.missingRef.replace(/sha256:\w{8}\w+/, (m) => `${m.slice(0, 15)}…`)}: HTTP ${got.status}`;
        if (got.status < 400 || got.status >= 500) problems.push(`serve answered ${got.status} for what the archive lacks`);
      }
    }
  } finally {
    await served.stop();
  }

  // Nothing written outside the target folders: the sentinel stays empty, no escaped names anywhere.
  const stray = await listFiles(sentinel);
  if (stray.length > 0) problems.push(`written outside: ${stray.join(', ')}`);
  const everything = [...(await listFiles(dir)), ...(await listFiles(root).then((all) => all.filter((f) => !f.startsWith('case-'))))];
  for (const escaped of c.escapes ?? []) if (everything.some((f) => f.endsWith(escaped))) problems.push(`${escaped} was written`);
  return { name: c.name, ok: problems.length === 0, problems, pushLine, serveLine, pushCode: push.code };
}

function printOutcomes(group: string, outcomes: HostileOutcome[]): void {
  const text = outcomes.map(
    (o) =>
      `${o.ok ? '✓' : '✗'} ${o.name}\n    push:  ${o.pushLine.slice(0, 220)}\n    serve: ${o.serveLine.slice(0, 220)}${o.ok ? '' : `\n    ✗ ${o.problems.join('; ')}`}`,
  );
  console.log(`hostile archives: ${group}\n${text.join('\n')}`);
}

function hostileScenario(group: string, sample: boolean, cases: () => HostileCase[]): void {
  scenario(`hostile archive: ${group}`, { sample, timeout: 600_000 }, async (record) => {
    const list = cases();
    const outcomes = await mapLimit(list, 2, runHostile);
    printOutcomes(group, outcomes);
    const good = outcomes.filter((o) => o.ok).length;
    record({
      scenario: `hostile archive: ${group}`,
      faults: list.map((c) => c.name).join('; '),
      expected: list.length,
      delivered: good,
      outcome:
        good === list.length
          ? `${good}/${list.length} refused by push (${[...new Set(outcomes.map((o) => o.pushCode))].map((code) => `${outcomes.filter((o) => o.pushCode === code).length}× exit ${String(code)}`).join(', ')}${outcomes.some((o) => o.pushCode === 68) ? ': only the touched image fails, the others arrive intact' : ''}) and serve, naming chunk+entry; target holds nothing refused, nothing written outside`
          : `✗ ${outcomes
              .filter((o) => !o.ok)
              .map((o) => `${o.name}: ${o.problems[0] ?? ''}`)
              .join('; ')}`,
    });
    expect(outcomes.filter((o) => !o.ok).map((o) => `${o.name}: ${o.problems.join('; ')}`)).toEqual([]);
  });
}

/** Refused whole by both. */
const whole = (says: RegExp) => ({ push: { code: 1, says }, serve: { refuses: true as const, says } });

describe('fault matrix: hostile archives', () => {
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'meshmirror-hostile-'));
    const images = fixtureImages({ bigLayerBytes: 256 * KiB }).filter((i) => ['sample/base:1.0', 'sample/app:1.0', 'sample/big:1.0'].includes(i.name));
    [fx, target] = await Promise.all([startMirrorFixture(images), startRegistry()]);
    config = await fx.writeConfig('isc.yaml', { additionalImages: images.map((i) => fx.viaProxy(i.name)), archiveSize: 1 });
    const out = join(fx.dir, 'out');
    const result = await runMeshmirror(mirrorArgs(config, out, join(fx.dir, 'cache')));
    expect(result.code, result.stderr).toBe(0);
    original = readTarEntries(await readFile(join(out, 'mirror_000001.tar')));
    const manifestEntry = original.find((e) => e.name === 'meshmirror/chunk-000001.json') as Entry;
    archiveId = (JSON.parse(manifestEntry.data.toString('utf8')) as { archiveId: string }).archiveId;
    // Sanity: the untouched entries rebuilt by our writer make an archive push and serve accept.
    const entry = indexJson(original).manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name']?.endsWith('sample/app:1.0'));
    if (entry === undefined) throw new Error('no sample/app:1.0 in index.json');
    const manifest = JSON.parse((original.find((e) => e.name === `blobs/sha256/${entry.digest.slice(7)}`) as Entry).data.toString('utf8')) as typeof app.manifest;
    app = {
      ref: fx.viaProxy('sample/app:1.0'),
      manifestDigest: entry.digest,
      manifest,
      topLayer: (manifest.layers[manifest.layers.length - 1] as { digest: string }).digest,
    };
  });
  afterAll(async () => {
    await target?.stop();
    await fx?.close();
    await rm(root, { recursive: true, force: true });
  });

  scenario('hostile archive: control (our rewrite of the real chunk is accepted)', { sample: true }, async (record) => {
    const dir = join(root, 'control');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'mirror_000001.tar'), chunkOf(copy()));
    const push = await runMeshmirror([
      'mirror',
      '-c',
      config,
      '--from',
      `file://${dir}`,
      `docker://${target.host}/control`,
      '--cache-dir',
      join(root, 'control-cache'),
      '--dest-tls-verify=false',
      '--output',
      'json',
    ]);
    const served = await tryServe(dir);
    const digest =
      served.url === undefined ? 'not served' : await skopeoInspectDigest(`docker://${new URL(served.url).host}/sample/app:1.0`).catch((e: unknown) => String(e));
    await served.stop();
    const layout = join(root, 'control-layout');
    await extractChunks(dir, layout);
    const fromLayout = await skopeoInspectDigest(`oci:${layout}:${app.ref}`);
    record({
      scenario: 'hostile archive: control (our rewrite of the real chunk is accepted)',
      faults: 'none: the chunk rebuilt by the test writer',
      expected: 3,
      delivered: push.code === 0 ? JSON.parse(push.stdout).images.pushed : 0,
      outcome: `push exit ${String(push.code)}, serve ${digest === fx.pushed.find((p) => p.name === 'sample/app:1.0')?.digest ? '✓' : '✗'}, skopeo ✓`,
    });
    expect(push.code, push.stderr).toBe(0);
    expect(digest).toBe(fx.pushed.find((p) => p.name === 'sample/app:1.0')?.digest);
    expect(fromLayout).toBe(digest);
  });

  hostileScenario('path traversal', true, () => [
    {
      name: 'entry "../escaped-x"',
      chunk: () => chunkOf(copy(), { extraFirst: [rawEntry({ name: '../escaped-x', data: Buffer.from('pwned') })] }),
      ...whole(/mirror_000001\.tar.*"\.\.\/escaped-x".*\.\./),
      escapes: ['escaped-x'],
    },
    {
      name: 'absolute entry into a sentinel folder',
      chunk: (s) => chunkOf(copy(), { extraFirst: [rawEntry({ name: `${s}/abs-x`, data: Buffer.from('pwned') })] }),
      ...whole(/mirror_000001\.tar.*abs-x.*absolute/),
      escapes: ['abs-x'],
    },
    {
      name: 'entry "blobs/sha256/../../escaped-y"',
      chunk: () => chunkOf(copy(), { extra: [rawEntry({ name: 'blobs/sha256/../../escaped-y', data: Buffer.from('pwned') })] }),
      ...whole(/mirror_000001\.tar.*escaped-y.*\.\./),
      escapes: ['escaped-y'],
    },
    {
      name: 'entry "./../escaped-z" behind a GNU long name',
      chunk: () =>
        chunkOf(copy(), {
          extra: [
            rawEntry({ name: '././@LongLink', type: 'L', data: Buffer.from(`./${'a/'.repeat(60)}${'../'.repeat(62)}escaped-z\0`) }),
            rawEntry({ name: 'short', data: Buffer.from('pwned') }),
          ],
        }),
      ...whole(/mirror_000001\.tar.*escaped-z.*\.\./),
      escapes: ['escaped-z'],
    },
    {
      name: 'pax path "../escaped-p"',
      chunk: () =>
        chunkOf(copy(), {
          extra: [
            rawEntry({ name: 'PaxHeader', type: 'x', data: Buffer.from(paxRecord('path', '../escaped-p')) }),
            rawEntry({ name: 'innocent', data: Buffer.from('pwned') }),
          ],
        }),
      ...whole(/mirror_000001\.tar.*escaped-p.*\.\./),
      escapes: ['escaped-p'],
    },
  ]);

  hostileScenario('links and special files', false, () => [
    {
      name: 'symlink entry to /etc/passwd',
      chunk: () => chunkOf(copy(), { extra: [rawEntry({ name: 'evil-link', type: '2', linkname: '/etc/passwd' })] }),
      ...whole(/mirror_000001\.tar.*evil-link.*symbolic link/),
    },
    {
      name: 'hard link entry to /etc/passwd',
      chunk: () => chunkOf(copy(), { extra: [rawEntry({ name: 'evil-hard', type: '1', linkname: '/etc/passwd' })] }),
      ...whole(/mirror_000001\.tar.*evil-hard.*hard link/),
    },
    {
      name: 'a blob replaced by a symlink of the same name',
      chunk: () => {
        const entries = copy().filter((e) => e.name !== `blobs/sha256/${app.topLayer.slice(7)}`);
        return chunkOf(entries, { extra: [rawEntry({ name: `blobs/sha256/${app.topLayer.slice(7)}`, type: '2', linkname: '../../../../etc/shadow' })] });
      },
      ...whole(/mirror_000001\.tar.*blobs\/sha256\/.*symbolic link/),
    },
    {
      name: 'character device entry',
      chunk: () => chunkOf(copy(), { extra: [rawEntry({ name: 'dev-null', type: '3' })] }),
      ...whole(/mirror_000001\.tar.*dev-null.*entry type "3"/),
    },
    { name: 'FIFO entry', chunk: () => chunkOf(copy(), { extra: [rawEntry({ name: 'a-fifo', type: '6' })] }), ...whole(/mirror_000001\.tar.*a-fifo.*entry type "6"/) },
  ]);

  hostileScenario('headers and truncation', false, () => [
    {
      name: 'size field 8 GiB on a tiny entry',
      chunk: () => chunkOf(copy(), { extra: [rawEntry({ name: 'liar', data: Buffer.from('x'), sizeField: '77777777777\0' })] }),
      ...whole(/mirror_000001\.tar.*liar.*past the end/),
    },
    {
      name: 'base-256 size 2^80',
      chunk: () => chunkOf(copy(), { extra: [rawEntry({ name: 'huge', base256Size: 2n ** 80n })] }),
      ...whole(/mirror_000001\.tar.*huge.*size/),
    },
    {
      name: 'size field not octal',
      chunk: () => chunkOf(copy(), { extra: [rawEntry({ name: 'nan-size', data: Buffer.from('x'), sizeField: '9z9z9z9z9z9\0' })] }),
      ...whole(/mirror_000001\.tar.*nan-size.*size/),
    },
    {
      name: 'pax header with a 2 MiB path',
      chunk: () =>
        chunkOf(copy(), {
          extra: [
            rawEntry({ name: 'PaxHeader', type: 'x', data: Buffer.from(paxRecord('path', 'p'.repeat(2 * 1024 * KiB))) }),
            rawEntry({ name: 'after', data: Buffer.from('x') }),
          ],
        }),
      ...whole(/mirror_000001\.tar.*PaxHeader.*extended header/),
    },
    {
      name: 'pax record claiming 10^11 bytes',
      chunk: () =>
        chunkOf(copy(), {
          extra: [rawEntry({ name: 'PaxHeader', type: 'x', data: Buffer.from('99999999999 path=x\n') }), rawEntry({ name: 'after', data: Buffer.from('x') })],
        }),
      ...whole(/mirror_000001\.tar.*PaxHeader.*pax record/),
    },
    {
      name: 'GNU long name of 2 MiB',
      chunk: () =>
        chunkOf(copy(), {
          extra: [rawEntry({ name: '././@LongLink', type: 'L', data: Buffer.alloc(2 * 1024 * KiB, 0x61) }), rawEntry({ name: 'after', data: Buffer.from('x') })],
        }),
      ...whole(/mirror_000001\.tar.*extended header/),
    },
    {
      name: 'header checksum broken',
      chunk: () => {
        const bad = rawHeader({ name: 'broken', data: Buffer.alloc(1) });
        bad[0] = 0x42; // name changed after the checksum was computed
        return chunkOf(copy(), { extraFirst: [Buffer.concat([bad, Buffer.alloc(512)])] });
      },
      ...whole(/mirror_000001\.tar.*checksum/),
    },
    {
      name: 'chunk truncated in the middle',
      chunk: () => {
        const full = chunkOf(copy());
        return full.subarray(0, Math.floor(full.length / 2));
      },
      ...whole(/mirror_000001\.tar.*(truncated|past the end)/),
    },
    { name: 'chunk of zero bytes', chunk: () => Buffer.alloc(0), ...whole(/mirror_000001\.tar.*truncated/) },
    {
      name: 'chunk that is not a tar at all',
      chunk: () => Buffer.from('PK\u0003\u0004 this is a zip file, not a tar '.repeat(40)),
      ...whole(/mirror_000001\.tar.*checksum/),
    },
  ]);

  hostileScenario('digests and JSON', false, () => [
    {
      name: 'blob bytes do not match its name',
      chunk: () => {
        const entries = copy();
        const blob = entries.find((e) => e.name === `blobs/sha256/${app.topLayer.slice(7)}`) as Entry;
        const middle = Math.floor(blob.data.length / 2);
        blob.data[middle] = (blob.data[middle] ?? 0) ^ 0xff;
        return chunkOf(entries);
      },
      push: { code: 68, says: /sample\/app:1\.0|mismatch|sha256/, intactImages: 2 },
      serve: { refuses: false, badBlob: app.topLayer },
    },
    {
      name: 'index.json names a manifest the archive lacks',
      chunk: () => {
        const entries = copy();
        const index = indexJson(entries);
        const missing = `sha256:${sha256('not in the archive')}`;
        for (const m of index.manifests) if (m.digest === app.manifestDigest) m.digest = missing;
        return chunkOf(setEntry(entries, 'index.json', Buffer.from(JSON.stringify(index))));
      },
      push: { code: 68, says: /sample\/app:1\.0/, intactImages: 2 },
      serve: { refuses: false, missingRef: '/v2/sample/app/manifests/1.0' },
    },
    {
      name: 'manifest names a layer the archive lacks',
      chunk: () => {
        const entries = copy();
        const manifest = structuredClone(app.manifest) as { layers: Array<{ digest: string }> };
        (manifest.layers[manifest.layers.length - 1] as { digest: string }).digest = `sha256:${sha256('a layer nobody has')}`;
        const bytes = Buffer.from(JSON.stringify(manifest));
        const digest = `sha256:${sha256(bytes)}`;
        const index = indexJson(entries);
        for (const m of index.manifests) if (m.digest === app.manifestDigest) Object.assign(m, { digest, size: bytes.length });
        entries.push({ name: `blobs/sha256/${digest.slice(7)}`, data: bytes });
        return chunkOf(setEntry(entries, 'index.json', Buffer.from(JSON.stringify(index))));
      },
      push: { code: 68, says: /sample\/app:1\.0/, intactImages: 2 },
      serve: { refuses: false, missingRef: `/v2/sample/app/blobs/sha256:${sha256('a layer nobody has')}` },
    },
    {
      name: 'index.json is not JSON',
      chunk: () => chunkOf(setEntry(copy(), 'index.json', Buffer.from('{"manifests": [ {"digest": '))),
      ...whole(/mirror_000001\.tar.*index\.json.*not valid JSON/),
    },
    {
      name: 'index.json is JSON but not an index',
      chunk: () => chunkOf(setEntry(copy(), 'index.json', Buffer.from('{"manifests": "all of them"}'))),
      ...whole(/mirror_000001\.tar.*index\.json.*not an OCI image index/),
    },
    {
      name: 'index.json twice, different content',
      chunk: () => chunkOf(copy(), { extra: [rawEntry({ name: 'index.json', data: Buffer.from('{"schemaVersion":2,"manifests":[]}') })] }),
      ...whole(/mirror_000001\.tar.*index\.json.*twice/),
    },
    {
      name: 'a blob twice, different content',
      chunk: () => chunkOf(copy(), { extra: [rawEntry({ name: `blobs/sha256/${app.topLayer.slice(7)}`, data: Buffer.from('other bytes') })] }),
      ...whole(/mirror_000001\.tar.*blobs\/sha256\/.*twice/),
    },
    {
      name: 'chunk manifest offsets point into another blob',
      chunk: () => {
        // The chunk manifest comes last, so rewriting it moves no other entry.
        const entries = readTarEntries(chunkOf(copy())).map((e) => {
          if (e.name !== 'meshmirror/chunk-000001.json') return e;
          const parsed = JSON.parse(e.data.toString('utf8')) as { blobs: Array<{ offset: number }> };
          const [a, b] = parsed.blobs;
          if (a !== undefined && b !== undefined) [a.offset, b.offset] = [b.offset, a.offset];
          return { name: e.name, data: Buffer.from(JSON.stringify(parsed)) };
        });
        return Buffer.concat([...entries.map((e) => rawEntry(e)), Buffer.alloc(1024)]);
      },
      ...whole(/mirror_000001\.tar.*chunk-000001\.json.*lists sha256:/),
    },
  ]);

  scenario('hostile archive: serve confinement', { sample: true, timeout: 300_000 }, async (record) => {
    const dir = join(root, 'confine');
    const layout = join(dir, 'served', 'layout');
    const archive = join(dir, 'served', 'archive');
    await extractChunks(join(fx.dir, 'out'), layout);
    await mkdir(archive, { recursive: true });
    await cp(join(fx.dir, 'out', 'mirror_000001.tar'), join(archive, 'mirror_000001.tar'));
    // A secret outside the served folders, and links inside them that point at it.
    const secretText = `TOP-SECRET-${sha256(String(Date.now()))}`;
    const secret = join(dir, 'secret.txt');
    await writeFile(secret, secretText);
    const secretDigest = sha256(secretText);
    await symlink(secret, join(layout, 'blobs', 'sha256', secretDigest));
    await mkdir(join(layout, 'blobs', 'sha512'), { recursive: true });
    await symlink(join(dir), join(layout, 'blobs', 'sha512', 'up'));
    await symlink(secret, join(layout, 'secret-link'));
    await symlink(secret, join(archive, 'secret-link'));

    const attacks = [
      `/v2/sample/app/blobs/sha256:${secretDigest}`,
      `/v2/anything/blobs/sha256:${secretDigest}`,
      `/v2/sample/app/manifests/sha256:${secretDigest}`,
      '/v2/sample/app/blobs/sha256:../../../secret.txt',
      '/v2/sample/app/blobs/sha256:..%2f..%2f..%2fsecret.txt',
      '/v2/sample/app/blobs/sha256%3a..%2f..%2f..%2fsecret.txt',
      '/v2/sample/app/blobs/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt',
      '/v2/sample/app/blobs/%252e%252e%252f%252e%252e%252fsecret.txt',
      '/v2/sample/app/blobs/..\\..\\..\\secret.txt',
      '/v2/sample/app/blobs/sha256:..\\..\\..\\secret.txt',
      '/v2/../../../secret.txt',
      '/v2/%2e%2e/%2e%2e/%2e%2e/secret.txt',
      '/../../secret.txt',
      '/v2/sample/../../../secret.txt/manifests/latest',
      '/v2/..%2f..%2f..%2fsecret.txt/manifests/latest',
      '/v2/sample/app/manifests/..%2f..%2f..%2fsecret.txt',
      '/v2/sample/app/manifests/../../../../secret.txt',
      '/v2/secret-link/manifests/latest',
      '/v2/sample/app/blobs/secret-link',
      '/v2/sample/app/blobs/sha512:up%2fsecret.txt',
      `/v2/sample/app/blobs/sha512:up/secret.txt`,
      '/v2/sample/app/tags/list?n=../../secret.txt',
      `/v2/sample/app/blobs/sha256:${secretDigest}%00.tar`,
      '/v2/_catalog?last=../../../secret.txt',
    ];
    const results: Array<{ where: string; path: string; status: number; leaked: boolean }> = [];
    for (const [where, folder] of [
      ['layout', layout],
      ['archive', archive],
    ] as const) {
      const served = await tryServe(folder);
      try {
        expect(served.url, served.exited?.stderr).toBeDefined();
        for (const path of attacks) {
          for (const method of ['GET', 'HEAD']) {
            const got = await rawGet(served.url as string, path, method);
            results.push({ where: `${where} ${method}`, path, status: got.status, leaked: got.body.includes(secretText) || got.body.includes('TOP-SECRET') });
          }
        }
        // The real content is still served: confinement did not break the registry.
        const digest = await skopeoInspectDigest(`docker://${new URL(served.url as string).host}/sample/app:1.0`);
        expect(digest).toBe(fx.pushed.find((p) => p.name === 'sample/app:1.0')?.digest);
      } finally {
        await served.stop();
      }
    }
    // /v2/_catalog and tags/list answer 200 with no secret; every path that reaches for a file must be 4xx.
    const listing = (path: string) => path.startsWith('/v2/_catalog') || path.includes('/tags/list');
    const bad = results.filter((r) => r.leaked || (listing(r.path) ? r.status !== 200 && (r.status < 400 || r.status >= 500) : r.status < 400 || r.status >= 500));
    console.log(
      `hostile archives: serve confinement (${results.length} requests)\n${results.map((r) => `${r.leaked || bad.includes(r) ? '✗' : '✓'} ${r.where.padEnd(13)} ${String(r.status)} ${r.path.replace(secretDigest, 'SECRET-DIGEST')}`).join('\n')}`,
    );
    record({
      scenario: 'hostile archive: serve confinement',
      faults: `${attacks.length} traversal URLs × GET/HEAD × layout/archive; symlinks in DIR to a secret outside (blob named by the secret's digest, a linked folder)`,
      expected: results.length,
      delivered: results.length - bad.length,
      outcome:
        bad.length === 0
          ? `${results.length}/${results.length} answered 4xx (listings 200), secret never in a body; skopeo ✓ on the real image`
          : `✗ ${bad.map((r) => `${r.where} ${r.path} → ${r.status}${r.leaked ? ' LEAKED' : ''}`).join('; ')}`,
    });
    expect(results.filter((r) => r.leaked)).toEqual([]);
    expect(bad).toEqual([]);
  });
});
