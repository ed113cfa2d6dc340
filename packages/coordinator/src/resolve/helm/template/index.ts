/**
 * Go's text/template with Helm's and sprig's functions, for rendering Helm charts the way
 * `helm template` does. See render-templates.ts for the chart-level entry point and go-values.ts
 * for how Go values are represented.
 */
export { renderChartTemplates, type ChartTemplate, type RenderOptions } from './render-templates.ts';
export { TemplateError } from './template-error.ts';
export { TemplateSet, type TemplateSetOptions } from './template-set.ts';
