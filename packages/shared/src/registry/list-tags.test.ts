import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createRegistryClient } from './client.ts';

/**
 * A registry's tags list as the distribution spec pages it (`n`, `last`, `Link: <…>; rel="next"`).
 * distribution 2.8, the registry the integration tests run, sends every tag at once, so the pages
 * are served here, as distribution 3 and Quay send them.
 */
async function pagingRegistry(tags: string[], pageSize: number, options: { strayLink?: string } = {}) {
  const requests: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(`${url.pathname}${url.search}`);
    if (url.pathname === '/v2/') return res.writeHead(200).end('{}');
    if (url.pathname !== '/v2/team/app/tags/list') return res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"NAME_UNKNOWN"}]}');
    const last = url.searchParams.get('last');
    const start = last === null ? 0 : tags.indexOf(last) + 1;
    const page = tags.slice(start, start + pageSize);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (start + pageSize < tags.length) headers['link'] = `</v2/team/app/tags/list?n=${pageSize}&last=${page.at(-1)!}>; rel="next"`;
    else if (options.strayLink !== undefined) headers['link'] = `<${options.strayLink}>; rel="next"`;
    res.writeHead(200, headers).end(JSON.stringify({ name: 'team/app', tags: page.length === 0 ? null : page }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { server, host: `127.0.0.1:${address.port}`, requests };
}

function client() {
  return createRegistryClient({
    credentials: { get: () => undefined },
    tlsVerify: false,
    connectTimeoutMs: 2000,
    headersTimeoutMs: 2000,
    stallTimeoutMs: 2000,
    retry: { retries: 1, baseDelayMs: 5, maxDelayMs: 10, factor: 2, jitter: 0 },
  });
}

describe('listTags', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  });

  it('follows the Link pages to the last tag', async () => {
    const tags = Array.from({ length: 7 }, (_, i) => `v${i}`);
    const registry = await pagingRegistry(tags, 3);
    server = registry.server;
    const c = client();
    try {
      expect(await c.listTags({ registry: registry.host, repository: 'team/app' })).toEqual(tags);
      expect(registry.requests.filter((r) => r.includes('tags/list'))).toEqual([
        '/v2/team/app/tags/list?n=1000',
        '/v2/team/app/tags/list?n=3&last=v2',
        '/v2/team/app/tags/list?n=3&last=v5',
      ]);
      expect(await c.listTags({ registry: registry.host, repository: 'team/other' })).toEqual([]);
    } finally {
      await c.close();
    }
  });

  it('never follows a link to another origin (the credentials stay with the registry)', async () => {
    const registry = await pagingRegistry(['a', 'b'], 5, { strayLink: 'http://127.0.0.2:1/v2/team/app/tags/list?last=b' });
    server = registry.server;
    const c = client();
    try {
      expect(await c.listTags({ registry: registry.host, repository: 'team/app' })).toEqual(['a', 'b']);
      expect(registry.requests.filter((r) => r.includes('tags/list'))).toHaveLength(1);
    } finally {
      await c.close();
    }
  });
});
