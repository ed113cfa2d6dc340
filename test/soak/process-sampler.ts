/**
 * Memory and descriptors of the soak's processes, read from /proc: VmRSS and VmHWM from
 * /proc/<pid>/status and the entries of /proc/<pid>/fd, every few seconds. A role (the coordinator,
 * each agent) has one incarnation per process: a killed and restarted agent starts a new one, and
 * flatness is judged per incarnation, since a leak lives and dies with its process.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import { basename, dirname } from 'node:path';

export interface ProcessSample {
  /** ms since the soak began. */
  at: number;
  rssBytes: number;
  /** The process's peak resident memory so far (VmHWM). */
  hwmBytes: number;
  fds: number;
}

export interface Incarnation {
  role: string;
  pid: number;
  /** ms since the soak began. */
  startedAt: number;
  samples: ProcessSample[];
  /** What its descriptors were when it had the most open: `socket`, `pipe`, or a file's folder name. */
  peakFds?: { at: number; kinds: Record<string, number> };
}

export class ProcessSampler {
  readonly #start: number;
  readonly #incarnations: Incarnation[] = [];
  readonly #current = new Map<string, Incarnation>();
  #timer: NodeJS.Timeout | undefined;

  readonly #ports: ReadonlyMap<number, string>;

  /** `ports` names the remote ends of TCP connections in the descriptor kinds (`tcp ESTABLISHED to registry`). */
  constructor(start: number, intervalMs: number, ports: ReadonlyMap<number, string> = new Map()) {
    this.#start = start;
    this.#ports = ports;
    this.#timer = setInterval(() => void this.sample(), intervalMs);
  }

  /** `pid` is now `role` (its first process, or the one started after a kill). */
  track(role: string, pid: number): void {
    const incarnation: Incarnation = { role, pid, startedAt: Date.now() - this.#start, samples: [] };
    this.#incarnations.push(incarnation);
    this.#current.set(role, incarnation);
    void this.sample();
  }

  incarnations(): Incarnation[] {
    return this.#incarnations;
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async sample(): Promise<void> {
    await Promise.all(
      [...this.#current.values()].map(async (incarnation) => {
        const read = await readProcess(incarnation.pid, this.#ports);
        if (read === undefined) return;
        const at = Date.now() - this.#start;
        incarnation.samples.push({ at, rssBytes: read.rssBytes, hwmBytes: read.hwmBytes, fds: read.fds });
        const peak = incarnation.peakFds === undefined ? -1 : Object.values(incarnation.peakFds.kinds).reduce((a, b) => a + b, 0);
        if (read.fds > peak) incarnation.peakFds = { at, kinds: read.kinds };
      }),
    );
  }
}

/** Undefined once the process is gone (or a zombie, which has no memory left to read). */
export async function readProcess(
  pid: number,
  ports: ReadonlyMap<number, string> = new Map(),
): Promise<(Omit<ProcessSample, 'at'> & { kinds: Record<string, number> }) | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const fds = await readdir(`/proc/${pid}/fd`);
    const rssBytes = kib(status, 'VmRSS');
    if (rssBytes === undefined) return undefined;
    const kinds: Record<string, number> = {};
    const tcp = await tcpStates(pid, ports);
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => 'closed:');
      const socket = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      const kind = target.startsWith('/') ? basename(dirname(target)) : socket === undefined ? (target.split(':')[0] ?? target) : (tcp.get(socket) ?? 'socket');
      kinds[kind] = (kinds[kind] ?? 0) + 1;
    }
    return { rssBytes, hwmBytes: kib(status, 'VmHWM') ?? rssBytes, fds: fds.length, kinds };
  } catch {
    return undefined;
  }
}

