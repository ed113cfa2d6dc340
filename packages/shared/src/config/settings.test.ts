import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.ts';
import { parseImageSetConfig } from './load-imageset.ts';
import { DEFAULT_TRANSFER_SETTINGS, resolveTransferSettings } from './settings.ts';

describe('DEFAULT_TRANSFER_SETTINGS', () => {
  it("matches oc-mirror's defaults where oc-mirror has them; no retry count by default (time without progress decides)", () => {
    expect(DEFAULT_TRANSFER_SETTINGS).toEqual({
      imageTimeoutMs: 600_000,
      stallTimeoutMs: 60_000,
      connectTimeoutMs: 30_000,
      headersTimeoutMs: 60_000,
      retryDelayMs: 0,
      parallelImages: 4,
      parallelLayers: 5,
      srcTlsVerify: true,
      destTlsVerify: true,
    });
    expect(Object.isFrozen(DEFAULT_TRANSFER_SETTINGS)).toBe(true);
  });
});

describe('resolveTransferSettings', () => {
  const fileWith = (block: string) =>
    parseImageSetConfig(`kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\nmirror: {}\nmeshmirror:\n${block}`, 'isc.yaml').meshmirror;

  it('uses the defaults when neither file nor flags set anything', () => {
    expect(resolveTransferSettings(undefined, {})).toEqual(DEFAULT_TRANSFER_SETTINGS);
  });

  it('lets the file win over defaults and flags win over the file', () => {
    const fromFile = fileWith('  imageTimeout: 90m\n  retryTimes: 10\n  parallelImages: 8\n  srcTlsVerify: false\n');
    const settings = resolveTransferSettings(fromFile, { retryTimes: 3, parallelLayers: 12, parallelImages: undefined });
    expect(settings).toEqual({
      ...DEFAULT_TRANSFER_SETTINGS,
      imageTimeoutMs: 90 * 60_000, // file
      retryTimes: 3, // flag over file
      parallelImages: 8, // file; an undefined flag is not given
      parallelLayers: 12, // flag
      srcTlsVerify: false, // file
    });
  });

  it('reproduces the oc-mirror command line the user ran', () => {
    // --image-timeout=90m --retry-times 10 --retry-delay 30s --parallel-images 8 --parallel-layers 12
    const settings = resolveTransferSettings(undefined, {
      imageTimeoutMs: 5_400_000,
      retryTimes: 10,
      retryDelayMs: 30_000,
      parallelImages: 8,
      parallelLayers: 12,
    });
    expect(settings).toMatchObject({ imageTimeoutMs: 5_400_000, retryTimes: 10, retryDelayMs: 30_000, parallelImages: 8, parallelLayers: 12 });
    expect(settings.stallTimeoutMs).toBe(60_000);
  });

  it('names the flag of a bad flag value', () => {
    expect(() => resolveTransferSettings(undefined, { parallelImages: 0 })).toThrow(ConfigError);
    expect(() => resolveTransferSettings(undefined, { parallelImages: 0 })).toThrow('--parallel-images: expected a whole number of at least 1, got 0');
    expect(() => resolveTransferSettings(undefined, { retryTimes: -1 })).toThrow('--retry-times: expected a whole number of at least 0, got -1');
    expect(() => resolveTransferSettings(undefined, { parallelLayers: 2.5 })).toThrow('--parallel-layers');
    expect(() => resolveTransferSettings(undefined, { stallTimeoutMs: 0 })).toThrow('--stall-timeout: expected a duration longer than 0, got 0s (0 ms)');
    expect(() => resolveTransferSettings(undefined, { retryDelayMs: -5000 })).toThrow('--retry-delay: expected a duration of 0 or more');
    expect(() => resolveTransferSettings(undefined, { imageTimeoutMs: Number.NaN })).toThrow('--image-timeout');
  });

  it('names the file field of a bad value from the file', () => {
    expect(() => resolveTransferSettings({ connectTimeoutMs: -1 }, {})).toThrow('meshmirror.connectTimeout: expected a duration longer than 0');
    // A good flag replaces a bad file value without complaint: the file value is never used.
    expect(resolveTransferSettings({ connectTimeoutMs: -1 }, { connectTimeoutMs: 1000 }).connectTimeoutMs).toBe(1000);
  });

  it('accepts a zero retry delay (exponential backoff, as in oc-mirror)', () => {
    expect(resolveTransferSettings(fileWith('  retryDelay: 0\n'), {}).retryDelayMs).toBe(0);
  });
});
