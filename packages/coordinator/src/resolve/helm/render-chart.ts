/**
 * `helm template` for image discovery, as oc-mirror runs it: the chart's values (defaults, then the
 * configuration's `values` and `valuesFiles`), dependencies processed, empty release options (name
 * and namespace ""), Helm's default capabilities (Kubernetes v1.20.0), `crds/` left alone, `*.txt`
 * dropped, and the output split into YAML documents.
 */
import { parseAllDocuments } from 'yaml';
import type { LoadedChart } from './chart.ts';
import { chartError } from './chart.ts';
import { prepareChart, type ChartNode } from './chart-values.ts';
import { ChartFiles } from './chart-files.ts';
import { renderChartTemplates, TemplateError, type ChartTemplate } from './template/index.ts';

/** One rendered manifest, with the template it came from (for messages). */
export interface RenderedDocument {
  template: string;
  document: unknown;
}

/** What `.Capabilities` says when there is no cluster (Helm's defaults; oc-mirror does not change them). */
const KUBE_VERSION = { Version: 'v1.20.0', Major: '1', Minor: '20', GitVersion: 'v1.20.0' };
const HELM_VERSION = { Version: 'v3.17.0', GitCommit: '', GitTreeState: 'clean', GoVersion: 'go1.23' };
/** The API versions of Helm's built-in scheme, which `.Capabilities.APIVersions.Has` answers from. */
const API_VERSIONS = [
  'v1',
  'admissionregistration.k8s.io/v1',
  'admissionregistration.k8s.io/v1beta1',
  'apiextensions.k8s.io/v1',
  'apiextensions.k8s.io/v1beta1',
  'apiregistration.k8s.io/v1',
  'apps/v1',
  'authentication.k8s.io/v1',
  'authorization.k8s.io/v1',
  'autoscaling/v1',
  'autoscaling/v2',
  'autoscaling/v2beta1',
  'autoscaling/v2beta2',
  'batch/v1',
  'batch/v1beta1',
  'certificates.k8s.io/v1',
  'coordination.k8s.io/v1',
  'discovery.k8s.io/v1',
  'discovery.k8s.io/v1beta1',
  'events.k8s.io/v1',
  'flowcontrol.apiserver.k8s.io/v1beta1',
  'networking.k8s.io/v1',
  'networking.k8s.io/v1beta1',
  'node.k8s.io/v1',
  'policy/v1',
  'policy/v1beta1',
  'rbac.authorization.k8s.io/v1',
  'scheduling.k8s.io/v1',
  'storage.k8s.io/v1',
  'storage.k8s.io/v1beta1',
];

class ApiVersions {
  readonly #known = new Set(API_VERSIONS);

  /** `.Capabilities.APIVersions.Has "apps/v1"` (a `group/version/Kind` asks for the group/version). */
  Has(version: unknown): boolean {
    const text = String(version);
    return this.#known.has(text) || this.#known.has(text.split('/').slice(0, -1).join('/'));
  }
}

/** Renders `chart` with `userValues` over its defaults; throws naming chart, template and line. */
export function renderChart(chart: LoadedChart, userValues: Record<string, unknown>, where: string): RenderedDocument[] {
  const root = prepareChart(chart, userValues, where);
  const templates: ChartTemplate[] = [];
  const dataByTemplate = new Map<string, unknown>();
  const capabilities = { KubeVersion: KUBE_VERSION, APIVersions: new ApiVersions(), HelmVersion: HELM_VERSION };
  // Revision is a Go int (a bigint to the renderer; plain numbers are float64, as values from YAML are).
  const release = { Name: '', Namespace: '', Revision: 0n, IsUpgrade: false, IsInstall: false, Service: 'Helm' };
  const visit = (node: ChartNode): Record<string, unknown> => {
    const subcharts: Record<string, unknown> = {};
    for (const child of node.children) subcharts[child.name] = visit(child);
    const top = {
      Values: node.values,
      Chart: chartObject(node),
      Files: new ChartFiles(node.chart.files),
      Release: release,
      Capabilities: capabilities,
      Subcharts: subcharts,
    };
    for (const template of node.chart.templates) {
      const name = `${node.fullPath}/${template.path}`;
      templates.push({ name, text: template.text });
      dataByTemplate.set(name, { ...top, Template: { Name: name, BasePath: `${node.fullPath}/templates` } });
    }
    return top;
  };
  visit(root);

  let rendered: Map<string, string>;
  try {
    rendered = renderChartTemplates(templates, (name) => dataByTemplate.get(name));
  } catch (err) {
    if (err instanceof TemplateError) throw chartError(where, err.message, err);
    throw err;
  }
  const documents: RenderedDocument[] = [];
  for (const [name, text] of [...rendered].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    // Helm leaves NOTES.txt and other text files out of the manifests.
    if (name.endsWith('.txt') || text.trim() === '') continue;
    for (const doc of parseAllDocuments(text)) {
      if (doc.errors.length > 0) throw chartError(where, `${name} renders to YAML that does not parse: ${doc.errors[0]!.message}`);
      const value: unknown = doc.toJS();
      if (value !== null && value !== undefined) documents.push({ template: name, document: value });
    }
  }
  return documents;
}

/** `.Chart`: Chart.yaml under Helm's Go field names (`appVersion` → `AppVersion`, `apiVersion` → `APIVersion`). */
function chartObject(node: ChartNode): Record<string, unknown> {
  // Fields Chart.yaml leaves out are Go zero values, not missing keys.
  const out: Record<string, unknown> = { APIVersion: '', AppVersion: '', Description: '', Home: '', Icon: '', KubeVersion: '', Type: '', Deprecated: false };
  for (const [key, value] of Object.entries(node.chart.metadata.raw)) {
    const goName = key === 'apiVersion' ? 'APIVersion' : key === 'kubeVersion' ? 'KubeVersion' : `${key.charAt(0).toUpperCase()}${key.slice(1)}`;
    out[goName] = value;
  }
  out['Name'] = node.name;
  out['Version'] = node.chart.metadata.version;
  return out;
}