/** TCP states as /proc names them (include/net/tcp_states.h), for the kinds of open sockets. */
const TCP_STATES = ['', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING'];

/** `tcp <STATE>` (and `to <name>` for a remote port in `ports`) of each TCP socket inode in the process's network namespace. */
async function tcpStates(pid: number, ports: ReadonlyMap<number, string>): Promise<Map<string, string>> {
  const states = new Map<string, string>();
  for (const table of ['tcp', 'tcp6']) {
    const text = await readFile(`/proc/${pid}/net/${table}`, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const remote = ports.get(parseInt(f[2]?.split(':')[1] ?? '', 16));
      states.set(f[9]!, `tcp ${TCP_STATES[parseInt(f[3] ?? '0', 16)] ?? f[3]}${remote === undefined ? '' : ` to ${remote}`}`);
    }
  }
  return states;
}

function kib(status: string, field: string): number | undefined {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return m?.[1] === undefined ? undefined : Number(m[1]) * 1024;
}

export interface Thirds {
  firstThird: number;
  lastThird: number;
  ratio: number;
}

export interface Flatness {
  role: string;
  pid: number;
  /** Why it was not judged (lived too short after its warm-up), or the figures. */
  skipped?: string;
  /** Highest VmRSS of each third. */
  rss?: Thirds;
  /** Median of the open descriptors in each third (what is judged), and their highest. */
  fds?: Thirds;
  fdsMax?: Thirds;
  flat: boolean;
}

export interface FlatnessRule {
  /** Samples from a process's first this-many ms are its warm-up and left out. */
  warmupMs: number;
  /** Samples from the run's last this-many ms are its wind-down and left out. */
  windDownMs: number;
  /** A process must be sampled at least this long between its warm-up and the wind-down to be judged. */
  minJudgedMs: number;
  /** The last third's figure may be at most this times the first third's. */
  maxRatio: number;
}

/**
 * Flat after warm-up: of the samples taken once the process has run `warmupMs` and before the
 * run's wind-down (its last `windDownMs`, up to `runEndMs`), split by time into thirds, the last
 * third's highest resident memory is at most `maxRatio` times the first third's, and so is the
 * median of its open descriptors. The run's last pieces are its small blobs (the plan goes largest
 * first), placed many at once, each holding a file open on its agent and at the writer for a
 * moment: that wind-down is left out, and descriptors are judged by their median, since they count
 * the work of the moment and spike when a kill or the outage's end puts many pieces in motion. A
 * leak lifts the whole last third. Both figures are printed. A process sampled too short between
 * warm-up and wind-down is skipped, not passed silently.
 */
export function judgeFlatness(incarnation: Incarnation, rule: FlatnessRule, runEndMs: number): Flatness {
  const { role, pid } = incarnation;
  const after = incarnation.samples.filter((s) => s.at - incarnation.startedAt >= rule.warmupMs && s.at <= runEndMs - rule.windDownMs);
  const from = after[0]?.at ?? 0;
  const span = (after[after.length - 1]?.at ?? 0) - from;
  if (after.length < 6 || span < rule.minJudgedMs) {
    return { role, pid, skipped: `sampled ${Math.max(0, Math.round(span / 1000))} s between warm-up and wind-down, under ${rule.minJudgedMs / 1000} s`, flat: true };
  }
  const first = after.filter((s) => s.at <= from + span / 3);
  const last = after.filter((s) => s.at >= from + (2 * span) / 3);
  const compare = (values: (samples: ProcessSample[]) => number): Thirds => {
    const firstThird = values(first);
    const lastThird = values(last);
    return { firstThird, lastThird, ratio: lastThird / firstThird };
  };
  const rss = compare((samples) => Math.max(...samples.map((s) => s.rssBytes)));
  const fds = compare((samples) => median(samples.map((s) => s.fds)));
  const fdsMax = compare((samples) => Math.max(...samples.map((s) => s.fds)));
  return { role, pid, rss, fds, fdsMax, flat: rss.ratio <= rule.maxRatio && fds.ratio <= rule.maxRatio };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * One row per minute of the soak: for each role, the highest VmRSS sampled in that minute, the
 * highest VmHWM (peak), and the most descriptors open; `*` marks a minute in which the role's
 * process was replaced (killed and started again). `before` adds a column after the minute.
 */
export function minuteTable(incarnations: Incarnation[], roles: string[], endMs: number, before?: { header: string; cell(minute: number): string }): string {
  const MiB = 1024 * 1024;
  const minutes = Math.max(1, Math.ceil(endMs / 60_000));
  const header = ['minute', ...(before === undefined ? [] : [before.header]), ...roles.map((r) => `${r}: RSS / peak MiB, fds`)];
  const rows = [header, header.map(() => '---')];
  for (let m = 0; m < minutes; m += 1) {
    const row = [`${m + 1}`, ...(before === undefined ? [] : [before.cell(m)])];
    for (const role of roles) {
      const inMinute = incarnations.filter((i) => i.role === role).flatMap((i) => i.samples.filter((s) => s.at >= m * 60_000 && s.at < (m + 1) * 60_000));
      if (inMinute.length === 0) {
        row.push('–');
        continue;
      }
      const rss = Math.max(...inMinute.map((s) => s.rssBytes));
      const peak = Math.max(...inMinute.map((s) => s.hwmBytes));
      const fds = Math.max(...inMinute.map((s) => s.fds));
      const replaced = incarnations.filter((i) => i.role === role).some((i, n) => n > 0 && i.startedAt >= m * 60_000 && i.startedAt < (m + 1) * 60_000);
      row.push(`${(rss / MiB).toFixed(0)} / ${(peak / MiB).toFixed(0)}, ${fds}${replaced ? ' *' : ''}`);
    }
    rows.push(row);
  }
  return rows.map((r) => `| ${r.join(' | ')} |`).join('\n');
}
