/**
 * Go text/template semantics, each case worked out from Go's documentation and exec.go, not from
 * this code: what a template prints for given data, or the error Go gives.
 */
import { describe, expect, it } from 'vitest';
import { TemplateError } from './template-error.ts';
import { TemplateSet, type TemplateSetOptions } from './template-set.ts';

function render(text: string, data: unknown = {}, options?: TemplateSetOptions): string {
  const set = new TemplateSet(options);
  set.parse('t', text);
  return set.execute('t', data);
}

function failure(text: string, data: unknown = {}, options?: TemplateSetOptions): TemplateError {
  try {
    render(text, data, options);
  } catch (err) {
    if (err instanceof TemplateError) return err;
    throw err;
  }
  throw new Error(`expected ${JSON.stringify(text)} to fail`);
}

describe('actions, literals and trim markers', () => {
  it.each([
    ['plain text', 'hello', {}, 'hello'],
    ['string and raw string', '{{ "a\\tb" }}|{{ `raw\\n` }}', {}, 'a\tb|raw\\n'],
    ['numbers keep their literal type', '{{ 1 }} {{ -2 }} {{ 1.5 }} {{ 0x1F }} {{ 1e3 }} {{ 0o17 }} {{ 1_000 }} {{ 011 }}', {}, '1 -2 1.5 31 1000 15 1000 9'],
    ['a character constant is its code point', "{{ 'a' }} {{ '\\n' }}", {}, '97 10'],
    ['booleans', '{{ true }} {{ false }}', {}, 'true false'],
    ['trim markers eat spaces and newlines on their side', 'a  \n {{- "b" -}} \n  c', {}, 'abc'],
    ['a minus without a space is a number', '{{-3}}', {}, '-3'],
    ['a trimmed comment leaves nothing', 'a {{- /* note */ -}} b', {}, 'ab'],
    ['an untrimmed comment leaves the spaces around it', 'a {{/* note */}} b', {}, 'a  b'],
    ['the usual YAML trimming', 'x:\n{{- if true }}\n  y: 1\n{{- end }}\n', {}, 'x:\n  y: 1\n'],
    ['newlines inside an action are spaces', '{{ printf\n  "%s-%s"\n  "a"\n  "b" }}', {}, 'a-b'],
    ['dot is the data', '{{ . }}', 'text', 'text'],
  ])('%s', (_name, text, data, expected) => {
    expect(render(text, data)).toBe(expected);
  });

  it('nil is not a command', () => {
    expect(failure('{{ nil }}').message).toBe('t:1:3: executing "t" at <nil>: nil is not a command');
  });

  it('a comment must sit right inside the delimiters', () => {
    expect(failure('{{ /* x */ }}').message).toBe('t:1: unexpected "/" in command');
  });
});

describe('pipelines', () => {
  it.each([
    ['the piped value is the last argument', '{{ "abc" | printf "%s-%s" "x" }}', {}, 'x-abc'],
    ['a parenthesized pipeline is one argument', '{{ printf "%s%s" "b" (printf "%s" "a" | upper) }}', {}, 'bA'],
    ['a missing value piped into an interface{} parameter is nil', '{{ .x | printf "%v" }}', {}, '<nil>'],
    ['fields of a parenthesized pipeline', '{{ (dict "a" (dict "b" "deep")).a.b }}', {}, 'deep'],
  ])('%s', (_name, text, data, expected) => {
    expect(render(text, data)).toBe(expected);
  });

  it('a literal cannot take the piped value', () => {
    expect(failure('{{ "a" | "b" }}').message).toBe('t:1: non executable command in pipeline stage 2');
  });
});

