/**
 * The transfer settings of a run, resolved once from defaults, the configuration file's
 * `meshmirror:` block and command-line flags (flags win over the file, the file over defaults).
 * This module is the one place their defaults live.
 */
import { ConfigError } from '../errors.ts';
import { formatDuration } from '../units.ts';
import type { MeshmirrorFileSettings } from './imageset.ts';

export interface TransferSettings {
  /**
   * Longest time a transfer may go without a byte of progress (oc-mirror `--image-timeout`,
   * default 10m): failed attempts, retry delays and a host's backoff count; bytes still flowing
   * are never cut off. Retries go on until it passes.
   */
  imageTimeoutMs: number;
  /** No body bytes for this long: the request is dropped, then retried and resumed (default 60s). */
  stallTimeoutMs: number;
  /** TCP and TLS connect timeout (default 30s). */
  connectTimeoutMs: number;
  /** Time to the response headers after a request is sent (default 60s). */
  headersTimeoutMs: number;
  /**
   * Failed attempts in a row without progress after which a transfer is given up (oc-mirror
   * `--retry-times`). Absent by default: `imageTimeoutMs` without progress decides.
   */
  retryTimes?: number;
  /** 0: exponential backoff from the built-in base, as oc-mirror means it; else the base delay. */
  retryDelayMs: number;
  /** Images in flight at once (oc-mirror `--parallel-images`, default 4). */
  parallelImages: number;
  /** Layer transfers per image (oc-mirror `--parallel-layers`, default 5). */
  parallelLayers: number;
  /** Verify TLS certificates of source registries (`--src-tls-verify`, default true). */
  srcTlsVerify: boolean;
  /** Verify TLS certificates of destination registries (`--dest-tls-verify`, default true). */
  destTlsVerify: boolean;
}

export const DEFAULT_TRANSFER_SETTINGS: TransferSettings = Object.freeze({
  imageTimeoutMs: 10 * 60_000,
  stallTimeoutMs: 60_000,
  connectTimeoutMs: 30_000,
  headersTimeoutMs: 60_000,
  retryDelayMs: 0,
  parallelImages: 4,
  parallelLayers: 5,
  srcTlsVerify: true,
  destTlsVerify: true,
});

type SettingKind = 'timeout' | 'delay' | 'count' | 'parallelism' | 'boolean';

/** How each setting is named in the file and on the command line, and what values it takes. */
const SETTINGS: { [K in keyof TransferSettings]-?: { field: string; flag: string; kind: SettingKind } } = {
  imageTimeoutMs: { field: 'meshmirror.imageTimeout', flag: '--image-timeout', kind: 'timeout' },
  stallTimeoutMs: { field: 'meshmirror.stallTimeout', flag: '--stall-timeout', kind: 'timeout' },
  connectTimeoutMs: { field: 'meshmirror.connectTimeout', flag: '--connect-timeout', kind: 'timeout' },
  headersTimeoutMs: { field: 'meshmirror.headersTimeout', flag: '--headers-timeout', kind: 'timeout' },
  retryTimes: { field: 'meshmirror.retryTimes', flag: '--retry-times', kind: 'count' },
  retryDelayMs: { field: 'meshmirror.retryDelay', flag: '--retry-delay', kind: 'delay' },
  parallelImages: { field: 'meshmirror.parallelImages', flag: '--parallel-images', kind: 'parallelism' },
  parallelLayers: { field: 'meshmirror.parallelLayers', flag: '--parallel-layers', kind: 'parallelism' },
  srcTlsVerify: { field: 'meshmirror.srcTlsVerify', flag: '--src-tls-verify', kind: 'boolean' },
  destTlsVerify: { field: 'meshmirror.destTlsVerify', flag: '--dest-tls-verify', kind: 'boolean' },
};

const SETTING_KEYS = Object.keys(SETTINGS) as Array<keyof TransferSettings>;

/**
 * Merges defaults, the file's `meshmirror:` block and flags (flags win over the file, the file
 * over defaults; `undefined` means "not given"), and checks every value that was given. A bad
 * value throws a `ConfigError` naming the flag (`--parallel-images`) or the field
 * (`meshmirror.parallelImages`) it came from.
 */
export function resolveTransferSettings(
  fromFile: MeshmirrorFileSettings | undefined,
  fromFlags: { [K in keyof TransferSettings]?: TransferSettings[K] | undefined },
): TransferSettings {
  const settings: TransferSettings = { ...DEFAULT_TRANSFER_SETTINGS };
  const assign = <K extends keyof TransferSettings>(key: K, value: TransferSettings[K]) => {
    settings[key] = value;
  };
  for (const key of SETTING_KEYS) {
    const flagValue = fromFlags[key];
    const fileValue = fromFile?.[key];
    if (flagValue !== undefined) {
      checkSetting(key, flagValue, SETTINGS[key].flag);
      assign(key, flagValue);
    } else if (fileValue !== undefined) {
      checkSetting(key, fileValue, SETTINGS[key].field);
      assign(key, fileValue);
    }
  }
  return settings;
}

function checkSetting(key: keyof TransferSettings, value: unknown, source: string): void {
  const fail = (expected: string): never => {
    const shown =
      typeof value === 'number' && SETTINGS[key].kind !== 'count' && SETTINGS[key].kind !== 'parallelism'
        ? `${formatDuration(value)} (${value} ms)`
        : JSON.stringify(value);
    throw new ConfigError(`${source}: ${expected}, got ${shown}`, { path: source, data: { setting: key, value } });
  };
  switch (SETTINGS[key].kind) {
    case 'boolean':
      if (typeof value !== 'boolean') fail('expected true or false');
      return;
    case 'timeout':
      if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) fail('expected a duration longer than 0');
      return;
    case 'delay':
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) fail('expected a duration of 0 or more');
      return;
    case 'count':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) fail('expected a whole number of at least 0');
      return;
    case 'parallelism':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) fail('expected a whole number of at least 1');
      return;
  }
}
