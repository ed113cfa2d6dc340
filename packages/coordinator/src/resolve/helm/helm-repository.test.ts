import { describe, expect, it } from 'vitest';
import { pickEntry, type HelmIndex } from './helm-repository.ts';

const index: HelmIndex = {
  url: new URL('https://charts.example/index.yaml'),
  entries: new Map([
    [
      'podinfo',
      [
        { name: 'podinfo', version: '6.8.0-rc.1', urls: ['podinfo-6.8.0-rc.1.tgz'] },
        { name: 'podinfo', version: '6.7.1', urls: ['podinfo-6.7.1.tgz'] },
        { name: 'podinfo', version: '6.10.0', urls: ['podinfo-6.10.0.tgz'] },
        { name: 'podinfo', version: '5.0.0', urls: ['podinfo-5.0.0.tgz'] },
      ],
    ],
  ]),
};

describe('pickEntry', () => {
  it('takes the version asked for, with or without a leading v', () => {
    expect(pickEntry(index, 'podinfo', '6.7.1', 'r').version).toBe('6.7.1');
    expect(pickEntry(index, 'podinfo', 'v5.0.0', 'r').version).toBe('5.0.0');
  });

  it('without a version takes the highest stable version, as helm pull does', () => {
    expect(pickEntry(index, 'podinfo', undefined, 'r').version).toBe('6.10.0');
  });

  it('names a chart or version the index does not have', () => {
    expect(() => pickEntry(index, 'nginx', undefined, 'mirror.helm.repositories[0].charts[1]')).toThrow(
      'mirror.helm.repositories[0].charts[1]: chart nginx is not in https://charts.example/index.yaml',
    );
    expect(() => pickEntry(index, 'podinfo', '9.9.9', 'r')).toThrow(
      'r: chart podinfo has no version 9.9.9 in https://charts.example/index.yaml (it has 6.8.0-rc.1, 6.7.1, 6.10.0, 5.0.0)',
    );
  });
});
