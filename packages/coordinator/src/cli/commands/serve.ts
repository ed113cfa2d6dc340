import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createLogger, MeshmirrorError, type LogLevel } from '@meshmirror/shared';
import { startRegistryServer } from '@meshmirror/agent';

/** `meshmirror serve DIR --listen HOST:PORT`: runs until SIGINT/SIGTERM. */
export async function runServeCommand(dir: string, flags: { listen: string; logLevel: string }): Promise<number> {
  const match = /^(.*):(\d+)$/.exec(flags.listen);
  if (match === null) throw new MeshmirrorError('MM_USAGE', `--listen: expected HOST:PORT, got "${flags.listen}"`);
  const host = (match[1] ?? '').replace(/^\[(.*)\]$/, '$1');
  const port = Number(match[2]);
  if (port > 65535) throw new MeshmirrorError('MM_USAGE', `--listen: port ${port} is not between 0 and 65535`);
  const info = await stat(resolve(dir)).catch(() => undefined);
  if (info === undefined) throw new MeshmirrorError('MM_USAGE', `${resolve(dir)} does not exist or cannot be read`);
  const logger = createLogger({ level: flags.logLevel as LogLevel });
  const server = await startRegistryServer({ dir: resolve(dir), host, port, logger: logger.child({ component: 'serve' }) });
  process.stdout.write(`serving ${resolve(dir)} at ${server.url}\n`);
  await new Promise<void>((done) => {
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  await server.close();
  return 0;
}
