/**
 * What `mirror --status` and `agent --status` share: listening on the status address, answering
 * `/metrics` from a prom-client registry, and metrics whose values are read from the state when
 * scraped (so a scrape always agrees with the JSON beside it).
 */
import { readdir, stat } from 'node:fs/promises';
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Counter, Gauge, type Registry } from 'prom-client';
import { MeshmirrorError } from '@meshmirror/shared';
import { parseStatusAddress } from './status-address.ts';

/** Rows of one metric: its labels and value. */
export type MetricRows<L extends string> = Array<[Partial<Record<L, string>>, number]>;

/** Listens on `HOST:PORT` (checked); resolves with `http://HOST:PORT` as bound (a port of 0 becomes the one chosen). */
export async function listenOnStatusAddress(server: Server, address: string): Promise<string> {
  const { host, port } = parseStatusAddress(address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new MeshmirrorError('MM_USAGE', `--status ${address}: cannot listen: ${err.message}`, { cause: err })));
    server.listen(port, host, resolve);
  });
  const bound = server.address() as AddressInfo;
  return `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
}

/** Answers a request for `/metrics` in the Prometheus text format. */
export function answerMetrics(registry: Registry, res: ServerResponse): void {
  registry.metrics().then(
    (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
    (err: unknown) => res.writeHead(500).end(String(err)),
  );
}

/** A gauge whose rows are read at each scrape. */
export function gaugeOf<L extends string>(registry: Registry, name: string, help: string, labelNames: L[], rows: () => MetricRows<L> | Promise<MetricRows<L>>): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    async collect() {
      const values = await rows();
      this.reset();
      for (const [labels, value] of values) this.set(labels, value);
    },
  });
}

/** A counter whose rows are running totals read at each scrape (the state only ever adds to them). */
export function counterOf<L extends string>(registry: Registry, name: string, help: string, labelNames: L[], rows: () => MetricRows<L>): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of rows()) this.inc(labels, value);
    },
  });
}

/** How long a measured store size is reused: walking a large store on every scrape is wasteful. */
const STORE_SIZE_TTL_MS = 10_000;

/** The folder's total file size, measured at most every STORE_SIZE_TTL_MS. */
export function cachedFolderBytes(dir: string): () => Promise<number> {
  let measured: { at: number; bytes: Promise<number> } | undefined;
  return () => {
    const now = Date.now();
    if (measured === undefined || now - measured.at > STORE_SIZE_TTL_MS) measured = { at: now, bytes: folderBytes(dir) };
    return measured.bytes;
  };
}

async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0; // removed while walked, or not there yet
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await folderBytes(path);
    else if (entry.isFile())
      total += await stat(path).then(
        (s) => s.size,
        () => 0,
      );
  }
  return total;
}
