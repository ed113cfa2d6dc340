import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMeshmirror } from './support/cli.ts';

/** Bad input gets one clear line naming the file, field or reference at fault; never a stack trace. */
describe('bad input', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshmirror-badinput-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const header = 'kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\n';
  async function mirrorWith(name: string, content: string, ...extra: string[]) {
    const file = join(dir, name);
    await writeFile(file, content);
    return runMeshmirror(['mirror', '-c', file, `file://${join(dir, 'out')}`, '--cache-dir', join(dir, 'cache'), ...extra]);
  }
  function expectOneClearLine(result: { code: number | null; stderr: string; stdout: string }, ...needles: Array<string | RegExp>) {
    expect(result.code).toBe(2);
    const lines = result.stderr.trim().split('\n');
    expect(lines, result.stderr).toHaveLength(1);
    expect(result.stderr).not.toMatch(/\n\s+at |Error: .*\n.*node:/);
    for (const n of needles) expect(lines[0]).toMatch(typeof n === 'string' ? new RegExp(n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : n);
  }

  it('malformed YAML names the file, line and column', async () => {
    const result = await mirrorWith('broken.yaml', `${header}mirror:\n  additionalImages:\n    - name: [unclosed\n`);
    expectOneClearLine(result, 'broken.yaml', /:\d+:\d+/);
  });

  it('an unknown field names its path', async () => {
    const result = await mirrorWith('unknown.yaml', `${header}mirror:\n  additionalImages:\n    - name: quay.io/a/b:1\n      nam: typo\n`);
    expectOneClearLine(result, 'unknown.yaml', 'mirror.additionalImages[0]', 'nam');
  });

  it('a bad image reference names the field and the reference', async () => {
    const result = await mirrorWith('badref.yaml', `${header}mirror:\n  additionalImages:\n    - name: quay.io/UPPER/Case::x\n`);
    expectOneClearLine(result, 'badref.yaml', 'mirror.additionalImages[0].name', 'quay.io/UPPER/Case::x');
  });

  it('an unreadable auth file is named', async () => {
    const missing = join(dir, 'no-such-auth.json');
    const result = await mirrorWith('ok.yaml', `${header}mirror:\n  additionalImages:\n    - name: 127.0.0.1:1/a/b:1\n`, '--authfile', missing);
    expectOneClearLine(result, missing);
    const garbage = join(dir, 'garbage.json');
    await writeFile(garbage, '{not json');
    const result2 = await mirrorWith('ok.yaml', `${header}mirror:\n  additionalImages:\n    - name: 127.0.0.1:1/a/b:1\n`, '--authfile', garbage);
    expectOneClearLine(result2, garbage);
  });

  it('a missing config file and a bad flag are one line each', async () => {
    const missing = await runMeshmirror(['mirror', '-c', join(dir, 'nope.yaml'), `file://${join(dir, 'out')}`]);
    expectOneClearLine(missing, 'nope.yaml');
    const badFlag = await runMeshmirror(['mirror', '-c', join(dir, 'nope.yaml'), `file://${join(dir, 'out')}`, '--parallel-images', 'many']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toMatch(/parallel-images/);
    expect(badFlag.stderr).not.toMatch(/\n\s+at /);
  });

  it('sizes take units, and a bad size names the flag', async () => {
    const ok = `${header}mirror:\n  additionalImages:\n    - name: 127.0.0.1:1/a/b:1\n`;
    for (const [flag, value, needle] of [
      ['--piece-size', '0', 'at least 1 byte'],
      ['--piece-size', '12XB', 'unknown unit "XB"'],
      ['--upload-chunk-size', '-1MiB', 'must not be negative'],
    ] as const) {
      const result = await mirrorWith('sizes.yaml', ok, flag, value);
      expect(result.code, `${flag} ${value}`).toBe(2);
      expect(result.stderr).toContain(flag);
      expect(result.stderr).toContain(needle);
    }
  });

  it('--agents takes a comma-separated list and --agents-file one per line; a bad entry is named by its place', async () => {
    const ok = `${header}mirror:\n  additionalImages:\n    - name: 127.0.0.1:1/a/b:1\n`;
    const key = join(dir, 'swarm.key');
    expect((await runMeshmirror(['keygen', '--swarm-key', key])).code).toBe(0);
    const good = '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWF13dqGjWRTKDLDh69zWbyuqpaF68CwQ4PNTeetApDY3h';
    expectOneClearLine(await mirrorWith('agents.yaml', ok, '--swarm-key', key, '--agents', `${good},/ip4/10.0.0.300/tcp/1`), '--agents', '/ip4/10.0.0.300/tcp/1');
    const file = join(dir, 'agents.txt');
    await writeFile(file, `# the farm\n${good}\n\n/ip4/127.0.0.1/tcp/2  # no peer id\n`);
    expectOneClearLine(await mirrorWith('agents.yaml', ok, '--swarm-key', key, '--agents-file', file), `--agents-file ${file}:4`, 'no /p2p/');
    expectOneClearLine(await mirrorWith('agents.yaml', ok, '--swarm-key', key, '--agents-file', join(dir, 'missing.txt')), '--agents-file', 'missing.txt');
    // A good file is read: its agent is asked for (and here, nothing answers at that address).
    await writeFile(file, `${good} # the only one\n`);
    const unanswered = await mirrorWith('agents.yaml', ok, '--swarm-key', key, '--agents-file', file, '--connect-timeout', '2s');
    expect(unanswered.code).not.toBe(0);
    expect(unanswered.stderr).toContain('none of the 1 agents answered');
  });

  it('--version prints the version', async () => {
    const result = await runMeshmirror(['--version']);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('a bad release signature setting names the variable (and the file), before anything is fetched', async () => {
    const config = join(dir, 'sig.yaml');
    await writeFile(config, `${header}mirror:\n  additionalImages:\n    - name: 127.0.0.1:1/a/b:1\n`);
    const args = ['mirror', '-c', config, `file://${join(dir, 'out-sig')}`, '--cache-dir', join(dir, 'cache-sig')];
    expectOneClearLine(await runMeshmirror(args, { env: { OCP_SIGNATURE_URL: 'ftp://example.com/sigs/' } }), 'OCP_SIGNATURE_URL', 'ftp://example.com/sigs/');
    const missing = join(dir, 'no-such-key.asc');
    expectOneClearLine(await runMeshmirror(args, { env: { OCP_SIGNATURE_VERIFICATION_PK: missing } }), 'OCP_SIGNATURE_VERIFICATION_PK', missing);
    const empty = join(dir, 'empty-key.asc');
    await writeFile(empty, '\n');
    expectOneClearLine(await runMeshmirror(args, { env: { OCP_SIGNATURE_VERIFICATION_PK: empty } }), 'OCP_SIGNATURE_VERIFICATION_PK', empty, 'empty');
  });
});
