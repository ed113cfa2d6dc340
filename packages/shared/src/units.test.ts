import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.ts';
import { formatBytes, formatDuration, gibToBytes, parseDuration, parseRate, parseRegistryLimit, parseSize } from './units.ts';

describe('parseDuration', () => {
  it('reads the durations oc-mirror users pass', () => {
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('90m')).toBe(5_400_000);
    expect(parseDuration('1h4m')).toBe(3_840_000);
    expect(parseDuration('1h4m3s')).toBe(3_843_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('2500us')).toBe(2.5);
    expect(parseDuration('0')).toBe(0);
    expect(parseDuration('0s')).toBe(0);
  });

  it('reads bare numbers as seconds', () => {
    expect(parseDuration(30)).toBe(30_000);
    expect(parseDuration('30')).toBe(30_000);
    expect(parseDuration(0.5)).toBe(500);
  });

  it('refuses bad values with a message naming the value', () => {
    for (const bad of ['90x', '', 'abc', '1d', '10 m', 'm', '1h-4m']) {
      expect(() => parseDuration(bad)).toThrow(ConfigError);
      expect(() => parseDuration(bad)).toThrow(`invalid duration ${JSON.stringify(bad)}`);
    }
    expect(() => parseDuration('-5s')).toThrow('must not be negative');
    expect(() => parseDuration(-1)).toThrow('must not be negative');
    expect(() => parseDuration(Number.NaN)).toThrow('invalid duration');
    expect(() => parseDuration('2d')).toThrow('days are not a unit');
  });
});

describe('formatDuration', () => {
  it('prints Go-style durations without zero parts', () => {
    expect(formatDuration(3_843_000)).toBe('1h4m3s');
    expect(formatDuration(5_400_000)).toBe('1h30m');
    expect(formatDuration(3_600_000)).toBe('1h');
    expect(formatDuration(3_605_000)).toBe('1h5s');
    expect(formatDuration(90_000)).toBe('1m30s');
    expect(formatDuration(1_500)).toBe('1.5s');
    expect(formatDuration(500)).toBe('500ms');
    expect(formatDuration(0)).toBe('0s');
  });

  it('prints what parseDuration reads back', () => {
    for (const ms of [1, 999, 1000, 61_250, 3_843_000, 86_400_000 + 1]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
  });
});

describe('sizes', () => {
  it('parses sizes with binary and decimal units', () => {
    expect(parseSize('64MiB')).toBe(64 * 1024 * 1024);
    expect(parseSize('64Mi')).toBe(64 * 1024 * 1024);
    expect(parseSize('1.5 GiB')).toBe(1.5 * 1024 ** 3);
    expect(parseSize('500MB')).toBe(500_000_000);
    expect(parseSize('1kb')).toBe(1000);
    expect(parseSize('512')).toBe(512);
    expect(parseSize(512)).toBe(512);
  });

  it('reads bare numbers in the unit asked for', () => {
    expect(parseSize(8, 'GiB')).toBe(8 * 1024 ** 3);
    expect(parseSize('0.05', 'GiB')).toBe(53_687_091);
  });

  it('refuses bad sizes naming the value', () => {
    expect(() => parseSize('12 parsecs')).toThrow('invalid size "12 parsecs": unknown unit "parsecs"');
    expect(() => parseSize('big')).toThrow('invalid size "big"');
    expect(() => parseSize('-1GiB')).toThrow('must not be negative');
    expect(() => parseSize(-1)).toThrow(ConfigError);
  });

  it('converts GiB, fractions included', () => {
    expect(gibToBytes(8)).toBe(8_589_934_592);
    expect(gibToBytes(0.05)).toBe(53_687_091);
    expect(() => gibToBytes(Number.NaN)).toThrow(ConfigError);
  });

  it('formats bytes in binary units with one decimal', () => {
    expect(formatBytes(1.5 * 1024 ** 3)).toBe('1.5 GiB');
    expect(formatBytes(8 * 1024 ** 3)).toBe('8 GiB');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    // Rounded before the unit is chosen: never "1024 KiB".
    expect(formatBytes(1024 * 1024 - 1)).toBe('1 MiB');
    expect(formatBytes(3 * 1024 ** 4)).toBe('3 TiB');
  });
});

describe('parseRate', () => {
  it.each([
    ['100Mbit', 12_500_000],
    ['100 Mbit/s', 12_500_000],
    ['1Gbps', 125_000_000],
    ['500kbit/s', 62_500],
    ['8Mb/s', 1_000_000],
    ['10MiB/s', 10 * 1024 * 1024],
    ['20MB', 20_000_000],
    ['20MB/s', 20_000_000],
    ['1024', 1024],
  ])('%s is %d bytes per second', (text, bytes) => {
    expect(parseRate(text)).toBe(bytes);
  });

  it.each([
    ['fast', 'expected a number with a unit'],
    ['12XB/s', 'unknown unit "XB/s"'],
    ['10Xbit', 'unknown prefix "X"'],
    ['0bit', 'at least 1 byte per second'],
  ])('refuses %s', (text, message) => {
    expect(() => parseRate(text)).toThrow(ConfigError);
    expect(() => parseRate(text)).toThrow(message);
  });
});

describe('parseRegistryLimit', () => {
  it('reads HOST=RATE, the host lower-cased, a port kept', () => {
    expect(parseRegistryLimit('Quay.io=50Mbit')).toEqual({ host: 'quay.io', bytesPerSecond: 6_250_000 });
    expect(parseRegistryLimit('registry.example:5000=10MiB/s')).toEqual({ host: 'registry.example:5000', bytesPerSecond: 10 * 1024 * 1024 });
  });

  it.each([
    ['quay.io', 'expected HOST=RATE'],
    ['=10MiB/s', 'expected HOST=RATE'],
    ['quay.io/org=10MiB/s', 'expected HOST=RATE'],
    ['quay.io=fast', 'invalid rate "fast"'],
  ])('refuses %s', (text, message) => {
    expect(() => parseRegistryLimit(text)).toThrow(ConfigError);
    expect(() => parseRegistryLimit(text)).toThrow(message);
  });
});
