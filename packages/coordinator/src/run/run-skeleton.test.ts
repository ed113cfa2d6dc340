import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseImageSetConfig, silentLogger } from '@meshmirror/shared';
import { closeRun, runKey, withRun, type RunContext } from './run-skeleton.ts';

const logger = silentLogger();

describe('withRun', () => {
  let cacheDir: string;
  beforeEach(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'mm-skeleton-'));
  });
  afterEach(async () => {
    await rm(cacheDir, { recursive: true, force: true });
  });

  const run = <T>(identity: unknown, body: (ctx: RunContext) => Promise<T>): Promise<T> => withRun({ cacheDir, identity, logger, component: 'test' }, body);

  it('resumes a partial run with the same identity, and begins a new one after it completed', async () => {
    const first = await run({ mode: 'a' }, async (ctx) => {
      expect(ctx.resumed).toBe(false);
      await closeRun(ctx, [
        { source: 'r.example/app:1', state: 'archived' },
        { source: 'r.example/app:2', state: 'failed', code: 'MM_NOT_FOUND', reason: 'gone' },
      ]);
      return ctx.run.runId;
    });
    const second = await run({ mode: 'a' }, async (ctx) => {
      expect(ctx.resumed).toBe(true);
      expect(await ctx.journal.images(ctx.run)).toHaveLength(2);
      await closeRun(ctx, [{ source: 'r.example/app:2', state: 'archived' }]);
      return ctx.run.runId;
    });
    expect(second).toBe(first);
    const third = await run({ mode: 'a' }, async (ctx) => {
      expect(ctx.resumed).toBe(false);
      return ctx.run.runId;
    });
    expect(third).not.toBe(first);
    // Another identity is another run, whatever state the first is in.
    await run({ mode: 'b' }, async (ctx) => {
      expect(ctx.resumed).toBe(false);
    });
    expect(runKey({ mode: 'a' })).not.toBe(runKey({ mode: 'b' }));
  });

  it('closes the journal when the body throws, so the next run can open it and resume', async () => {
    await expect(
      run({ mode: 'a' }, () => {
        throw new Error('body failed');
      }),
    ).rejects.toThrow('body failed');
    await run({ mode: 'a' }, async (ctx) => {
      expect(ctx.resumed).toBe(true);
    });
  });

  it('warns once about configuration content the run cannot mirror, for the summary', async () => {
    const config = parseImageSetConfig(
      'apiVersion: mirror.openshift.io/v2alpha1\nkind: ImageSetConfiguration\nmirror:\n  additionalImages:\n    - name: r.example/app:1\n  samples:\n    - name: x\n',
      'isc.yaml',
    );
    const warnings = await withRun({ cacheDir, identity: 'w', config, logger, component: 'test' }, (ctx) => Promise.resolve(ctx.warnings));
    expect(warnings).toEqual([expect.stringMatching(/^mirror\.samples: /)]);
  });
});
