/**
 * Sprig's list functions: new lists out, Go's DeepEqual for membership (an int is not a float64).
 */
import { describe, expect, it } from 'vitest';
import { TemplateError } from './template-error.ts';
import { TemplateSet } from './template-set.ts';

function render(text: string, data: unknown = {}): string {
  const set = new TemplateSet();
  set.parse('t', text);
  return set.execute('t', data);
}

function reason(text: string, data: unknown = {}): string {
  try {
    render(text, data);
  } catch (err) {
    if (err instanceof TemplateError) return err.reason;
    throw err;
  }
  throw new Error(`expected ${JSON.stringify(text)} to fail`);
}

const DATA = { floats: [1, 2], list: ['a', 'b'] };

describe('sprig lists', () => {
  it.each([
    ['list and tuple', '{{ list 1 "a" }} {{ tuple 1 }}', '[1 a] [1]'],
    ['append and push leave the list alone', '{{ $l := list 1 }}{{ append $l 2 }} {{ push $l 3 }} {{ $l }}', '[1 2] [1 3] [1]'],
    ['prepend', '{{ prepend (list 1) 0 }}', '[0 1]'],
    ['first, last, rest, initial', '{{ first .list }} {{ last .list }} {{ rest .list }} {{ initial .list }}', 'a b [b] [a]'],
    ['first of an empty list is nil, rest of one is empty', '{{ first (list) }} {{ rest (list) }}', '<no value> []'],
    ['uniq keeps an int and a string apart', '{{ uniq (list 1 2 1 "1") }}', '[1 2 1]'],
    ['without', '{{ without (list 1 2 3 2) 2 }}', '[1 3]'],
    ['has compares with Go types', '{{ has 2 (list 1 2) }} {{ has 2 .floats }} {{ has 2.0 .floats }} {{ has 1 nil }}', 'true false true false'],
    ['compact drops empty values', '{{ compact (list 1 "" nil 0 "a" false) }}', '[1 a]'],
    ['reverse', '{{ reverse (list 1 2 3) }}', '[3 2 1]'],
    ["sprig's slice", '{{ slice (list 1 2 3 4) 1 3 }} {{ slice (list 1 2 3) 1 }} {{ slice (list 1 2) }}', '[2 3] [2 3] [1 2]'],
    ['concat', '{{ concat (list 1) (list 2 3) }}', '[1 2 3]'],
    ['chunk', '{{ chunk 2 (list 1 2 3) }}', '[[1 2] [3]]'],
    ['until, untilStep, seq', '{{ until 3 }} {{ untilStep 1 6 2 }} {{ seq 3 }} {{ seq 5 -2 1 }} {{ seq 2 4 }}', '[0 1 2] [1 3 5] 1 2 3 5 3 1 2 3 4'],
    ['must forms give the same results', '{{ mustFirst .list }} {{ mustUniq (list 1 1) }} {{ mustAppend .list "c" }}', 'a [1] [a b c]'],
  ])('%s', (_name, text, expected) => {
    expect(render(text, DATA)).toBe(expected);
  });

  it.each([
    ['first of nothing', '{{ first .missing }}', 'error calling first: runtime error: invalid memory address or nil pointer dereference'],
    ['append to a string', '{{ append "x" 1 }}', 'error calling append: Cannot push on type string'],
    ['mustLast of a map', '{{ mustLast (dict) }}', 'error calling mustLast: Cannot find last on type map'],
    ['concat of an int', '{{ concat 1 }}', 'error calling concat: Cannot concat type int as list'],
  ])('%s', (_name, text, expected) => {
    expect(reason(text, DATA)).toBe(expected);
  });
});
