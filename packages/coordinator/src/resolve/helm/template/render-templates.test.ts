/**
 * A chart shaped like real ones (a parent `app` with the usual `_helpers.tpl`, and a subchart
 * `cache`), rendered through renderChartTemplates and compared, as parsed YAML, with manifests
 * worked out by hand from Helm's rules. Then the failures a chart author meets, each naming the
 * file and line.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { renderChartTemplates, type ChartTemplate } from './render-templates.ts';
import { TemplateError } from './template-error.ts';

const HELPERS = `{{/* Expand the name of the chart. */}}
{{- define "app.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "app.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "app.labels" -}}
app.kubernetes.io/name: {{ include "app.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .Values.extraLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* An image reference: by digest when one is given, else by tag. */}}
{{- define "app.image" -}}
{{- $registry := .image.registry | default .global.imageRegistry -}}
{{- if .image.digest -}}
{{- printf "%s/%s@%s" $registry .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s/%s:%s" $registry .image.repository (.image.tag | default .defaultTag | toString) -}}
{{- end -}}
{{- end }}
`;

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "app.fullname" . }}
  labels:
    {{- include "app.labels" . | nindent 4 }}
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum | trunc 12 | quote }}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ include "app.name" . }}
  template:
    metadata:
      labels:
        {{- include "app.labels" . | nindent 8 }}
    spec:
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      initContainers:
        - name: init-db
          image: {{ include "app.image" (dict "image" .Values.init.image "global" .Values.global "defaultTag" "latest") }}
          command: {{ toJson .Values.init.command }}
      containers:
        - name: {{ .Chart.Name }}
          image: "{{ .Values.image.repository }}@{{ .Values.image.digest }}"
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          env:
            {{- range $key, $value := .Values.env }}
            - name: {{ $key }}
              value: {{ $value | quote }}
            {{- end }}
          ports:
            - name: http
              containerPort: {{ .Values.service.port }}
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
        {{- range .Values.sidecars }}
        - name: {{ .name }}
          image: {{ include "app.image" (dict "image" .image "global" $.Values.global "defaultTag" $.Chart.AppVersion) }}
          {{- if .args }}
          args:
            {{- toYaml .args | nindent 12 }}
          {{- end }}
        {{- end }}
`;

const CONFIGMAP = `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "app.fullname" . }}-config
  labels:
    {{- include "app.labels" . | nindent 4 }}
data:
  greeting: {{ tpl .Values.greeting . | quote }}
  app.conf: |
    {{- .Files.Get "files/app.conf" | nindent 4 }}
  {{- if .Capabilities.APIVersions.Has "policy/v1" }}
  pdb: supported
  {{- end }}
`;

const SERVICE = `{{- if .Values.service.enabled }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "app.fullname" . }}
spec:
  clusterIP: {{ .Values.service.clusterIP }}
  ports:
    - port: {{ .Values.service.port }}
      targetPort: http
  selector:
    app.kubernetes.io/name: {{ include "app.name" . }}
{{- end }}
`;

const INGRESS = `{{- if .Values.ingress.enabled -}}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "app.fullname" . }}
{{- end }}
`;

const CACHE_HELPERS = `{{- define "cache.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{/* The parent chart also defines this name; Helm parses parents last, so theirs wins. */}}
{{- define "app.name" -}}subchart-version-must-not-win{{- end -}}
`;

const CACHE_STATEFULSET = `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ include "cache.fullname" . }}
  labels:
    app.kubernetes.io/name: {{ include "app.name" . }}
spec:
  serviceName: {{ include "cache.fullname" . }}
  replicas: {{ .Values.replicas | default 1 }}
  template:
    spec:
      containers:
        - name: cache
          image: {{ printf "%s/%s:%s" (.Values.global.imageRegistry | default "docker.io") .Values.image.repository (.Values.image.tag | toString) }}
          {{- if semverCompare ">=1.19-0" .Capabilities.KubeVersion.GitVersion }}
          startupProbe:
            tcpSocket:
              port: {{ .Values.port }}
          {{- end }}
`;

const DIGEST = `sha256:${'0123456789abcdef'.repeat(4)}`;
const LOGGER_DIGEST = `sha256:${'fedcba9876543210'.repeat(4)}`;
const GLOBAL = { imageRegistry: 'registry.example.com' };

/** The app chart's values as Helm reads values.yaml: every number a float64. */
const APP_VALUES = {
  replicaCount: 2,
  global: GLOBAL,
  image: { repository: 'team/app', digest: DIGEST, pullPolicy: 'IfNotPresent' },
  init: { image: { repository: 'tools/migrate', tag: 'v5' }, command: ['migrate', '--up'] },
  imagePullSecrets: [{ name: 'regcred' }],
  env: { LOG_LEVEL: 'debug', PORT: 8080, ENABLED: true },
  service: { enabled: true, port: 8080 },
  ingress: { enabled: false },
  resources: { limits: { cpu: '500m', memory: '256Mi' } },
  sidecars: [
    { name: 'proxy', image: { repository: 'mesh/proxy', tag: '1.9.0' }, args: ['--port', '15001'] },
    { name: 'logger', image: { registry: 'other.example.com', repository: 'obs/logger', digest: LOGGER_DIGEST } },
  ],
  extraLabels: { team: 'platform' },
  greeting: 'Hello from {{ .Release.Name }}',
};

/** The subchart's own values; `tag: 7.0` is a float64 7, which toString prints as "7" (as in Helm). */
const CACHE_VALUES = { image: { repository: 'library/redis', tag: 7.0 }, port: 6379, global: GLOBAL };

/** `.Files` as Helm gives it: a map of files with methods. */
class Files {
  readonly #files: Map<string, string>;

  constructor(files: Record<string, string>) {
    this.#files = new Map(Object.entries(files));
  }

  Get(name: unknown): string {
    return this.#files.get(String(name)) ?? '';
  }
}

const capabilities = {
  KubeVersion: { Version: 'v1.29.3', GitVersion: 'v1.29.3-eks-1234', Major: '1', Minor: '29' },
  APIVersions: { Has: (version: unknown) => ['v1', 'apps/v1', 'policy/v1'].includes(String(version)) },
};
const release = { Name: 'demo', Namespace: 'default', Service: 'Helm', IsInstall: true };

const APP_DATA = {
  Values: APP_VALUES,
  Chart: { Name: 'app', Version: '1.2.3+build.5', AppVersion: '2.0.0' },
  Release: release,
  Capabilities: capabilities,
  Files: new Files({ 'files/app.conf': 'listen = 8080\nlog = debug\n' }),
};
const CACHE_DATA = {
  Values: CACHE_VALUES,
  Chart: { Name: 'cache', Version: '0.4.0', AppVersion: '7.0' },
  Release: release,
  Capabilities: capabilities,
  Files: new Files({}),
};

const TEMPLATES: ChartTemplate[] = [
  { name: 'app/templates/_helpers.tpl', text: HELPERS },
  { name: 'app/templates/deployment.yaml', text: DEPLOYMENT },
  { name: 'app/templates/configmap.yaml', text: CONFIGMAP },
  { name: 'app/templates/service.yaml', text: SERVICE },
  { name: 'app/templates/ingress.yaml', text: INGRESS },
  { name: 'app/charts/cache/templates/_helpers.tpl', text: CACHE_HELPERS },
  { name: 'app/charts/cache/templates/statefulset.yaml', text: CACHE_STATEFULSET },
];

function dataFor(name: string): unknown {
  const chart = name.startsWith('app/charts/cache/') ? CACHE_DATA : APP_DATA;
  const basePath = name.slice(0, name.indexOf('/templates/') + '/templates'.length);
  return { ...chart, Template: { Name: name, BasePath: basePath } };
}

function documents(text: string | undefined): unknown[] {
  return parseAllDocuments(text ?? '').map((doc) => {
    expect(doc.errors).toEqual([]);
    return doc.toJS();
  });
}

const LABELS = { 'app.kubernetes.io/name': 'app', 'app.kubernetes.io/instance': 'demo', 'helm.sh/chart': 'app-1.2.3_build.5', team: 'platform' };

describe('renderChartTemplates on a real-world-shaped chart', () => {
  const rendered = renderChartTemplates(TEMPLATES, dataFor);

  it('renders every template except partials', () => {
    expect([...rendered.keys()].sort()).toEqual([
      'app/charts/cache/templates/statefulset.yaml',
      'app/templates/configmap.yaml',
      'app/templates/deployment.yaml',
      'app/templates/ingress.yaml',
      'app/templates/service.yaml',
    ]);
  });

  it('renders the ConfigMap with tpl, .Files and .Capabilities', () => {
    expect(documents(rendered.get('app/templates/configmap.yaml'))).toEqual([
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'demo-app-config', labels: LABELS },
        data: { greeting: 'Hello from demo', 'app.conf': 'listen = 8080\nlog = debug\n', pdb: 'supported' },
      },
    ]);
  });

  it('renders the Deployment: helpers, images by digest and by tag, ranges over lists and maps', () => {
    const checksum = createHash('sha256').update(rendered.get('app/templates/configmap.yaml')!).digest('hex').slice(0, 12);
    expect(documents(rendered.get('app/templates/deployment.yaml'))).toEqual([
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'demo-app', labels: LABELS, annotations: { 'checksum/config': checksum } },
        spec: {
          replicas: 2,
          selector: { matchLabels: { 'app.kubernetes.io/name': 'app' } },
          template: {
            metadata: { labels: LABELS },
            spec: {
              imagePullSecrets: [{ name: 'regcred' }],
              initContainers: [{ name: 'init-db', image: 'registry.example.com/tools/migrate:v5', command: ['migrate', '--up'] }],
              containers: [
                {
                  name: 'app',
                  image: `team/app@${DIGEST}`,
                  imagePullPolicy: 'IfNotPresent',
                  // Map keys come in sorted order; quote makes every value a string.
                  env: [
                    { name: 'ENABLED', value: 'true' },
                    { name: 'LOG_LEVEL', value: 'debug' },
                    { name: 'PORT', value: '8080' },
                  ],
                  ports: [{ name: 'http', containerPort: 8080 }],
                  resources: { limits: { cpu: '500m', memory: '256Mi' } },
                },
                { name: 'proxy', image: 'registry.example.com/mesh/proxy:1.9.0', args: ['--port', '15001'] },
                { name: 'logger', image: `other.example.com/obs/logger@${LOGGER_DIGEST}` },
              ],
            },
          },
        },
      },
    ]);
  });

  it('renders a missing value as nothing (Helm removes "<no value>") and a disabled template as empty', () => {
    expect(rendered.get('app/templates/service.yaml')).toContain('  clusterIP: \n');
    expect(documents(rendered.get('app/templates/service.yaml'))).toEqual([
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'demo-app' },
        spec: { clusterIP: null, ports: [{ port: 8080, targetPort: 'http' }], selector: { 'app.kubernetes.io/name': 'app' } },
      },
    ]);
    // Only the newline after the trimmed {{- end }} is left.
    expect(rendered.get('app/templates/ingress.yaml')).toBe('\n');
  });

  it("renders the subchart with its own values, the parent's definition of a shared name, and semverCompare", () => {
    expect(documents(rendered.get('app/charts/cache/templates/statefulset.yaml'))).toEqual([
      {
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        metadata: { name: 'demo-cache', labels: { 'app.kubernetes.io/name': 'cache' } },
        spec: {
          serviceName: 'demo-cache',
          replicas: 1,
          template: { spec: { containers: [{ name: 'cache', image: 'registry.example.com/library/redis:7', startupProbe: { tcpSocket: { port: 6379 } } }] } },
        },
      },
    ]);
  });

  it('yields the images meshmirror mirrors', () => {
    const images: string[] = [];
    const collect = (value: unknown): void => {
      if (Array.isArray(value)) value.forEach(collect);
      else if (value !== null && typeof value === 'object') {
        for (const [key, item] of Object.entries(value)) {
          if (key === 'image' && typeof item === 'string') images.push(item);
          else collect(item);
        }
      }
    };
    for (const text of rendered.values()) documents(text).forEach(collect);
    expect(images.sort()).toEqual(
      [
        `team/app@${DIGEST}`,
        'registry.example.com/tools/migrate:v5',
        'registry.example.com/mesh/proxy:1.9.0',
        `other.example.com/obs/logger@${LOGGER_DIGEST}`,
        'registry.example.com/library/redis:7',
      ].sort(),
    );
  });
});

