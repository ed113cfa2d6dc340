import { describe, expect, it } from 'vitest';
import type { ChartDependency, LoadedChart } from './chart.ts';
import { prepareChart, type ChartNode } from './chart-values.ts';

function chart(name: string, values: Record<string, unknown>, subcharts: LoadedChart[] = [], dependencies: ChartDependency[] = [], version = '1.0.0'): LoadedChart {
  return { metadata: { raw: { name, version }, name, version, type: 'application', dependencies }, values, templates: [], files: new Map(), subcharts };
}

const names = (node: ChartNode): string[] => [node.fullPath, ...node.children.flatMap(names)];

describe('prepareChart', () => {
  const cache = chart('cache', { image: { repository: 'redis', tag: '7.2' }, global: { registry: 'sub.example' } }, [], [], '7.2.0');
  const extra = chart('extra', { image: 'extra:1' });
  const parent = chart(
    'app',
    {
      image: { repository: 'app', tag: '1.0', pullPolicy: 'IfNotPresent' },
      extra: { enabled: false },
      'session-cache': { image: { tag: '7.4' } },
      global: { registry: 'top.example' },
    },
    [cache, extra],
    [
      { name: 'cache', alias: 'session-cache', version: '7.x', tags: [] },
      { name: 'extra', condition: 'extra.enabled', tags: [] },
    ],
  );

  it('renames a subchart by its alias, leaves a disabled one out, and hands values down', () => {
    const root = prepareChart(parent, {}, 'test');
    expect(names(root)).toEqual(['app', 'app/charts/session-cache']);
    const sub = root.children[0]!;
    expect(sub.name).toBe('session-cache');
    // The parent's values for the alias win over the subchart's defaults, which fill the rest.
    expect(sub.values['image']).toEqual({ repository: 'redis', tag: '7.4' });
    // The parent's global wins over the subchart's.
    expect(sub.values['global']).toEqual({ registry: 'top.example' });
  });

  it('enables a subchart by its condition from user values, and user values win over defaults', () => {
    const root = prepareChart(parent, { extra: { enabled: true }, image: { tag: '2.0' } }, 'test');
    expect(names(root)).toEqual(['app', 'app/charts/session-cache', 'app/charts/extra']);
    expect(root.values['image']).toEqual({ repository: 'app', tag: '2.0', pullPolicy: 'IfNotPresent' });
    expect(root.children[1]!.values['image']).toBe('extra:1');
  });

  it('deletes a default given as null', () => {
    const root = prepareChart(parent, { image: { pullPolicy: null } }, 'test');
    expect(root.values['image']).toEqual({ repository: 'app', tag: '1.0' });
  });

  it('disables a dependency whose tags are all false, and a condition overrides tags', () => {
    const tagged = chart('app', { tags: { caching: false } }, [cache], [{ name: 'cache', version: '7.x', tags: ['caching'] }]);
    expect(names(prepareChart(tagged, {}, 'test'))).toEqual(['app']);
    expect(names(prepareChart(tagged, { tags: { caching: true } }, 'test'))).toEqual(['app', 'app/charts/cache']);
    const both = chart('app', { tags: { caching: false }, cache: { enabled: true } }, [cache], [{ name: 'cache', condition: 'cache.enabled', tags: ['caching'] }]);
    expect(names(prepareChart(both, {}, 'test'))).toEqual(['app', 'app/charts/cache']);
  });

  it('renders a chart under charts/ that no dependency names', () => {
    expect(names(prepareChart(chart('app', {}, [extra]), {}, 'test'))).toEqual(['app', 'app/charts/extra']);
  });

  it('names a dependency missing from charts/', () => {
    const missing = chart('app', {}, [], [{ name: 'postgres', version: '12.x', tags: [] }]);
    expect(() => prepareChart(missing, {}, 'chart app 1.0.0')).toThrow('chart app 1.0.0: chart app depends on postgres 12.x, which is not in its charts/ folder');
  });

  it('leaves the user values untouched', () => {
    const user = { image: { tag: '3.0' } };
    prepareChart(parent, user, 'test');
    expect(user).toEqual({ image: { tag: '3.0' } });
  });
});
