import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { MeshmirrorError, silentLogger, type RetryPolicy } from '@meshmirror/shared';
import { compareVersions, parseUpdateGraph, selectReleases, UpdateGraphClient, type ChannelSelection, type GraphCache, type UpdateGraph } from './update-graph.ts';

// ---- a hand-written graph, built from the documented Cincinnati format ----------------------

const CHANNELS = 'io.openshift.upgrades.graph.release.channels';
const STABLE = 'stable-4.19';
const FAST = 'fast-4.19';

/**
 * stable-4.19: 4.18.20, 4.19.0 … 4.19.4. fast-4.19: those, plus 4.19.0-rc.3 and 4.19.5.
 * Nodes are deliberately out of order, as the service sends them.
 */
const NODES: Array<{ version: string; channels: string[] }> = [
  { version: '4.19.3', channels: [STABLE, FAST] },
  { version: '4.19.5', channels: [FAST] },
  { version: '4.18.20', channels: ['stable-4.18', STABLE, FAST] },
  { version: '4.19.1', channels: [STABLE, FAST] },
  { version: '4.19.0-rc.3', channels: [FAST] },
  { version: '4.19.4', channels: [STABLE, FAST] },
  { version: '4.19.0', channels: [STABLE, FAST] },
  { version: '4.19.2', channels: [STABLE, FAST] },
];

/**
 * Edges by version. 4.19.1 → 4.19.3 skips 4.19.2. 4.18.20 reaches 4.19.3 in two hops both through
 * 4.19.1 and through 4.19.2; the edge to 4.19.2 is listed first so that only visiting neighbours in
 * version order picks 4.19.1. Nothing leads to 4.19.5 (its edges are not published yet).
 */
const EDGES: Array<[string, string]> = [
  ['4.18.20', '4.19.2'],
  ['4.18.20', '4.19.0'],
  ['4.18.20', '4.19.1'],
  ['4.19.0-rc.3', '4.19.0'],
  ['4.19.0', '4.19.1'],
  ['4.19.1', '4.19.2'],
  ['4.19.2', '4.19.3'],
  ['4.19.1', '4.19.3'],
  ['4.19.3', '4.19.4'],
];

/** 4.19.1 → 4.19.4 only under a risk: it still counts for shortestPath. */
const CONDITIONAL_EDGES = [
  {
    edges: [{ from: '4.19.1', to: '4.19.4' }],
    risks: [{ url: 'https://issues.redhat.com/browse/OCPBUGS-1', name: 'SomeRisk', message: 'a risk', matchingRules: [{ type: 'Always' }] }],
  },
];

function payloadOf(version: string): string {
  return `quay.io/openshift-release-dev/ocp-release@sha256:${version.replace(/\W/g, '').padEnd(64, '0')}`;
}

function graphBody(options: { withChannels?: boolean } = {}): Record<string, unknown> {
  const index = (version: string): number => NODES.findIndex((n) => n.version === version);
  return {
    version: 1,
    nodes: NODES.map((node) => ({
      version: node.version,
      payload: payloadOf(node.version),
      metadata: {
        ...(options.withChannels === false ? {} : { [CHANNELS]: node.channels.join(',') }),
        'io.openshift.upgrades.graph.release.manifestref': `sha256:${'ab'.repeat(32)}`,
        url: `https://access.redhat.com/errata/RHBA-2025:${node.version}`,
      },
    })),
    edges: EDGES.map(([from, to]) => [index(from), index(to)]),
    // A copy: tests damage bodies, and must not damage the next one.
    conditionalEdges: structuredClone(CONDITIONAL_EDGES),
  };
}

const WHERE = 'https://graph.test/graph?channel=stable-4.19&arch=amd64';

// ---- selection -------------------------------------------------------------------------------

