import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadChartArchive, loadChartPath } from './chart.ts';

async function tgz(files: Record<string, string | Buffer>): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
  const done = new Promise<void>((resolve) => pack.on('end', () => resolve()));
  for (const [name, content] of Object.entries(files)) pack.entry({ name }, typeof content === 'string' ? Buffer.from(content) : content);
  pack.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks));
}

describe('loadChartArchive', () => {
  it('reads Chart.yaml, values, templates, other files and subcharts (archives and folders) under one top folder', async () => {
    const sub = await tgz({ 'cache/Chart.yaml': 'apiVersion: v2\nname: cache\nversion: 7.2.0\n', 'cache/templates/s.yaml': 'kind: StatefulSet\n' });
    const chart = await loadChartArchive(
      await tgz({
        'app/Chart.yaml':
          'apiVersion: v2\nname: app\nversion: 1.2.0\ndependencies:\n  - {name: cache, version: 7.x, alias: session, condition: cache.on, tags: [db]}\n',
        'app/values.yaml': 'image: {tag: "1"}\n',
        'app/templates/_helpers.tpl': '{{ define "x" }}{{ end }}',
        'app/templates/deployment.yaml': 'kind: Deployment\n',
        'app/files/config.ini': 'a=1\n',
        'app/charts/cache-7.2.0.tgz': sub,
        'app/charts/extra/Chart.yaml': 'apiVersion: v2\nname: extra\nversion: 0.1.0\n',
        'app/charts/extra/values.yaml': 'on: true\n',
        'app/charts/notachart/README.md': 'no Chart.yaml here',
      }),
      'app.tgz',
    );
    expect(chart.metadata).toMatchObject({ name: 'app', version: '1.2.0', type: 'application' });
    expect(chart.metadata.dependencies).toEqual([{ name: 'cache', version: '7.x', alias: 'session', condition: 'cache.on', tags: ['db'] }]);
    expect(chart.values).toEqual({ image: { tag: '1' } });
    expect(chart.templates.map((t) => t.path)).toEqual(['templates/_helpers.tpl', 'templates/deployment.yaml']);
    expect([...chart.files.keys()]).toEqual(['files/config.ini']);
    expect(chart.subcharts.map((c) => c.metadata.name).sort()).toEqual(['cache', 'extra']);
    expect(chart.subcharts.find((c) => c.metadata.name === 'extra')?.values).toEqual({ on: true });
  });

  it('reads the dependencies of an apiVersion v1 chart from requirements.yaml', async () => {
    const chart = await loadChartArchive(
      await tgz({ 'old/Chart.yaml': 'apiVersion: v1\nname: old\nversion: 0.1.0\n', 'old/requirements.yaml': 'dependencies:\n  - name: redis\n    version: 10.x\n' }),
      'old.tgz',
    );
    expect(chart.metadata.dependencies).toEqual([{ name: 'redis', version: '10.x', tags: [] }]);
  });

  it.each([
    [{ 'a/values.yaml': 'x: 1' }, 'x.tgz: Chart.yaml is missing'],
    [{ 'a/Chart.yaml': 'name: a\nversion: 1.0.0\n', 'b/Chart.yaml': 'name: b\nversion: 1.0.0\n' }, 'x.tgz: a chart archive holds one top folder, found a, b'],
    [{ 'a/Chart.yaml': 'version: 1.0.0\n' }, 'x.tgz: Chart.yaml: name is missing'],
    [{ 'a/Chart.yaml': 'name: a\nversion: 1.0.0\n', 'a/values.yaml': 'x: [1\n' }, 'x.tgz (chart a): values.yaml: not valid YAML'],
  ])('names what is wrong (%#)', async (files, message) => {
    await expect(loadChartArchive(await tgz(files), 'x.tgz')).rejects.toThrow(message);
  });

  it('refuses what is not a gzip tar, naming it', async () => {
    await expect(loadChartArchive(Buffer.from('<html>not found</html>'), 'chart web 1.0 (http://x/web-1.0.tgz)')).rejects.toThrow(
      'chart web 1.0 (http://x/web-1.0.tgz)',
    );
  });
});

describe('loadChartPath', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-chart-'));
    await mkdir(join(dir, 'local', 'templates'), { recursive: true });
    await writeFile(join(dir, 'local', 'Chart.yaml'), 'apiVersion: v2\nname: local-chart\nversion: 0.1.0\n');
    await writeFile(join(dir, 'local', 'templates', 'pod.yaml'), 'kind: Pod\n');
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('packages a chart folder the same way every time, as helm package lays it out', async () => {
    const first = await loadChartPath(join(dir, 'local'));
    const second = await loadChartPath(join(dir, 'local'));
    expect(Buffer.from(first.archive).equals(Buffer.from(second.archive))).toBe(true);
    const reread = await loadChartArchive(first.archive, 'packaged');
    expect(reread.metadata.name).toBe('local-chart');
    expect(reread.templates.map((t) => t.path)).toEqual(['templates/pod.yaml']);
  });

  it('reads a .tgz path as it is, and names a path that does not exist', async () => {
    const archive = await tgz({ 'c/Chart.yaml': 'name: c\nversion: 2.0.0\n' });
    await writeFile(join(dir, 'c.tgz'), archive);
    const loaded = await loadChartPath(join(dir, 'c.tgz'));
    expect(Buffer.from(loaded.archive).equals(archive)).toBe(true);
    await expect(loadChartPath(join(dir, 'missing'))).rejects.toThrow(`${join(dir, 'missing')}: cannot read the chart`);
  });
});
