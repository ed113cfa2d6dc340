import { MeshmirrorError } from '@meshmirror/shared';

/** `HOST:PORT` or `[IPv6]:PORT`, checked. */
export function parseStatusAddress(text: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (match === null || !Number.isInteger(port) || port > 65535) {
    throw new MeshmirrorError('MM_USAGE', `--status: expected HOST:PORT (e.g. 127.0.0.1:9464, or :0 for any free port on a given host), got "${text}"`);
  }
  return { host: match[1] ?? match[2] ?? '127.0.0.1', port };
}
