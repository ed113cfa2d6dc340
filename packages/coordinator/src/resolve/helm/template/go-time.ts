/**
 * Go's time.Time and time.Duration as far as sprig's date functions use them: layout-based
 * formatting and parsing (`2006-01-02T15:04:05Z07:00`), Unix seconds, durations (`1h2m3s`).
 * Times have millisecond precision. "Local" is UTC (the zone a container usually has): output that
 * depends on the machine's zone would differ between runs of the same chart. Named zones
 * (`dateInZone "..." $t "Europe/Paris"`) use the runtime's time zone data.
 */
import { GO_KIND, GO_TYPE_NAME } from './go-values.ts';

const LONG_MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const LONG_DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

interface Zone {
  name: string;
  /** Seconds east of UTC. */
  offset: number;
}

const UTC: Zone = { name: 'UTC', offset: 0 };

/** Milliseconds since the epoch of a UTC date, for any year (Date.UTC maps 0–99 to 1900–1999). */
function utcMillis(year: number, month: number, day: number, hour = 0, minute = 0, second = 0, ms = 0): number {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, ms);
  return date.getTime();
}

/** The zone's name and offset at an instant; undefined for an unknown zone. */
export function zoneAt(zone: string, ms: number): Zone | undefined {
  if (zone === 'UTC' || zone === '' || zone === 'Local') return UTC;
  try {
    const parts = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
      timeZoneName: 'short',
    }).formatToParts(new Date(ms));
    const get = (type: string): string => parts.find((p) => p.type === type)?.value ?? '0';
    const local = utcMillis(Number(get('year')), Number(get('month')), Number(get('day')), Number(get('hour')), Number(get('minute')), Number(get('second')));
    const offset = Math.round((local - Math.floor(ms / 1000) * 1000) / 1000);
    return { name: get('timeZoneName'), offset };
  } catch {
    return undefined;
  }
}

/** Go's time.Time: an instant and the zone it is shown in. Template methods use Go's names. */
export class GoTime {
  readonly #ms: number;
  readonly #zone: Zone;

  constructor(ms: number, zone: Zone = UTC) {
    this.#ms = ms;
    this.#zone = zone;
  }

  static now(): GoTime {
    return new GoTime(Date.now());
  }

  /** Go's zero time, 0001-01-01 00:00:00 UTC, which failed parses return. */
  static zero(): GoTime {
    return new GoTime(utcMillis(1, 1, 1));
  }

  get epochMillis(): number {
    return this.#ms;
  }

