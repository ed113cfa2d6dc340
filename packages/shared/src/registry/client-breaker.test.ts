import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createRegistryClient } from './client.ts';

/** A loopback server that resets every connection, counting them. */
async function resettingServer(): Promise<{ server: Server; host: string; connections: () => number }> {
  let connections = 0;
  const server = createServer((socket) => {
    connections += 1;
    socket.resetAndDestroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { server, host: `127.0.0.1:${address.port}`, connections: () => connections };
}

describe('registry client circuit breaker', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  });

  it('gives up on an unreachable registry once per retry cycle, not once per image', async () => {
    const target = await resettingServer();
    server = target.server;
    const client = createRegistryClient({
      credentials: { get: () => undefined },
      tlsVerify: false,
      connectTimeoutMs: 2000,
      headersTimeoutMs: 2000,
      stallTimeoutMs: 2000,
      retry: { retries: 2, baseDelayMs: 5, maxDelayMs: 10, factor: 2, jitter: 0 },
    });
    try {
      await expect(client.getManifest({ registry: target.host, repository: 'a/b' }, '1')).rejects.toMatchObject({ code: 'MM_NETWORK' });
      const afterFirstImage = target.connections();
      expect(afterFirstImage).toBeGreaterThanOrEqual(3);
      await expect(client.getManifest({ registry: target.host, repository: 'c/d' }, '2')).rejects.toThrow(/unreachable \(3 attempts failed\)/);
      // The second image did not spend another retry cycle on a registry known to be gone.
      expect(target.connections()).toBe(afterFirstImage);
    } finally {
      await client.close();
    }
  });
});
