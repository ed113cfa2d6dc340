import { describe, expect, it } from 'vitest';
import { LEGACY_IMAGE_ORIGIN, parseRunMetadata, RUN_METADATA_VERSION, runMetadataSchema, type RunMetadata } from './run-metadata.ts';

/**
 * run.json as meshmirror wrote it before run.json had a version: written at b774732 (the branch
 * point of the versioned schema) by a mirror-to-disk run of the OpenShift example configuration
 * (test/support/openshift-fixture.ts) plus an additional image that does not exist, run twice with
 * one cache so that the history has an entry. Trimmed to one image of each kind, role and status
 * (7 of its 62) and laid out one image per line; no value changed.
 */
const LEGACY_RUN_JSON = String.raw`
{
  "tool": "meshmirror",
  "runId": "a43ca13d-02cc-457c-8ac6-22e0a1228f0f",
  "startedAt": "2026-12-04T12:38:45.328Z",
  "writtenAt": "2026-12-04T12:38:48.263Z",
  "imageSetConfig": {"kind":"ImageSetConfiguration","apiVersion":"mirror.openshift.io/v1alpha2","archiveSize":8,"mirror":{"platform":{"channels":[{"name":"stable-4.19","type":"ocp","minVersion":"4.19.2","maxVersion":"4.19.10","shortestPath":false,"full":false}],"graph":true,"architectures":["amd64"],"kubeVirtContainer":false},"operators":[{"catalog":"127.0.0.1:34251/redhat/redhat-operator-index:v4.19","full":false,"skipDependencies":false,"packages":[{"name":"web-terminal","channels":[],"bundles":[],"selectors":[]},{"name":"cluster-logging","channels":[],"bundles":[],"selectors":[]},{"name":"compliance-operator","channels":[],"bundles":[],"selectors":[]}]}],"additionalImages":[{"name":"127.0.0.1:34251/ubi9/ubi:latest"},{"name":"127.0.0.1:34251/missing/image:1.0"}],"blockedImages":[],"samples":[]}},
  "images": [
    {"source":"localhost/openshift/graph-image:latest","kind":"release","origin":"mirror.platform.graph","role":"graph","targetRepo":"openshift/graph-image","targetTag":"latest","digest":"sha256:85fca33f0e86c0fd86753f88d680de928b5c3597f3215b45b8eeb4b0eb52156c","mediaType":"application/vnd.oci.image.manifest.v1+json","target":"file:///tmp/runjson-legacy/work-Oh5bVH/out/openshift/graph-image:latest","platforms":[],"skippedPlatforms":[],"status":"archived"},
    {"source":"127.0.0.1:34251/redhat/redhat-operator-index:v4.19","kind":"operator","origin":"mirror.operators[0]","role":"catalog","targetRepo":"redhat/redhat-operator-index","targetTag":"v4.19","digest":"sha256:9245e3c83a373667c9774afa6478870791b3b5b08471520b7ee18c4214afae35","mediaType":"application/vnd.oci.image.manifest.v1+json","target":"file:///tmp/runjson-legacy/work-Oh5bVH/out/redhat/redhat-operator-index:v4.19","platforms":[],"skippedPlatforms":[],"status":"archived"},
    {"source":"127.0.0.1:34251/openshift-release-dev/ocp-release@sha256:e48372781f3841350834d350d0888ace7064651d6a8f7716ad5b57448df94688","kind":"release","origin":"mirror.platform.channels[0] (4.19.2)","role":"release-payload","targetRepo":"openshift/release-images","targetTag":"4.19.2-x86_64","digest":"sha256:e48372781f3841350834d350d0888ace7064651d6a8f7716ad5b57448df94688","mediaType":"application/vnd.oci.image.manifest.v1+json","target":"file:///tmp/runjson-legacy/work-Oh5bVH/out/openshift/release-images:4.19.2-x86_64","platforms":[],"skippedPlatforms":[],"status":"archived"},
    {"source":"127.0.0.1:34251/openshift-release-dev/ocp-v4.0-art-dev@sha256:75242e55716fc4112ed997594ccb88ca83e5ab190faa5abd5d282182d8bddea5","kind":"release","origin":"mirror.platform.channels[0] (4.19.2) component cluster-version-operator","targetRepo":"openshift/release","targetTag":"4.19.2-x86_64-cluster-version-operator","digest":"sha256:75242e55716fc4112ed997594ccb88ca83e5ab190faa5abd5d282182d8bddea5","mediaType":"application/vnd.oci.image.manifest.v1+json","target":"file:///tmp/runjson-legacy/work-Oh5bVH/out/openshift/release:4.19.2-x86_64-cluster-version-operator","platforms":[],"skippedPlatforms":[],"status":"archived"},
    {"source":"127.0.0.1:34251/openshift-logging/cluster-logging-operator-bundle@sha256:98c8fdf276180c8f14ad8423cd336c8924a485a4cabb0f8b4f9d126c908752d1","kind":"operator","origin":"mirror.operators[0] (package cluster-logging, bundle cluster-logging.v6.1.3)","digest":"sha256:98c8fdf276180c8f14ad8423cd336c8924a485a4cabb0f8b4f9d126c908752d1","mediaType":"application/vnd.oci.image.manifest.v1+json","target":"file:///tmp/runjson-legacy/work-Oh5bVH/out/openshift-logging/cluster-logging-operator-bundle@sha256:98c8fdf276180c8f14ad8423cd336c8924a485a4cabb0f8b4f9d126c908752d1","platforms":[],"skippedPlatforms":[],"status":"archived"},
    {"source":"127.0.0.1:34251/ubi9/ubi:latest","kind":"additional","origin":"mirror.additionalImages[0]","digest":"sha256:caf1849e48e72e577534b9200807f12c34efde6bbf5211fc9832f78499fe8599","mediaType":"application/vnd.oci.image.index.v1+json","target":"file:///tmp/runjson-legacy/work-Oh5bVH/out/ubi9/ubi:latest","platforms":["linux/amd64"],"skippedPlatforms":["linux/arm64"],"status":"archived"},
    {"source":"127.0.0.1:34251/missing/image:1.0","kind":"additional","status":"failed","code":"MM_REGISTRY","reason":"GET manifest 127.0.0.1:34251/missing/image:1.0: 404 Not Found (MANIFEST_UNKNOWN: manifest unknown)"}
  ],
  "history": [
    {"runId":"a43ca13d-02cc-457c-8ac6-22e0a1228f0f","startedAt":"2026-12-04T12:38:45.328Z","finishedAt":"2026-12-04T12:38:46.808Z","state":"partial"}
  ],
  "archive": {"archiveId":"80f3bd80-0148-4e20-b7ea-30737ef64ad5","chunkCount":1,"writtenAt":"2026-12-04T12:38:48.171Z"}
}`;

