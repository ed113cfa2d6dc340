/**
 * Sprig's defaults and flow control (defaults.go), reflection (reflect.go) and semver (semver.go).
 * `default` and `empty` use Go's zero values: 0, "", false, nil and empty lists and maps are
 * empty; structs never are.
 */
import { goFunc, goVariadic, type TemplateFunction } from './functions.ts';
import { goDeepEqual, goKindName, goTypeName, isEmptyValue } from './go-values.ts';
import { semverCompare, SemverVersion } from './semver-constraint.ts';

export const SPRIG_TYPE_FUNCTIONS: ReadonlyArray<[string, TemplateFunction]> = [
  ['default', goVariadic(['any'], 'any', (fallback, ...given) => (given.length === 0 || isEmptyValue(given[0]) ? fallback : given[0]))],
  ['empty', goFunc(['any'], isEmptyValue)],
  ['coalesce', goVariadic([], 'any', (...values) => values.find((v) => !isEmptyValue(v)) ?? null)],
  ['all', goVariadic([], 'any', (...values) => values.every((v) => !isEmptyValue(v)))],
  ['any', goVariadic([], 'any', (...values) => values.some((v) => !isEmptyValue(v)))],
  ['ternary', goFunc(['any', 'any', 'bool'], (whenTrue, whenFalse, condition) => (condition ? whenTrue : whenFalse))],
  ['typeOf', goFunc(['any'], goTypeName)],
  ['typeIs', goFunc(['string', 'any'], (target, value) => target === goTypeName(value))],
  ['typeIsLike', goFunc(['string', 'any'], (target, value) => target === goTypeName(value) || `*${target}` === goTypeName(value))],
  ['kindOf', goFunc(['any'], goKindName)],
  ['kindIs', goFunc(['string', 'any'], (target, value) => target === goKindName(value))],
  ['deepEqual', goFunc(['any', 'any'], goDeepEqual)],
  ['semver', goFunc(['string'], (version) => SemverVersion.parse(version))],
  ['semverCompare', goFunc(['string', 'string'], semverCompare)],
];
