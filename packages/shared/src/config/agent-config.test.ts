import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.ts';
import { loadAgentConfig } from './agent-config.ts';

describe('loadAgentConfig: limits and status', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-agent-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const load = async (text: string) => {
    const file = join(dir, `agent-${Math.random().toString(36).slice(2)}.yaml`);
    await writeFile(file, text);
    return { file, config: () => loadAgentConfig(file) };
  };

  it('reads per-registry limits, the peer limit and the status address', async () => {
    const { config } = await load('limitRegistry:\n  quay.io: 50Mbit\n  registry.example:5000: 10MiB/s\nlimitPeer: 500Mbit\nstatus: 0.0.0.0:9465\n');
    expect(await config()).toEqual({ limitRegistry: { 'quay.io': '50Mbit', 'registry.example:5000': '10MiB/s' }, limitPeer: '500Mbit', status: '0.0.0.0:9465' });
  });

  it('names the registry whose rate is bad, and a host that is not one', async () => {
    const badRate = await load('limitRegistry:\n  quay.io: fast\n');
    await expect(badRate.config()).rejects.toThrow(ConfigError);
    await expect(badRate.config()).rejects.toThrow(`${badRate.file}: limitRegistry.quay.io: invalid rate "fast"`);
    const badHost = await load('limitRegistry:\n  quay.io/org: 1MiB/s\n');
    await expect(badHost.config()).rejects.toThrow('expected a registry host');
    const badPeer = await load('limitPeer: 0bit\n');
    await expect(badPeer.config()).rejects.toThrow('limitPeer: invalid rate "0bit"');
  });
});
