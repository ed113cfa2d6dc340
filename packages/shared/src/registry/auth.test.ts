import { describe, expect, it } from 'vitest';
import { parseWwwAuthenticate } from './auth.ts';

describe('parseWwwAuthenticate', () => {
  it('reads a Docker token challenge', () => {
    expect(parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"')).toEqual([
      {
        scheme: 'bearer',
        params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' },
      },
    ]);
  });

  it('keeps commas and escaped quotes inside quoted values', () => {
    const [challenge] = parseWwwAuthenticate(
      'Bearer realm="https://quay.io/v2/auth",service="quay.io",scope="repository:a/b:pull,push",error="invalid_token",error_description="say \\"hi\\""',
    );
    expect(challenge?.params['scope']).toBe('repository:a/b:pull,push');
    expect(challenge?.params['error']).toBe('invalid_token');
    expect(challenge?.params['error_description']).toBe('say "hi"');
  });

  it('reads Basic, unquoted values, odd spacing and mixed case', () => {
    expect(parseWwwAuthenticate('basic  REALM = "Registry Realm" , charset=UTF-8')).toEqual([
      { scheme: 'basic', params: { realm: 'Registry Realm', charset: 'UTF-8' } },
    ]);
  });

  it('reads several challenges in one header and across several headers', () => {
    const one = parseWwwAuthenticate('Basic realm="basic", Bearer realm="https://t.example/token",service="reg"');
    expect(one.map((c) => c.scheme)).toEqual(['basic', 'bearer']);
    expect(one[1]?.params).toEqual({ realm: 'https://t.example/token', service: 'reg' });
    const many = parseWwwAuthenticate(['Basic realm="a"', 'Bearer realm="b"']);
    expect(many.map((c) => [c.scheme, c.params['realm']])).toEqual([
      ['basic', 'a'],
      ['bearer', 'b'],
    ]);
  });

  it('tolerates a token68 value and empty or missing headers', () => {
    expect(parseWwwAuthenticate('Negotiate abc123==')).toEqual([{ scheme: 'negotiate', params: { token68: 'abc123==' } }]);
    expect(parseWwwAuthenticate('')).toEqual([]);
    expect(parseWwwAuthenticate(undefined)).toEqual([]);
  });
});
