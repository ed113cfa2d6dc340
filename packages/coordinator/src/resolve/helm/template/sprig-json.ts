/**
 * Sprig's JSON functions (defaults.go). Helm replaces `toJson`, `mustToJson` and `fromJson` with
 * its own (helm-functions.ts); these are the rest: pretty and raw encodings, and `mustFromJson`.
 */
import { goFunc, type TemplateFunction } from './functions.ts';
import { marshalJson, unmarshalJson } from './go-json.ts';

function swallow(encode: () => string): string {
  try {
    return encode();
  } catch {
    return '';
  }
}

export const SPRIG_JSON_FUNCTIONS: ReadonlyArray<[string, TemplateFunction]> = [
  [
    'fromJson',
    goFunc(['string'], (text) => {
      try {
        return unmarshalJson(text);
      } catch {
        return null;
      }
    }),
  ],
  ['mustFromJson', goFunc(['string'], unmarshalJson)],
  ['toJson', goFunc(['any'], (v) => swallow(() => marshalJson(v)))],
  ['mustToJson', goFunc(['any'], (v) => marshalJson(v))],
  ['toPrettyJson', goFunc(['any'], (v) => swallow(() => marshalJson(v, { indent: '  ' })))],
  ['mustToPrettyJson', goFunc(['any'], (v) => marshalJson(v, { indent: '  ' }))],
  // Sprig's toRawJson panics on an error instead of returning "".
  ['toRawJson', goFunc(['any'], (v) => marshalJson(v, { escapeHtml: false }))],
  ['mustToRawJson', goFunc(['any'], (v) => marshalJson(v, { escapeHtml: false }))],
];
