import { resolve } from 'node:path';
import { createLogger, loadCredentialStore, readSwarmKeyFile, type LogLevel } from '@meshmirror/shared';
import { checkListenAddress, parsePeerId, startAgentService } from '@meshmirror/agent/mesh';

export interface AgentFlags {
  data: string;
  listen: string[];
  swarmKey: string;
  allow?: string[];
  authfile?: string;
  logLevel: string;
}

/**
 * `meshmirror agent --data DIR --listen MULTIADDR --swarm-key FILE [--allow PEERID...]`: runs until
 * SIGINT/SIGTERM. Prints one line with its peer id and addresses on stdout for scripts and tests.
 */
export async function runAgentCommand(flags: AgentFlags): Promise<number> {
  const swarmKey = await readSwarmKeyFile(resolve(flags.swarmKey));
  const allow = flags.allow === undefined ? undefined : new Set(flags.allow.map((id) => parsePeerId(id, '--allow').toString()));
  for (const address of flags.listen) checkListenAddress(address, '--listen');
  const logger = createLogger({ level: flags.logLevel as LogLevel });
  const credentials = await loadCredentialStore({ ...(flags.authfile === undefined ? {} : { authfile: flags.authfile }) });
  const agent = await startAgentService({ dataDir: resolve(flags.data), listen: flags.listen, swarmKey, allow, credentials, logger });
  process.stdout.write(`agent ${agent.peerId} listening on ${agent.addresses.join(' ')}\n`);
  await new Promise<void>((done) => {
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  await agent.stop();
  return 0;
}
