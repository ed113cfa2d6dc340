/**
 * Helm's engine.Render for a chart's templates: every template of the chart and its subcharts is
 * parsed into one set (so `include` finds a `define` from any file), in Helm's order (deepest paths
 * first, so a parent chart's definition of a name wins over a subchart's), then every template
 * whose file name does not start with "_" is executed, and "<no value>" is removed from the output
 * as Helm does.
 */
import { compareGoStrings } from './go-values.ts';
import { TemplateSet } from './template-set.ts';

/** One template file of a chart, by its full Helm name, e.g. "mychart/templates/deployment.yaml" or "mychart/charts/redis/templates/_helpers.tpl". */
export interface ChartTemplate {
  name: string;
  text: string;
}

export interface RenderOptions {
  /** Helm's `--strict`: a missing value is an error ("map has no entry for key") instead of nothing. */
  strict?: boolean;
}

/** Helm's sortTemplates: more path segments first; equal depth in reverse name order. */
function helmParseOrder(names: string[]): string[] {
  const depth = (name: string): number => name.split('/').length;
  return [...names].sort((a, b) => depth(b) - depth(a) || compareGoStrings(b, a));
}

function baseName(name: string): string {
  return name.slice(name.lastIndexOf('/') + 1);
}

/**
 * Renders a chart's templates the way `helm template` does (Helm's engine.Render).
 *
 * `dataFor(name)` gives each executed template its data, a plain object such as
 * `{ Values, Chart, Release, Capabilities, Files, Template: { Name, BasePath }, Subcharts }`:
 * Values as parsed from YAML (numbers are Go float64), and objects with methods where Helm has
 * them (`.Files.Get "a.txt"`, `.Capabilities.APIVersions.Has "apps/v1"`). A field holding a
 * function, or a capitalized method of an object's class, is called as a Go method: bound to its
 * object, with the action's arguments and the piped value last.
 *
 * Returns template name → rendered text, for every template whose base name does not start with
 * "_". Throws TemplateError naming the file and line on the first parse or execution failure.
 */
export function renderChartTemplates(templates: ChartTemplate[], dataFor: (templateName: string) => unknown, options: RenderOptions = {}): Map<string, string> {
  const set = new TemplateSet({ strict: options.strict ?? false });
  const texts = new Map(templates.map((template) => [template.name, template.text]));
  const order = helmParseOrder([...texts.keys()]);
  for (const name of order) set.parse(name, texts.get(name)!);
  const rendered = new Map<string, string>();
  for (const name of order) {
    // Partials are only included from other templates.
    if (baseName(name).startsWith('_')) continue;
    rendered.set(name, set.execute(name, dataFor(name)).replaceAll('<no value>', ''));
  }
  return rendered;
}
