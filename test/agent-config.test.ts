/**
 * Agents as services: `meshmirror agent --config FILE` takes its settings from a YAML file (paths
 * relative to the file, flags winning), so a systemd unit names one file. The agent started that way
 * serves a real farm run; a bad file is named with the field at fault.
 */
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheWithIdentity, farmKeys, startAgent } from './support/agents.ts';
import { runMeshmirror } from './support/cli.ts';
import { fixtureImages, mirrorArgs, startMirrorFixture, type MirrorFixture } from './support/mirror-fixture.ts';

describe('meshmirror agent --config', () => {
  let fx: MirrorFixture;
  let keys: Awaited<ReturnType<typeof farmKeys>>;

  beforeAll(async () => {
    fx = await startMirrorFixture(fixtureImages().filter((i) => i.name === 'sample/app:1.0' || i.name === 'sample/multi:2.0'));
    keys = await farmKeys(fx.dir);
  }, 60_000);
  afterAll(async () => {
    await fx?.close();
  });

  it('runs from the file, with paths relative to it and flags winning, and serves a farm run', async () => {
    const etc = join(fx.dir, 'etc');
    await mkdir(etc, { recursive: true });
    const config = join(etc, 'agent.yaml');
    await writeFile(
      config,
      ['data: ../var/agent', `swarmKey: ${join('..', 'swarm.key')}`, 'listen: [/ip4/0.0.0.0/tcp/0]', `allow: [${keys.coordinatorId}]`, 'logLevel: info', ''].join('\n'),
    );
    const agent = await startAgent({ config, listen: '/ip4/127.0.0.1/tcp/0' });
    try {
      // The flag's address, not the file's.
      expect(agent.addresses.every((a) => a.startsWith('/ip4/127.0.0.1/tcp/'))).toBe(true);
      expect(existsSync(join(fx.dir, 'var', 'agent'))).toBe(true);
      const config2 = await fx.writeConfig('isc.yaml', { additionalImages: [fx.viaProxy('sample/app:1.0'), fx.viaProxy('sample/multi:2.0')] });
      const cache = await cacheWithIdentity(keys.identityDir, join(fx.dir, 'cache'));
      const run = await runMeshmirror([...mirrorArgs(config2, join(fx.dir, 'out'), cache), '--swarm-key', keys.keyFile, '--agents', agent.addresses[0] ?? '']);
      expect(run.code, run.stderr).toBe(0);
      // The agent admitted the coordinator from the file's allow list and fetched for it.
      expect(agent.stderr()).toContain('"msg":"assignment finished"');
    } finally {
      await agent.stop();
    }
  });

  it('names a bad field with the file, and a missing setting with where to give it', async () => {
    const bad = join(fx.dir, 'bad.yaml');
    await writeFile(bad, 'data: /tmp/x\nlistn: [/ip4/127.0.0.1/tcp/0]\n');
    const unknown = await runMeshmirror(['agent', '--config', bad]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    expect(unknown.stderr).toContain(bad);
    expect(unknown.stderr).toContain('listn');

    const noKey = join(fx.dir, 'nokey.yaml');
    await writeFile(noKey, 'data: /tmp/x\n');
    const missing = await runMeshmirror(['agent', '--config', noKey]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`--swarm-key FILE or in ${noKey} (swarmKey:)`);
    await rm(join(fx.dir, 'bad.yaml'));
  });
});
