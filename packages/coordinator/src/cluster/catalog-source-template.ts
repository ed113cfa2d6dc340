/**
 * `operators[].targetCatalogSourceTemplate`: the CatalogSource written for a mirrored catalog starts
 * from the user's template, as oc-mirror's does. The template must be a CatalogSource
 * (`operators.coreos.com/v1alpha1`) with `spec.sourceType` empty or `grpc` and no `spec.configMap`;
 * a bad file stops the run before anything is fetched, naming the field and the file (oc-mirror
 * logs it and writes the plain CatalogSource, which a user finds out about on the cluster).
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { MeshmirrorError, type ImageSetConfig } from '@meshmirror/shared';

export type CatalogSourceTemplate = Record<string, unknown>;

/** The templates of the configuration's catalogs, by origin (`mirror.operators[i]`); relative paths from the working folder, as oc-mirror reads them. */
export async function loadCatalogSourceTemplates(config: ImageSetConfig): Promise<Map<string, CatalogSourceTemplate>> {
  const templates = new Map<string, CatalogSourceTemplate>();
  for (const [i, op] of config.mirror.operators.entries()) {
    if (op.targetCatalogSourceTemplate === undefined) continue;
    const field = `mirror.operators[${i}].targetCatalogSourceTemplate`;
    const path = resolve(op.targetCatalogSourceTemplate);
    const bad = (problem: string): MeshmirrorError => new MeshmirrorError('MM_CONFIG_INVALID', `${field}: ${path}: ${problem}`);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (cause) {
      throw bad(`cannot read: ${(cause as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (cause as Error).message}`);
    }
    let template: unknown;
    try {
      template = parse(text);
    } catch (cause) {
      throw bad(`not YAML: ${(cause as Error).message.split('\n')[0] ?? ''}`);
    }
    templates.set(`mirror.operators[${i}]`, checkTemplate(template, bad));
  }
  return templates;
}

function checkTemplate(value: unknown, bad: (problem: string) => MeshmirrorError): CatalogSourceTemplate {
  if (!isRecord(value)) throw bad('not a CatalogSource: expected a YAML mapping');
  if (value['apiVersion'] !== 'operators.coreos.com/v1alpha1')
    throw bad(`apiVersion: expected operators.coreos.com/v1alpha1, got ${JSON.stringify(value['apiVersion'])}`);
  if (value['kind'] !== 'CatalogSource') throw bad(`kind: expected CatalogSource, got ${JSON.stringify(value['kind'])}`);
  const spec = value['spec'];
  if (spec !== undefined && !isRecord(spec)) throw bad('spec: expected a mapping');
  if (spec !== undefined) {
    const sourceType = spec['sourceType'];
    if (sourceType !== undefined && sourceType !== '' && sourceType !== 'grpc')
      throw bad(`spec.sourceType: a mirrored catalog is served over grpc, got ${JSON.stringify(sourceType)}`);
    if (spec['configMap'] !== undefined) throw bad('spec.configMap: a mirrored catalog is an image, not a ConfigMap');
  }
  const metadata = value['metadata'];
  if (metadata !== undefined && !isRecord(metadata)) throw bad('metadata: expected a mapping');
  return value;
}

/**
 * The CatalogSource from a template: name, namespace, `sourceType` and image are the mirror's;
 * meshmirror's annotations join the template's; `creationTimestamp` and `status` go; all else stays.
 */
export function catalogSourceFromTemplate(
  template: CatalogSourceTemplate,
  fields: { name: string; image: string; annotations: Record<string, string> },
): Record<string, unknown> {
  const { status: _status, ...rest } = structuredClone(template);
  const metadata = isRecord(rest['metadata']) ? rest['metadata'] : {};
  const { creationTimestamp: _created, ...keptMetadata } = metadata;
  const annotations = isRecord(metadata['annotations']) ? metadata['annotations'] : {};
  const spec = isRecord(rest['spec']) ? rest['spec'] : {};
  return {
    ...rest,
    metadata: { ...keptMetadata, name: fields.name, namespace: 'openshift-marketplace', annotations: { ...annotations, ...fields.annotations } },
    spec: { ...spec, sourceType: 'grpc', image: fields.image },
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
