import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { formatBytes } from '@meshmirror/shared';
import type { ResolvedImage } from '../resolve/image-set.ts';
import { diskTarget } from '../run/disk-target.ts';
import type { MirrorSummary } from './summaries.ts';
import { writeReportFile } from './report-file.ts';

/**
 * Writes the run's files where oc-mirror users look for them: `working-dir/logs/mirroring_errors_*.txt`
 * (only when an image failed), `working-dir/dry-run/mapping.txt` and `missing.txt` for `--dry-run`,
 * and `working-dir/report.json` (the machine-readable summary) every time.
 */
export async function writeReports(
  destination: string,
  summary: MirrorSummary,
  context: { dryRun: boolean; resolved: ResolvedImage[] },
): Promise<MirrorSummary['files']> {
  const workingDir = join(destination, 'working-dir');
  const files: MirrorSummary['files'] = { report: join(workingDir, 'report.json') };
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);

  const failures = summary.outcomes.filter((o) => o.state === 'failed');
  if (failures.length > 0) {
    await mkdir(join(workingDir, 'logs'), { recursive: true });
    files.errors = join(workingDir, 'logs', `mirroring_errors_${stamp}.txt`);
    const lines = failures.map((f) => `error mirroring image ${f.source} (${f.kind}, ${f.origin}): ${f.code ?? 'UNKNOWN'}: ${f.reason ?? ''}`);
    await writeReportFile(files.errors, `${lines.join('\n')}\n`);
  }

  if (context.dryRun) {
    await mkdir(join(workingDir, 'dry-run'), { recursive: true });
    files.mapping = join(workingDir, 'dry-run', 'mapping.txt');
    const mapping = context.resolved.map((i) => `docker://${i.source}=${diskTarget(destination, i)}`);
    await writeReportFile(files.mapping, `${mapping.join('\n')}\n`);
    const b = summary.bytes;
    await writeReportFile(
      join(workingDir, 'dry-run', 'missing.txt'),
      [
        `images: ${context.resolved.length} resolved, ${failures.length} failed, ${summary.images.blocked} blocked`,
        `unique blob bytes: ${b.unique} (${formatBytes(b.unique)})`,
        `already held: ${b.held} (${formatBytes(b.held)})`,
        `resumable partial bytes: ${b.resumed} (${formatBytes(b.resumed)})`,
        `bytes to fetch: ${b.toFetch} (${formatBytes(b.toFetch)})`,
        '',
      ].join('\n'),
    );
  }

  await mkdir(workingDir, { recursive: true });
  await writeReportFile(files.report, `${JSON.stringify({ ...summary, files }, null, 2)}\n`);
  return files;
}
