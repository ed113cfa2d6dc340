/**
 * Helm charts end to end. The source registry holds the images three real-world-shaped charts name,
 * and one chart as an OCI artifact; a chart repository (static files on loopback, as GitHub Pages
 * serves them) holds the others:
 * - `app` 1.2.0: helpers with `include`, `default`, `printf`, `trunc`/`trimSuffix`, `toYaml | nindent`,
 *   `range` over sidecars and env, `with`, `tpl` of a value; an init container pinned by digest; a
 *   CronJob whose image only the chart's `imagePaths` entry finds; a subchart (`cache`, as an archive
 *   under `charts/`) under the alias `session-cache`, its image pinned by tag and digest; a subchart
 *   disabled by its condition, whose image is not in the registry at all; NOTES.txt that is not YAML.
 * - `ocichart` 0.3.0 from `oci://<registry>/charts`, mirrored as the artifact it is.
 * - a local chart folder.
 * The collected list is compared with a hand-worked one; all three modes and a farm of two agents
 * mirror the images and the charts (`helm install oci://…` material), and a template using a function
 * the renderer does not know fails that chart by chart, file and line, with every other image kept.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaType, type Digest } from '@meshmirror/shared';
import { withFarm } from './support/agents.ts';
import { runMeshmirror } from './support/cli.ts';
import { packChart, startChartRepository, type ChartRepository } from './support/helm-charts.ts';
import { archiveContent, diskToMirrorArgs, mirrorArgs, mirrorToMirrorArgs } from './support/mirror-fixture.ts';
import { LayoutBuilder, randomLayer } from './support/oci-image-builder.ts';
import { pushLayout } from './support/push-layout.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';
import { skopeoInspectDigest } from './support/skopeo.ts';

const HELM_CONFIG = 'application/vnd.cncf.helm.config.v1+json';
const HELM_LAYER = 'application/vnd.cncf.helm.chart.content.v1.tar+gzip';

interface SummaryJson {
  images: { requested: number; archived?: number; pushed?: number; failed: number };
  outcomes: Array<{ source: string; state: string; kind: string; origin: string; reason?: string }>;
}

function appChartFiles(registry: string, initDigest: Digest): Record<string, string> {
  return {
    'Chart.yaml': `apiVersion: v2
name: app
description: An application with a cache
version: 1.2.0
appVersion: "1.2.0"
dependencies:
  - name: cache
    version: 7.x
    alias: session-cache
  - name: extra
    version: 0.1.0
    condition: extra.enabled
`,
    'values.yaml': `image:
  registry: ${registry}
  repository: helm/app
  tag: ""
initImage:
  repository: ${registry}/helm/app-init
  digest: ${initDigest}
sidecars:
  - name: log
    image: ${registry}/helm/sidecar:1.0
env:
  MODE: production
  LEVEL: "3"
exporter:
  image: "{{ .Values.image.registry }}/helm/exporter:0.5"
podLabels:
  tier: web
extra:
  enabled: false
session-cache:
  image:
    tag: "7.2"
`,
    'templates/_helpers.tpl': `{{/* Names, as helm create writes them. */}}
{{- define "app.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" | trimPrefix "-" -}}
{{- end -}}
{{- end -}}

{{- define "app.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "app.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- printf "%s/%s:%s" .Values.image.registry .Values.image.repository $tag -}}
{{- end -}}
`,
    'templates/deployment.yaml': `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "app.fullname" . }}
  labels:
    {{- include "app.labels" . | nindent 4 }}
spec:
  template:
    metadata:
      labels:
        {{- include "app.labels" . | nindent 8 }}
    spec:
      initContainers:
        - name: init
          image: "{{ .Values.initImage.repository }}@{{ .Values.initImage.digest }}"
      containers:
        - name: app
          image: {{ include "app.image" . | quote }}
          env:
          {{- range $name, $value := .Values.env }}
            - name: {{ $name }}
              value: {{ $value | quote }}
          {{- end }}
        {{- range .Values.sidecars }}
        - name: {{ .name }}
          image: {{ .image }}
        {{- end }}
        {{- with .Values.exporter }}
        - name: exporter
          image: {{ tpl .image $ }}
        {{- end }}
