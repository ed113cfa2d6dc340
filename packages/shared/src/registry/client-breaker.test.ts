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

  it('gives up on an unreachable registry once per outage, not once per image', async () => {
    const target = await resettingServer();
    server = target.server;
    const client = createRegistryClient({
      credentials: { get: () => undefined },
      tlsVerify: false,
      connectTimeoutMs: 2000,
      headersTimeoutMs: 2000,
      stallTimeoutMs: 2000,
      // Time without progress decides, as by default; only shorter.
      retry: { noProgressTimeoutMs: 400, baseDelayMs: 5, maxDelayMs: 40, factor: 2, jitter: 0 },
    });
    try {
      const started = performance.now();
      await expect(client.getManifest({ registry: target.host, repository: 'a/b' }, '1')).rejects.toMatchObject({ code: 'MM_NETWORK' });
      expect(performance.now() - started).toBeGreaterThanOrEqual(390);
      const afterFirstImage = target.connections();
      expect(afterFirstImage).toBeGreaterThanOrEqual(6);
      // The second image joins an outage older than its time without progress: one probe (HTTPS,
      // then plain HTTP), and at most one last try at the outage's deadline when the second image
      // starts before it (on a busy machine the first failure is noted late), not another 400 ms of
      // backoff attempts. Counted, not timed: on a busy machine even one probe can take 200 ms.
      await expect(client.getManifest({ registry: target.host, repository: 'c/d' }, '2')).rejects.toMatchObject({ code: 'MM_NETWORK' });
      expect(target.connections() - afterFirstImage).toBeLessThanOrEqual(4);
    } finally {
      await client.close();
    }
  });
});
