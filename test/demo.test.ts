/**
 * The README's demo (`pnpm demo`), run as a user runs it: the single-host mirror, then the farm of
 * three agents on loopback, whose archive must hold the same images at the same digests.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const execFileAsync = promisify(execFile);
const DEMO = new URL('../packages/coordinator/src/demo/run-demo.ts', import.meta.url).pathname;

describe('the README demo', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('mirrors on one host, then through a farm of three agents to the same archive', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshmirror-demo-'));
    dirs.push(dir);
    const { stdout } = await execFileAsync(process.execPath, [DEMO, join(dir, 'out')], { maxBuffer: 16 * 1024 * 1024 });
    expect(stdout).toContain('images: 5 archived, 0 failed');
    expect(stdout).toMatch(/farm: 3 agents; the writer pulled/);
    expect(stdout.match(/^ {4}\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\S+: /gm)).toHaveLength(3);
    expect(stdout).toContain("demo: the farm's archive in");
    expect(stdout).toContain('holds the same 5 images at the same digests');
  }, 120_000);
});