`,
    'templates/cronjob.yaml': `{{- if .Capabilities.APIVersions.Has "batch/v1" }}
apiVersion: batch/v1
kind: CronJob
metadata:
  name: {{ include "app.fullname" . }}-cleanup
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - name: cleanup
              image: {{ .Values.image.registry }}/helm/cleanup:1.0
{{- end }}
`,
    'templates/NOTES.txt': `Thank you for installing {{ .Chart.Name }}.
  this: [is not: YAML
`,
  };
}

describe('Helm charts', () => {
  let dir: string;
  let source: RunningRegistry;
  let target: RunningRegistry;
  let repo: ChartRepository;
  let config: string;
  let archive: string;
  let appArchive: Buffer;
  let localChartDir: string;
  const digests = new Map<string, Digest>();
  let ociChartDigest: Digest;
  /** The hand-worked list: what `helm template` renders at the default paths plus `imagePaths`. */
  let expected: string[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshmirror-helm-'));
    [source, target] = await Promise.all([startRegistry(), startRegistry()]);
    const layout = new LayoutBuilder(join(dir, 'layout'));
    for (const name of ['app:1.2.0', 'app-init:0.9', 'sidecar:1.0', 'exporter:0.5', 'cleanup:1.0', 'cache:7.2', 'oci-img:1.0', 'local:1.0']) {
      const image = await layout.addImage(`helm/${name}`, [await randomLayer(`helm-${name}`, 40_000)]);
      digests.set(name, image.digest);
    }
    const reg = source.host;
    const cacheChart = await packChart('cache', {
      'Chart.yaml': 'apiVersion: v2\nname: cache\nversion: 7.2.0\n',
      'values.yaml': `image:\n  repository: ${reg}/helm/cache\n  tag: "7.0"\n  digest: ${digests.get('cache:7.2')}\n`,
      'templates/statefulset.yaml': `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
spec:
  template:
    spec:
      containers:
        - name: {{ .Chart.Name }}
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}@{{ .Values.image.digest }}"
`,
    });
    appArchive = await packChart('app', {
      ...appChartFiles(reg, digests.get('app-init:0.9')!),
      'charts/cache-7.2.0.tgz': cacheChart,
      'charts/extra/Chart.yaml': 'apiVersion: v2\nname: extra\nversion: 0.1.0\n',
      'charts/extra/templates/pod.yaml': `apiVersion: v1\nkind: Pod\nmetadata:\n  name: extra\nspec:\n  containers:\n    - name: extra\n      image: ${reg}/helm/disabled:1.0\n`,
    });
    const broken = await packChart('broken', {
      'Chart.yaml': 'apiVersion: v2\nname: broken\nversion: 0.1.0\n',
      'templates/pod.yaml': 'apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - image: {{ frobnicate .Values.image }}\n',
    });
    const ociChart = await packChart('ocichart', {
      'Chart.yaml': 'apiVersion: v2\nname: ocichart\nversion: 0.3.0\n',
      'templates/pod.yaml': `apiVersion: v1\nkind: Pod\nmetadata:\n  name: oci\nspec:\n  containers:\n    - name: main\n      image: {{ printf "%s/helm/oci-img:%s" "${reg}" "1.0" }}\n`,
    });
    const artifact = await layout.addArtifact(
      'charts/ocichart:0.3.0',
      { mediaType: HELM_CONFIG, bytes: Buffer.from('{"apiVersion":"v2","name":"ocichart","version":"0.3.0"}') },
      [{ mediaType: HELM_LAYER, bytes: ociChart }],
    );
    ociChartDigest = artifact.digest;
    await layout.finish();
    await pushLayout(layout.dir, source.url);

    localChartDir = join(dir, 'local-chart');
    await mkdir(join(localChartDir, 'templates'), { recursive: true });
    await writeFile(join(localChartDir, 'Chart.yaml'), 'apiVersion: v2\nname: local-chart\nversion: 0.1.0\n');
    await writeFile(join(localChartDir, 'values.yaml'), `image: ${reg}/helm/local:1.0\n`);
    await writeFile(
      join(localChartDir, 'templates', 'pod.yaml'),
      'apiVersion: v1\nkind: Pod\nmetadata:\n  name: local\nspec:\n  containers:\n    - name: main\n      image: {{ .Values.image }}\n',
    );

    repo = await startChartRepository([
      { name: 'app', version: '1.2.0', archive: appArchive },
      { name: 'app', version: '1.1.0', archive: appArchive },
      { name: 'broken', version: '0.1.0', archive: broken },
    ]);
    expected = [
      `${reg}/helm/app:1.2.0`,
      `${reg}/helm/app-init@${digests.get('app-init:0.9')}`,
      `${reg}/helm/sidecar:1.0`,
      `${reg}/helm/exporter:0.5`,
      `${reg}/helm/cleanup:1.0`,
      `${reg}/helm/cache:7.2@${digests.get('cache:7.2')}`,
      `${reg}/helm/oci-img:1.0`,
      `${reg}/helm/local:1.0`,
    ].sort();
    config = join(dir, 'isc.yaml');
    await writeFile(
      config,
      `kind: ImageSetConfiguration