describe('selectReleases', () => {
  const graph = parseUpdateGraph(graphBody(), WHERE);
  const select = (graphToUse: UpdateGraph, channel: Partial<ChannelSelection>) =>
    selectReleases(graphToUse, { name: STABLE, full: false, shortestPath: false, ...channel }, WHERE).map((n) => n.version);

  const cases: Array<{ rule: string; channel: Partial<ChannelSelection>; expected: string[] }> = [
    { rule: 'head only', channel: {}, expected: ['4.19.4'] },
    { rule: 'head only, another channel', channel: { name: FAST }, expected: ['4.19.5'] },
    { rule: 'min only: min up to the head', channel: { minVersion: '4.19.2' }, expected: ['4.19.2', '4.19.3', '4.19.4'] },
    { rule: 'max only: max alone', channel: { maxVersion: '4.19.1' }, expected: ['4.19.1'] },
    { rule: 'range', channel: { minVersion: '4.19.0', maxVersion: '4.19.3' }, expected: ['4.19.0', '4.19.1', '4.19.2', '4.19.3'] },
    { rule: 'full', channel: { full: true }, expected: ['4.18.20', '4.19.0', '4.19.1', '4.19.2', '4.19.3', '4.19.4'] },
    {
      rule: 'full, channel filtering and pre-release order',
      channel: { name: FAST, full: true },
      expected: ['4.18.20', '4.19.0-rc.3', '4.19.0', '4.19.1', '4.19.2', '4.19.3', '4.19.4', '4.19.5'],
    },
    { rule: 'full and range', channel: { full: true, minVersion: '4.19.1', maxVersion: '4.19.3' }, expected: ['4.19.1', '4.19.2', '4.19.3'] },
    { rule: 'full and max: from the first release', channel: { full: true, maxVersion: '4.19.1' }, expected: ['4.18.20', '4.19.0', '4.19.1'] },
    { rule: 'full and min: up to the head', channel: { full: true, minVersion: '4.19.3' }, expected: ['4.19.3', '4.19.4'] },
    {
      rule: 'shortestPath over a conditional edge (the range has 5)',
      channel: { shortestPath: true, minVersion: '4.19.0', maxVersion: '4.19.4' },
      expected: ['4.19.0', '4.19.1', '4.19.4'],
    },
    { rule: 'shortestPath over a skip edge', channel: { shortestPath: true, minVersion: '4.19.1', maxVersion: '4.19.3' }, expected: ['4.19.1', '4.19.3'] },
    {
      rule: 'shortestPath tie goes through the lower version',
      channel: { shortestPath: true, minVersion: '4.18.20', maxVersion: '4.19.3' },
      expected: ['4.18.20', '4.19.1', '4.19.3'],
    },
    { rule: 'shortestPath with min only ends at the head', channel: { shortestPath: true, minVersion: '4.19.2' }, expected: ['4.19.2', '4.19.3', '4.19.4'] },
    { rule: 'shortestPath with max only is max alone', channel: { shortestPath: true, maxVersion: '4.19.3' }, expected: ['4.19.3'] },
  ];

  it.each(cases)('$rule', ({ channel, expected }) => {
    expect(select(graph, channel)).toEqual(expected);
  });

  it('shortestPath does not step outside the channel', () => {
    // In fast-4.19, 4.19.0-rc.3 → 4.19.0 is an edge; stable-4.19 does not have the rc.
    expect(select(graph, { name: FAST, shortestPath: true, minVersion: '4.19.0-rc.3', maxVersion: '4.19.1' })).toEqual(['4.19.0-rc.3', '4.19.0', '4.19.1']);
    expect(() => select(graph, { shortestPath: true, minVersion: '4.19.0-rc.3', maxVersion: '4.19.1' })).toThrow(/minVersion 4\.19\.0-rc\.3 is not in the channel/);
  });

  it('takes every node as in the channel when no node carries channel metadata', () => {
    const unlabelled = parseUpdateGraph(graphBody({ withChannels: false }), WHERE);
    expect(select(unlabelled, { name: 'anything' })).toEqual(['4.19.5']);
    expect(select(unlabelled, { name: 'anything', full: true })).toHaveLength(8);
  });

  it('returns the nodes themselves, with their payloads', () => {
    const [node] = selectReleases(graph, { name: STABLE, full: false, shortestPath: false }, WHERE);
    expect(node).toEqual({
      version: '4.19.4',
      payload: payloadOf('4.19.4'),
      channels: [STABLE, FAST],
      metadata: expect.objectContaining({ url: 'https://access.redhat.com/errata/RHBA-2025:4.19.4' }),
    });
  });

  it('names the channel, the URL and the version that is not in the channel', () => {
    const error = catchError(() => select(graph, { minVersion: '4.19.5' }));
    expect(error.code).toBe('MM_NOT_FOUND');
    expect(error.message).toBe(`channel stable-4.19 (${WHERE}): minVersion 4.19.5 is not in the channel (it has 4.18.20 … 4.19.4)`);
    expect(() => select(graph, { maxVersion: '4.19.99' })).toThrow(
      `channel stable-4.19 (${WHERE}): maxVersion 4.19.99 is not in the channel (it has 4.18.20 … 4.19.4)`,
    );
  });

  it('names both versions when there is no path', () => {
    const error = catchError(() => select(graph, { name: FAST, shortestPath: true, minVersion: '4.19.3', maxVersion: '4.19.5' }));
    expect(error.code).toBe('MM_NOT_FOUND');
    expect(error.message).toBe(`channel fast-4.19 (${WHERE}): no upgrade path from 4.19.3 to 4.19.5 in the channel (shortestPath)`);
  });

  it('fails clearly for a channel with no release', () => {
    const error = catchError(() => select(graph, { name: 'candidate-4.19' }));
    expect(error.code).toBe('MM_NOT_FOUND');
    expect(error.message).toContain(`channel candidate-4.19 (${WHERE}): the update graph has no release in this channel`);
  });
});

