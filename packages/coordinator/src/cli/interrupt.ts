/**
 * Runs `work` with a signal that fires on the first SIGINT/SIGTERM, so the run stops promptly and
 * leaves a consistent journal; a second signal exits at once (the journal is still safe: every
 * committed offset was fsynced before it was recorded).
 */
export async function withInterruptSignal<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let interrupted = false;
  const onSignal = (name: NodeJS.Signals): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`meshmirror: ${name}: stopping; re-run the same command to resume\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await work(controller.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
