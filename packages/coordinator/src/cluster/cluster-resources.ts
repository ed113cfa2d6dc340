/**
 * The files that point a disconnected cluster at the mirror, in the shapes and file names oc-mirror
 * v2 writes into `working-dir/cluster-resources/`: `idms-oc-mirror.yaml` (images the cluster pulls by
 * digest, and always release payloads), `itms-oc-mirror.yaml` (images pulled by tag), and for each
 * mirrored catalog a `cs-<repo>-<tag>.yaml` CatalogSource and a `cc-<repo>-<tag>.yaml` ClusterCatalog,
 * and `updateService.yaml` when the graph data image was mirrored with release payloads.
 * They are written only from images that actually arrived in the target.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { parseImageReference, type ImageReference } from '@meshmirror/shared';
import { catalogSourceFromTemplate, type CatalogSourceTemplate } from './catalog-source-template.ts';

export type MirrorCategory = 'release' | 'operator' | 'generic';

export interface MirroredImage {
  category: MirrorCategory;
  /** The source reference as the configuration names it (by tag or by digest). */
  source: string;
  /** Where it is now: `registry/repository:tag`. */
  destination: string;
  /** A catalog image: gets a CatalogSource and a ClusterCatalog instead of mirror-set entries. */
  catalog?: boolean;
  /**
   * `catalog` as above; `graph`: the update graph data image, for an UpdateService instead of
   * mirror-set entries; `release-payload`: a release image, whose repository the UpdateService names.
   */
  role?: 'release-payload' | 'catalog' | 'graph';
  /** A catalog's `targetCatalogSourceTemplate`, checked: its CatalogSource starts from it. */
  catalogSourceTemplate?: CatalogSourceTemplate;
}

export interface ClusterResourceFile {
  name: string;
  content: string;
}

const HASH_TRUNC = 12;

export function clusterResources(images: MirroredImage[], options: { createdAt?: Date } = {}): ClusterResourceFile[] {
  const annotations = { createdBy: 'meshmirror', createdAt: (options.createdAt ?? new Date()).toUTCString() };
  const files: ClusterResourceFile[] = [];
  const isCatalog = (i: MirroredImage): boolean => i.catalog === true || i.role === 'catalog';
  const inMirrorSets = images.filter((i) => !isCatalog(i) && i.role !== 'graph');
  const byDigest = mirrorsByCategory(inMirrorSets.filter((i) => isByDigest(i.source) || i.category === 'release'));
  const byTag = mirrorsByCategory(inMirrorSets.filter((i) => !isByDigest(i.source)));
  if (byDigest.size > 0) {
    files.push({ name: 'idms-oc-mirror.yaml', content: mirrorSets('ImageDigestMirrorSet', 'idms', 'imageDigestMirrors', byDigest, annotations) });
  }
  if (byTag.size > 0) {
    files.push({ name: 'itms-oc-mirror.yaml', content: mirrorSets('ImageTagMirrorSet', 'itms', 'imageTagMirrors', byTag, annotations) });
  }
  for (const catalog of images.filter(isCatalog)) {
    const ref = parseImageReference(catalog.destination);
    const name = `${lastComponent(ref)}-${catalogSuffix(ref)}`.replaceAll('.', '-');
    files.push({
      name: `cs-${name}.yaml`,
      content: stringify(
        catalog.catalogSourceTemplate === undefined
          ? {
              apiVersion: 'operators.coreos.com/v1alpha1',
              kind: 'CatalogSource',
              metadata: { name: `cs-${name}`, namespace: 'openshift-marketplace', annotations },
              spec: { image: catalog.destination, sourceType: 'grpc' },
            }
          : catalogSourceFromTemplate(catalog.catalogSourceTemplate, { name: `cs-${name}`, image: catalog.destination, annotations }),
      ),
    });
    files.push({
      name: `cc-${name}.yaml`,
      content: stringify({
        apiVersion: 'olm.operatorframework.io/v1',
        kind: 'ClusterCatalog',
        metadata: { name: `cc-${name}`, annotations },
        spec: { source: { type: 'Image', image: { ref: catalog.destination } } },
      }),
    });
  }
  const graph = images.find((i) => i.role === 'graph');
  const payload = images.find((i) => i.role === 'release-payload');
  if (graph !== undefined && payload !== undefined) {
    const releases = parseImageReference(payload.destination);
    files.push({
      name: 'updateService.yaml',
      content: stringify({
        apiVersion: 'updateservice.operator.openshift.io/v1',
        kind: 'UpdateService',
        metadata: { name: 'update-service-oc-mirror', annotations },
        spec: { graphDataImage: graph.destination, releases: `${releases.registry}/${releases.repository}`, replicas: 2 },
      }),
    });
  }
  return files;
}

