/**
 * The JSONPath expressions oc-mirror reads images at (kubectl's template form, `{.spec.containers[*].image}`).
 * The subset charts' `imagePaths` use: `.field`, `['field']`, `[n]`, `[*]`, `..field` (any depth), and
 * several paths in one template. Filters (`?(...)`) and slices are refused by name rather than
 * silently matching nothing.
 */

type Step = { kind: 'field'; name: string } | { kind: 'index'; index: number } | { kind: 'all' } | { kind: 'descend'; name: string };

/** oc-mirror's defaults (CronJob templates are not among them, as in oc-mirror). */
export const DEFAULT_IMAGE_PATHS = [
  '{.spec.template.spec.initContainers[*].image}',
  '{.spec.template.spec.containers[*].image}',
  '{.spec.initContainers[*].image}',
  '{.spec.containers[*].image}',
];

export class ImagePathError extends Error {
  readonly expression: string;

  constructor(expression: string, message: string) {
    super(`image path ${JSON.stringify(expression)}: ${message}`);
    this.name = 'ImagePathError';
    this.expression = expression;
  }
}

/** Compiles one expression; throws `ImagePathError` for what it does not support. */
export function compileImagePath(expression: string): (document: unknown) => unknown[] {
  const trimmed = expression.trim();
  const inner = trimmed.startsWith('{') && trimmed.endsWith('}') ? trimmed.slice(1, -1) : trimmed;
  const paths = inner
    .split(/\}\s*\{/)
    .map((p) => p.trim())
    .filter((p) => p !== '');
  if (paths.length === 0) throw new ImagePathError(expression, 'is empty');
  const compiled = paths.map((p) => parsePath(p, expression));
  return (document) => compiled.flatMap((steps) => evaluate(steps, [document]));
}

function parsePath(text: string, expression: string): Step[] {
  const steps: Step[] = [];
  let i = text.startsWith('$') ? 1 : 0;
  const name = /^[A-Za-z0-9_\-]+/;
  while (i < text.length) {
    const rest = text.slice(i);
    if (rest.startsWith('..')) {
      const m = name.exec(rest.slice(2));
      if (m === null) throw new ImagePathError(expression, `expected a field name after ".." at ${i}`);
      steps.push({ kind: 'descend', name: m[0] });
      i += 2 + m[0].length;
    } else if (rest.startsWith('.')) {
      const m = name.exec(rest.slice(1));
      if (m === null) throw new ImagePathError(expression, `expected a field name after "." at ${i}`);
      steps.push({ kind: 'field', name: m[0] });
      i += 1 + m[0].length;
    } else if (rest.startsWith('[')) {
      const close = rest.indexOf(']');
      if (close === -1) throw new ImagePathError(expression, `unclosed "[" at ${i}`);
      const body = rest.slice(1, close).trim();
      if (body === '*') steps.push({ kind: 'all' });
      else if (/^-?\d+$/.test(body)) steps.push({ kind: 'index', index: Number(body) });
      else if (/^'[^']*'$|^"[^"]*"$/.test(body)) steps.push({ kind: 'field', name: body.slice(1, -1) });
      else throw new ImagePathError(expression, `"[${body}]" is not supported (only [*], [n] and ['name'])`);
      i += close + 1;
    } else {
      throw new ImagePathError(expression, `unexpected ${JSON.stringify(rest[0])} at ${i}`);
    }
  }
  return steps;
}

function evaluate(steps: Step[], start: unknown[]): unknown[] {
  let current = start;
  for (const step of steps) {
    const next: unknown[] = [];
    for (const value of current) {
      switch (step.kind) {
        case 'field':
          if (isMap(value) && step.name in value) next.push(value[step.name]);
          break;
        case 'index':
          if (Array.isArray(value)) {
            const item: unknown = value[step.index < 0 ? value.length + step.index : step.index];
            if (item !== undefined) next.push(item);
          }
          break;
        case 'all':
          if (Array.isArray(value)) next.push(...(value as unknown[]));
          else if (isMap(value)) next.push(...Object.values(value));
          break;
        case 'descend':
          descend(value, step.name, next);
          break;
      }
    }
    current = next;
  }
  return current;
}

function descend(value: unknown, name: string, out: unknown[]): void {
  if (Array.isArray(value)) {
    for (const item of value) descend(item, name, out);
  } else if (isMap(value)) {
    if (name in value) out.push(value[name]);
    for (const item of Object.values(value)) descend(item, name, out);
  }
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
