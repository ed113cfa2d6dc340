/**
 * The user's example configuration plus a `helm:` block and `kubeVirtContainer: true`, as a user
 * moving from oc-mirror writes it, end to end: mirror to disk on one host and on a farm of two agents
 * (the same archive), disk to mirror, and mirror to mirror. The OpenShift content is the fixture's
 * (test/support/openshift-fixture.ts); the chart is served by a chart repository on loopback and
 * names two images in the same registry.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '@meshmirror/shared';
import { withFarm } from './support/agents.ts';
import { runMeshmirror } from './support/cli.ts';
import { packChart, startChartRepository, type ChartRepository } from './support/helm-charts.ts';
import { archiveContent, diskToMirrorArgs, mirrorArgs, mirrorToMirrorArgs } from './support/mirror-fixture.ts';
import { LayoutBuilder, randomLayer } from './support/oci-image-builder.ts';
import { startOpenShiftFixture, type OpenShiftFixture } from './support/openshift-fixture.ts';
import { pushLayout } from './support/push-layout.ts';
import { startRegistry, type RunningRegistry } from './support/registry.ts';
import { skopeoInspectDigest } from './support/skopeo.ts';

/** The example's selection: stable-4.19 from 4.19.2 to 4.19.10. */
const EXAMPLE_VERSIONS = ['4.19.2', '4.19.3', '4.19.5', '4.19.8', '4.19.10'];

interface Summary {
  images: { failed: number; archived?: number; pushed?: number };
  outcomes: Array<{ source: string; kind: string; origin: string; state: string }>;
}

let dir: string;
let registry: RunningRegistry;
let target: RunningRegistry;
let fx: OpenShiftFixture;
let repo: ChartRepository;
let config: string;
let archive: string;
const chartImages = new Map<string, Digest>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-openshift-helm-'));
  [registry, target] = await Promise.all([startRegistry(), startRegistry()]);
  fx = await startOpenShiftFixture({ registryUrl: registry.url, dir: join(dir, 'fixture') });
  const layout = new LayoutBuilder(join(dir, 'chart-images'));
  for (const name of ['web:2.1', 'web-init:1.0'])
    chartImages.set(`${registry.host}/charts-demo/${name}`, (await layout.addImage(`charts-demo/${name}`, [await randomLayer(name, 30_000)])).digest);
  await layout.finish();
  await pushLayout(layout.dir, registry.url);
  const web = await packChart('web', {
    'Chart.yaml': 'apiVersion: v2\nname: web\nversion: 2.1.0\nappVersion: "2.1"\n',
    'values.yaml': `image:\n  repository: ${registry.host}/charts-demo/web\ninit:\n  image: ${registry.host}/charts-demo/web-init:1.0\n`,
    'templates/_helpers.tpl': '{{- define "web.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}\n',
    'templates/deployment.yaml': `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ printf "%s-web" .Release.Name | trimPrefix "-" }}
spec:
  template:
    spec:
      initContainers:
        - name: init
          image: {{ .Values.init.image | quote }}
      containers:
        - name: web
          image: {{ include "web.image" . }}
`,
  });
  repo = await startChartRepository([{ name: 'web', version: '2.1.0', archive: web }]);

  // The example as written, pointed at the fixture, with the two blocks a user adds.
  const example = await readFile(await fx.writeExampleConfig(join(dir, 'example.yaml')), 'utf8');
  const withBlocks = `${example
    .replace('apiVersion: mirror.openshift.io/v1alpha2', 'apiVersion: mirror.openshift.io/v2alpha1')
    .replace(/^ {2}platform:\n/m, '  platform:\n    kubeVirtContainer: true\n')
    .trimEnd()}
  helm:
    repositories:
      - name: demo
        url: ${repo.url}
        charts:
          - name: web
            version: 2.1.0
`;
  expect(withBlocks).toContain('kubeVirtContainer: true');
  config = join(dir, 'imageset-config.yaml');
  await writeFile(config, withBlocks);
  archive = join(dir, 'archive');
}, 180_000);

