/**
 * Prints the fault matrix: one row per scenario that ran (passed or failed), as a Markdown table on
 * stdout and in `MESHMIRROR_FAULTS_REPORT` (default `test-results/fault-matrix.md`) for the README.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Reporter, TestCase, TestModule } from 'vitest/node';
import { formatBytes } from './matrix.ts';

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

/** The table's order: the groups, whatever order the files finished in. */
const GROUPS = ['upstream', 'mesh', 'disk', 'input', 'hostile archive', 'security', 'load'];
function groupOf(test: TestCase): number {
  const name = test.meta().faultRow?.scenario ?? test.name;
  const index = GROUPS.findIndex((g) => name.startsWith(`${g}:`));
  return index === -1 ? GROUPS.length : index;
}

function rowOf(test: TestCase): string | undefined {
  const state = test.result().state;
  if (state === 'skipped' || state === 'pending') return undefined;
  const row = test.meta().faultRow;
  if (row === undefined && !test.module.moduleId.includes('/test/faults/')) return undefined;
  const verdict = state === 'passed' ? 'pass' : 'FAIL';
  if (row === undefined) return `| ${cell(test.fullName)} | | | | | ${verdict}: ${cell(test.result().errors?.[0]?.message ?? 'no row recorded')} |`;
  const bytes = row.fetchedBytes === undefined ? '–' : `${formatBytes(row.fetchedBytes)} / ${formatBytes(row.uniqueBytes ?? 0)}`;
  return `| ${cell(row.scenario)} | ${cell(row.faults)} | ${row.expected} | ${row.delivered} | ${bytes} | ${verdict}: ${cell(row.outcome)} |`;
}

export default class FaultMatrixReporter implements Reporter {
  async onTestRunEnd(modules: ReadonlyArray<TestModule>): Promise<void> {
    const tests = modules.flatMap((module) => [...module.children.allTests()]);
    // A stable sort: scenarios keep their file's order within a group.
    tests.sort((a, b) => groupOf(a) - groupOf(b));
    const rows = tests.map(rowOf).filter((line) => line !== undefined);
    if (rows.length === 0) return;
    const table = [
      '| scenario | faults injected | images expected | images archived or pushed | bytes fetched / unique | outcome |',
      '| --- | --- | ---: | ---: | ---: | --- |',
      ...rows,
    ].join('\n');
    const file = resolve(process.env['MESHMIRROR_FAULTS_REPORT'] ?? 'test-results/fault-matrix.md');
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, `${table}\n`);
    process.stdout.write(`\nFault matrix (${rows.length} scenarios; also in ${file}):\n\n${table}\n\n`);
  }
}
