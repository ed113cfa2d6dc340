/**
 * The ConfigMap a disconnected cluster reads release signatures from (oc-mirror's
 * `signature-configmap.json` and `.yaml`): in `openshift-config-managed`, labelled
 * `release.openshift.io/verification-signatures`, one `binaryData` entry per signature named
 * `sha256-<hex>-<n>` (the cluster matches the `sha256-<hex>` prefix against the release it verifies).
 */
import { stringify as yamlStringify } from 'yaml';
import type { Digest } from '@meshmirror/shared';
import type { ClusterResourceFile } from './cluster-resources.ts';

export const SIGNATURE_CONFIGMAP_NAME = 'mirrored-release-signatures';

export function releaseSignaturesConfigMap(releases: Array<{ digest: Digest; signatures: Uint8Array[] }>, options: { createdAt?: Date } = {}): ClusterResourceFile[] {
  const binaryData: Record<string, string> = {};
  for (const { digest, signatures } of releases) {
    signatures.forEach((bytes, i) => {
      binaryData[`${digest.replace(':', '-')}-${i + 1}`] = Buffer.from(bytes).toString('base64');
    });
  }
  if (Object.keys(binaryData).length === 0) return [];
  const configMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: SIGNATURE_CONFIGMAP_NAME,
      namespace: 'openshift-config-managed',
      labels: { 'release.openshift.io/verification-signatures': '' },
      annotations: { createdBy: 'meshmirror', createdAt: (options.createdAt ?? new Date()).toISOString() },
    },
    binaryData,
  };
  return [
    { name: 'signature-configmap.json', content: `${JSON.stringify(configMap, null, 2)}\n` },
    { name: 'signature-configmap.yaml', content: yamlStringify(configMap) },
  ];
}
