/**
 * Sprig's path, URL and network functions (functions.go, url.go, network.go). Paths follow Go's
 * path package (slash-separated; `os*` forms are the same on Linux). `getHostByName` answers ""
 * as Helm does unless DNS lookups are enabled, which `helm template` does not do by default.
 */
import { goFunc, type TemplateFunction } from './functions.ts';
import { newGoMap, type GoMap } from './go-values.ts';

/** Go's path.Clean. */
export function cleanPath(path: string): string {
  if (path === '') return '.';
  const rooted = path.startsWith('/');
  const out: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(segment);
  }
  const joined = out.join('/');
  return rooted ? `/${joined}` : joined === '' ? '.' : joined;
}

function base(path: string): string {
  if (path === '') return '.';
  const trimmed = path.replace(/\/+$/, '');
  if (trimmed === '') return '/';
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}

function dir(path: string): string {
  return cleanPath(path.slice(0, path.lastIndexOf('/') + 1));
}

function ext(path: string): string {
  for (let i = path.length - 1; i >= 0 && path[i] !== '/'; i--) if (path[i] === '.') return path.slice(i);
  return '';
}

function unescape(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new Error(`unable to parse url: invalid URL escape ${JSON.stringify(text)}`);
  }
}

/** Go's url.Parse, for what urlParse reports. */
function urlParse(raw: string): GoMap {
  const [beforeFragment = '', fragment = ''] = splitOnce(raw, '#');
  let rest = beforeFragment;
  let scheme = '';
  const schemeMatch = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(rest);
  if (schemeMatch !== null) {
    scheme = schemeMatch[1]!.toLowerCase();
    rest = rest.slice(schemeMatch[0].length);
  }
  let query = '';
  if (rest.includes('?')) [rest, query] = splitOnce(rest, '?') as [string, string];
  let opaque = '';
  let host = '';
  let userinfo = '';
  let path = '';
  if (scheme !== '' && !rest.startsWith('/')) opaque = rest;
  else {
    if (rest.startsWith('//')) {
      const authorityEnd = rest.indexOf('/', 2);
      const authority = authorityEnd < 0 ? rest.slice(2) : rest.slice(2, authorityEnd);
      rest = authorityEnd < 0 ? '' : rest.slice(authorityEnd);
      const at = authority.lastIndexOf('@');
      if (at >= 0) userinfo = unescape(authority.slice(0, at));
      host = authority.slice(at + 1);
    }
    path = unescape(rest);
  }
  const hostname = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d*$/, '');
  const dict = newGoMap();
  Object.assign(dict, { scheme, host, hostname, path, query, opaque, fragment: unescape(fragment), userinfo });
  return dict;
}

function splitOnce(text: string, sep: string): [string, string?] {
  const at = text.indexOf(sep);
  return at < 0 ? [text] : [text.slice(0, at), text.slice(at + 1)];
}

function dictString(d: GoMap | null, key: string): string {
  if (d === null || !Object.hasOwn(d, key)) return '';
  const value = d[key];
  if (typeof value !== 'string') throw new Error(`unable to parse ${key} key, must be of type string, but ${value === null ? 'invalid' : typeof value} found`);
  return value;
}

/** Go's url.URL.String for the parts urlJoin takes. */
function urlJoin(d: GoMap | null): string {
  const scheme = dictString(d, 'scheme');
  const host = dictString(d, 'host');
  const path = dictString(d, 'path');
  const query = dictString(d, 'query');
  const opaque = dictString(d, 'opaque');
  const fragment = dictString(d, 'fragment');
  const userinfo = dictString(d, 'userinfo');
  let out = scheme === '' ? '' : `${scheme}:`;
  if (opaque !== '') out += opaque;
  else {
    if (scheme !== '' || host !== '' || userinfo !== '') {
      if (host !== '' || path !== '' || userinfo !== '') out += '//';
      if (userinfo !== '') out += `${userinfo}@`;
      out += host;
    }
    const escapedPath = encodeURI(path).replace(/[?#]/g, (c) => encodeURIComponent(c));
    if (escapedPath !== '' && !escapedPath.startsWith('/') && host !== '') out += '/';
    out += escapedPath;
  }
  if (query !== '') out += `?${query}`;
  if (fragment !== '') out += `#${encodeURI(fragment)}`;
  return out;
}

export const SPRIG_PATH_FUNCTIONS: ReadonlyArray<[string, TemplateFunction]> = [
  ['base', goFunc(['string'], base)],
  ['dir', goFunc(['string'], dir)],
  ['clean', goFunc(['string'], cleanPath)],
  ['ext', goFunc(['string'], ext)],
  ['isAbs', goFunc(['string'], (p) => p.startsWith('/'))],
  ['osBase', goFunc(['string'], base)],
  ['osDir', goFunc(['string'], dir)],
  ['osClean', goFunc(['string'], cleanPath)],
  ['osExt', goFunc(['string'], ext)],
  ['osIsAbs', goFunc(['string'], (p) => p.startsWith('/'))],
  ['urlParse', goFunc(['string'], urlParse)],
  ['urlJoin', goFunc(['map'], urlJoin)],
  ['getHostByName', goFunc(['string'], () => '')],
];
