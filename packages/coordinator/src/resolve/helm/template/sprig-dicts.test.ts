/**
 * Sprig's dict functions, including mergo's merge rules that chart helpers rely on.
 */
import { describe, expect, it } from 'vitest';
import { TemplateSet } from './template-set.ts';

function render(text: string, data: unknown = {}): string {
  const set = new TemplateSet();
  set.parse('t', text);
  return set.execute('t', data);
}

describe('sprig dicts', () => {
  it.each([
    ['dict with an odd count gives the last key ""', '{{ dict "a" 1 "b" }}', 'map[a:1 b:]'],
    ['dict keys are strings', '{{ dict 1 "x" }}', 'map[1:x]'],
    ['get, and "" for a missing key', '{{ get (dict "a" 1) "a" }}[{{ get (dict) "z" }}]', '1[]'],
    ['set and unset change the dict', '{{ $d := dict "a" 1 }}{{ $_ := set $d "b" 2 }}{{ $_ := unset $d "a" }}{{ $d }}', 'map[b:2]'],
    ['hasKey', '{{ hasKey (dict "a" nil) "a" }} {{ hasKey (dict) "a" }}', 'true false'],
    ['keys, sorted, and values in key order', '{{ keys (dict "b" 1 "a" 2) }} {{ values (dict "b" 1 "a" 2) }}', '[a b] [2 1]'],
    ['pluck', '{{ pluck "a" (dict "a" 1) (dict "b" 2) (dict "a" 3) }}', '[1 3]'],
    ['pick and omit', '{{ pick (dict "a" 1 "b" 2 "c" 3) "a" "c" }} {{ omit (dict "a" 1 "b" 2) "a" }}', 'map[a:1 c:3] map[b:2]'],
    ['dig', '{{ dig "a" "b" "def" (dict "a" (dict "b" "x")) }} {{ dig "a" "z" "def" (dict "a" (dict)) }}', 'x def'],
    [
      'merge keeps the destination and merges maps deeply',
      '{{ $d := dict "a" 1 "b" (dict "c" 2) }}{{ $_ := merge $d (dict "a" 9 "b" (dict "d" 3) "e" 4) }}{{ $d }}',
      'map[a:1 b:map[c:2 d:3] e:4]',
    ],
    ['mergeOverwrite lets later values win', '{{ mergeOverwrite (dict "a" 1 "b" (dict "c" 2)) (dict "a" 9 "b" (dict "d" 3)) }}', 'map[a:9 b:map[c:2 d:3]]'],
    ['merge fills empty values', '{{ merge (dict "a" "" "b" 0) (dict "a" "x" "b" 5) }}', 'map[a:x b:5]'],
    ['mergeOverwrite writes false over true', '{{ mergeOverwrite (dict "a" true) (dict "a" false) }}', 'map[a:false]'],
    ['merge does not replace a non-empty list', '{{ merge (dict "l" (list 1)) (dict "l" (list 2)) }}', 'map[l:[1]]'],
    ['deepCopy is independent', '{{ $a := dict "x" (dict "y" 1) }}{{ $b := deepCopy $a }}{{ $_ := set $b.x "y" 2 }}{{ $a.x.y }} {{ $b.x.y }}', '1 2'],
  ])('%s', (_name, text, expected) => {
    expect(render(text)).toBe(expected);
  });

  it('a dict from Values is merged in place, as in Go', () => {
    const data = { Values: { labels: { app: 'x' } } };
    expect(render('{{ $_ := merge .Values.labels (dict "team" "y") }}{{ .Values.labels }}', data)).toBe('map[app:x team:y]');
  });
});