describe('compareVersions', () => {
  it('orders by semver precedence', () => {
    const shuffled = ['4.19.10', '4.19.0', '4.9.1', '4.19.0-rc.10', '4.19.0-rc.2', '4.19.0-ec.1', '4.19.2', '4.18.30'];
    expect([...shuffled].sort(compareVersions)).toEqual(['4.9.1', '4.18.30', '4.19.0-ec.1', '4.19.0-rc.2', '4.19.0-rc.10', '4.19.0', '4.19.2', '4.19.10']);
    expect(compareVersions('4.19.2+build.1', '4.19.2')).toBe(0);
    expect(compareVersions('4.19.0-rc.1', '4.19.0-rc.1.1')).toBeLessThan(0);
  });
});

// ---- parsing ---------------------------------------------------------------------------------

describe('parseUpdateGraph', () => {
  it('keeps nodes, edges and flattened conditional edges, and allows unknown fields', () => {
    const body = graphBody();
    (body['nodes'] as Array<Record<string, unknown>>)[0]!['addedLater'] = { anything: true };
    body['somethingNew'] = [1, 2, 3];
    const graph = parseUpdateGraph(body, WHERE);
    expect(graph.nodes.map((n) => n.version)).toEqual(NODES.map((n) => n.version));
    expect(graph.edges).toHaveLength(EDGES.length);
    expect(graph.edges[0]).toEqual([2, 7]);
    expect(graph.conditionalEdges).toEqual([{ from: '4.19.1', to: '4.19.4' }]);
    expect(graph.nodes[2]!.channels).toEqual(['stable-4.18', STABLE, FAST]);
  });

  const invalid: Array<{ what: string; change: (body: Record<string, unknown>) => unknown; path: string }> = [
    { what: 'a missing payload', change: (body) => delete nodeAt(body, 3)['payload'], path: 'nodes[3].payload' },
    { what: 'a version that is not semver', change: (body) => (nodeAt(body, 1)['version'] = 'latest'), path: 'nodes[1].version' },
    {
      what: 'a metadata value that is not a string',
      change: (body) => ((nodeAt(body, 0)['metadata'] as Record<string, unknown>)[CHANNELS] = ['stable-4.19']),
      path: `nodes[0].metadata["${CHANNELS}"]`,
    },
    { what: 'an edge that is not a pair', change: (body) => ((body['edges'] as unknown[])[4] = [1]), path: 'edges[4]' },
    { what: 'an edge index out of range', change: (body) => ((body['edges'] as unknown[])[2] = [0, 42]), path: 'edges[2][1]' },
    {
      what: 'a conditional edge without `to`',
      change: (body) => ((body['conditionalEdges'] as unknown[])[0] = { edges: [{ from: '4.19.1' }] }),
      path: 'conditionalEdges[0].edges[0].to',
    },
    { what: 'no nodes', change: (body) => delete body['nodes'], path: 'nodes' },
  ];

  it.each(invalid)('rejects $what, naming $path', ({ change, path }) => {
    const body = graphBody();
    change(body);
    const error = catchError(() => parseUpdateGraph(body, WHERE));
    expect(error.code).toBe('MM_MANIFEST_INVALID');
    expect(error.message).toContain(`update graph from ${WHERE} is invalid: ${path}`);
    expect(error.data['path']).toBe(path);
  });

  it('says what is wrong with an edge index out of range', () => {
    const body = graphBody();
    (body['edges'] as unknown[])[2] = [0, 42];
    expect(() => parseUpdateGraph(body, WHERE)).toThrow('edges[2][1]: there is no node 42 (the graph has 8 nodes)');
  });

  it('rejects a body that is not an object', () => {
    expect(() => parseUpdateGraph(null, WHERE)).toThrow(`update graph from ${WHERE} is invalid: body:`);
    expect(() => parseUpdateGraph([], WHERE)).toThrow(MeshmirrorError);
  });
});

