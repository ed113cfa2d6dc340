/**
 * Sprig's path and URL functions, with Go's path package rules.
 */
import { describe, expect, it } from 'vitest';
import { TemplateSet } from './template-set.ts';

function render(text: string): string {
  const set = new TemplateSet();
  set.parse('t', text);
  return set.execute('t', {});
}

describe('sprig paths and URLs', () => {
  it.each([
    ['base', '{{ base "/a/b.txt" }} {{ base "/a/b/" }} {{ base "" }} {{ base "/" }}', 'b.txt b . /'],
    ['dir', '{{ dir "/a/b.txt" }} {{ dir "b.txt" }} {{ dir "/a/b/" }}', '/a . /a/b'],
    ['clean', '{{ clean "/a/../b//c/./d/" }} {{ clean "../x" }} {{ clean "" }}', '/b/c/d ../x .'],
    ['ext and isAbs', '{{ ext "a/b.tar.gz" }} {{ ext "a.b/c" }} {{ isAbs "/x" }} {{ isAbs "x" }}', '.gz  true false'],
    [
      'urlParse',
      '{{ $u := urlParse "https://user:pw@example.com:8443/a%20b?x=1#frag" }}{{ $u.scheme }} {{ $u.host }} {{ $u.hostname }} {{ $u.path }} {{ $u.query }} {{ $u.fragment }} {{ $u.userinfo }}',
      'https example.com:8443 example.com /a b x=1 frag user:pw',
    ],
    ['urlJoin', '{{ urlJoin (dict "scheme" "https" "host" "example.com" "path" "/x" "query" "a=1") }}', 'https://example.com/x?a=1'],
    ['getHostByName answers nothing without DNS', '[{{ getHostByName "example.com" }}]', '[]'],
  ])('%s', (_name, text, expected) => {
    expect(render(text)).toBe(expected);
  });
});
