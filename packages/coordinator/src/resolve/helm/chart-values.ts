/**
 * Which subcharts a chart renders with and which values each gets, following Helm's
 * `chartutil.ProcessDependencies` (aliases, `tags`, `condition`) and `CoalesceValues` (user values over
 * chart defaults, a subchart's defaults under the parent's key of its name, `global` handed down,
 * `null` deleting a default). `import-values` is not applied: it moves values between charts for
 * their own templates, and a chart that needs it for an image reference renders that image from
 * its defaults instead (the same as `helm template` with an older Helm).
 */
import { satisfies, validRange } from 'semver';
import type { LoadedChart } from './chart.ts';
import { chartError } from './chart.ts';

type Table = Record<string, unknown>;

/** One chart of the render: its name (an alias when the parent gives one), path, values and enabled subcharts. */
export interface ChartNode {
  chart: LoadedChart;
  /** `metadata.name`, or the alias the parent's dependency gives it. */
  name: string;
  /** Helm's `ChartFullPath`: `parent/charts/name/...`; template names start with it. */
  fullPath: string;
  /** `.Values` for this chart's templates. */
  values: Table;
  children: ChartNode[];
}

interface Shape {
  chart: LoadedChart;
  name: string;
  children: Shape[];
}

/** Applies dependencies and coalesces `userValues` (left untouched) over the chart's defaults. */
export function prepareChart(chart: LoadedChart, userValues: Table, where: string): ChartNode {
  const top: Shape = { chart, name: chart.metadata.name, children: [] };
  enableDependencies(top, userValues, '', where);
  const values = coalesce(top, deepCopy(userValues) as Table);
  return toNode(top, values, top.name);
}

function toNode(shape: Shape, values: Table, fullPath: string): ChartNode {
  return {
    chart: shape.chart,
    name: shape.name,
    fullPath,
    values,
    children: shape.children.map((child) => toNode(child, tableAt(values, child.name) ?? {}, `${fullPath}/charts/${child.name}`)),
  };
}

function enableDependencies(shape: Shape, userValues: Table, path: string, where: string): void {
  const { chart } = shape;
  const declared = chart.metadata.dependencies;
  const compatible = (range: string | undefined, version: string): boolean =>
    range === undefined || range === '' || validRange(range) === null || satisfies(version, range, { includePrerelease: true });
  const candidates: Shape[] = [];
  // Charts under charts/ that no dependency names render as they are.
  for (const sub of chart.subcharts) {
    if (!declared.some((d) => d.name === sub.metadata.name && compatible(d.version, sub.metadata.version))) {
      candidates.push({ chart: sub, name: sub.metadata.name, children: [] });
    }
  }
  const dependencies = declared.map((d) => ({ ...d, enabled: true, key: d.alias ?? d.name }));
  for (const dependency of dependencies) {
    const sub = chart.subcharts.find((c) => c.metadata.name === dependency.name && compatible(dependency.version, c.metadata.version));
    if (sub === undefined) {
      throw chartError(
        where,
        `chart ${chart.metadata.name} depends on ${dependency.name}${dependency.version === undefined ? '' : ` ${dependency.version}`}, which is not in its charts/ folder`,
      );
    }
    candidates.push({ chart: sub, name: dependency.key, children: [] });
  }
  shape.children = candidates;
  const cvals = coalesce(shape, deepCopy(userValues) as Table);
  const tags = tableAt(cvals, 'tags');
  for (const dependency of dependencies) {
    if (tags !== undefined) {
      const set = dependency.tags.map((t) => tags[t]).filter((v): v is boolean => typeof v === 'boolean');
      if (set.length > 0 && !set.includes(true)) dependency.enabled = false;
    }
    for (const condition of (dependency.condition ?? '').split(',')) {
      const value = pathValue(cvals, `${path}${condition.trim()}`);
      if (condition.trim() !== '' && typeof value === 'boolean') {
        dependency.enabled = value;
        break;
      }
    }
  }
  const disabled = new Set(dependencies.filter((d) => !d.enabled).map((d) => d.key));
  shape.children = candidates.filter((c) => !disabled.has(c.name));
  for (const child of shape.children) enableDependencies(child, cvals, `${path}${child.name}.`, where);
}

/** Helm's `coalesce`: the chart's defaults under `dest`, then each subchart's under `dest[name]`. */
function coalesce(shape: Shape, dest: Table): Table {
  coalesceValues(shape.chart.values, dest, shape);
  for (const child of shape.children) {
    const existing = dest[child.name];
    const sub: Table = isTable(existing) ? existing : {};
    dest[child.name] = sub;
    coalesceGlobals(sub, dest);
    coalesce(child, sub);
  }
  return dest;
}

function coalesceValues(defaults: Table, dest: Table, shape: Shape): void {
  for (const [key, value] of Object.entries(deepCopy(defaults) as Table)) {
    if (!(key in dest)) {
      dest[key] = value;
      continue;
    }
    const given = dest[key];
    if (given === null) {
      delete dest[key];
    } else if (isTable(given) && isTable(value)) {
      // Values for a subchart are merged (a null there is left for the subchart's own pass).
      coalesceTables(
        given,
        value,
        shape.children.some((c) => c.name === key),
      );
    }
  }
}

function coalesceTables(dest: Table, src: Table, merge: boolean): void {
  for (const [key, value] of Object.entries(src)) {
    if (!(key in dest)) dest[key] = value;
    else if (dest[key] === null && !merge) delete dest[key];
    else if (isTable(value) && isTable(dest[key])) coalesceTables(dest[key], value, merge);
  }
}

/** The parent's `global` wins over the subchart's, key by key, tables merged top-down. */
function coalesceGlobals(dest: Table, src: Table): void {
  const destGlobal = dest['global'] ?? {};
  const srcGlobal = src['global'] ?? {};
  if (!isTable(destGlobal) || !isTable(srcGlobal)) return;
  for (const [key, value] of Object.entries(srcGlobal)) {
    if (isTable(value)) {
      const copy = deepCopy(value) as Table;
      const existing = destGlobal[key];
      if (isTable(existing)) coalesceTables(copy, existing, true);
      else if (existing !== undefined) continue;
      destGlobal[key] = copy;
    } else if (!isTable(destGlobal[key])) {
      destGlobal[key] = value;
    }
  }
  dest['global'] = destGlobal;
}

/** `a.b.c` in a values table (Helm's `PathValue`). */
function pathValue(values: Table, dotted: string): unknown {
  let current: unknown = values;
  for (const part of dotted.split('.')) {
    if (!isTable(current) || !(part in current)) return undefined;
    current = current[part];
  }
  return current;
}

function tableAt(values: Table, key: string): Table | undefined {
  const value = values[key];
  return isTable(value) ? value : undefined;
}

export function isTable(value: unknown): value is Table {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function deepCopy(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(deepCopy);
  if (isTable(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, deepCopy(v)]));
  return value;
}
