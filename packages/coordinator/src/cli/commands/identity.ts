import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadOrCreateIdentity } from '@meshmirror/agent/mesh';

/**
 * `meshmirror identity [--cache-dir DIR]`: prints the coordinator's peer id, the one each agent must
 * admit with `--allow`. The key stays in the cache dir (mode 600); only the public id is printed.
 */
export async function runIdentityCommand(flags: { cacheDir?: string }): Promise<number> {
  const cacheDir = resolve(flags.cacheDir ?? join(homedir(), '.meshmirror'));
  const identity = await loadOrCreateIdentity(cacheDir);
  process.stdout.write(`${identity.peerId.toString()}\n`);
  return 0;
}
