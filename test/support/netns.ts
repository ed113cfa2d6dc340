/**
 * Separate hosts on one machine, for tests and benchmarks run as root: each host is a network
 * namespace of its own, joined to a "wan" switch (where the source registry lives) and, for farm
 * hosts, a "lan" switch (where agents and the coordinator talk). Both switches are bridges in a
 * namespace of their own, so nothing is added to the machine's own network. A host's WAN uplink can
 * be shaped with `tc` (token bucket, both directions), as a site's internet link is. (No delay: this
 * machine's kernel has no netem.)
 *
 * Processes are started inside a host with `ip netns exec`, which execs the command, so the child's
 * pid is the command's own and `kill -9` reaches it.
 */
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface HostSpec {
  name: string;
  /** WAN rate in Mbit/s, each direction; unshaped when absent. */
  wanMbit?: number;
  /** Also join the LAN switch (farm hosts: agents and the coordinator). */
  lan?: boolean;
}

export interface NetHost {
  name: string;
  /** The namespace's name, for `ip netns exec`. */
  ns: string;
  wanAddress: string;
  lanAddress?: string | undefined;
  /** Starts a command inside this host. */
  spawn(command: string, args: string[], options?: SpawnOptions): ChildProcess;
  /** Runs a command inside this host and returns its stdout. */
  run(command: string, args: string[]): Promise<string>;
}

export interface Network {
  host(name: string): NetHost;
  /** Reshapes a host's WAN link (both directions). */
  shape(name: string, mbit: number): Promise<void>;
  destroy(): Promise<void>;
}

const WAN_PREFIX = '10.77.0.';
const LAN_PREFIX = '10.78.0.';
let networks = 0;
const live = new Set<string>();
let exitHookInstalled = false;

/** True when this process may build namespaces (root with `ip netns` and `tc` working). */
export async function canBuildNetworks(): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  const probe = `mmprobe${process.pid}`;
  try {
    await execFileAsync('ip', ['netns', 'add', probe]);
    await execFileAsync('ip', ['netns', 'exec', probe, 'tc', 'qdisc', 'show']);
    return true;
  } catch {
    return false;
  } finally {
    await execFileAsync('ip', ['netns', 'del', probe]).catch(() => undefined);
  }
}

async function ip(...args: string[]): Promise<void> {
  try {
    await execFileAsync('ip', args);
  } catch (error) {
    throw new Error(`ip ${args.join(' ')}: ${(error as { stderr?: string }).stderr?.trim() ?? String(error)}`);
  }
}

async function inNs(ns: string, command: string, args: string[]): Promise<string> {
  try {
    return (await execFileAsync('ip', ['netns', 'exec', ns, command, ...args], { maxBuffer: 16 * 1024 * 1024 })).stdout;
  } catch (error) {
    throw new Error(`[${ns}] ${command} ${args.join(' ')}: ${(error as { stderr?: string }).stderr?.trim() ?? String(error)}`);
  }
}

/** A token bucket at `mbit`, replacing whatever was on the device. */
async function shapeDevice(ns: string, dev: string, mbit: number): Promise<void> {
  await inNs(ns, 'tc', ['qdisc', 'del', 'dev', dev, 'root']).catch(() => undefined);
  // A bucket of a few milliseconds at the rate (at least 64 KB) lets TCP keep the link full.
  const burstBytes = Math.max(64 * 1024, Math.round((mbit * 1e6) / 8 / 200));
  const tbf = ['tbf', 'rate', `${mbit}mbit`, 'burst', String(burstBytes), 'latency', '50ms'];
  await inNs(ns, 'tc', ['qdisc', 'add', 'dev', dev, 'root', ...tbf]);
}

function cleanupAtExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const ns of live) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  });
}

export async function buildNetwork(specs: HostSpec[]): Promise<Network> {
  if (specs.length > 200) throw new Error('at most 200 hosts');
  const id = `mm${process.pid}n${networks++}`;
  const sw = `${id}-sw`;
  const hosts = new Map<string, NetHost & { index: number; spec: HostSpec }>();
  const created: string[] = [];
  cleanupAtExit();
  const addNs = async (ns: string): Promise<void> => {
    await ip('netns', 'add', ns);
    created.push(ns);
    live.add(ns);
    await inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
  };
  const destroy = async (): Promise<void> => {
    for (const ns of created.splice(0).reverse()) {
      await ip('netns', 'del', ns).catch(() => undefined);
      live.delete(ns);
    }
  };
  try {
    await addNs(sw);
    for (const bridge of ['wan', 'lan']) {
      await inNs(sw, 'ip', ['link', 'add', bridge, 'type', 'bridge']);
      await inNs(sw, 'ip', ['link', 'set', bridge, 'up']);
    }
    for (const [i, spec] of specs.entries()) {
      const index = i + 1;
      const ns = `${id}-${spec.name}`;
      await addNs(ns);
      const host = {
        name: spec.name,
        ns,
        index,
        spec,
        wanAddress: `${WAN_PREFIX}${index}`,
        lanAddress: spec.lan === true ? `${LAN_PREFIX}${index}` : undefined,
        spawn: (command: string, args: string[], options: SpawnOptions = {}) => spawn('ip', ['netns', 'exec', ns, command, ...args], options),
        run: (command: string, args: string[]) => inNs(ns, command, args),
      };
      const links: Array<[string, string, string]> = [['wan', `w${index}`, host.wanAddress]];
      if (host.lanAddress !== undefined) links.push(['lan', `l${index}`, host.lanAddress]);
      for (const [bridge, port, address] of links) {
        const dev = `eth-${bridge}`;
        await ip('link', 'add', dev, 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', sw);
        await inNs(sw, 'ip', ['link', 'set', port, 'master', bridge]);
        await inNs(sw, 'ip', ['link', 'set', port, 'up']);
        await inNs(ns, 'ip', ['addr', 'add', `${address}/24`, 'dev', dev]);
        await inNs(ns, 'ip', ['link', 'set', dev, 'up']);
      }
      hosts.set(spec.name, host);
    }
  } catch (error) {
    await destroy();
    throw error;
  }
  const network: Network = {
    host(name) {
      const host = hosts.get(name);
      if (host === undefined) throw new Error(`no host ${name} in this network`);
      return host;
    },
    async shape(name, mbit) {
      const host = hosts.get(name);
      if (host === undefined) throw new Error(`no host ${name} in this network`);
      // Egress on the host's side is its upload; egress on the switch's side is its download.
      await shapeDevice(host.ns, 'eth-wan', mbit);
      await shapeDevice(sw, `w${host.index}`, mbit);
    },
    destroy,
  };
  try {
    for (const spec of specs) if (spec.wanMbit !== undefined) await network.shape(spec.name, spec.wanMbit);
  } catch (error) {
    await destroy();
    throw error;
  }
  return network;
}
