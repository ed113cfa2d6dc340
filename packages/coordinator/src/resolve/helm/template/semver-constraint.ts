/**
 * Masterminds/semver v3 (what sprig's `semver` and `semverCompare` use), whose rules differ from
 * npm's: versions may be partial (`1.2`) or prefixed (`v1.29.3-eks-adc7111`); in a constraint, an
 * AND group with a prerelease anywhere (`>=1.21.0-0`) admits prerelease versions, otherwise a
 * prerelease version satisfies nothing; `1.2.x`, `~1.2`, `^1.2`, `1.2 - 1.4`, commas and `||` as
 * Masterminds reads them. Prerelease identifiers compare with the `semver` package's rule.
 */
import semver from 'semver';
import { GO_TYPE_NAME } from './go-values.ts';

const LOOSE_VERSION = /^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-([0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*))?(\+([0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*))?$/;

/** A Masterminds *semver.Version; templates call its Go methods (`(semver "1.2.3").Minor`). */
export class SemverVersion {
  readonly #major: bigint;
  readonly #minor: bigint;
  readonly #patch: bigint;
  readonly #pre: string;
  readonly #metadata: string;
  readonly #original: string;

  constructor(major: bigint, minor: bigint, patch: bigint, pre: string, metadata: string, original: string) {
    this.#major = major;
    this.#minor = minor;
    this.#patch = patch;
    this.#pre = pre;
    this.#metadata = metadata;
    this.#original = original;
  }

  /** semver.NewVersion (coercing leading zeros, as Masterminds does by default). */
  static parse(text: string): SemverVersion {
    if (text === '') throw new Error('version string empty');
    const m = LOOSE_VERSION.exec(text);
    if (m === null) throw new Error('invalid semantic version');
    const pre = m[5] ?? '';
    const metadata = m[8] ?? '';
    for (const part of pre === '' ? [] : pre.split('.')) {
      if (/^\d+$/.test(part) && part.length > 1 && part.startsWith('0')) throw new Error('version segment starts with 0');
    }
    const num = (s: string | undefined): bigint => (s === undefined ? 0n : BigInt(s.replace(/^\./, '')));
    return new SemverVersion(num(m[1]), num(m[2]), num(m[3]), pre, metadata, text);
  }

  Major(): bigint {
    return this.#major;
  }

  Minor(): bigint {
    return this.#minor;
  }

  Patch(): bigint {
    return this.#patch;
  }

  Prerelease(): string {
    return this.#pre;
  }

  Metadata(): string {
    return this.#metadata;
  }

  Original(): string {
    return this.#original;
  }

  String(): string {
    return `${this.#major}.${this.#minor}.${this.#patch}${this.#pre === '' ? '' : `-${this.#pre}`}${this.#metadata === '' ? '' : `+${this.#metadata}`}`;
  }

  /** -1, 0 or 1 (build metadata ignored). */
  Compare(other: unknown): bigint {
    if (!(other instanceof SemverVersion)) throw new Error('Compare needs a version');
    return BigInt(compareVersions(this, other));
  }

  LessThan(other: unknown): boolean {
    return this.Compare(other) < 0n;
  }

  GreaterThan(other: unknown): boolean {
    return this.Compare(other) > 0n;
  }

  Equal(other: unknown): boolean {
    return this.Compare(other) === 0n;
  }

  toJSON(): string {
    return this.String();
  }
}
Object.defineProperty(SemverVersion.prototype, GO_TYPE_NAME, { value: '*semver.Version' });

function compareVersions(a: SemverVersion, b: SemverVersion): number {
  for (const [x, y] of [
    [a.Major(), b.Major()],
    [a.Minor(), b.Minor()],
    [a.Patch(), b.Patch()],
  ] as const) {
    if (x !== y) return x < y ? -1 : 1;
  }
  const pa = a.Prerelease();
  const pb = b.Prerelease();
  if (pa === pb) return 0;
  if (pa === '') return 1;
  if (pb === '') return -1;
  const sa = pa.split('.');
  const sb = pb.split('.');
  for (let i = 0; i < Math.max(sa.length, sb.length); i++) {
    const x = sa[i];
    const y = sb[i];
    if (x === y) continue;
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const d = semver.compareIdentifiers(x, y);
    if (d !== 0) return d;
  }
  return 0;
}

interface Constraint {
  op: string;
  version: SemverVersion;
  /** The version as written (`1.2.x`), for messages. */
  original: string;
  dirty: boolean;
  minorDirty: boolean;
  patchDirty: boolean;
}

const CV_GROUPS = `v?([0-9|x|X|\\*]+)(\\.[0-9|x|X|\\*]+)?(\\.[0-9|x|X|\\*]+)?(-([0-9A-Za-z\\-]+(\\.[0-9A-Za-z\\-]+)*))?(\\+([0-9A-Za-z\\-]+(\\.[0-9A-Za-z\\-]+)*))?`;
const OPS = '=||!=|>|<|>=|=>|<=|=<|~|~>|\\^';
const CONSTRAINT = new RegExp(`^\\s*(${OPS})\\s*(${CV_GROUPS})\\s*$`);
const RANGE = new RegExp(`\\s*(${CV_GROUPS})\\s+-\\s+(${CV_GROUPS})\\s*`, 'g');
const FIND = new RegExp(`(${OPS})\\s*(${CV_GROUPS})`, 'g');
const VALID = new RegExp(`^(\\s*(${OPS})\\s*(${CV_GROUPS})\\s*)((?:\\s+|,\\s*)(${OPS})\\s*(${CV_GROUPS})\\s*)*$`);

const isX = (part: string | undefined): boolean => part === 'x' || part === 'X' || part === '*';

function parseConstraint(text: string): Constraint {
  if (text === '') return { op: '', version: SemverVersion.parse('0.0.0'), original: '', dirty: true, minorDirty: false, patchDirty: false };
  const m = CONSTRAINT.exec(text);
  if (m === null) throw new Error(`improper constraint: ${JSON.stringify(text)}`);
  const [, op = '', original = '', major = '', minorPart = '', patchPart = '', pre = ''] = m;
  const minor = minorPart.replace(/^\./, '');
  const patch = patchPart.replace(/^\./, '');
  let version = original;
  let dirty = false;
  let minorDirty = false;
  let patchDirty = false;
  if (isX(major) || major === '') {
    version = `0.0.0${pre}`;
    dirty = true;
  } else if (isX(minor) || minor === '') {
    version = `${major}.0.0${pre}`;
    dirty = true;
    minorDirty = true;
  } else if (isX(patch) || patch === '') {
    version = `${major}.${minor}.0${pre}`;
    dirty = true;
    patchDirty = true;
  }
  return { op, version: SemverVersion.parse(version), original, dirty, minorDirty, patchDirty };
}

function tilde(v: SemverVersion, c: Constraint): boolean {
  if (v.LessThan(c.version)) return false;
  // ~0.0.0 accepts everything.
  if (c.version.Major() === 0n && c.version.Minor() === 0n && c.version.Patch() === 0n && !c.minorDirty && !c.patchDirty) return true;
  if (v.Major() !== c.version.Major()) return false;
  return v.Minor() === c.version.Minor() || c.minorDirty;
}

function caret(v: SemverVersion, c: Constraint): boolean {
  const cv = c.version;
  if (v.LessThan(cv)) return false;
  if (cv.Major() > 0n || c.minorDirty) return v.Major() === cv.Major();
  if (v.Major() > 0n) return false;
  if (cv.Minor() > 0n || c.patchDirty) return v.Minor() === cv.Minor();
  if (v.Minor() > 0n) return false;
  return cv.Patch() === v.Patch();
}

function check(v: SemverVersion, c: Constraint, includePre: boolean): boolean {
  if (v.Prerelease() !== '' && !includePre) return false;
  const cv = c.version;
  const cmp = compareVersions(v, cv);
  switch (c.op) {
    case '':
    case '=':
      return c.dirty ? tilde(v, c) : cmp === 0;
    case '!=':
      if (c.dirty) {
        if (cv.Major() !== v.Major()) return true;
        if (cv.Minor() !== v.Minor() && !c.minorDirty) return true;
        if (c.minorDirty) return false;
        if (cv.Patch() !== v.Patch() && !c.patchDirty) return true;
        if (c.patchDirty) return (v.Prerelease() !== '' || cv.Prerelease() !== '') && v.Prerelease() !== cv.Prerelease();
      }
      return cmp !== 0;
    case '>':
      if (!c.dirty) return cmp === 1;
      if (v.Major() !== cv.Major()) return v.Major() > cv.Major();
      if (c.minorDirty) return false;
      if (c.patchDirty) return v.Minor() > cv.Minor();
      return cmp === 1;
    case '<':
      return cmp < 0;
    case '>=':
    case '=>':
      return cmp >= 0;
    case '<=':
    case '=<':
      if (!c.dirty) return cmp <= 0;
      if (v.Major() > cv.Major()) return false;
      return !(v.Major() === cv.Major() && v.Minor() > cv.Minor() && !c.minorDirty);
    case '~':
    case '~>':
      return tilde(v, c);
    case '^':
      return caret(v, c);
    default:
      return false;
  }
}

/** Masterminds semver.NewConstraint(constraint).Check(NewVersion(version)); throws on a bad input. */
export function semverCompare(constraint: string, version: string): boolean {
  const rewritten = constraint.replace(RANGE, (_match, from: string, ...rest: unknown[]) => `>= ${from}, <= ${String(rest[9])} `);
  const groups = rewritten.split('||').map((group) => {
    if (!VALID.test(group)) throw new Error(`improper constraint: ${JSON.stringify(group)}`);
    const found = [...group.matchAll(FIND)].map((m) => m[0]);
    return (found.length === 0 ? [group] : found).map(parseConstraint);
  });
  const v = SemverVersion.parse(version);
  return groups.some((group) => {
    const includePre = group.some((c) => c.version.Prerelease() !== '');
    return group.every((c) => check(v, c, includePre));
  });
}
