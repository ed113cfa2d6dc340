/**
 * Go's text/template parser: the trees it builds (through Go's node String forms) and its errors.
 */
import { describe, expect, it } from 'vitest';
import { nodeString } from './ast.ts';
import { parseTemplate } from './parser.ts';
import { TemplateError } from './template-error.ts';

const ANY_FUNCTION = (): boolean => true;

function parsed(text: string): string {
  return nodeString(parseTemplate('t', text, ANY_FUNCTION).get('t')!.root);
}

function parseError(text: string, hasFunction: (name: string) => boolean = ANY_FUNCTION): TemplateError {
  try {
    parseTemplate('t', text, hasFunction);
  } catch (err) {
    if (err instanceof TemplateError) return err;
    throw err;
  }
  throw new Error(`expected ${JSON.stringify(text)} not to parse`);
}

describe('parse', () => {
  it.each([
    ['a pipeline', '{{ .a | f "c" 1 }}', '{{.a | f "c" 1}}'],
    ['else if nests an if in the else branch', '{{if .a}}x{{else if .b}}y{{end}}', '{{if .a}}x{{else}}{{if .b}}y{{end}}{{end}}'],
    ['else with nests a with', '{{with .a}}x{{else with .b}}y{{end}}', '{{with .a}}x{{else}}{{with .b}}y{{end}}{{end}}'],
    ['range with two variables', '{{range $i, $v := .l}}{{$v}}{{end}}', '{{range $i, $v := .l}}{{$v}}{{end}}'],
    ['a variable field', '{{with $x := .a}}{{$x.b.c}}{{end}}', '{{with $x := .a}}{{$x.b.c}}{{end}}'],
    ['fields of a parenthesized pipeline', '{{(f .a).b.c}}', '{{(f .a).b.c}}'],
    ['template with a pipeline', '{{template "x" .}}', '{{template "x" .}}'],
    ['a define is its own tree', 'a{{define "x"}}X{{end}}b', 'ab'],
  ])('%s', (_name, text, expected) => {
    expect(parsed(text)).toBe(expected);
  });

  it('define and block add trees', () => {
    const trees = parseTemplate('t', '{{define "x"}}X{{end}}{{block "y" .}}Y{{end}}', ANY_FUNCTION);
    expect([...trees.keys()].sort()).toEqual(['t', 'x', 'y']);
    expect(nodeString(trees.get('y')!.root)).toBe('Y');
  });

  it.each([
    ['an unknown function, with its line', 'a\nb\n{{ nope }}', 't:3: function "nope" not defined'],
    ['a stray end', '{{ end }}', 't:1: unexpected {{end}}'],
    ['a stray else', '{{ else }}', 't:1: unexpected {{else}}'],
    ['a missing end', '{{ if .a }}', 't:1: unexpected EOF'],
    ['an undefined variable', '{{ $x }}', 't:1: undefined variable "$x"'],
    ['define inside an action', '{{ define "a" }}{{ define "b" }}{{ end }}{{ end }}', 't:1: unexpected <define> in command'],
    ['template needs a name', '{{ template .x }}', 't:1: unexpected ".x" in template clause'],
    ['an empty action', '{{ }}', 't:1: missing value for command'],
    ['an empty if', '{{ if }}{{ end }}', 't:1: missing value for if'],
    ['too many range variables', '{{ range $a, $b, $c := . }}{{ end }}', 't:1: too many declarations in range'],
    ['an integer too large', '{{ 99999999999999999999 }}', 't:1: integer overflow: "99999999999999999999"'],
    ['a field after a literal', '{{ "a".b }}', 't:1: unexpected . after term "\\"a\\""'],
    ['a lexer error is a parse error', '{{ "abc }}', 't:1: unterminated quoted string'],
  ])('%s', (_name, text, message) => {
    expect(parseError(text, (name) => name !== 'nope').message).toBe(message);
  });
});