afterAll(async () => {
  await Promise.all([fx?.close(), repo?.close()]);
  await Promise.all([registry?.stop(), target?.stop()]);
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function run(args: string[]) {
  return runMeshmirror([...args, '--update-url', fx.graphUrl, '--graph-data-url', fx.graphDataUrl, '--graph-base-image', fx.graphBaseImage], { env: fx.signatureEnv });
}

const kubeVirt = () => EXAMPLE_VERSIONS.map((v) => fx.releases.find((r) => r.version === v)!);

/** The KubeVirt disk of every release, the chart's images and the chart itself are in `prefix`. */
async function expectInTarget(prefix: string): Promise<void> {
  for (const release of kubeVirt()) {
    const tag = `docker://${target.host}/${prefix}/openshift/release:${release.version}-x86_64-kube-virt-container`;
    expect(await skopeoInspectDigest(tag, { tlsVerify: false }), tag).toBe(release.kubeVirt.digest);
  }
  for (const [image, digest] of chartImages) {
    expect(await skopeoInspectDigest(`docker://${target.host}/${prefix}/${image.slice(registry.host.length + 1)}`, { tlsVerify: false }), image).toBe(digest);
  }
  const chart = await fetch(`${target.url}/v2/${prefix}/demo/web/manifests/2.1.0`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  expect(chart.status).toBe(200);
  expect(((await chart.json()) as { config: { mediaType: string } }).config.mediaType).toBe('application/vnd.cncf.helm.config.v1+json');
}

describe('the example configuration with helm and kubeVirtContainer', () => {
  it('mirrors to disk: the KubeVirt disk of every release, the chart and its images, next to everything else', async () => {
    const result = await run(mirrorArgs(config, archive, join(dir, 'cache-m2d')));
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout) as Summary;
    expect(summary.images.failed).toBe(0);
    const archived = new Map(summary.outcomes.filter((o) => o.state === 'archived').map((o) => [o.source, o]));
    for (const release of kubeVirt()) expect(archived.get(release.kubeVirt.ref)?.origin, release.version).toContain('kube-virt-container');
    for (const image of chartImages.keys()) expect(archived.get(image)).toMatchObject({ kind: 'helm', origin: 'mirror.helm.repositories[0].charts[0]' });
    expect(archived.get('localhost/helm/demo/web:2.1.0')).toMatchObject({ kind: 'helm' });
    expect(archived.get(fx.ubi)).toMatchObject({ kind: 'additional' });
    expect([...archived.values()].filter((o) => o.kind === 'operator').length).toBeGreaterThan(0);
  }, 180_000);

  it('a farm of two agents writes the same archive', async () => {
    const out = join(dir, 'out-farm');
    const farm = await withFarm(dir, 'farm', 2, ({ cache, args }) => run([...mirrorArgs(config, out, cache), ...args]));
    expect(farm.code, farm.stderr).toBe(0);
    expect(await archiveContent(out, join(dir, 'layout-farm'))).toEqual(await archiveContent(archive, join(dir, 'layout-single')));
  }, 180_000);

  it('disk to mirror pushes all of it', async () => {
    const result = await run(diskToMirrorArgs(config, archive, `${target.host}/d2m`, join(dir, 'cache-d2m')));
    expect(result.code, result.stderr).toBe(0);
    expect((JSON.parse(result.stdout) as Summary).images.failed).toBe(0);
    await expectInTarget('d2m');
  }, 180_000);

  it('mirror to mirror pushes all of it', async () => {
    const result = await run(mirrorToMirrorArgs(config, join(dir, 'ws'), `${target.host}/m2m`, join(dir, 'cache-m2m')));
    expect(result.code, result.stderr).toBe(0);
    expect((JSON.parse(result.stdout) as Summary).images.failed).toBe(0);
    await expectInTarget('m2m');
  }, 180_000);
});
