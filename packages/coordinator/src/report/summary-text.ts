import { formatBytes, formatDuration } from '@meshmirror/shared';
import type { MirrorSummary, SignatureSummary, WarmSummary } from './summaries.ts';

/** The end-of-run summary a person reads. */
export function summaryText(summary: MirrorSummary): string {
  const lines: string[] = [];
  const { images, bytes } = summary;
  const verb = summary.dryRun ? 'dry run' : 'mirror to disk';
  lines.push(`${verb} ${summary.resumed ? '(resumed run) ' : ''}finished in ${formatDuration(summary.durationMs)}: run ${summary.runId}`);
  if (summary.dryRun) {
    lines.push(`  images: ${images.requested - images.failed} resolved, ${images.failed} failed, ${images.blocked} blocked`);
  } else {
    lines.push(`  images: ${images.archived} archived, ${images.failed} failed, ${images.blocked} blocked (of ${images.requested} requested)`);
  }
  lines.push(...signaturesLines(summary.signatures, summary.dryRun ? 'resolved' : 'archived'));
  lines.push(
    `  bytes: ${formatBytes(bytes.unique)} unique, ${formatBytes(bytes.held)} already held, ${formatBytes(bytes.resumed)} resumed, ` +
      (summary.dryRun ? `${formatBytes(bytes.toFetch)} would be fetched` : `${formatBytes(bytes.fetched)} fetched from upstream`),
  );
  if (summary.differential !== undefined) {
    const d = summary.differential;
    lines.push(
      `  differential: ${d.omittedBlobs} blobs (${formatBytes(d.omittedBytes)}) left out, made against ${d.basis}; push it only onto a target that holds them`,
    );
  }
  if (!summary.dryRun && (summary.retries > 0 || summary.rangesIgnored > 0)) {
    lines.push(`  retries: ${summary.retries}; ranges ignored by the registry: ${summary.rangesIgnored}`);
  }
  if (summary.agents !== undefined && !summary.dryRun) {
    lines.push(`  farm: ${summary.agents.length} agents; the writer pulled ${formatBytes(bytes.pulled ?? 0)} from them`);
    for (const a of summary.agents) {
      const state = a.distrusted !== undefined ? ` DISTRUSTED (${a.distrusted})` : a.lost !== undefined ? ` LOST (${a.lost})` : '';
      lines.push(
        `    ${a.address}: ${formatBytes(a.upstreamBytes)} from upstream, ${formatBytes(a.servedBytes)} served, ` +
          `${a.piecesFetched} pieces, ${a.piecesFailed} failed, ${a.wrongPieces} wrong` +
          (a.piecesCancelled > 0 ? `, ${a.piecesCancelled} cancelled` : '') +
          state,
      );
    }
  }
  if (summary.repairedBlobs > 0) {
    lines.push(`  repaired: ${summary.repairedBlobs} held blobs failed verification and were fetched again`);
  }
  for (const chunk of summary.archive.chunks) lines.push(`  archive: ${chunk.file} (${formatBytes(chunk.bytes)}, ${chunk.blobs} blobs)`);
  const check = summary.archive.verification;
  if (check !== undefined) {
    const read = `${check.chunks} chunks, ${check.blobs} blobs (${formatBytes(check.bytes)}), ${check.images} images read back`;
    lines.push(check.intact ? `  verified: intact (${read})` : `  verified: ${check.problems.length} PROBLEMS (${read}); do not carry this archive:`);
    for (const problem of check.problems) lines.push(`    ${problem}`);
  }
  for (const w of [...summary.warnings, ...summary.archive.warnings]) lines.push(`  warning: ${w}`);
  const failures = summary.outcomes.filter((o) => o.state === 'failed');
  for (const f of failures) lines.push(`  failed: ${f.source} (${f.kind}): ${f.reason ?? f.code ?? ''}`);
  if (summary.files.errors !== undefined) lines.push(`  errors file: ${summary.files.errors}`);
  if (summary.files.mapping !== undefined) lines.push(`  mapping: ${summary.files.mapping}`);
  if (failures.length > 0 && !summary.dryRun) {
    lines.push('  re-run the same command to retry the failed images; everything already fetched is kept.');
  }
  return lines.join('\n');
}

/** The end of a `meshmirror warm`: what the farm's stores hold now, and each agent's share. */
export function warmSummaryText(summary: WarmSummary): string {
  const { images, bytes, blobs } = summary;
  const lines = [
    `warm finished in ${formatDuration(summary.durationMs)}: run ${summary.runId}`,
    `  images: ${images.warmed} warmed, ${images.failed} failed (of ${images.requested} requested)`,
    `  blobs: ${blobs.unique} unique (${formatBytes(bytes.unique)}); ${blobs.inFarm} (${formatBytes(bytes.inFarm)}) were already in the farm, ` +
      `${formatBytes(bytes.fetched)} fetched from upstream now${blobs.failed > 0 ? `, ${blobs.failed} (${formatBytes(bytes.failed)}) could not be had` : ''}`,
  ];
  if (summary.retries > 0) lines.push(`  retries: ${summary.retries}`);
  lines.push(`  farm: ${summary.agents.length} agents`);
  for (const a of summary.agents) {
    const state = a.distrusted !== undefined ? ` DISTRUSTED (${a.distrusted})` : a.lost !== undefined ? ` LOST (${a.lost})` : '';
    lines.push(`    ${a.address}: ${formatBytes(a.upstreamBytes)} from upstream, ${a.piecesFetched} blobs, ${a.piecesFailed} failed${state}`);
  }
  for (const w of summary.warnings) lines.push(`  warning: ${w}`);
  const failures = summary.outcomes.filter((o) => o.state === 'failed');
  for (const f of failures) lines.push(`  failed: ${f.source} (${f.kind}): ${f.reason ?? f.code ?? ''}`);
  lines.push(
    failures.length > 0
      ? '  re-run the same command to retry the failed images; what the agents hold is kept.'
      : '  a mirror of the same configuration with these --agents now takes every blob from the farm.',
  );
  return lines.join('\n');
}

/** The signatures the run carried: sigstore tags, referrers when there were any, and release payloads' OpenPGP signatures when there were releases. */
export function signaturesLines(s: SignatureSummary, verb: string): string[] {
  const { sigstore, release, referrers } = s;
  const lines = [
    `  signatures: ${sigstore.found} sigstore signatures found (${sigstore.mirrored} ${verb}), ${sigstore.missing} manifests unsigned${sigstore.failed > 0 ? `, ${sigstore.failed} could not be read` : ''}`,
  ];
  if (referrers.found + referrers.failed > 0) {
    lines.push(
      `  referrers: ${referrers.found} found (${referrers.mirrored} ${verb})${referrers.failed > 0 ? `, ${referrers.failed} could not be listed or read` : ''}`,
    );
  }
  if (release.releases + release.missing + release.invalid > 0) {
    lines.push(
      `  release signatures: ${release.signatures} verified for ${release.releases} releases` +
        `${release.missing > 0 ? `; ${release.missing} releases without a signature` : ''}${release.invalid > 0 ? `; ${release.invalid} with one that failed verification` : ''}`,
    );
  }
  return lines;
}
