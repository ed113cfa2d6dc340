import { describe, expect, it } from 'vitest';
import { ChartFiles } from './chart-files.ts';
import { renderChartTemplates } from './template/index.ts';

const files = new ChartFiles(
  new Map([
    ['config/app.ini', Buffer.from('a=1\nb=2')],
    ['config/nested/deep.ini', Buffer.from('c=3')],
    ['README.md', Buffer.from('readme')],
  ]),
);

describe('ChartFiles', () => {
  it('gets a file, or "" when there is none', () => {
    expect(files.Get('README.md')).toBe('readme');
    expect(files.Get('missing')).toBe('');
    expect(files.Lines('config/app.ini')).toEqual(['a=1', 'b=2']);
  });

  it('globs with * inside a folder and ** across folders', () => {
    expect(files.Glob('config/*').AsConfig()).toBe('app.ini: |-\n  a=1\n  b=2');
    expect(files.Glob('config/**').AsSecrets()).toBe(`app.ini: ${Buffer.from('a=1\nb=2').toString('base64')}\ndeep.ini: ${Buffer.from('c=3').toString('base64')}`);
    expect(files.Glob('*.{md,txt}').Get('README.md')).toBe('readme');
    expect(files.Glob('nothing/*').AsConfig()).toBe('');
  });
});

describe('ChartFiles in templates', () => {
  it('is ranged over and indexed as a map, and its methods are called by their Go names', () => {
    const text =
      '{{ range $path, $bytes := .Files.Glob "config/*" }}{{ $path }}={{ toString $bytes }};{{ end }}|{{ .Files.Get "README.md" }}|{{ index .Files "README.md" | toString }}';
    const out = renderChartTemplates([{ name: 'c/templates/x.yaml', text }], () => ({ Files: files }));
    expect(out.get('c/templates/x.yaml')).toBe('config/app.ini=a=1\nb=2;|readme|readme');
  });
});