describe('variables', () => {
  it.each([
    ['declare and assign', '{{ $x := 1 }}{{ $x }}{{ $x = 2 }}{{ $x }}', {}, '12'],
    ['a declaration inside if ends at its end', '{{ $x := "out" }}{{ if true }}{{ $x := "in" }}{{ $x }}{{ end }}{{ $x }}', {}, 'inout'],
    ['an assignment inside if changes the outer variable', '{{ $x := "out" }}{{ if true }}{{ $x = "in" }}{{ end }}{{ $x }}', {}, 'in'],
    ['with can declare', '{{ with $y := .a }}{{ $y }}{{ end }}', { a: 'A' }, 'A'],
    ['$ is the data given to the template', '{{ range .l }}{{ $.name }}{{ end }}', { l: [1, 2], name: 'n' }, 'nn'],
    ['range with index and element', '{{ range $i, $v := .l }}{{ $i }}={{ $v }};{{ end }}', { l: ['a', 'b'] }, '0=a;1=b;'],
    ['range assigning to existing variables (Go 1.22)', '{{ $i := 0 }}{{ $v := 0 }}{{ range $i, $v = .l }}{{ end }}{{ $i }}={{ $v }}', { l: ['a', 'b'] }, '1=b'],
  ])('%s', (_name, text, data, expected) => {
    expect(render(text, data)).toBe(expected);
  });

  it('a variable declared inside if is unknown after its end', () => {
    expect(failure('{{ if true }}{{ $v := 1 }}{{ end }}{{ $v }}').message).toBe('t:1: undefined variable "$v"');
  });

  it("a defined template does not see the caller's variables", () => {
    expect(failure('{{ $y := 1 }}{{ define "x" }}{{ $y }}{{ end }}').message).toBe('t:1: undefined variable "$y"');
  });
});

describe('if, with, range', () => {
  it.each([
    ['else if', '{{ if .a }}A{{ else if .b }}B{{ else }}C{{ end }}', { b: true }, 'B'],
    ['else', '{{ if .a }}A{{ else if .b }}B{{ else }}C{{ end }}', {}, 'C'],
    ['with sets dot', '{{ with .a }}{{ .b }}{{ end }}', { a: { b: 'x' } }, 'x'],
    ['else with', '{{ with .a }}{{ . }}{{ else with .b }}b={{ . }}{{ else }}none{{ end }}', { b: 2 }, 'b=2'],
    ['range over a list', '{{ range . }}{{ . }},{{ end }}', ['a', 'b'], 'a,b,'],
    ['range over a map visits keys in sorted byte order', '{{ range $k, $v := . }}{{ $k }}={{ $v }};{{ end }}', { b: 2, a: 1, C: 3 }, 'C=3;a=1;b=2;'],
    ['range over an int (Go 1.22)', '{{ range 3 }}{{ . }}{{ end }}', {}, '012'],
    ['range else on an empty list', '{{ range .l }}x{{ else }}empty{{ end }}', { l: [] }, 'empty'],
    ['range else on a missing value', '{{ range .l }}x{{ else }}empty{{ end }}', {}, 'empty'],
    ['break and continue', '{{ range 5 }}{{ if eq . 3 }}{{ break }}{{ end }}{{ if eq . 1 }}{{ continue }}{{ end }}{{ . }}{{ end }}', {}, '02'],
    ['a nil list element is a nil dot', '{{ range .l }}[{{ . }}]{{ end }}', { l: [null, 'x'] }, '[<no value>][x]'],
  ])('%s', (_name, text, data, expected) => {
    expect(render(text, data)).toBe(expected);
  });

  it('range over a float64 is an error', () => {
    expect(failure('{{ range .n }}{{ end }}', { n: 3 }).reason).toBe("range can't iterate over 3");
  });

  it('break outside range does not parse', () => {
    expect(failure('{{ break }}').message).toBe('t:1: {{break}} outside {{range}}');
  });

  it.each([
    ['false', false, 'F'],
    ['true', true, 'T'],
    ['float 0', 0, 'F'],
    ['float 0.5', 0.5, 'T'],
    ['int 0', 0n, 'F'],
    ['empty string', '', 'F'],
    ['"0"', '0', 'T'],
    ['empty list', [], 'F'],
    ['list of a zero', [0], 'T'],
    ['empty map', {}, 'F'],
    ['map of a zero', { a: 0 }, 'T'],
    ['nil', null, 'F'],
  ])('truth of %s', (_name, value, expected) => {
    expect(render('{{ if .v }}T{{ else }}F{{ end }}', { v: value })).toBe(expected);
  });
});

