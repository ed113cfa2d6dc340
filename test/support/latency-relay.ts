/**
 * A TCP relay that delays every byte by a fixed time in each direction, so a registry on loopback
 * sits behind a link with a round-trip time (this kernel has no netem). Bytes keep their order and
 * each direction may hold at most `windowBytes` in flight, which also bounds its memory; beyond
 * that the sender is paused, as a full link would. Like toxiproxy's latency toxic, without jitter.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface LatencyRelay {
  /** `127.0.0.1:PORT` */
  host: string;
  close(): Promise<void>;
}

export interface LatencyRelayOptions {
  /** Where to forward, `HOST:PORT`. */
  target: string;
  /** Delay in each direction; the round trip is twice this. */
  oneWayMs: number;
  /** Bytes in flight per direction before the sender is paused. Default 64 MiB. */
  windowBytes?: number;
}

export async function startLatencyRelay(options: LatencyRelayOptions): Promise<LatencyRelay> {
  const [targetHost, targetPort] = splitHost(options.target);
  const windowBytes = options.windowBytes ?? 64 * 1024 * 1024;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect({ host: targetHost, port: targetPort });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.setNoDelay(true);
      s.on('close', () => sockets.delete(s));
    }
    delayed(client, upstream, options.oneWayMs, windowBytes);
    delayed(upstream, client, options.oneWayMs, windowBytes);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('latency relay has no port');
  return {
    host: `127.0.0.1:${address.port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Forwards `from` to `to`, each chunk `ms` after it arrived; ends and errors follow the same delay. */
function delayed(from: Socket, to: Socket, ms: number, windowBytes: number): void {
  let inFlight = 0;
  from.on('data', (chunk: Buffer) => {
    inFlight += chunk.length;
    if (inFlight >= windowBytes) from.pause();
    // Timers of one duration fire in the order they were set: the bytes keep their order.
    setTimeout(() => {
      if (to.destroyed) return;
      to.write(chunk, () => {
        inFlight -= chunk.length;
        if (inFlight < windowBytes / 2 && from.isPaused()) from.resume();
      });
    }, ms);
  });
  from.on('end', () => setTimeout(() => to.end(), ms));
  from.on('error', () => setTimeout(() => to.destroy(), ms));
  from.on('close', () =>
    setTimeout(() => {
      if (!to.destroyed) to.end();
    }, ms + 1),
  );
}

function splitHost(hostPort: string): [string, number] {
  const i = hostPort.lastIndexOf(':');
  return [hostPort.slice(0, i), Number(hostPort.slice(i + 1))];
}
