/**
 * Helm's own functions: include, tpl, required, fail, the converters and lookup, with Helm's
 * results and error chains.
 */
import { describe, expect, it } from 'vitest';
import { TemplateError } from './template-error.ts';
import { TemplateSet } from './template-set.ts';

function render(text: string, data: unknown = {}): string {
  const set = new TemplateSet();
  set.parse('t', text);
  return set.execute('t', data);
}

function failure(text: string, data: unknown = {}): TemplateError {
  try {
    render(text, data);
  } catch (err) {
    if (err instanceof TemplateError) return err;
    throw err;
  }
  throw new Error(`expected ${JSON.stringify(text)} to fail`);
}

const VALUES = {
  Values: {
    name: 'N',
    resources: { limits: { cpu: '100m', memory: '128Mi' } },
    tplString: '{{ .Values.name }}-x',
    json: { b: '<x>', a: 1 },
  },
};

describe('include', () => {
  it('runs a definition with the given data and returns its text', () => {
    expect(render('{{ define "l" }}app: {{ .name }}{{ end }}labels:{{ include "l" .Values | nindent 2 }}', VALUES)).toBe('labels:\n  app: N');
  });

  it('of an unknown name is an error', () => {
    expect(failure('{{ include "nope" . }}').reason).toBe('error calling include: template: no template "nope" associated with template "gotpl"');
  });

  it('stops endless recursion the way Helm does', () => {
    const err = failure('{{ define "loop" }}{{ include "loop" . }}{{ end }}{{ include "loop" . }}');
    expect(err.message).toContain('rendering template has a nested reference name: loop: unable to execute template');
    expect(err.template).toBe('t');
  });

  it("an error inside keeps Go's chain and points at the failing action", () => {
    const err = failure('{{ define "inner" }}\n{{ .a.b }}{{ end }}{{ include "inner" . }}');
    expect(err.message).toBe(
      't:2:22: executing "t" at <include "inner" .>: error calling include: template: t:2:5: executing "inner" at <.a.b>: nil pointer evaluating interface {}.b',
    );
    expect(err).toMatchObject({ template: 't', line: 2, column: 5, reason: 'nil pointer evaluating interface {}.b' });
  });
});

describe('tpl', () => {
  it('renders a value as a template with the given data', () => {
    expect(render('{{ tpl .Values.tplString . }}', VALUES)).toBe('N-x');
  });

  it('removes <no value>, as Helm does', () => {
    expect(render('[{{ tpl "{{ .missing }}" . }}]')).toBe('[]');
  });

  it('keeps definitions made in its text to itself', () => {
    expect(render('{{ tpl "{{ define \\"z\\" }}Z{{ end }}{{ include \\"z\\" . }}" . }}')).toBe('Z');
    expect(failure('{{ tpl "{{ define \\"z\\" }}Z{{ end }}" . }}{{ include "z" . }}').reason).toBe(
      'error calling include: template: no template "z" associated with template "gotpl"',
    );
  });

  it('sees the definitions of the set it runs in', () => {
    expect(render('{{ define "d" }}D{{ end }}{{ tpl "{{ include \\"d\\" . }}" . }}')).toBe('D');
  });

  it('reports a parse error with the text', () => {
    expect(failure('{{ tpl "{{ nope }}" . }}').reason).toBe('error calling tpl: cannot parse template "{{ nope }}": template: t:1: function "nope" not defined');
  });

  it('reports an execution error at the tpl call', () => {
    const err = failure('\n{{ tpl "{{ .a.b }}" . }}');
    expect(err.reason).toBe(
      'error calling tpl: error during tpl function execution for "{{ .a.b }}": template: t:1:5: executing "t" at <.a.b>: nil pointer evaluating interface {}.b',
    );
    expect(err).toMatchObject({ template: 't', line: 2 });
  });
});

describe('required and fail', () => {
  it('required passes a set value through and fails on nil or ""', () => {
    expect(render('{{ required "x is required" .x }} {{ .x | required "msg" }}', { x: 'v' })).toBe('v v');
    expect(failure('{{ required "x is required" .x }}').reason).toBe('error calling required: x is required');
    expect(failure('{{ required "x is required" .x }}', { x: '' }).reason).toBe('error calling required: x is required');
    expect(render('{{ required "zero is set" .x }}', { x: 0 })).toBe('0');
  });

  it('fail stops with its message', () => {
    expect(failure('{{ fail "stop here" }}').reason).toBe('error calling fail: stop here');
  });
});

describe('converters', () => {
  it.each([
    ['toYaml, trimmed, under nindent', 'resources:{{ toYaml .Values.resources | nindent 2 }}', 'resources:\n  limits:\n    cpu: 100m\n    memory: 128Mi'],
    ['toYaml of nothing', '{{ toYaml .missing }}', 'null'],
    ['toYaml swallows errors', '[{{ toYaml (list (float64 "NaN")) }}]', '[]'],
    ['fromYaml', '{{ (fromYaml "a: 1\\nb: [x]").a }} {{ (fromYaml "a: 1\\nb: [x]").b }}', '1 [x]'],
    [
      'fromYaml of a list puts the error under Error',
      '{{ (fromYaml "- a").Error }}',
      'error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go value of type map[string]interface {}',
    ],
    [
      'fromYamlArray',
      '{{ fromYamlArray "- 1\\n- b" }} {{ fromYamlArray "a: 1" }}',
      '[1 b] [error unmarshaling JSON: while decoding JSON: json: cannot unmarshal object into Go value of type []interface {}]',
    ],
    ['toJson escapes HTML and sorts keys', '{{ toJson .Values.json }}', '{"a":1,"b":"\\u003cx\\u003e"}'],
    ['toRawJson does not escape', '{{ toRawJson .Values.json }}', '{"a":1,"b":"<x>"}'],
    ['toPrettyJson', '{{ toPrettyJson (dict "a" (list 1)) }}', '{\n  "a": [\n    1\n  ]\n}'],
    [
      'fromJson',
      '{{ (fromJson "{\\"a\\":[1,2]}").a }} {{ (fromJson "[1]").Error }}',
      '[1 2] json: cannot unmarshal array into Go value of type map[string]interface {}',
    ],
    ['fromJsonArray', '{{ fromJsonArray "[1,\\"a\\"]" }}', '[1 a]'],
    ['lookup finds nothing without a cluster', '{{ lookup "v1" "Secret" "ns" "name" }} {{ if lookup "v1" "Secret" "ns" "name" }}yes{{ else }}no{{ end }}', 'map[] no'],
  ])('%s', (_name, text, expected) => {
    expect(render(text, VALUES)).toBe(expected);
  });

  it('mustToYaml fails where toYaml swallows', () => {
    expect(failure('{{ mustToYaml (list (float64 "NaN")) }}').reason).toBe('error calling mustToYaml: json: unsupported value: NaN');
  });

  it('toToml fails when called, not when parsed', () => {
    expect(render('{{ if false }}{{ toToml . }}{{ end }}ok')).toBe('ok');
    expect(failure('{{ toToml . }}').reason).toBe("error calling toToml: toToml is not supported by meshmirror's chart renderer");
  });

  it('env and expandenv do not exist, as in Helm', () => {
    expect(failure('{{ env "HOME" }}').message).toBe('t:1: function "env" not defined');
    expect(failure('{{ expandenv "$HOME" }}').message).toBe('t:1: function "expandenv" not defined');
  });
});
