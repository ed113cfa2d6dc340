/**
 * Sprig's regex functions (regex.go). The plain forms compile with Go's MustCompile, so a bad
 * pattern is a template error there too (`regexMatch` alone swallows it and answers false).
 */
import { goFunc, type TemplateFunction } from './functions.ts';
import { GoRegexp, quoteMeta } from './go-regexp.ts';
import { tagGoType } from './go-values.ts';

/** regexp.MustCompile's panic text. */
function mustCompile(pattern: string): GoRegexp {
  try {
    return new GoRegexp(pattern);
  } catch (err) {
    throw new Error(`regexp: Compile(${JSON.stringify(pattern).replace(/^"|"$/g, '`')}): ${err instanceof Error ? err.message : String(err)}`);
  }
}

function both(name: string, fn: TemplateFunction): Array<[string, TemplateFunction]> {
  return [
    [name, fn],
    [`must${name[0]!.toUpperCase()}${name.slice(1)}`, fn],
  ];
}

export const SPRIG_REGEX_FUNCTIONS: ReadonlyArray<[string, TemplateFunction]> = [
  [
    'regexMatch',
    goFunc(['string', 'string'], (pattern, s) => {
      try {
        return new GoRegexp(pattern).matchString(s);
      } catch {
        return false;
      }
    }),
  ],
  ['mustRegexMatch', goFunc(['string', 'string'], (pattern, s) => new GoRegexp(pattern).matchString(s))],
  ...both(
    'regexFindAll',
    goFunc(['string', 'string', 'int'], (pattern, s, n) => tagGoType(mustCompile(pattern).findAllString(s, Number(n)), '[]string')),
  ),
  ...both(
    'regexFind',
    goFunc(['string', 'string'], (pattern, s) => mustCompile(pattern).findString(s)),
  ),
  ...both(
    'regexReplaceAll',
    goFunc(['string', 'string', 'string'], (pattern, s, repl) => mustCompile(pattern).replaceAllString(s, repl)),
  ),
  ...both(
    'regexReplaceAllLiteral',
    goFunc(['string', 'string', 'string'], (pattern, s, repl) => mustCompile(pattern).replaceAllLiteralString(s, repl)),
  ),
  ...both(
    'regexSplit',
    goFunc(['string', 'string', 'int'], (pattern, s, n) => tagGoType(mustCompile(pattern).split(s, Number(n)), '[]string')),
  ),
  ['regexQuoteMeta', goFunc(['string'], quoteMeta)],
];
