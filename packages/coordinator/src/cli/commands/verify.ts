import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { formatBytes, MeshmirrorError } from '@meshmirror/shared';
import { formatProblem, verifyArchive } from '@meshmirror/agent';
import { ExitCode } from '../exit-codes.ts';

/**
 * `meshmirror verify DIR`: reads every chunk of the archive with no network, prints one line per
 * problem and a closing count (or the whole result as JSON), and exits non-zero when there is any.
 */
export async function runVerifyCommand(dir: string, flags: { output: string }): Promise<number> {
  if (flags.output !== 'text' && flags.output !== 'json') throw new MeshmirrorError('MM_USAGE', `--output: expected text or json, got "${flags.output}"`);
  const info = await stat(resolve(dir)).catch(() => undefined);
  if (info?.isDirectory() !== true) throw new MeshmirrorError('MM_USAGE', `${resolve(dir)} is not a folder that can be read`);
  const result = await verifyArchive(dir);
  if (flags.output === 'json') {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    for (const problem of result.problems) process.stdout.write(`${formatProblem(problem)}\n`);
    const d = result.differential;
    const receipt = d === undefined ? '' : `; differential: ${d.omittedBlobs} blobs (${formatBytes(d.omittedBytes)}) left out, made against ${d.basis}`;
    const checked = `${result.chunks} chunks, ${result.blobs} blobs (${formatBytes(result.bytes)}), ${result.images} images${receipt}`;
    process.stdout.write(result.problems.length === 0 ? `${result.dir}: intact (${checked})\n` : `${result.dir}: ${result.problems.length} problems (${checked})\n`);
  }
  return result.problems.length === 0 ? ExitCode.Ok : ExitCode.ArchiveDamaged;
}
