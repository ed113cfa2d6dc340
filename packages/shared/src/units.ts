/**
 * Sizes and durations as people write them in oc-mirror flags and ImageSetConfigurations, and as
 * meshmirror prints them. Parsers throw a `ConfigError` whose message names the bad value; callers
 * that know the flag or field put its name in front.
 */
import { ConfigError } from './errors.ts';

const KIB = 1024;
const GIB = 1024 ** 3;

/** The unit a bare number is read in by `parseSize`. */
export type SizeUnit = 'B' | 'KiB' | 'MiB' | 'GiB';

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  k: 1e3,
  kb: 1e3,
  ki: KIB,
  kib: KIB,
  m: 1e6,
  mb: 1e6,
  mi: KIB ** 2,
  mib: KIB ** 2,
  g: 1e9,
  gb: 1e9,
  gi: GIB,
  gib: GIB,
  t: 1e12,
  tb: 1e12,
  ti: KIB ** 4,
  tib: KIB ** 4,
};

const DEFAULT_UNIT_BYTES: Record<SizeUnit, number> = { B: 1, KiB: KIB, MiB: KIB ** 2, GiB: GIB };

/**
 * Parses a size into bytes: `"64MiB"`, `"1.5 GiB"`, `"500MB"`, `"8Gi"`, or a bare number read in
 * `bareUnit`. `K/M/G/T[B]` are decimal and `Ki/Mi/Gi/Ti[B]` binary, as in Kubernetes quantities.
 * Fractions are allowed; the result is rounded to whole bytes.
 */
export function parseSize(input: string | number, bareUnit: SizeUnit = 'B'): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw invalidSize(input, 'must be a finite number of at least 0');
    return Math.round(input * DEFAULT_UNIT_BYTES[bareUnit]);
  }
  const match = /^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$/.exec(input);
  if (match === null) {
    throw invalidSize(input, /^\s*-/.test(input) ? 'must not be negative' : 'expected a number with an optional unit, such as "64MiB", "1.5GiB" or "500MB"');
  }
  const amount = Number(match[1]);
  const unitText = match[2] ?? '';
  const multiplier = unitText === '' ? DEFAULT_UNIT_BYTES[bareUnit] : SIZE_UNITS[unitText.toLowerCase()];
  if (multiplier === undefined) {
    throw invalidSize(input, `unknown unit "${unitText}" (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)`);
  }
  return Math.round(amount * multiplier);
}

const BIT_PREFIXES: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, ki: KIB, mi: KIB ** 2, gi: GIB };

/**
 * Parses a transfer rate into bytes per second: bits as links are sold (`100Mbit`, `1Gbps`,
 * `500kbit/s`) or bytes as sizes are written (`10MiB/s`, `20MB`). A bare number is bytes per second.
 */
export function parseRate(input: string): number {
  const match = /^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*?)(bit\/s|bit|bps|b\/s|B\/s|\/s|B|)\s*$/.exec(input);
  const invalid = (reason: string): ConfigError => new ConfigError(`invalid rate ${JSON.stringify(input)}: ${reason}`, { data: { value: input } });
  if (match === null) throw invalid('expected a number with a unit, such as "100Mbit", "1Gbps" or "10MiB/s"');
  const amount = Number(match[1]);
  const prefix = (match[2] ?? '').toLowerCase();
  const unit = match[3] ?? '';
  let bytesPerSecond: number;
  if (unit === 'bit' || unit === 'bit/s' || unit === 'bps' || unit === 'b/s') {
    const multiplier = BIT_PREFIXES[prefix];
    if (multiplier === undefined) throw invalid(`unknown prefix "${match[2]}" (use k, M, G, Ki, Mi or Gi)`);
    bytesPerSecond = (amount * multiplier) / 8;
  } else {
    try {
      bytesPerSecond = parseSize(`${match[1]}${match[2]}${unit === 'B' || unit === 'B/s' ? 'B' : ''}`);
    } catch {
      throw invalid(`unknown unit "${match[2]}${unit}" (use bit/s, kbit, Mbit, Gbit, Mbps, or B/s, KiB/s, MiB/s, MB/s)`);
    }
  }
  if (!(bytesPerSecond >= 1)) throw invalid('must be at least 1 byte per second');
  return Math.round(bytesPerSecond);
}

/** A ceiling for one registry (`--limit-registry HOST=RATE`). */
export interface RegistryLimit {
  /** The registry host as images name it (`quay.io`, `registry.example:5000`). */
  host: string;
  bytesPerSecond: number;
}

