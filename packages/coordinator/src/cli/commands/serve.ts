import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createLogger, MeshmirrorError, type LogLevel } from '@meshmirror/shared';
import { loadHtpasswd, loadTlsFiles, startRegistryServer } from '@meshmirror/agent';

export interface ServeFlags {
  listen: string;
  logLevel: string;
  /** Repository of bare-tag names and unnamed entries (skopeo and buildah layouts); default the folder's name. */
  repository?: string;
  tlsCert?: string;
  tlsKey?: string;
  htpasswd?: string;
}

/** `meshmirror serve DIR --listen HOST:PORT`: runs until SIGINT/SIGTERM. */
export async function runServeCommand(dir: string, flags: ServeFlags): Promise<number> {
  const match = /^(.*):(\d+)$/.exec(flags.listen);
  if (match === null) throw new MeshmirrorError('MM_USAGE', `--listen: expected HOST:PORT, got "${flags.listen}"`);
  const host = (match[1] ?? '').replace(/^\[(.*)\]$/, '$1');
  const port = Number(match[2]);
  if (port > 65535) throw new MeshmirrorError('MM_USAGE', `--listen: port ${port} is not between 0 and 65535`);
  if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) {
    throw new MeshmirrorError('MM_USAGE', `--tls-cert and --tls-key go together: ${flags.tlsCert === undefined ? '--tls-key' : '--tls-cert'} was given alone`);
  }
  const info = await stat(resolve(dir)).catch(() => undefined);
  if (info === undefined) throw new MeshmirrorError('MM_USAGE', `${resolve(dir)} does not exist or cannot be read`);
  const logger = createLogger({ level: flags.logLevel as LogLevel }).child({ component: 'serve' });
  const tls = flags.tlsCert === undefined || flags.tlsKey === undefined ? undefined : await loadTlsFiles(resolve(flags.tlsCert), resolve(flags.tlsKey));
  const authenticator = flags.htpasswd === undefined ? undefined : await loadHtpasswd(resolve(flags.htpasswd), { logger });
  const server = await startRegistryServer({
    dir: resolve(dir),
    host,
    port,
    logger,
    ...(flags.repository === undefined ? {} : { repository: flags.repository }),
    ...(tls === undefined ? {} : { tls }),
    ...(authenticator === undefined ? {} : { authenticator }),
  });
  process.stdout.write(`serving ${resolve(dir)} at ${server.url}\n`);
  await new Promise<void>((done) => {
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  await server.close();
  return 0;
}
