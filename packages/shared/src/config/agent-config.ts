/**
 * An agent's configuration file (`meshmirror agent --config /etc/meshmirror/agent.yaml`), for running
 * agents as services: the same settings as the flags, which win over the file. Paths in the file
 * are relative to the file's folder, so a unit file can name one config and nothing else.
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError, fileErrorReason, MeshmirrorError } from '../errors.ts';
import { formatConfigPath } from './imageset.ts';
import { parseRate } from '../units.ts';

/** A rate as `parseRate` reads it (`100Mbit`, `10MiB/s`), checked where it is read. */
function rate() {
  return z
    .string()
    .min(1)
    .superRefine((value, ctx) => {
      try {
        parseRate(value);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
      }
    });
}

export const AgentConfigSchema = z.strictObject({
  /** Data folder: blob store and peer identity. */
  data: z.string().min(1).optional(),
  /** The farm's swarm key file. */
  swarmKey: z.string().min(1).optional(),
  /** Multiaddrs to listen on. */
  listen: z.array(z.string().min(1)).min(1).optional(),
  /** Peer ids admitted (the coordinator's and the other agents'). */
  allow: z.array(z.string().min(1)).optional(),
  /** This host's registry credentials. */
  authfile: z.string().min(1).optional(),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error']).optional(),
  /** This host's ceiling on bytes from registries: `100Mbit`, `10MiB/s`. */
  limitUpstream: rate().optional(),
  /** Ceilings for single registries, by host: `{ quay.io: 50Mbit }`. */
  limitRegistry: z
    .record(z.string(), rate())
    .superRefine((limits, ctx) => {
      for (const host of Object.keys(limits)) {
        if (!/^[a-zA-Z0-9.-]+(:\d+)?$/.test(host))
          ctx.addIssue({ code: 'custom', path: [host], message: 'expected a registry host, such as quay.io or registry.example:5000' });
      }
    })
    .optional(),
  /** This host's ceiling on bytes it serves over the mesh. */
  limitPeer: rate().optional(),
  /** Serve Prometheus `/metrics` and `/api/agent` here: `HOST:PORT`. */
  status: z.string().min(1).optional(),
});
export type AgentConfig = z.infer<typeof AgentConfigSchema>;

/** Reads and checks an agent configuration file; a bad field is named with its path and the file. */
export async function loadAgentConfig(file: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new MeshmirrorError('MM_CONFIG_UNREADABLE', `${file}: cannot read: ${fileErrorReason(err)}`, { cause: err, data: { file } });
  }
  let data: unknown;
  try {
    data = parseYaml(text) ?? {};
  } catch (err) {
    throw new ConfigError(`${file}: invalid YAML: ${(err as Error).message.split('\n')[0] ?? ''}`, { file, cause: err });
  }
  const checked = AgentConfigSchema.safeParse(data);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    const keys = issue.code === 'unrecognized_keys' ? ` ${issue.keys.join(', ')}` : '';
    const at = formatConfigPath(issue.path);
    throw new ConfigError(`${file}: ${at === '' ? '' : `${at}: `}${issue.message}${keys}`, { file, path: at });
  }
  const base = dirname(resolve(file));
  const relative = (path: string | undefined): string | undefined => (path === undefined || isAbsolute(path) ? path : resolve(base, path));
  const config = checked.data;
  return {
    ...config,
    ...(config.data === undefined ? {} : { data: relative(config.data)! }),
    ...(config.swarmKey === undefined ? {} : { swarmKey: relative(config.swarmKey)! }),
    ...(config.authfile === undefined ? {} : { authfile: relative(config.authfile)! }),
  };
}