// ---- the client against a local graph service -------------------------------------------------

const FAST_RETRY = { retries: 3, baseDelayMs: 1, maxDelayMs: 1, factor: 1, jitter: 0 } satisfies RetryPolicy;
const STABLE_AMD64 = { channel: STABLE, arch: 'amd64', type: 'ocp' } as const;

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

interface GraphService {
  url: string;
  /** Every request's path and query, and its Accept header. */
  requests: Array<{ url: string; accept: string | undefined }>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A graph service on 127.0.0.1 answering with `handlers` in turn (the last one repeats). */
async function startGraphService(...handlers: Handler[]): Promise<GraphService> {
  const requests: GraphService['requests'] = [];
  const server = createServer((req, res) => {
    requests.push({ url: req.url ?? '', accept: req.headers.accept });
    const handler = handlers[Math.min(requests.length, handlers.length) - 1]!;
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/graph`, requests };
}

function client(options: Partial<ConstructorParameters<typeof UpdateGraphClient>[0]> & { baseUrl: string }): UpdateGraphClient {
  const created = new UpdateGraphClient({ retry: FAST_RETRY, logger: silentLogger(), ...options });
  cleanups.push(() => created.close());
  return created;
}

const sendJson =
  (body: unknown, status = 200, headers: Record<string, string> = {}): Handler =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };

function memoryCache(): GraphCache & { entries: Map<string, string> } {
  const entries = new Map<string, string>();
  return {
    entries,
    get: async (key) => entries.get(key),
    put: async (key, body) => {
      entries.set(key, body);
    },
  };
}

describe('UpdateGraphClient', () => {
  it('asks for the channel and architecture as JSON, and parses the answer', async () => {
    const service = await startGraphService(sendJson(graphBody()));
    const graphs = client({ baseUrl: service.url });
    const request = { channel: STABLE, arch: 'arm64', type: 'ocp' } as const;
    const graph = await graphs.channelGraph(request);
    expect(graph.nodes).toHaveLength(8);
    expect(service.requests).toEqual([{ url: '/graph?channel=stable-4.19&arch=arm64', accept: 'application/json' }]);
    expect(graphs.urlFor(request)).toBe(`${service.url}?channel=stable-4.19&arch=arm64`);
  });

  it('uses the OCP and OKD services unless told otherwise', () => {
    const graphs = new UpdateGraphClient({ logger: silentLogger() });
    cleanups.push(() => graphs.close());
    expect(graphs.urlFor(STABLE_AMD64)).toBe('https://api.openshift.com/api/upgrades_info/v1/graph?channel=stable-4.19&arch=amd64');
    expect(graphs.urlFor({ channel: 'stable-4', arch: 'amd64', type: 'okd' })).toBe('https://origin-release.ci.openshift.org/graph?channel=stable-4&arch=amd64');
  });

  it('retries a 503 and then succeeds', async () => {
    const service = await startGraphService(sendJson({ kind: 'unavailable' }, 503), sendJson(graphBody()));
    const graph = await client({ baseUrl: service.url }).channelGraph(STABLE_AMD64);
    expect(graph.nodes).toHaveLength(8);
    expect(service.requests).toHaveLength(2);
  });

  it('honours Retry-After over its own backoff', { timeout: 5_000 }, async () => {
    // The policy alone would wait a minute; Retry-After: 0 says go at once.
    const patient: RetryPolicy = { retries: 1, baseDelayMs: 60_000, maxDelayMs: 60_000, factor: 1, jitter: 0 };
    const service = await startGraphService(sendJson({}, 429, { 'retry-after': '0' }), sendJson(graphBody()));
    const graph = await client({ baseUrl: service.url, retry: patient }).channelGraph(STABLE_AMD64);
    expect(graph.nodes).toHaveLength(8);
    expect(service.requests).toHaveLength(2);
  });

  it('does not retry a 404, and names the URL, channel and status', async () => {
    const service = await startGraphService(sendJson({ kind: 'not_found', value: 'no such thing' }, 404));
    const error = await rejection(client({ baseUrl: service.url }).channelGraph(STABLE_AMD64));
    expect(error.code).toBe('MM_REGISTRY');
    expect(error.data['status']).toBe(404);
    expect(error.message).toBe(
      `channel stable-4.19 (amd64): GET ${service.url}?channel=stable-4.19&arch=amd64: HTTP 404 Not Found ({"kind":"not_found","value":"no such thing"})`,
    );
    expect(service.requests).toHaveLength(1);
  });

  it('gives up after the retries, with the last status', async () => {
    const service = await startGraphService(sendJson({}, 502));
    const error = await rejection(client({ baseUrl: service.url }).channelGraph(STABLE_AMD64));
    expect(error.message).toContain('HTTP 502 Bad Gateway');
    expect(service.requests).toHaveLength(FAST_RETRY.retries + 1);
  });

  it('answers from the cache: a second client with the same cache asks nothing', async () => {
    const service = await startGraphService(sendJson(graphBody()));
    const cache = memoryCache();
    const first = await client({ baseUrl: service.url, cache }).channelGraph(STABLE_AMD64);
    expect(service.requests).toHaveLength(1);
    expect([...cache.entries.keys()]).toEqual([`${service.url}?channel=stable-4.19&arch=amd64`]);

    const again = client({ baseUrl: service.url, cache });
    expect(await again.channelGraph(STABLE_AMD64)).toEqual(first);
    expect(await again.channelGraph(STABLE_AMD64)).toEqual(first);
    expect(service.requests).toHaveLength(1);
  });

  it('fails on a body that is not JSON, naming the URL, and caches nothing', async () => {
    const service = await startGraphService((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html><body>Please log in to the proxy</body></html>');
    });
    const cache = memoryCache();
    const error = await rejection(client({ baseUrl: service.url, cache }).channelGraph(STABLE_AMD64));
    expect(error.code).toBe('MM_MANIFEST_INVALID');
    expect(error.message).toContain(`channel stable-4.19 (amd64): GET ${service.url}?channel=stable-4.19&arch=amd64: the answer is not JSON (content-type text/html)`);
    expect(service.requests).toHaveLength(1);
    expect(cache.entries.size).toBe(0);
  });

  it('fails on an invalid graph naming the URL and the path', async () => {
    const body = graphBody();
    delete nodeAt(body, 5)['payload'];
    const service = await startGraphService(sendJson(body));
    await expect(client({ baseUrl: service.url }).channelGraph(STABLE_AMD64)).rejects.toThrow(
      `update graph from ${service.url}?channel=stable-4.19&arch=amd64 is invalid: nodes[5].payload`,
    );
  });

  it('refuses a body larger than the cap', async () => {
    const service = await startGraphService((_req, res) => {
      // Chunked, no Content-Length: the cap must hold while reading.
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(' '.repeat(1024));
      res.end(JSON.stringify(graphBody()));
    });
    const error = await rejection(client({ baseUrl: service.url, maxBodyBytes: 1024 }).channelGraph(STABLE_AMD64));
    expect(error.code).toBe('MM_MANIFEST_INVALID');
    expect(error.message).toContain('the answer is larger than 1 KiB');
  });

  it('follows a redirect', async () => {
    const target = await startGraphService(sendJson(graphBody()));
    const service = await startGraphService((req, res) => {
      res.writeHead(302, { location: `${target.url}${req.url?.slice('/graph'.length) ?? ''}` });
      res.end();
    });
    expect((await client({ baseUrl: service.url }).channelGraph(STABLE_AMD64)).nodes).toHaveLength(8);
    expect(target.requests).toEqual([{ url: '/graph?channel=stable-4.19&arch=amd64', accept: 'application/json' }]);
  });

  it('rejects an aborted signal before asking', async () => {
    const service = await startGraphService(sendJson(graphBody()));
    const cache = memoryCache();
    const error = await rejection(client({ baseUrl: service.url, cache }).channelGraph(STABLE_AMD64, { signal: AbortSignal.abort() }));
    expect(error.code).toBe('MM_ABORTED');
    expect(service.requests).toHaveLength(0);
  });

  it('rejects when the signal fires while waiting for the answer', async () => {
    const controller = new AbortController();
    // The service never answers; the request arriving is what triggers the abort.
    const service = await startGraphService(() => controller.abort());
    const error = await rejection(client({ baseUrl: service.url }).channelGraph(STABLE_AMD64, { signal: controller.signal }));
    expect(error.code).toBe('MM_ABORTED');
    expect(service.requests).toHaveLength(1);
  });

  it('reports a refused connection as a network error naming the URL', async () => {
    const service = await startGraphService(sendJson(graphBody()));
    await cleanups.pop()!(); // the port is closed now
    const error = await rejection(client({ baseUrl: service.url, retry: { ...FAST_RETRY, retries: 0 } }).channelGraph(STABLE_AMD64));
    expect(error.code).toBe('MM_NETWORK');
    expect(error.message).toContain(`channel stable-4.19 (amd64): GET ${service.url}: connection refused by ${new URL(service.url).host}`);
  });

  it('refuses an update URL that is not http(s)', () => {
    expect(() => new UpdateGraphClient({ baseUrl: 'ftp://graph.test/graph', logger: silentLogger() })).toThrow(/not an http:\/\/ or https:\/\/ URL/);
  });
});

// ---- helpers -----------------------------------------------------------------------------------

function nodeAt(body: Record<string, unknown>, index: number): Record<string, unknown> {
  return (body['nodes'] as Array<Record<string, unknown>>)[index]!;
}

function catchError(action: () => unknown): MeshmirrorError {
  try {
    action();
  } catch (error) {
    if (error instanceof MeshmirrorError) return error;
    throw error;
  }
  throw new Error('expected an error');
}

async function rejection(promise: Promise<unknown>): Promise<MeshmirrorError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof MeshmirrorError) return error;
    throw error;
  }
  throw new Error('expected a rejection');
}
