import { resolve } from 'node:path';
import { SwarmKey, writeSwarmKeyFile } from '@meshmirror/shared';

/** `meshmirror keygen --swarm-key FILE`: a new swarm key, owner-only; the key itself is never printed. */
export async function runKeygenCommand(flags: { swarmKey: string; force?: boolean }): Promise<number> {
  const file = resolve(flags.swarmKey);
  const key = SwarmKey.generate();
  await writeSwarmKeyFile(file, key, { force: flags.force === true });
  process.stdout.write(`wrote swarm key ${file} (fingerprint ${key.fingerprint()}); copy it to every agent host over a trusted channel and keep it mode 600\n`);
  return 0;
}
