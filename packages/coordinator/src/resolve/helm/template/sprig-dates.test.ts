/**
 * Sprig's dates with Go's reference-time layouts; "Local" is UTC.
 */
import { describe, expect, it } from 'vitest';
import { TemplateSet } from './template-set.ts';

function render(text: string): string {
  const set = new TemplateSet();
  set.parse('t', text);
  return set.execute('t', {});
}

describe('sprig dates', () => {
  it.each([
    ['date of Unix seconds', '{{ date "2006-01-02T15:04:05Z07:00" 1700000000 }}', '2023-11-14T22:13:20Z'],
    ['long names and 12-hour clocks', '{{ date "Monday, January 2 2006 3:04PM MST" 1700000000 }}', 'Tuesday, November 14 2023 10:13PM UTC'],
    ['htmlDate', '{{ htmlDate 0 }}', '1970-01-01'],
    ['toDate and unixEpoch', '{{ toDate "2006-01-02" "2024-02-29" | unixEpoch }}', '1709164800'],
    ['toDate of a bad date is the zero time', '{{ toDate "2006-01-02" "nope" | date "2006-01-02" }}', '0001-01-01'],
    ['dateModify', '{{ toDate "2006-01-02" "2024-01-01" | dateModify "-1.5h" | date "2006-01-02 15:04" }}', '2023-12-31 22:30'],
    ['dateInZone', '{{ dateInZone "15:04 MST" 1700000000 "UTC" }}', '22:13 UTC'],
    ['duration', '{{ duration 3725 }} {{ duration "95" }}', '1h2m5s 1m35s'],
    ['durationRound', '{{ durationRound "2h10m5s" }} {{ durationRound "3600s" }} {{ durationRound "400h" }}', '2h 60m 16d'],
    ['fractional seconds', '{{ toDate "2006-01-02 15:04:05.000" "2024-01-01 10:00:00.250" | date "05.000 .999" }}', '00.250 .25'],
  ])('%s', (_name, text, expected) => {
    expect(render(text)).toBe(expected);
  });

  it('now is the current time', () => {
    const year = new Date().getUTCFullYear();
    expect(render('{{ now | date "2006" }}')).toBe(String(year));
    expect(Number(render('{{ now | unixEpoch }}'))).toBeCloseTo(Date.now() / 1000, -1);
  });
});