function parsed(value: unknown): RunMetadata {
  const result = parseRunMetadata(value);
  if (!result.success) throw new Error(`expected run.json to parse: ${result.problem}`);
  return result.data;
}

function problem(value: unknown): string {
  const result = parseRunMetadata(value);
  if (result.success) throw new Error('expected run.json to be refused');
  return result.problem;
}

describe('parseRunMetadata', () => {
  it('reads run.json written before versions, mapped to the current version', () => {
    const legacy = JSON.parse(LEGACY_RUN_JSON) as Record<string, unknown>;
    const metadata = parsed(legacy);
    expect(metadata).toEqual({ schemaVersion: 1, ...legacy });
    expect(metadata.archive).toEqual({ archiveId: '80f3bd80-0148-4e20-b7ea-30737ef64ad5', chunkCount: 1, writtenAt: '2026-12-04T12:38:48.171Z' });
    const catalog = metadata.images[1];
    expect(catalog).toMatchObject({ status: 'archived', kind: 'operator', role: 'catalog', targetRepo: 'redhat/redhat-operator-index', targetTag: 'v4.19' });
    const ubi = metadata.images.find((image) => image.source.endsWith('/ubi9/ubi:latest'));
    expect(ubi).toMatchObject({ status: 'archived', platforms: ['linux/amd64'], skippedPlatforms: ['linux/arm64'] });
    expect(metadata.images.at(-1)).toMatchObject({ status: 'failed', kind: 'additional', code: 'MM_REGISTRY' });
    expect(metadata.history).toEqual([{ runId: metadata.runId, startedAt: metadata.startedAt, finishedAt: '2026-12-04T12:38:46.808Z', state: 'partial' }]);
  });

  it('gives an image of a legacy run.json without origin (archives older than the OpenShift content) the legacy origin', () => {
    const legacy = JSON.parse(LEGACY_RUN_JSON) as { images: Array<Record<string, unknown>> };
    for (const image of legacy.images) for (const key of ['origin', 'role', 'targetRepo', 'targetTag']) delete image[key];
    const images = parsed(legacy).images;
    expect(images.filter((image) => image.status === 'archived').map((image) => image.origin)).toEqual(Array(6).fill(LEGACY_IMAGE_ORIGIN));
    expect(images[0]).not.toHaveProperty('role');
  });

  it('reads the current version back as written', () => {
    const current = parsed(JSON.parse(LEGACY_RUN_JSON));
    const written: unknown = JSON.parse(JSON.stringify(current));
    expect(written).toMatchObject({ schemaVersion: 1 });
    expect(parsed(written)).toEqual(current);
    expect(runMetadataSchema.parse(written)).toEqual(current);
  });

  it('drops fields it does not know within its version', () => {
    const current = parsed(JSON.parse(LEGACY_RUN_JSON));
    expect(parsed({ ...current, addedLater: { anything: true } })).toEqual(current);
  });

  it('refuses a run.json from a newer meshmirror, saying which versions', () => {
    const newer = { ...(JSON.parse(LEGACY_RUN_JSON) as object), schemaVersion: RUN_METADATA_VERSION + 1, images: 'a shape this build does not know' };
    expect(problem(newer)).toBe(
      `was written by a newer meshmirror (run.json version ${RUN_METADATA_VERSION + 1}; this build reads up to ${RUN_METADATA_VERSION}); ` +
        'use a meshmirror at least as new as the one that wrote the archive',
    );
  });

  it('refuses a bad field, naming its path, in either version', () => {
    const legacy = JSON.parse(LEGACY_RUN_JSON) as { images: Array<Record<string, unknown>> };
    legacy.images[3]!['digest'] = 'sha256:not-hex';
    expect(problem(legacy)).toBe('is not meshmirror run metadata (run.json without a version) at images[3].digest: must be a sha256 digest');

    const current = JSON.parse(JSON.stringify(parsed(JSON.parse(LEGACY_RUN_JSON)))) as { images: Array<Record<string, unknown>>; archive: Record<string, unknown> };
    current.images[5]!['skippedPlatforms'] = 'linux/arm64';
    expect(problem(current)).toMatch(/^is not meshmirror run metadata \(run\.json version 1\) at images\[5\]\.skippedPlatforms: /);
    delete current.images[5]!['skippedPlatforms'];
    expect(problem(current)).toMatch(/ at images\[5\]\.skippedPlatforms: /);
    current.images[5]!['status'] = 'lost';
    expect(problem(current)).toMatch(/ at images\[5\]\.status: /);
  });

  it('refuses a version that is not a whole number, and what is not an object', () => {
    const legacy = JSON.parse(LEGACY_RUN_JSON) as object;
    expect(problem({ ...legacy, schemaVersion: '2' })).toMatch(/^is not meshmirror run metadata \(run\.json version "2"\) at schemaVersion: /);
    expect(problem({ ...legacy, schemaVersion: 0 })).toMatch(/ at schemaVersion: /);
    expect(problem([legacy])).toMatch(/ at \(root\): /);
  });
});
