/**
 * Helm charts for tests: chart archives packed as `helm package` lays them out (one top folder named
 * after the chart), and a chart repository served the way real ones are (static files: `index.yaml`
 * and the archives it links to) by a plain HTTP server on loopback.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { stringify } from 'yaml';

export type ChartFiles = Record<string, string | Buffer>;

/** A `.tgz` of `files` under `top/`. */
export async function packChart(top: string, files: ChartFiles): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const [name, content] of Object.entries(files)) {
    const bytes = typeof content === 'string' ? Buffer.from(content) : content;
    pack.entry({ name: `${top}/${name}`, size: bytes.length, mtime: new Date(0) }, bytes);
  }
  pack.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks));
}

export interface ServedChart {
  name: string;
  version: string;
  archive: Buffer;
  type?: string;
}

export interface ChartRepository {
  /** The repository URL, ending in `/` as `helm repo add` takes it. */
  url: string;
  /** Paths asked for, in order. */
  requests: string[];
  close(): Promise<void>;
}

/** Serves `index.yaml` (relative chart URLs, as `helm repo index` writes them) and the archives under `/charts/`. */
export async function startChartRepository(charts: ServedChart[]): Promise<ChartRepository> {
  const files = new Map<string, Buffer>();
  const entries: Record<string, unknown[]> = {};
  for (const chart of charts) {
    const file = `${chart.name}-${chart.version}.tgz`;
    files.set(`/charts/${file}`, chart.archive);
    (entries[chart.name] ??= []).push({
      apiVersion: 'v2',
      name: chart.name,
      version: chart.version,
      ...(chart.type === undefined ? {} : { type: chart.type }),
      digest: createHash('sha256').update(chart.archive).digest('hex'),
      urls: [file],
      created: '2026-01-01T00:00:00Z',
    });
  }
  files.set('/charts/index.yaml', Buffer.from(stringify({ apiVersion: 'v1', entries, generated: '2026-01-01T00:00:00Z' })));
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    requests.push(path);
    const body = files.get(path);
    if (body === undefined) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': path.endsWith('.yaml') ? 'text/yaml' : 'application/gzip', 'content-length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/charts/`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
