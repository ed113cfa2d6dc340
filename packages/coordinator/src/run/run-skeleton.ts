/**
 * The run skeleton every mode shares: the journal is opened, the unfinished run with the same
 * identity is resumed (or a new one begun), the mode's body runs, each image's outcome is recorded
 * and the run closed as complete or partial, and the journal is closed whatever happens.
 *
 * A mode is a composition inside `withRun`: an image source, a blob supply and an image sink.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { unsupportedImageSetContent, type ImageSetConfig, type Logger } from '@meshmirror/shared';
import type { ProgressReporter } from '../report/progress.ts';
import { RunJournal, type ImageRecord, type RunRecord } from './run-journal.ts';

export interface RunContext {
  journal: RunJournal;
  run: RunRecord;
  /** An unfinished earlier run with the same identity is carried on. */
  resumed: boolean;
  /** For the summary; the configuration's unsupported content is the first. */
  warnings: string[];
  log: Logger;
}

export interface RunOptions {
  /** Holds the journal (`DIR/journal`). */
  cacheDir: string;
  /** What makes two runs the same run: the same identity resumes it. */
  identity: unknown;
  /** Content the run cannot mirror is warned about once, here. */
  config?: ImageSetConfig;
  logger: Logger;
  component: string;
}

export async function withRun<T>(options: RunOptions, body: (run: RunContext) => Promise<T>): Promise<T> {
  const log = options.logger.child({ component: options.component });
  const warnings = options.config === undefined ? [] : unsupportedImageSetContent(options.config).map((n) => `${n.path}: ${n.message}`);
  for (const w of warnings) log.warn(w);
  const journal = await RunJournal.open(join(options.cacheDir, 'journal'));
  try {
    const { run, resumed } = await journal.beginRun(runKey(options.identity));
    if (resumed) log.info({ runId: run.runId }, 'resuming unfinished run');
    return await body({ journal, run, resumed, warnings, log });
  } finally {
    await journal.close();
  }
}

/**
 * Records every image's outcome and closes the run: complete when none failed, else partial (and
 * resumed by the next run with the same identity).
 */
export async function closeRun(
  { journal, run }: Pick<RunContext, 'journal' | 'run'>,
  records: ImageRecord[],
  progress?: ProgressReporter,
): Promise<{ done: number; failed: number }> {
  await journal.recordImages(run, records);
  const failed = records.filter((r) => r.state === 'failed').length;
  await journal.finishRun(run, failed === 0 ? 'complete' : 'partial');
  progress?.update({ phase: 'done', imagesDone: records.length - failed, imagesFailed: failed });
  return { done: records.length - failed, failed };
}

/** The journal key of a run identity. */
export function runKey(identity: unknown): string {
  return createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 32);
}