/** Parses `HOST=RATE` (`quay.io=50Mbit`); the rate as for `parseRate`. */
export function parseRegistryLimit(input: string): RegistryLimit {
  const at = input.indexOf('=');
  const host = at < 0 ? '' : input.slice(0, at).trim().toLowerCase();
  if (at < 0 || !/^[a-z0-9.-]+(:\d+)?$/.test(host) || !/[a-z0-9]/.test(host)) {
    throw new ConfigError(`invalid registry limit ${JSON.stringify(input)}: expected HOST=RATE, such as "quay.io=50Mbit" or "registry.example:5000=10MiB/s"`, {
      data: { value: input },
    });
  }
  return { host, bytesPerSecond: parseRate(input.slice(at + 1)) };
}

/** GiB to bytes; fractions allowed (`0.05` GiB is 53,687,091 bytes). */
export function gibToBytes(gib: number): number {
  if (!Number.isFinite(gib) || gib < 0) throw invalidSize(gib, 'must be a finite number of GiB, at least 0');
  return Math.round(gib * GIB);
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'] as const;

/** `1610612736` → `"1.5 GiB"`, `512` → `"512 B"`, `8589934592` → `"8 GiB"`. Binary units, one decimal. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return `${bytes} B`;
  const sign = bytes < 0 ? '-' : '';
  let value = Math.abs(bytes);
  if (value < KIB) return `${sign}${Math.round(value)} B`;
  let unit = 0;
  // Round before choosing the unit, so 1048575 bytes prints "1 MiB", not "1024 KiB".
  while (unit < BYTE_UNITS.length - 1 && Math.round(value * 10) / 10 >= KIB) {
    value /= KIB;
    unit++;
  }
  const text = (Math.round(value * 10) / 10).toFixed(1).replace(/\.0$/, '');
  return `${sign}${text} ${BYTE_UNITS[unit]}`;
}

const DURATION_UNITS_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const DURATION_PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/**
 * Parses a duration into milliseconds. Accepts Go durations as oc-mirror flags take them (`"30s"`,
 * `"90m"`, `"1h4m"`, `"500ms"`, `"1.5h"`, `"0"`) and bare numbers of seconds (`30`, `"30"`), the
 * form YAML numbers arrive in. Negative durations are refused.
 */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input)) throw invalidDuration(input, 'must be a finite number of seconds');
    if (input < 0) throw invalidDuration(input, 'must not be negative');
    return input * 1000;
  }
  const text = input.trim();
  if (/^(\d+(?:\.\d*)?|\.\d+)$/.test(text)) return Number(text) * 1000;
  if (text.startsWith('-')) throw invalidDuration(input, 'must not be negative');
  let total = 0;
  let position = 0;
  DURATION_PART.lastIndex = 0;
  while (position < text.length) {
    DURATION_PART.lastIndex = position;
    const match = DURATION_PART.exec(text);
    if (match === null) {
      const hint = /\d+d\b/.test(text) ? ' (days are not a unit: write 24h)' : '';
      throw invalidDuration(input, `expected seconds or a Go duration such as "90s", "30m", "1h30m" or "500ms"${hint}`);
    }
    total += Number(match[1]) * (DURATION_UNITS_MS[match[2] ?? ''] ?? Number.NaN);
    position = DURATION_PART.lastIndex;
  }
  if (text === '' || !Number.isFinite(total)) {
    throw invalidDuration(input, 'expected seconds or a Go duration such as "90s", "30m", "1h30m" or "500ms"');
  }
  return total;
}

/**
 * `3843000` → `"1h4m3s"`, `500` → `"500ms"`, `90000` → `"1m30s"`, `0` → `"0s"`. Zero parts are
 * left out; the result parses back with `parseDuration`.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  const sign = ms < 0 ? '-' : '';
  const total = Math.round(Math.abs(ms));
  if (total === 0) return '0s';
  if (total < 1000) return `${sign}${total}ms`;
  const hours = Math.floor(total / 3_600_000);
  const minutes = Math.floor((total % 3_600_000) / 60_000);
  const secondsMs = total % 60_000;
  let text = '';
  if (hours > 0) text += `${hours}h`;
  if (minutes > 0) text += `${minutes}m`;
  if (secondsMs > 0) text += `${(secondsMs / 1000).toFixed(3).replace(/\.?0+$/, '')}s`;
  return sign + text;
}

function invalidSize(input: string | number, reason: string): ConfigError {
  return new ConfigError(`invalid size ${JSON.stringify(input)}: ${reason}`, { data: { value: input } });
}

function invalidDuration(input: string | number, reason: string): ConfigError {
  return new ConfigError(`invalid duration ${JSON.stringify(input)}: ${reason}`, { data: { value: input } });
}
