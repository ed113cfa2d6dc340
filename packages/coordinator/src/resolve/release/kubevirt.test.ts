import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { kubeVirtComponents } from './release-payload.ts';
import { kubeVirtStreamKeys } from './releases.ts';

const ref = (n: string) => `quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:${n.repeat(64)}`;
const bootImages = (stream: unknown) =>
  Buffer.from(
    stringify({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'coreos-bootimages' },
      data: { stream: typeof stream === 'string' ? stream : JSON.stringify(stream) },
    }),
  );
const stream = { architectures: { x86_64: { images: { kubevirt: { 'digest-ref': ref('a') } } }, s390x: { images: { kubevirt: { 'digest-ref': ref('b') } } } } };

describe('kubeVirtContainer', () => {
  it.each([
    [undefined, ['x86_64']],
    [['amd64'], ['x86_64']],
    [['arm64'], []],
    [['s390x', 'ppc64le'], ['s390x']],
    [['multi'], ['s390x', 'x86_64']],
  ])('architectures %j read the CoreOS stream keys %j, as oc-mirror does', (architectures, keys) => {
    expect(kubeVirtStreamKeys(architectures)).toEqual(keys);
  });

  it('names one component kube-virt-container, or one per key when several', () => {
    expect(kubeVirtComponents(bootImages(stream), ['x86_64'], 'f')).toEqual([{ name: 'kube-virt-container', image: ref('a') }]);
    expect(kubeVirtComponents(bootImages(stream), ['s390x', 'x86_64'], 'f').map((c) => c.name)).toEqual(['kube-virt-container-s390x', 'kube-virt-container-x86_64']);
  });

  it('fails the release, naming the file, without the file, with a stream that is not JSON, or without a digest-ref', () => {
    expect(() => kubeVirtComponents(undefined, ['x86_64'], 'payload X: boot images')).toThrow(/payload X: boot images: not in the payload/);
    expect(() => kubeVirtComponents(bootImages('{not json'), ['x86_64'], 'f')).toThrow(/f: data.stream is not CoreOS stream JSON/);
    expect(() => kubeVirtComponents(bootImages(stream), ['aarch64'], 'f')).toThrow(/no architectures\.aarch64\.images\.kubevirt\["digest-ref"\]/);
  });
});
