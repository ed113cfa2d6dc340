import { rm, writeFile } from 'node:fs/promises';
import { errorCode, describeError, MeshmirrorError } from '@meshmirror/shared';

/**
 * Writes one of the run's report files. Node's own error for a full disk names no file ("ENOSPC:
 * no space left on device, write"), so a failure is reported with the path, and a file cut short
 * is removed rather than left looking like a complete report.
 */
export async function writeReportFile(path: string, text: string): Promise<void> {
  try {
    await writeFile(path, text);
  } catch (cause) {
    await rm(path, { force: true }).catch(() => undefined);
    const reason = errorCode(cause) === 'ENOSPC' ? 'no space left on device' : describeError(cause);
    throw new MeshmirrorError('MM_STORE', `cannot write ${path}: ${reason}`, { cause, data: { path } });
  }
}