describe('renderChartTemplates failures', () => {
  function failure(templates: ChartTemplate[], options?: { strict?: boolean }): TemplateError {
    try {
      renderChartTemplates(templates, () => APP_DATA, options);
    } catch (err) {
      if (err instanceof TemplateError) return err;
      throw err;
    }
    throw new Error('expected the chart not to render');
  }

  it('an unknown function fails the parse, naming file and line', () => {
    const err = failure([{ name: 'app/templates/x.yaml', text: 'a: 1\nb: 2\nc: {{ nope .Values }}\n' }]);
    expect(err.message).toBe('app/templates/x.yaml:3: function "nope" not defined');
    expect(err).toMatchObject({ code: 'MM_HELM_TEMPLATE', template: 'app/templates/x.yaml', line: 3 });
  });

  it('a field of a missing value is "nil pointer evaluating", with file, line and column', () => {
    const err = failure([{ name: 'app/templates/bad.yaml', text: 'kind: ConfigMap\nvalue: {{ .Values.missing.field }}\n' }]);
    // Go places a field chain at its second field, and cuts the action's text at 20 characters.
    expect(err.message).toBe('app/templates/bad.yaml:2:17: executing "app/templates/bad.yaml" at <.Values.missing.fiel...>: nil pointer evaluating interface {}.field');
    expect(err).toMatchObject({ template: 'app/templates/bad.yaml', line: 2, column: 17 });
  });

  it("required fails with the chart's message, at the helper that asked", () => {
    const err = failure([
      { name: 'app/templates/_helpers.tpl', text: '{{ define "app.tag" }}\n{{- required "image.tag is required" .Values.image.tag }}{{ end }}' },
      { name: 'app/templates/deploy.yaml', text: 'image: {{ include "app.tag" . }}\n' },
    ]);
    expect(err.message).toContain('error calling required: image.tag is required');
    expect(err.message.startsWith('app/templates/deploy.yaml:1:10: executing "app/templates/deploy.yaml" at <include "app.tag" .>: error calling include:')).toBe(true);
    expect(err).toMatchObject({ template: 'app/templates/_helpers.tpl', line: 2, reason: 'error calling required: image.tag is required' });
  });

  it('endless include recursion fails as in Helm', () => {
    const err = failure([
      { name: 'app/templates/_helpers.tpl', text: '{{ define "app.loop" }}{{ include "app.loop" . }}{{ end }}' },
      { name: 'app/templates/loop.yaml', text: '{{ include "app.loop" . }}' },
    ]);
    expect(err.reason).toBe('error calling include: rendering template has a nested reference name: app.loop: unable to execute template');
    expect(err.template).toBe('app/templates/_helpers.tpl');
  });

  it('strict mode fails on a missing value', () => {
    const err = failure([{ name: 'app/templates/x.yaml', text: 'a: {{ .Values.nope }}' }], { strict: true });
    expect(err.reason).toBe('map has no entry for key "nope"');
  });
});
