/**
 * Sprig's date functions (date.go) over GoTime. `date` accepts a time or Unix seconds as an int;
 * anything else (a float64 from values, a string) means "now", as in Go. "Local" is UTC here.
 */
import { goFunc, type TemplateFunction } from './functions.ts';
import { formatDuration, GoTime, parseDuration, parseTime } from './go-time.ts';

function timeOf(value: unknown): GoTime {
  if (value instanceof GoTime) return value;
  if (typeof value === 'bigint') return new GoTime(Number(value) * 1000);
  return GoTime.now();
}

function dateInZone(layout: string, date: unknown, zone: string): string {
  const time = timeOf(date);
  return (time.inZone(zone) ?? time.UTC()).Format(layout);
}

function sinceRounded(time: GoTime): string {
  const ms = Date.now() - time.epochMillis;
  // Duration.Round(time.Second): half away from zero.
  const seconds = Math.sign(ms) * Math.floor(Math.abs(ms) / 1000 + 0.5);
  return formatDuration(BigInt(seconds) * 1000000000n);
}

function durationRound(value: unknown): string {
  let nanos = 0n;
  if (typeof value === 'string') nanos = parseDuration(value) ?? 0n;
  else if (typeof value === 'bigint') nanos = value;
  else if (value instanceof GoTime) nanos = BigInt(Date.now() - value.epochMillis) * 1000000n;
  const u = nanos < 0n ? -nanos : nanos;
  const second = 1000000000n;
  const units: Array<[bigint, string]> = [
    [second * 60n * 60n * 24n * 365n, 'y'],
    [second * 60n * 60n * 24n * 30n, 'mo'],
    [second * 60n * 60n * 24n, 'd'],
    [second * 60n * 60n, 'h'],
    [second * 60n, 'm'],
    [second, 's'],
  ];
  for (const [size, name] of units) if (u > size) return `${u / size}${name}`;
  return '0s';
}

export const SPRIG_DATE_FUNCTIONS: ReadonlyArray<[string, TemplateFunction]> = [
  ['now', goFunc([], () => GoTime.now())],
  ['date', goFunc(['string', 'any'], (layout, date) => dateInZone(layout, date, 'Local'))],
  ['dateInZone', goFunc(['string', 'any', 'string'], dateInZone)],
  ['date_in_zone', goFunc(['string', 'any', 'string'], dateInZone)],
  ['htmlDate', goFunc(['any'], (date) => dateInZone('2006-01-02', date, 'Local'))],
  ['htmlDateInZone', goFunc(['any', 'string'], (date, zone) => dateInZone('2006-01-02', date, zone))],
  ['unixEpoch', goFunc(['time'], (time) => String(time.Unix()))],
  ['toDate', goFunc(['string', 'string'], (layout, text) => parseTime(layout, text) ?? GoTime.zero())],
  [
    'mustToDate',
    goFunc(['string', 'string'], (layout, text) => {
      const time = parseTime(layout, text);
      if (time === undefined) throw new Error(`parsing time ${JSON.stringify(text)} as ${JSON.stringify(layout)}: cannot parse`);
      return time;
    }),
  ],
  ...(['dateModify', 'date_modify'] as const).map((name): [string, TemplateFunction] => [
    name,
    goFunc(['string', 'time'], (shift, time) => {
      const nanos = parseDuration(shift);
      return nanos === undefined ? time : time.Add(nanos);
    }),
  ]),
  ...(['mustDateModify', 'must_date_modify'] as const).map((name): [string, TemplateFunction] => [
    name,
    goFunc(['string', 'time'], (shift, time) => {
      const nanos = parseDuration(shift);
      if (nanos === undefined) throw new Error(`time: invalid duration ${JSON.stringify(shift)}`);
      return time.Add(nanos);
    }),
  ]),
  ['ago', goFunc(['any'], (date) => sinceRounded(timeOf(date)))],
  [
    'duration',
    goFunc(['any'], (seconds) => {
      let n = 0n;
      if (typeof seconds === 'string') n = /^[+-]?\d+$/.test(seconds) ? BigInt(seconds) : 0n;
      else if (typeof seconds === 'bigint') n = seconds;
      return formatDuration(n * 1000000000n);
    }),
  ],
  ['durationRound', goFunc(['any'], durationRound)],
];