  /** The time shown in another zone (undefined when the zone is unknown). */
  inZone(zone: string): GoTime | undefined {
    const found = zoneAt(zone, this.#ms);
    return found === undefined ? undefined : new GoTime(this.#ms, found);
  }

  /** Wall clock fields in the time's zone. */
  fields(): { year: number; month: number; day: number; hour: number; minute: number; second: number; ms: number; weekday: number; yearDay: number } {
    const d = new Date(this.#ms + this.#zone.offset * 1000);
    const year = d.getUTCFullYear();
    const yearDay = Math.floor((utcMillis(year, d.getUTCMonth() + 1, d.getUTCDate()) - utcMillis(year, 1, 1)) / 86400000) + 1;
    return {
      year,
      month: d.getUTCMonth() + 1,
      day: d.getUTCDate(),
      hour: d.getUTCHours(),
      minute: d.getUTCMinutes(),
      second: d.getUTCSeconds(),
      ms: d.getUTCMilliseconds(),
      weekday: d.getUTCDay(),
      yearDay,
    };
  }

  Format(layout: unknown): string {
    return formatTime(this, String(layout), this.#zone);
  }

  Unix(): bigint {
    return BigInt(Math.floor(this.#ms / 1000));
  }

  UnixMilli(): bigint {
    return BigInt(this.#ms);
  }

  UnixNano(): bigint {
    return BigInt(this.#ms) * 1000000n;
  }

  Year(): bigint {
    return BigInt(this.fields().year);
  }

  Day(): bigint {
    return BigInt(this.fields().day);
  }

  Hour(): bigint {
    return BigInt(this.fields().hour);
  }

  Minute(): bigint {
    return BigInt(this.fields().minute);
  }

  Second(): bigint {
    return BigInt(this.fields().second);
  }

  UTC(): GoTime {
    return new GoTime(this.#ms);
  }

  Local(): GoTime {
    return new GoTime(this.#ms);
  }

  IsZero(): boolean {
    return this.#ms === utcMillis(1, 1, 1);
  }

  /** Adds a duration in nanoseconds. */
  Add(nanos: unknown): GoTime {
    const n = typeof nanos === 'bigint' ? nanos : BigInt(Math.trunc(Number(nanos)));
    return new GoTime(this.#ms + Number(n / 1000000n), this.#zone);
  }

  String(): string {
    return this.Format('2006-01-02 15:04:05.999999999 -0700 MST');
  }

  toJSON(): string {
    return this.Format('2006-01-02T15:04:05.999999999Z07:00');
  }
}
Object.defineProperty(GoTime.prototype, GO_TYPE_NAME, { value: 'time.Time' });
Object.defineProperty(GoTime.prototype, GO_KIND, { value: 'struct' });

type Chunk = { kind: 'literal'; text: string } | { kind: 'std'; std: string } | { kind: 'frac'; digits: number; trimZeros: boolean; separator: string };

/** Go's nextStdChunk, over the whole layout. */
function layoutChunks(layout: string): Chunk[] {
  const chunks: Chunk[] = [];
  let literal = '';
  const push = (chunk: Chunk): void => {
    if (literal !== '') chunks.push({ kind: 'literal', text: literal });
    literal = '';
    chunks.push(chunk);
  };
  const STD = [
    'January',
    'Jan',
    'Monday',
    'Mon',
    'MST',
    '2006',
    '002',
    '01',
    '02',
    '03',
    '04',
    '05',
    '06',
    '__2',
    '_2',
    '15',
    '1',
    '2',
    '3',
    '4',
    '5',
    'PM',
    'pm',
    '-07:00:00',
    '-070000',
    '-07:00',
    '-0700',
    '-07',
    'Z07:00:00',
    'Z070000',
    'Z07:00',
    'Z0700',
    'Z07',
  ];
  let i = 0;
  while (i < layout.length) {
    const c = layout[i]!;
    if ((c === '.' || c === ',') && (layout[i + 1] === '0' || layout[i + 1] === '9')) {
      const digit = layout[i + 1]!;
      let j = i + 1;
      while (layout[j] === digit) j++;
      if (!/[0-9]/.test(layout[j] ?? '')) {
        push({ kind: 'frac', digits: j - i - 1, trimZeros: digit === '9', separator: c });
        i = j;
        continue;
      }
    }
    // "Mon" must not be taken from "Month"-like text Go leaves alone; Go checks only these prefixes.
    const std = STD.find((s) => layout.startsWith(s, i) && !(s === 'Jan' && layout.startsWith('January', i)) && !(s === '_2' && layout.startsWith('_2006', i)));
    if (std !== undefined) {
      push({ kind: 'std', std });
      i += std.length;
      continue;
    }
    literal += c;
    i++;
  }
  if (literal !== '') chunks.push({ kind: 'literal', text: literal });
  return chunks;
}

const pad2 = (n: number): string => String(n).padStart(2, '0');

function formatOffset(offset: number, std: string): string {
  if (std.startsWith('Z') && offset === 0) return 'Z';
  const sign = offset < 0 ? '-' : '+';
  const abs = Math.abs(offset);
  const hh = pad2(Math.floor(abs / 3600));
  const mm = pad2(Math.floor((abs % 3600) / 60));
  const ss = pad2(abs % 60);
  const shape = std.slice(1);
  if (shape === '07') return sign + hh;
  if (shape === '0700') return sign + hh + mm;
  if (shape === '07:00') return `${sign}${hh}:${mm}`;
  if (shape === '070000') return sign + hh + mm + ss;
  return `${sign}${hh}:${mm}:${ss}`;
}

function formatTime(time: GoTime, layout: string, zone: Zone): string {
  const f = time.fields();
  let out = '';
  for (const chunk of layoutChunks(layout)) {
    if (chunk.kind === 'literal') {
      out += chunk.text;
      continue;
    }
    if (chunk.kind === 'frac') {
      let digits = String(f.ms).padStart(3, '0').padEnd(9, '0').slice(0, chunk.digits);
      if (chunk.trimZeros) {
        digits = digits.replace(/0+$/, '');
        if (digits !== '') out += chunk.separator + digits;
      } else out += chunk.separator + digits;
      continue;
    }
    switch (chunk.std) {
      case 'January':
        out += LONG_MONTHS[f.month - 1]!;
        break;
      case 'Jan':
        out += LONG_MONTHS[f.month - 1]!.slice(0, 3);
        break;
      case 'Monday':
        out += LONG_DAYS[f.weekday]!;
        break;
      case 'Mon':
        out += LONG_DAYS[f.weekday]!.slice(0, 3);
        break;
      case 'MST':
        out += zone.name !== '' ? zone.name : formatOffset(zone.offset, '-0700');
        break;
      case '2006':
        out += String(f.year).padStart(4, '0');
        break;
      case '06':
        out += pad2(f.year % 100);
        break;
      case '002':
        out += String(f.yearDay).padStart(3, '0');
        break;
      case '__2':
        out += String(f.yearDay).padStart(3, ' ');
        break;
      case '01':
        out += pad2(f.month);
        break;
      case '1':
        out += String(f.month);
        break;
      case '02':
        out += pad2(f.day);
        break;
      case '_2':
        out += String(f.day).padStart(2, ' ');
        break;
      case '2':
        out += String(f.day);
        break;
      case '15':
        out += pad2(f.hour);
        break;
      case '03':
        out += pad2(f.hour % 12 === 0 ? 12 : f.hour % 12);
        break;
      case '3':
        out += String(f.hour % 12 === 0 ? 12 : f.hour % 12);
        break;
      case '04':
        out += pad2(f.minute);
        break;
      case '4':
        out += String(f.minute);
        break;
      case '05':
        out += pad2(f.second);
        break;
      case '5':
        out += String(f.second);
        break;
      case 'PM':
        out += f.hour >= 12 ? 'PM' : 'AM';
        break;
      case 'pm':
        out += f.hour >= 12 ? 'pm' : 'am';
        break;
      default:
        out += formatOffset(zone.offset, chunk.std);
    }
  }
  return out;
}

/** Go's time.Parse(layout, value) in UTC; undefined when the value does not match the layout. */
export function parseTime(layout: string, value: string): GoTime | undefined {
  let year = 1;
  let month = 1;
  let day = 1;
  let hour = 0;
  let minute = 0;
  let second = 0;
  let ms = 0;
  let pm: boolean | undefined;
  let offset: number | undefined;
  let rest = value;
  const takeNumber = (min: number, max: number): number | undefined => {
    const match = new RegExp(`^\\d{${min},${max}}`).exec(rest);
    if (match === null) return undefined;
    rest = rest.slice(match[0].length);
    return Number(match[0]);
  };
  const takeName = (names: string[], short: boolean): number | undefined => {
    const index = names.findIndex((name) => rest.toLowerCase().startsWith((short ? name.slice(0, 3) : name).toLowerCase()));
    if (index < 0) return undefined;
    rest = rest.slice(short ? 3 : names[index]!.length);
    return index;
  };
  for (const chunk of layoutChunks(layout)) {
    let ok = true;
    if (chunk.kind === 'literal') {
      if (!rest.startsWith(chunk.text)) return undefined;
      rest = rest.slice(chunk.text.length);
      continue;
    }
    if (chunk.kind === 'frac') {
      const match = /^[.,](\d+)/.exec(rest);
      if (match === null) {
        if (chunk.trimZeros) continue;
        return undefined;
      }
      ms = Math.round(Number(`0.${match[1]}`) * 1000);
      rest = rest.slice(match[0].length);
      continue;
    }
    const std = chunk.std;
    let n: number | undefined;
    switch (std) {
      case 'January':
      case 'Jan':
        n = takeName(LONG_MONTHS, std === 'Jan');
        if (n !== undefined) month = n + 1;
        break;
      case 'Monday':
      case 'Mon':
        n = takeName(LONG_DAYS, std === 'Mon');
        break;
      case '2006':
        n = takeNumber(4, 4);
        if (n !== undefined) year = n;
        break;
      case '06':
        n = takeNumber(2, 2);
        if (n !== undefined) year = n >= 69 ? 1900 + n : 2000 + n;
        break;
      case '01':
      case '1':
        n = takeNumber(std === '01' ? 2 : 1, 2);
        if (n !== undefined) month = n;
        break;
      case '02':
      case '_2':
      case '2':
        if (std === '_2' && rest.startsWith(' ')) rest = rest.slice(1);
        n = takeNumber(std === '02' ? 2 : 1, 2);
        if (n !== undefined) day = n;
        break;
      case '15':
      case '03':
      case '3':
        n = takeNumber(std === '3' ? 1 : 2, 2);
        if (n !== undefined) hour = n;
        break;
      case '04':
      case '4':
        n = takeNumber(std === '4' ? 1 : 2, 2);
        if (n !== undefined) minute = n;
        break;
      case '05':
      case '5': {
        n = takeNumber(std === '5' ? 1 : 2, 2);
        if (n !== undefined) second = n;
        // Go accepts a fractional second after the seconds even when the layout has none.
        const frac = /^\.(\d+)/.exec(rest);
        if (frac !== null && !layout.includes('.0') && !layout.includes('.9')) {
          ms = Math.round(Number(`0.${frac[1]}`) * 1000);
          rest = rest.slice(frac[0].length);
        }
        break;
      }
      case 'PM':
      case 'pm':
        if (/^(AM|PM)/i.test(rest)) {
          pm = rest.slice(0, 2).toUpperCase() === 'PM';
          rest = rest.slice(2);
        } else ok = false;
        break;
      case 'MST': {
        const match = /^[A-Z]{3,5}|^[+-]\d{2,4}/.exec(rest);
        if (match === null) ok = false;
        else rest = rest.slice(match[0].length);
        break;
      }
      case '002':
      case '__2':
        n = takeNumber(1, 3);
        break;
      default: {
        if (std.startsWith('Z') && rest.startsWith('Z')) {
          rest = rest.slice(1);
          offset = 0;
          break;
        }
        const match = /^([+-])(\d{2}):?(\d{2})?(?::?(\d{2}))?/.exec(rest);
        if (match === null) ok = false;
        else {
          offset = (match[1] === '-' ? -1 : 1) * (Number(match[2]) * 3600 + Number(match[3] ?? 0) * 60 + Number(match[4] ?? 0));
          rest = rest.slice(match[0].length);
        }
      }
    }
    if (!ok || (n === undefined && std !== 'PM' && std !== 'pm' && std !== 'MST' && !std.startsWith('-') && !std.startsWith('Z'))) return undefined;
  }
  if (rest !== '') return undefined;
  if (pm !== undefined) {
    if (hour > 12) return undefined;
    if (pm && hour < 12) hour += 12;
    if (!pm && hour === 12) hour = 0;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) return undefined;
  const millis = utcMillis(year, month, day, hour, minute, second, ms) - (offset ?? 0) * 1000;
  return new GoTime(millis, offset === undefined ? UTC : { name: '', offset });
}

const UNIT_NANOS: Record<string, bigint> = { ns: 1n, us: 1000n, µs: 1000n, μs: 1000n, ms: 1000000n, s: 1000000000n, m: 60000000000n, h: 3600000000000n };

/** Go's time.ParseDuration, in nanoseconds; undefined on a syntax error. */
export function parseDuration(text: string): bigint | undefined {
  let s = text;
  let neg = false;
  if (s.startsWith('-') || s.startsWith('+')) {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0n;
  if (s === '') return undefined;
  let total = 0;
  while (s !== '') {
    const match = /^(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)/.exec(s);
    if (match === null || (match[1] === '' && (match[2] ?? '') === '')) return undefined;
    const unit = Number(UNIT_NANOS[match[3]!]!);
    total += Number(match[1] === '' ? 0 : match[1]) * unit + (match[2] ? Number(`0.${match[2]}`) * unit : 0);
    s = s.slice(match[0].length);
  }
  const nanos = BigInt(Math.round(total));
  return neg ? -nanos : nanos;
}

/** Go's Duration.String: `1h2m3.5s`, `1.5ms`, `0s`. */
export function formatDuration(nanos: bigint): string {
  const neg = nanos < 0n;
  let u = neg ? -nanos : nanos;
  let out: string;
  const frac = (value: bigint, prec: number): [string, bigint] => {
    let digits = '';
    let v = value;
    let printed = false;
    for (let i = 0; i < prec; i++) {
      const digit = v % 10n;
      printed = printed || digit !== 0n;
      if (printed) digits = String(digit) + digits;
      v /= 10n;
    }
    return [printed ? `.${digits}` : '', v];
  };
  if (u < 1000000000n) {
    if (u === 0n) return '0s';
    let unit: string;
    let prec: number;
    if (u < 1000n) {
      unit = 'ns';
      prec = 0;
    } else if (u < 1000000n) {
      unit = 'µs';
      prec = 3;
    } else {
      unit = 'ms';
      prec = 6;
    }
    const [fraction, whole] = frac(u, prec);
    out = `${whole}${fraction}${unit}`;
  } else {
    const [fraction, seconds] = frac(u, 9);
    u = seconds;
    out = `${u % 60n}${fraction}s`;
    u /= 60n;
    if (u > 0n) {
      out = `${u % 60n}m${out}`;
      u /= 60n;
      if (u > 0n) out = `${u}h${out}`;
    }
  }
  return neg ? `-${out}` : out;
}