describe('define, template, block', () => {
  it.each([
    ['template passes its pipeline as dot', '{{ define "x" }}X{{ . }}{{ end }}{{ template "x" "y" }}', {}, 'Xy'],
    ['template without a pipeline has no dot', '{{ define "x" }}{{ . }}{{ end }}{{ template "x" }}', 'data', '<no value>'],
    ['block defines and runs', '{{ block "b" . }}default {{ . }}{{ end }}', 'd', 'default d'],
  ])('%s', (_name, text, data, expected) => {
    expect(render(text, data)).toBe(expected);
  });

  it('a later definition replaces a block; an empty one does not', () => {
    const set = new TemplateSet();
    set.parse('t', '{{ block "b" . }}default{{ end }}');
    set.parse('u', '{{ define "b" }}override{{ end }}');
    set.parse('v', '{{ define "b" }} {{ end }}');
    expect(set.execute('t', {})).toBe('override');
  });

  it('two definitions of one name in one text are an error', () => {
    expect(failure('{{ define "a" }}1{{ end }}{{ define "a" }}2{{ end }}').message).toBe('t:1: template: multiple definition of template "a"');
  });

  it('an undefined template is an execution error', () => {
    expect(failure('{{ template "nope" }}').message).toBe('t:1:12: executing "t" at <{{template "nope"}}>: template "nope" not defined');
  });

  it('endless recursion stops at the depth limit', () => {
    expect(failure('{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}').reason).toMatch(/^exceeded maximum template depth \(\d+\)$/);
  });
});

describe('missing keys and nil values', () => {
  it('a missing key prints <no value>', () => {
    expect(render('{{ .a }}|{{ .m.x }}', { m: {} })).toBe('<no value>|<no value>');
  });

  it('a field of a missing value is the nil pointer error', () => {
    const err = failure('{{ .a.b }}');
    expect(err.message).toBe('t:1:5: executing "t" at <.a.b>: nil pointer evaluating interface {}.b');
    expect(err).toMatchObject({ code: 'MM_HELM_TEMPLATE', template: 't', line: 1, column: 5, reason: 'nil pointer evaluating interface {}.b' });
  });

  it('a field of a null value is the same error', () => {
    expect(failure('{{ .a.b }}', { a: null }).reason).toBe('nil pointer evaluating interface {}.b');
  });

  it('a field of a variable holding no value is no value (Go digs into the interface first)', () => {
    expect(render('{{ $x := .a }}{{ $x.b }}')).toBe('<no value>');
  });

  it('a field of a string is an error', () => {
    expect(failure('{{ .a.b }}', { a: 'text' }).reason).toBe("can't evaluate field b in type interface {}");
  });

  it('strict mode makes a missing key an error', () => {
    expect(failure('{{ .a }}', {}, { strict: true }).reason).toBe('map has no entry for key "a"');
    expect(render('{{ .a }}', { a: null }, { strict: true })).toBe('<no value>');
  });
});

describe('printing', () => {
  it.each([
    ['a map, keys sorted, and a list with nil', { b: [1, 'x', null], a: { c: true } }, 'map[a:map[c:true] b:[1 x <nil>]]'],
    ['float64 1000000', 1000000, '1e+06'],
    ['float64 123456789', 123456789, '1.23456789e+08'],
    ['float64 100000', 100000, '100000'],
    ['float64 3', 3, '3'],
    ['float64 0.5', 0.5, '0.5'],
    ['float64 0.00001', 0.00001, '1e-05'],
    ['an int keeps its digits', 1000000n, '1000000'],
    ['bytes', new Uint8Array([104, 105]), '[104 105]'],
  ])('%s', (_name, value, expected) => {
    expect(render('{{ . }}', value)).toBe(expected);
  });

  it('literal numbers have Go types', () => {
    expect(render('{{ typeOf 1 }} {{ typeOf 1.0 }} {{ typeOf 1e3 }} {{ typeOf .n }}', { n: 1 })).toBe('int float64 float64 float64');
  });
});

