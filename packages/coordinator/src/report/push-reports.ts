import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { formatBytes, formatDuration } from '@meshmirror/shared';
import type { MirrorToMirrorSummary, PushSummary } from './summaries.ts';
import { writeReportFile } from './report-file.ts';
import { signaturesLines } from './summary-text.ts';

/**
 * Writes a push's files into `working-dir` beside the archive, where oc-mirror users look:
 * `logs/mirroring_errors_*.txt` when an image failed, and `push-report.json` (the summary) every time (mirror to disk's `report.json` stays).
 */
export async function writePushReports(workingDir: string, summary: PushSummary): Promise<{ report: string; errors?: string }> {
  const files: { report: string; errors?: string } = { report: join(workingDir, 'push-report.json') };
  const failures = summary.outcomes.filter((o) => o.state === 'failed');
  if (failures.length > 0) {
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
    await mkdir(join(workingDir, 'logs'), { recursive: true });
    files.errors = join(workingDir, 'logs', `mirroring_errors_${stamp}.txt`);
    const lines = failures.map((f) => `error mirroring image ${f.source} (${f.kind}, ${f.origin}): ${f.code ?? 'UNKNOWN'}: ${f.reason ?? ''}`);
    await writeReportFile(files.errors, `${lines.join('\n')}\n`);
  }
  await mkdir(workingDir, { recursive: true });
  await writeReportFile(files.report, `${JSON.stringify({ ...summary, files: { ...summary.files, ...files } }, null, 2)}\n`);
  return files;
}

/** The end-of-push summary a person reads (disk to mirror, or mirror to mirror with its fetch). */
export function pushSummaryText(summary: PushSummary | MirrorToMirrorSummary): string {
  const { images, blobs, bytes } = summary;
  const m2m = 'mode' in summary ? summary : undefined;
  const lines = [
    `${m2m === undefined ? 'disk to mirror' : 'mirror to mirror'} ${summary.resumed ? '(resumed run) ' : ''}finished in ${formatDuration(summary.durationMs)}: run ${summary.runId}`,
    `  images: ${images.pushed} pushed to ${summary.destination} (${images.alreadyPushed} were already there), ${images.failed} failed, ${images.blocked} blocked (of ${images.requested} requested)`,
    `  blobs: ${blobs.unique} unique (${formatBytes(bytes.unique)}): ${blobs.uploaded} uploaded (${formatBytes(bytes.uploaded)}), ` +
      `${blobs.present} already in the target, ${blobs.mounted} mounted`,
    ...signaturesLines(summary.signatures, 'pushed'),
    `  bytes sent: ${formatBytes(bytes.sent)}${bytes.resumed > 0 ? `; ${formatBytes(bytes.resumed)} resumed from interrupted uploads` : ''}`,
  ];
  if (m2m !== undefined) {
    const { fetch } = m2m;
    lines.push(
      `  fetched: ${formatBytes(fetch.fetched)} from the source registries (${formatBytes(fetch.inTarget)} was already in the target, ` +
        `${formatBytes(fetch.held)} in the agents' stores${fetch.resumed > 0 ? `, ${formatBytes(fetch.resumed)} resumed` : ''})`,
    );
    for (const a of m2m.agents ?? []) {
      lines.push(
        `  agent ${a.address}: fetched ${formatBytes(a.upstreamBytes)}, pushed ${formatBytes(a.pushedBytes)} (${a.blobsPushed} blobs)` +
          `${a.lost === undefined ? '' : `; lost: ${a.lost}`}${a.distrusted === undefined ? '' : `; distrusted: ${a.distrusted}`}`,
      );
    }
  }
  if (summary.retries > 0 || summary.restarts > 0) lines.push(`  retries: ${summary.retries}; upload sessions started over: ${summary.restarts}`);
  for (const w of summary.warnings) lines.push(`  warning: ${w}`);
  const failures = summary.outcomes.filter((o) => o.state === 'failed');
  for (const f of failures) lines.push(`  failed: ${f.source} (${f.kind}): ${f.reason ?? f.code ?? ''}`);
  for (const file of summary.files.clusterResources) lines.push(`  cluster resource: ${file}`);
  if (summary.files.receipt !== undefined)
    lines.push(`  receipt: ${summary.files.receipt} (what the target holds; mirror with --since-receipt to carry only the rest)`);
  if (summary.files.errors !== undefined) lines.push(`  errors file: ${summary.files.errors}`);
  if (failures.length > 0) lines.push('  re-run the same command to retry the failed images; blobs the target confirmed are not sent again.');
  return lines.join('\n');
}
