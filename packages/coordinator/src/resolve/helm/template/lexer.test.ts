/**
 * Go's text/template lexer: the tokens of small inputs, as lex.go produces them.
 */
import { describe, expect, it } from 'vitest';
import { lex } from './lexer.ts';

function tokens(input: string): string[] {
  return lex(input).map((token) => (token.kind === 'eof' ? 'eof' : `${token.kind}:${token.value}`));
}

describe('lex', () => {
  it.each([
    ['text and a field', 'a{{.X}}b', ['text:a', 'leftDelim:{{', 'field:.X', 'rightDelim:}}', 'text:b', 'eof']],
    ['trim markers remove the spaces next to them', 'a \n {{- 3 -}} \n b', ['text:a', 'leftDelim:{{', 'number:3', 'rightDelim:}}', 'text:b', 'eof']],
    ['a minus right after the delimiter is a number', '{{-3}}', ['leftDelim:{{', 'number:-3', 'rightDelim:}}', 'eof']],
    [
      'a declaration and a pipeline',
      '{{$x := .a | printf "%s" `r`}}',
      [
        'leftDelim:{{',
        'variable:$x',
        'space: ',
        'declare::=',
        'space: ',
        'field:.a',
        'space: ',
        'pipe:|',
        'space: ',
        'identifier:printf',
        'space: ',
        'string:"%s"',
        'space: ',
        'rawString:`r`',
        'rightDelim:}}',
        'eof',
      ],
    ],
    ['field chains are separate tokens', '{{.a.b $.c}}', ['leftDelim:{{', 'field:.a', 'field:.b', 'space: ', 'variable:$', 'field:.c', 'rightDelim:}}', 'eof']],
    [
      'literals and keywords',
      "{{'a' 1.5 0x1F true nil . (else)}}",
      [
        'leftDelim:{{',
        "charConstant:'a'",
        'space: ',
        'number:1.5',
        'space: ',
        'number:0x1F',
        'space: ',
        'bool:true',
        'space: ',
        'nil:nil',
        'space: ',
        'dot:.',
        'space: ',
        'leftParen:(',
        'else:else',
        'rightParen:)',
        'rightDelim:}}',
        'eof',
      ],
    ],
    ['a comment vanishes', 'a{{/* c */}}b', ['text:a', 'text:b', 'eof']],
    ['a newline inside an action is a space', '{{ .a\n .b }}', ['leftDelim:{{', 'space: ', 'field:.a', 'space:\n ', 'field:.b', 'space: ', 'rightDelim:}}', 'eof']],
  ])('%s', (_name, input, expected) => {
    expect(tokens(input)).toEqual(expected);
  });

  it.each([
    ['unterminated string', '{{ "abc }}', 'unterminated quoted string'],
    ['unterminated raw string', '{{ `abc }}', 'unterminated raw quoted string'],
    ['unclosed action', '{{ .a', 'unclosed action'],
    ['unclosed comment', '{{/* x }}', 'unclosed comment'],
    ['comment without its delimiter', '{{/* x */ }}', 'comment ends before closing delimiter'],
    ['bad character after an identifier', '{{ a=b }}', "bad character U+003D '='"],
    ['unexpected right paren', '{{ ) }}', 'unexpected right paren'],
    ['unclosed left paren', '{{ ( }}', 'unclosed left paren'],
    ['unrecognized character', '{{ \u0001 }}', 'unrecognized character in action: U+0001'],
    ['bad number', '{{ 3k }}', 'bad number syntax: "3k"'],
  ])('%s', (_name, input, message) => {
    const last = lex(input).at(-1)!;
    expect(last).toMatchObject({ kind: 'error', value: message });
  });
});
