/**
 * The fault matrix: every scenario is a vitest test that records one row (what was injected, what
 * was expected, what came out) on its task; `reporter.ts` prints the rows as a table.
 *
 * `pnpm test:faults` runs every scenario (MESHMIRROR_FAULTS=full). The default suite runs the
 * scenarios marked `sample`, so CI exercises part of the matrix on every change.
 */
import { it, type TestContext } from 'vitest';

export interface FaultRow {
  /** Group and scenario, e.g. `upstream: resets in 10% of responses`. */
  scenario: string;
  /** What was injected, in a few words. */
  faults: string;
  /** Images the run was asked for. */
  expected: number;
  /** Images archived or pushed (after the re-run, when there is one). */
  delivered: number;
  /** Blob bytes taken from the upstream (or the peers) in all runs together; undefined where nothing is fetched. */
  fetchedBytes?: number;
  /** Unique blob bytes of the image set. */
  uniqueBytes?: number;
  /** How it ended, e.g. `complete, skopeo ✓` or `exit 2 "config.yaml: mirror.additionalImages[0].name: …" → re-run complete`. */
  outcome: string;
}

declare module 'vitest' {
  interface TaskMeta {
    faultRow?: FaultRow;
  }
}

export const FULL_MATRIX = process.env['MESHMIRROR_FAULTS'] === 'full';

export interface ScenarioOptions {
  /** Run in the default suite too (a small, fast part of the matrix). */
  sample?: boolean;
  timeout?: number;
}

export type Record = (row: FaultRow) => void;

/**
 * A matrix scenario: a test that must call `record` once with its row. Scenarios not in the sample
 * are skipped outside `pnpm test:faults`.
 */
export function scenario(name: string, options: ScenarioOptions, body: (record: Record, context: TestContext) => Promise<void>): void {
  const run = FULL_MATRIX || options.sample === true ? it : it.skip;
  run(name, { timeout: options.timeout ?? 300_000 }, async (context) => {
    let recorded = false;
    await body((row) => {
      context.task.meta.faultRow = row;
      recorded = true;
    }, context);
    if (!recorded) throw new Error(`scenario "${name}" finished without recording its row`);
  });
}

const units = ['B', 'KiB', 'MiB', 'GiB'];
export function formatBytes(n: number): string {
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}