apiVersion: mirror.openshift.io/v2alpha1
mirror:
  helm:
    repositories:
      - name: apprepo
        url: ${repo.url}
        charts:
          - name: app
            version: 1.2.0
            imagePaths:
              - "{.spec.jobTemplate.spec.template.spec.containers[*].image}"
      - name: oci
        url: oci://${reg}/charts
        charts:
          - name: ocichart
            version: 0.3.0
    local:
      - name: local-chart
        path: ${localChartDir}
`,
    );
    archive = join(dir, 'archive');
  }, 120_000);

  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop(), repo?.close()]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const charts = (): Array<{ repo: string; tag: string; digest?: Digest; layer: Buffer | undefined }> => [
    { repo: 'apprepo/app', tag: '1.2.0', layer: appArchive },
    { repo: 'charts/ocichart', tag: '0.3.0', digest: ociChartDigest, layer: undefined },
    { repo: 'charts/local-chart', tag: '0.1.0', layer: undefined },
  ];

  /** Every expected image at its source digest under `prefix`, and each chart an artifact Helm can install. */
  const expectInTarget = async (prefix: string): Promise<void> => {
    for (const reference of expected) {
      const name = reference.slice(source.host.length + 1);
      const digest = name.includes('@') ? (name.split('@')[1] as Digest) : digests.get(name.replace(/^helm\//, ''));
      const at = name.includes('@') ? name.replace(/:[^/@]+@/, '@') : name;
      expect(await skopeoInspectDigest(`docker://${target.host}/${prefix}/${at}`, { tlsVerify: false }), at).toBe(digest);
    }
    for (const chart of charts()) {
      const response = await fetch(`${target.url}/v2/${prefix}/${chart.repo}/manifests/${chart.tag}`, { headers: { accept: MediaType.OciManifest } });
      expect(response.status, chart.repo).toBe(200);
      const bytes = Buffer.from(await response.arrayBuffer());
      if (chart.digest !== undefined) expect(`sha256:${createHash('sha256').update(bytes).digest('hex')}`).toBe(chart.digest);
      const manifest = JSON.parse(bytes.toString('utf8')) as { config: { mediaType: string }; layers: Array<{ mediaType: string; digest: string }> };
      expect(manifest.config.mediaType).toBe(HELM_CONFIG);
      expect(manifest.layers.map((l) => l.mediaType)).toEqual([HELM_LAYER]);
      const layer = Buffer.from(await (await fetch(`${target.url}/v2/${prefix}/${chart.repo}/blobs/${manifest.layers[0]!.digest}`)).arrayBuffer());
      if (chart.layer !== undefined) expect(layer.equals(chart.layer), `${chart.repo} layer is the chart archive as downloaded`).toBe(true);
      else expect(layer.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    }
  };

  it('mirror to disk collects the hand-worked image list and archives the images and the charts', async () => {
    const result = await runMeshmirror(mirrorArgs(config, archive, join(dir, 'cache-m2d')));
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as SummaryJson;
    const archived = summary.outcomes.filter((o) => o.state === 'archived');
    expect(archived.every((o) => o.kind === 'helm')).toBe(true);
    const images = archived.map((o) => o.source).filter((s) => !s.startsWith('localhost/') && !s.includes('/charts/'));
    expect(images.sort()).toEqual(expected);
    expect(
      archived
        .map((o) => o.source)
        .filter((s) => s.startsWith('localhost/') || s.includes('/charts/'))
        .sort(),
    ).toEqual(['localhost/helm/apprepo/app:1.2.0', 'localhost/helm/charts/local-chart:0.1.0', `${source.host}/charts/ocichart:0.3.0`].sort());
    // The index is read once, and only the chart asked for is downloaded.
    expect(repo.requests.filter((p) => p.endsWith('.tgz'))).toEqual(['/charts/app-1.2.0.tgz']);
  });

  it('a farm of two agents writes the same archive as one host', async () => {
    const out = join(dir, 'out-farm');
    const farm = await withFarm(dir, 'farm', 2, ({ cache, args }) => runMeshmirror([...mirrorArgs(config, out, cache), ...args]));
    expect(farm.code, farm.stderr).toBe(0);
    expect(await archiveContent(out, join(dir, 'layout-farm'))).toEqual(await archiveContent(archive, join(dir, 'layout-single')));
  });

  it('disk to mirror pushes every image and each chart as an OCI artifact', async () => {
    const result = await runMeshmirror(diskToMirrorArgs(config, archive, `${target.host}/d2m`, join(dir, 'cache-d2m')));
    expect(result.code, result.stderr).toBe(0);
    expect((JSON.parse(result.stdout) as SummaryJson).images).toMatchObject({ pushed: expected.length + 3, failed: 0 });
    await expectInTarget('d2m');
  });

  it('mirror to mirror does the same straight from the sources', async () => {
    const result = await runMeshmirror(mirrorToMirrorArgs(config, join(dir, 'ws'), `${target.host}/m2m`, join(dir, 'cache-m2m')));
    expect(result.code, result.stderr).toBe(0);
    await expectInTarget('m2m');
  });

  it('a chart using a function the renderer does not know fails by chart, file and line; the rest is archived', async () => {
    const brokenConfig = join(dir, 'isc-broken.yaml');
    await writeFile(
      brokenConfig,
      `kind: ImageSetConfiguration
apiVersion: mirror.openshift.io/v2alpha1
mirror:
  helm:
    local:
      - name: local-chart
        path: ${localChartDir}
    repositories:
      - name: apprepo
        url: ${repo.url}
        charts:
          - name: broken
            version: 0.1.0
`,
    );
    const result = await runMeshmirror(mirrorArgs(brokenConfig, join(dir, 'out-broken'), join(dir, 'cache-broken')));
    expect(result.code, result.stderr).toBe(72);
    const summary = JSON.parse(result.stdout) as SummaryJson;
    const failed = summary.outcomes.filter((o) => o.state === 'failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ kind: 'helm', origin: 'mirror.helm.repositories[0].charts[0]' });
    expect(failed[0]!.reason).toMatch(/broken\/templates\/pod\.yaml:5/);
    expect(failed[0]!.reason).toMatch(/frobnicate/);
    expect(summary.outcomes.filter((o) => o.state === 'archived').map((o) => o.source)).toContain(`${source.host}/helm/local:1.0`);
  });
});
