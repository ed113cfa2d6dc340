import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseImageSetConfig } from '@meshmirror/shared';
import { loadCatalogSourceTemplates } from './catalog-source-template.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-cs-template-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function load(body: string | undefined): Promise<unknown> {
  const path = join(dir, `t-${Math.random().toString(16).slice(2)}.yaml`);
  if (body !== undefined) await writeFile(path, body);
  const config = parseImageSetConfig(
    `kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\nmirror:\n  operators:\n    - catalog: registry.example.com/redhat/redhat-operator-index:v4.19\n      targetCatalogSourceTemplate: ${path}\n`,
    'isc.yaml',
  );
  return await loadCatalogSourceTemplates(config).then(
    (t) => t.get('mirror.operators[0]'),
    (err: Error) => err.message.replace(path, 'FILE'),
  );
}

const head = 'apiVersion: operators.coreos.com/v1alpha1\nkind: CatalogSource\n';

describe('targetCatalogSourceTemplate', () => {
  it.each([
    ['a missing file', undefined, 'cannot read: no such file'],
    ['a file that is not YAML', 'a: [', 'not YAML'],
    ['a list', '- a\n- b\n', 'not a CatalogSource: expected a YAML mapping'],
    ['another apiVersion', 'apiVersion: v1\nkind: CatalogSource\n', 'apiVersion: expected operators.coreos.com/v1alpha1, got "v1"'],
    ['another kind', 'apiVersion: operators.coreos.com/v1alpha1\nkind: Subscription\n', 'kind: expected CatalogSource, got "Subscription"'],
    ['a configmap source type', `${head}spec:\n  sourceType: configmap\n`, 'spec.sourceType: a mirrored catalog is served over grpc, got "configmap"'],
    ['a configMap', `${head}spec:\n  configMap: x\n`, 'spec.configMap: a mirrored catalog is an image, not a ConfigMap'],
  ])('refuses %s, naming the field and the file', async (_what, body, problem) => {
    expect(await load(body)).toEqual(expect.stringContaining(`mirror.operators[0].targetCatalogSourceTemplate: FILE: ${problem}`));
  });

  it('accepts a CatalogSource with spec.sourceType grpc or none', async () => {
    expect(await load(`${head}spec:\n  sourceType: grpc\n  displayName: x\n`)).toMatchObject({ spec: { displayName: 'x' } });
    expect(await load(head)).toMatchObject({ kind: 'CatalogSource' });
  });
});
