/**
 * `n` / `last` pagination of `_catalog` and `tags/list` with an RFC 5988 `Link: <…>; rel="next"`,
 * as the distribution spec asks for tags and distribution does for both: items in lexical order,
 * `last` exclusive, `n=0` an empty page without a link, a bad `n` refused with
 * PAGINATION_NUMBER_INVALID.
 */

export type Page = { items: string[]; next: string | undefined } | { invalid: string };

export interface PageOptions {
  /** Page size when the request gives no `n`; undefined lists everything. */
  defaultSize?: number;
  /** A larger `n` is served as this many, with a link to the rest (the spec allows fewer with a link). */
  maxSize?: number;
}

/**
 * The page of `sorted` a request's query asks for, and the query of the next page (`last=…&n=…`,
 * the order distribution writes them in) when there is one.
 */
export function paginate(sorted: readonly string[], query: URLSearchParams, options: PageOptions = {}): Page {
  const last = query.get('last');
  const n = query.get('n');
  let size = options.defaultSize;
  if (n !== null && n !== '') {
    if (!/^\d+$/.test(n)) return { invalid: n };
    size = Number(n);
  }
  if (size !== undefined && options.maxSize !== undefined) size = Math.min(size, options.maxSize);
  let from = 0;
  if (last !== null && last !== '') {
    from = sorted.findIndex((item) => item > last);
    if (from < 0) from = sorted.length;
  }
  if (size === undefined) return { items: sorted.slice(from), next: undefined };
  const items = sorted.slice(from, from + size);
  const lastItem = items[items.length - 1];
  const more = from + size < sorted.length && lastItem !== undefined;
  return { items, next: more ? `last=${encodeURIComponent(lastItem)}&n=${size}` : undefined };
}
