/**
 * YAML as Helm's toYaml writes it (sigs.k8s.io/yaml: JSON, then go-yaml v2's emitter) and
 * fromYaml reads it. Expected texts are go-yaml v2's output, worked out from its emitter rules.
 */
import { describe, expect, it } from 'vitest';
import { marshalYaml, unmarshalYaml } from './go-yaml.ts';

describe('marshalYaml', () => {
  it('nests maps by two spaces, keeps lists under their key, and writes empty collections in flow style', () => {
    const value = {
      image: { repository: 'nginx', tag: '1.25' },
      ports: [{ name: 'http', containerPort: 80 }],
      env: [],
      labels: {},
      replicas: 3,
      enabled: true,
      nothing: null,
    };
    expect(marshalYaml(value)).toBe(
      [
        'enabled: true',
        'env: []',
        'image:',
        '  repository: nginx',
        '  tag: "1.25"',
        'labels: {}',
        'nothing: null',
        'ports:',
        '- containerPort: 80',
        '  name: http',
        'replicas: 3',
        '',
      ].join('\n'),
    );
  });

  it("sorts keys in go-yaml's natural order", () => {
    expect(marshalYaml({ a10: 1, a2: 2, B: 3, _x: 4, 'a-b': 5, ab: 6 })).toBe('_x: 4\nB: 3\na-b: 5\na2: 2\na10: 1\nab: 6\n');
  });

  it.each([
    ['a YAML 1.1 boolean', 'yes', '"yes"'],
    ['on', 'on', '"on"'],
    ['true', 'true', '"true"'],
    ['an integer', '123', '"123"'],
    ['a float', '1.0', '"1.0"'],
    ['an octal', '0755', '"0755"'],
    ['an exponent', '1e3', '"1e3"'],
    ['a date', '2024-01-02', '"2024-01-02"'],
    ['a base 60 number', '1:20', '"1:20"'],
    ['null', 'null', '"null"'],
    ['the empty string', '', '""'],
    ['a colon and space', 'a: b', "'a: b'"],
    ['a leading dash and space', '- item', "'- item'"],
    ['a leading hash', '#comment', "'#comment'"],
    ['an apostrophe inside', "it's", "it's"],
    ['leading quote', "'quoted'", "'''quoted'''"],
    ['a leading space', ' lead', "' lead'"],
    ['a trailing space', 'trail ', "'trail '"],
    ['a tab', 'tab\there', '"tab\\there"'],
    ['ports', '8080:80', '8080:80'],
    ['an image reference', 'registry.example.com/app@sha256:abc', 'registry.example.com/app@sha256:abc'],
    ['accented letters', 'héllo', 'héllo'],
    ['an emoji', '😀', '"\\U0001F600"'],
  ])('a string: %s', (_name, value, expected) => {
    expect(marshalYaml({ k: value })).toBe(`k: ${expected}\n`);
  });

  it.each([
    ['a multi-line string', 'multi\nline', 'k: |-\n  multi\n  line\n'],
    ['a trailing newline', 'ends\n', 'k: |\n  ends\n'],
    ['two trailing newlines', 'two\n\n', 'k: |+\n  two\n\n'],
    ['a leading space', ' leading\nx', 'k: |2-\n   leading\n  x\n'],
    ['a space before a newline cannot be a block', 'space \nx', 'k: "space \\nx"\n'],
    ['an empty line inside', 'a\n\nb', 'k: |-\n  a\n\n  b\n'],
  ])('%s', (_name, value, expected) => {
    expect(marshalYaml({ k: value })).toBe(expected);
  });

  it('folds a long plain string after column 80', () => {
    const words = Array.from({ length: 20 }, () => 'word');
    expect(marshalYaml({ description: words.join(' ') })).toBe(`description: ${words.slice(0, 14).join(' ')}\n  ${words.slice(14).join(' ')}\n`);
  });

  it.each<[string, unknown, string]>([
    ['a float64', 1.5, '1.5'],
    ['a float64 holding an integer stays an integer', 100000000, '100000000'],
    ['a huge float64', 1e21, '1e+21'],
    ['a small float64', 0.000001, '1e-06'],
    ['a float64 with a fraction and a large exponent', 12345678.5, '1.23456785e+07'],
    ['an int', 123n, '123'],
    ['a negative number', -3, '-3'],
  ])('a number: %s', (_name, value, expected) => {
    expect(marshalYaml({ num: value })).toBe(`num: ${expected}\n`);
  });

  it('quotes the keys y and n, which YAML 1.1 reads as booleans', () => {
    expect(marshalYaml({ n: 1, y: 2, x: 3 })).toBe('"n": 1\nx: 3\n"y": 2\n');
  });

  it('writes scalars, lists and empty maps at the root', () => {
    expect(marshalYaml('abc')).toBe('abc\n');
    expect(marshalYaml(null)).toBe('null\n');
    expect(marshalYaml(['a', 'b'])).toBe('- a\n- b\n');
    expect(marshalYaml({})).toBe('{}\n');
    expect(marshalYaml('x\ny')).toBe('|-\n  x\n  y\n');
  });

  it('indents lists in lists and maps in lists', () => {
    expect(marshalYaml({ a: [[1, 2], [3]] })).toBe('a:\n- - 1\n  - 2\n- - 3\n');
    expect(marshalYaml({ containers: [{ name: 'x', env: [{ name: 'A', value: 'b' }] }] })).toBe('containers:\n- env:\n  - name: A\n    value: b\n  name: x\n');
    expect(marshalYaml(['line1\nline2'])).toBe('- |-\n  line1\n  line2\n');
  });

  it('quotes keys as it quotes values, and a multi-line key with double quotes', () => {
    expect(marshalYaml({ 'key: x': 1, '': 2, true: 3, 'a\nb': 4 })).toBe('"": 2\n"a\\nb": 4\n\'key: x\': 1\n"true": 3\n');
  });

  it('fails where json.Marshal fails', () => {
    expect(() => marshalYaml({ n: Number.NaN })).toThrow('json: unsupported value: NaN');
  });
});

describe('unmarshalYaml', () => {
  it('reads YAML 1.1 as go-yaml v2 does, numbers as float64', () => {
    expect(unmarshalYaml('a: 1\nb: [x, yes, off]\nc: 0755\nd: 2024-01-02\ne: 1:20\nf: ~\n')).toEqual({
      a: 1,
      b: ['x', true, false],
      c: 493,
      d: '2024-01-02',
      e: '1:20',
      f: null,
    });
  });

  it('reads the first document only, and nothing as nil', () => {
    expect(unmarshalYaml('a: 1\n---\nb: 2\n')).toEqual({ a: 1 });
    expect(unmarshalYaml('')).toBeNull();
  });

  it('reports a syntax error with its line', () => {
    expect(() => unmarshalYaml('a: 1\nb: [\n')).toThrow(/^error converting YAML to JSON: yaml: line \d+: /);
  });
});