describe('methods of data objects', () => {
  class Files {
    readonly #files = new Map([['a.txt', 'content of a']]);

    Get(name: unknown): string {
      return this.#files.get(String(name)) ?? '';
    }

    Fail(): string {
      throw new Error('broken file');
    }

    helper(): string {
      return 'not a Go method';
    }
  }

  const data = {
    Files: new Files(),
    Capabilities: { APIVersions: { Has: (version: unknown) => version === 'apps/v1' } },
    list: ['a'],
  };

  it.each([
    ['a class method with an argument', '{{ .Files.Get "a.txt" }}', 'content of a'],
    ['the piped value is the last argument', '{{ "a.txt" | .Files.Get }}', 'content of a'],
    ['a function-valued field', '{{ .Capabilities.APIVersions.Has "apps/v1" }} {{ .Capabilities.APIVersions.Has "x/v9" }}', 'true false'],
  ])('%s', (_name, text, expected) => {
    expect(render(text, data)).toBe(expected);
  });

  it('a throwing method is "error calling"', () => {
    expect(failure('{{ .Files.Fail }}', data).reason).toBe('error calling Fail: broken file');
  });

  it('lower-case methods and JavaScript builtins are not Go methods', () => {
    // Both receivers come out of a map[string]interface{}, so Go names their type interface {}.
    expect(failure('{{ .Files.helper }}', data).reason).toBe("can't evaluate field helper in type interface {}");
    expect(failure('{{ .list.join }}', data).reason).toBe("can't evaluate field join in type interface {}");
    expect(failure('{{ $l := .list }}{{ $l.join }}', data).reason).toBe("can't evaluate field join in type []interface {}");
  });

  it('a JavaScript Map is a Go map, ranged in key order', () => {
    expect(
      render('{{ range $k, $v := .m }}{{ $k }}={{ $v }} {{ end }}{{ .m.b }}', {
        m: new Map([
          ['b', '2'],
          ['a', '1'],
        ]),
      }),
    ).toBe('a=1 b=2 2');
  });
});

describe('argument types', () => {
  it.each([
    ['an int parameter rejects a float64 value', '{{ indent .n "x" }}', { n: 2 }, 'wrong type for value; expected int; got float64'],
    ['a string parameter rejects a missing value', '{{ .x | upper }}', {}, 'invalid value; expected string'],
    ['a string parameter rejects nil from a map', '{{ upper .x }}', {}, 'wrong type for value; expected string; got interface {}'],
    ['a literal of the wrong kind', '{{ upper 3 }}', {}, 'expected string; found 3'],
    ['too few arguments', '{{ upper }}', {}, 'wrong number of args for upper: want 1 got 0'],
    ['an int and a float64 do not compare', '{{ eq .n 1 }}', { n: 1 }, 'error calling eq: incompatible types for comparison: float64 and int'],
  ])('%s', (_name, text, data, reason) => {
    expect(failure(text, data).reason).toBe(reason);
  });

  it('a float64 literal compares with a float64 value, and len is an int', () => {
    expect(render('{{ eq .n 1.0 }} {{ gt (len .l) 0 }}', { n: 1, l: ['a'] })).toBe('true true');
  });
});

describe('errors name the file and line', () => {
  it('an unknown function is a parse error', () => {
    const err = failure('line one\n{{ nope . }}');
    expect(err.message).toBe('t:2: function "nope" not defined');
    expect(err).toMatchObject({ template: 't', line: 2, column: undefined });
  });

  it('an unterminated action is a parse error', () => {
    expect(failure('{{ .a ').message).toBe('t:1: unclosed action');
  });

  it('an unknown template name to execute', () => {
    expect(() => new TemplateSet().execute('missing', {})).toThrow('no template "missing" associated with template "gotpl"');
  });
});
