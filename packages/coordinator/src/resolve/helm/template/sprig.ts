/**
 * Sprig v3's function map (Masterminds/sprig `TxtFuncMap`), as Helm 3 takes it: everything except
 * `env` and `expandenv`, which Helm deletes so charts cannot read the environment (a chart that
 * calls them fails to parse, in Helm and here).
 */
import type { FunctionMap, TemplateFunction } from './functions.ts';
import { SPRIG_CRYPTO_FUNCTIONS } from './sprig-crypto.ts';
import { SPRIG_DATE_FUNCTIONS } from './sprig-dates.ts';
import { SPRIG_DICT_FUNCTIONS } from './sprig-dicts.ts';
import { SPRIG_JSON_FUNCTIONS } from './sprig-json.ts';
import { SPRIG_LIST_FUNCTIONS } from './sprig-lists.ts';
import { SPRIG_MATH_FUNCTIONS } from './sprig-math.ts';
import { SPRIG_PATH_FUNCTIONS } from './sprig-paths.ts';
import { SPRIG_REGEX_FUNCTIONS } from './sprig-regex.ts';
import { SPRIG_STRING_FUNCTIONS } from './sprig-strings.ts';
import { SPRIG_TYPE_FUNCTIONS } from './sprig-types.ts';

export const SPRIG_FUNCTIONS: FunctionMap = new Map<string, TemplateFunction>([
  ...SPRIG_STRING_FUNCTIONS,
  ...SPRIG_LIST_FUNCTIONS,
  ...SPRIG_DICT_FUNCTIONS,
  ...SPRIG_MATH_FUNCTIONS,
  ...SPRIG_TYPE_FUNCTIONS,
  ...SPRIG_REGEX_FUNCTIONS,
  ...SPRIG_CRYPTO_FUNCTIONS,
  ...SPRIG_JSON_FUNCTIONS,
  ...SPRIG_DATE_FUNCTIONS,
  ...SPRIG_PATH_FUNCTIONS,
]);
