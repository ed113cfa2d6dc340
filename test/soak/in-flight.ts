/**
 * What a kill had in flight, seen from the fault proxy: the blob requests the killed process (or,
 * for the coordinator, its agents, which drop their assignments with it) had open at that moment.
 * The proxy logs each request's client port; /proc tells which process owns which port.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import type { FaultProxyStats } from '../support/fault-proxy.ts';

type LogEntry = FaultProxyStats['log'][number];

export interface Connection {
  localPort: number;
  /** Bytes the kernel holds for the process that it has not read yet. */
  unread: number;
}

/** `pid`'s TCP connections to 127.0.0.1:`port` (IPv4; the soak's references name 127.0.0.1). */
export async function connectionsTo(pid: number, port: number): Promise<Connection[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''));
    if (m?.[1] !== undefined) inodes.add(m[1]);
  }
  const table = await readFile(`/proc/${pid}/net/tcp`, 'utf8').catch(() => '');
  const connections: Connection[] = [];
  for (const line of table.split('\n').slice(1)) {
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !inodes.has(f[9] ?? '')) continue;
    const remotePort = parseInt((f[2] ?? '').split(':')[1] ?? '', 16);
    if (remotePort !== port) continue;
    connections.push({ localPort: parseInt((f[1] ?? '').split(':')[1] ?? '', 16), unread: parseInt((f[4] ?? '').split(':')[1] ?? '0', 16) });
  }
  return connections;
}

/**
 * Indexes into the proxy's log of the blob GETs open on these connections: on each, its latest
 * request, if the proxy was still sending it or its bytes still wait unread in the kernel. Their
 * final byte counts, read once the proxy is done with them, are what the kill had in flight: an
 * upper bound, since the part that reached the writer before the kill is kept.
 */
export function openBlobRequests(log: LogEntry[], connections: Connection[]): number[] {
  const open: number[] = [];
  for (const connection of connections) {
    let latest = -1;
    for (let i = log.length - 1; i >= 0; i -= 1) {
      if (log[i]?.clientPort === connection.localPort) {
        latest = i;
        break;
      }
    }
    const entry = log[latest];
    if (entry === undefined || entry.method !== 'GET' || !/\/blobs\/sha256:/.test(entry.path)) continue;
    if (entry.status === 0 || connection.unread > 0) open.push(latest);
  }
  return open;
}