/** Writes the files into `dir` (created); returns their paths. */
export async function writeClusterResources(dir: string, files: ClusterResourceFile[]): Promise<string[]> {
  if (files.length === 0) return [];
  await mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (const file of files) {
    const path = join(dir, file.name);
    await writeFile(path, file.content);
    paths.push(path);
  }
  return paths;
}

function isByDigest(source: string): boolean {
  const ref = parseImageReference(source);
  return ref.digest !== undefined && ref.tag === undefined;
}

/** source scope → mirror scopes, per category, in first-seen order. */
function mirrorsByCategory(images: MirroredImage[]): Map<MirrorCategory, Map<string, string[]>> {
  const out = new Map<MirrorCategory, Map<string, string[]>>();
  for (const image of images) {
    const { source, mirror } = scopes(parseImageReference(image.source), parseImageReference(image.destination));
    let category = out.get(image.category);
    if (category === undefined) {
      category = new Map();
      out.set(image.category, category);
    }
    const mirrors = category.get(source) ?? [];
    if (!mirrors.includes(mirror)) mirrors.push(mirror);
    category.set(source, mirrors);
  }
  return out;
}

/**
 * oc-mirror's scoping: when the mirror's path ends with the source's path, both are cut to their
 * namespace (one entry covers every repository beside it); otherwise each is a single repository.
 * The match is by whole path components: `k8s/kube-pause` does not end with `pause` (oc-mirror's
 * plain string suffix would map all of `registry.k8s.io` to `…/k8s`, where `pause` is not).
 */
function scopes(source: ImageReference, mirror: ImageReference): { source: string; mirror: string } {
  const endsWithSourcePath = mirror.repository === source.repository || mirror.repository.endsWith(`/${source.repository}`);
  if (endsWithSourcePath) return { source: namespaceScope(source), mirror: namespaceScope(mirror) };
  return { source: `${source.registry}/${source.repository}`, mirror: `${mirror.registry}/${mirror.repository}` };
}

function namespaceScope(ref: ImageReference): string {
  const parts = ref.repository.split('/');
  const namespace = parts.slice(0, -1).join('/');
  return namespace === '' ? ref.registry : `${ref.registry}/${namespace}`;
}

function mirrorSets(kind: string, prefix: string, field: string, byCategory: Map<MirrorCategory, Map<string, string[]>>, annotations: Record<string, string>): string {
  const order: MirrorCategory[] = ['release', 'operator', 'generic'];
  return order
    .filter((category) => byCategory.has(category))
    .map((category) =>
      stringify({
        apiVersion: 'config.openshift.io/v1',
        kind,
        metadata: { name: `${prefix}-${category}-0`, annotations },
        spec: { [field]: [...(byCategory.get(category) ?? [])].map(([source, mirrors]) => ({ mirrors, source })) },
      }),
    )
    .map((doc) => `---\n${doc}`)
    .join('');
}

function lastComponent(ref: ImageReference): string {
  return ref.repository.split('/').pop() ?? ref.repository;
}

function catalogSuffix(ref: ImageReference): string {
  if (ref.tag === undefined) return (ref.digest ?? '').slice('sha256:'.length, 'sha256:'.length + HASH_TRUNC) || '0';
  return (
    ref.tag
      .slice(0, HASH_TRUNC)
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-') || '0'
  );
}
