import { describe, expect, it } from 'vitest';
import { MeshmirrorError, parseImageReference, type Digest } from '@meshmirror/shared';
import { parseDockerDestination, pushTarget, withMaxNestedPaths, type PushDestination } from './push-targets.ts';

const HEX_A = '0123456789abcdef'.repeat(4);
const HEX_B = 'fedcba9876543210'.repeat(4);
const DIGEST_A: Digest = `sha256:${HEX_A}`;
const DIGEST_B: Digest = `sha256:${HEX_B}`;

describe('parseDockerDestination', () => {
  it.each<[string, string, PushDestination]>([
    ['host only', 'docker://mirror.example.com', { registry: 'mirror.example.com', prefix: '' }],
    ['one-level prefix', 'docker://mirror.example.com/ocp', { registry: 'mirror.example.com', prefix: 'ocp' }],
    ['nested prefix', 'docker://mirror.example.com/team/ocp/v4', { registry: 'mirror.example.com', prefix: 'team/ocp/v4' }],
    ['trailing slash after host', 'docker://mirror.example.com/', { registry: 'mirror.example.com', prefix: '' }],
    ['trailing slash after prefix', 'docker://mirror.example.com/team/ocp/', { registry: 'mirror.example.com', prefix: 'team/ocp' }],
    ['several trailing slashes', 'docker://mirror.example.com/team//', { registry: 'mirror.example.com', prefix: 'team' }],
    ['localhost with port', 'docker://localhost:5000', { registry: 'localhost:5000', prefix: '' }],
    ['localhost with port and prefix', 'docker://localhost:5000/mirror/ns', { registry: 'localhost:5000', prefix: 'mirror/ns' }],
    ['bare localhost', 'docker://localhost/x', { registry: 'localhost', prefix: 'x' }],
    ['dotless host with port', 'docker://registry:8443/ocp', { registry: 'registry:8443', prefix: 'ocp' }],
    ['dotted host with port', 'docker://registry.local:443', { registry: 'registry.local:443', prefix: '' }],
    ['separators inside prefix components', 'docker://mirror.example.com/my-team/a_b/c.d', { registry: 'mirror.example.com', prefix: 'my-team/a_b/c.d' }],
  ])('%s: %s', (_name, arg, expected) => {
    expect(parseDockerDestination(arg)).toEqual(expected);
  });

  it.each<[string, string]>([
    ['nothing after docker://', 'docker://'],
    ['only a slash after docker://', 'docker:///'],
    ['first component is not a host (no dot, colon or localhost)', 'docker://notahost/x'],
    ['dotless host without port and no prefix', 'docker://notahost'],
    ['upper-case path component', 'docker://mirror.example.com/Team'],
    ['upper-case nested path component', 'docker://mirror.example.com/team/OCP'],
    ['empty path component', 'docker://mirror.example.com//ocp'],
    ['tag in the prefix', 'docker://mirror.example.com/ocp:v1'],
    ['digest in the prefix', `docker://mirror.example.com/ocp@${DIGEST_A}`],
    ['invalid host character', 'docker://bad_host.example.com/ocp'],
    ['non-numeric port', 'docker://mirror.example.com:abc/ocp'],
    ['white space', 'docker://mirror.example.com/o cp'],
  ])('rejects %s: %s', (_name, arg) => {
    let caught: unknown;
    try {
      parseDockerDestination(arg);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(MeshmirrorError);
    expect((caught as MeshmirrorError).code).toBe('MM_USAGE');
    expect((caught as MeshmirrorError).message).toContain(`destination "${arg}"`);
  });
});

describe('pushTarget', () => {
  const plain: PushDestination = { registry: 'mirror.example.com', prefix: '' };
  const nested: PushDestination = { registry: 'mirror.example.com', prefix: 'team/ocp' };
  const withPort: PushDestination = { registry: 'localhost:5000', prefix: 'mirror' };

  interface Case {
    name: string;
    destination: PushDestination;
    source: string;
    targetRepo?: string;
    targetTag?: string;
    /** The manifest digest of the image as archived; by default the source's own digest or DIGEST_A. */
    digest?: Digest;
    repository: string;
    tag: string;
    reference: string;
  }

  it.each<Case>([
    {
      name: 'no prefix: the source path, unchanged',
      destination: plain,
      source: 'quay.io/ns/app:1.0',
      repository: 'ns/app',
      tag: '1.0',
      reference: 'mirror.example.com/ns/app:1.0',
    },
    {
      name: 'nested prefix goes before the source path',
      destination: nested,
      source: 'registry.redhat.io/ubi9/ubi:9.4',
      repository: 'team/ocp/ubi9/ubi',
      tag: '9.4',
      reference: 'mirror.example.com/team/ocp/ubi9/ubi:9.4',
    },
    {
      name: 'prefix parsed from a destination with a trailing slash',
      destination: parseDockerDestination('docker://mirror.example.com/team/ocp/'),
      source: 'quay.io/ns/app:2',
      repository: 'team/ocp/ns/app',
      tag: '2',
      reference: 'mirror.example.com/team/ocp/ns/app:2',
    },
    {
      name: 'deep source path is kept whole',
      destination: nested,
      source: 'quay.io/openshift-release-dev/ocp-v4.0-art-dev:4.15.0',
      repository: 'team/ocp/openshift-release-dev/ocp-v4.0-art-dev',
      tag: '4.15.0',
      reference: 'mirror.example.com/team/ocp/openshift-release-dev/ocp-v4.0-art-dev:4.15.0',
    },
    {
      name: 'docker.io official image keeps library/',
      destination: plain,
      source: 'docker.io/library/nginx:1',
      repository: 'library/nginx',
      tag: '1',
      reference: 'mirror.example.com/library/nginx:1',
    },
    {
      name: 'docker.io short name gets library/',
      destination: nested,
      source: 'nginx:1',
      repository: 'team/ocp/library/nginx',
      tag: '1',
      reference: 'mirror.example.com/team/ocp/library/nginx:1',
    },
    {
      name: 'docker.io user image',
      destination: plain,
      source: 'bitnami/redis:7.2',
      repository: 'bitnami/redis',
      tag: '7.2',
      reference: 'mirror.example.com/bitnami/redis:7.2',
    },
    {
      name: 'source without tag or digest is latest',
      destination: plain,
      source: 'quay.io/ns/app',
      repository: 'ns/app',
      tag: 'latest',
      reference: 'mirror.example.com/ns/app:latest',
    },
    {
      name: 'port in the destination host',
      destination: withPort,
      source: 'quay.io/ns/app:1.0',
      repository: 'mirror/ns/app',
      tag: '1.0',
      reference: 'localhost:5000/mirror/ns/app:1.0',
    },
    {
      name: 'port in the source host does not leak into the path',
      destination: plain,
      source: 'registry.internal:5000/ns/app:3',
      repository: 'ns/app',
      tag: '3',
      reference: 'mirror.example.com/ns/app:3',
    },
    {
      name: 'targetRepo replaces the source path',
      destination: plain,
      source: 'quay.io/a/b:1',
      targetRepo: 'custom-namespace/my-image',
      repository: 'custom-namespace/my-image',
      tag: '1',
      reference: 'mirror.example.com/custom-namespace/my-image:1',
    },
    {
      name: 'targetRepo keeps the destination prefix',
      destination: nested,
      source: 'quay.io/a/b:1',
      targetRepo: 'custom-namespace/my-image',
      repository: 'team/ocp/custom-namespace/my-image',
      tag: '1',
      reference: 'mirror.example.com/team/ocp/custom-namespace/my-image:1',
    },
    {
      name: 'targetRepo with slashes at its ends',
      destination: nested,
      source: 'quay.io/a/b:1',
      targetRepo: '/custom/img/',
      repository: 'team/ocp/custom/img',
      tag: '1',
      reference: 'mirror.example.com/team/ocp/custom/img:1',
    },
    {
      name: 'targetTag replaces the tag',
      destination: plain,
      source: 'quay.io/a/b:1',
      targetTag: 'custom-tag',
      repository: 'a/b',
      tag: 'custom-tag',
      reference: 'mirror.example.com/a/b:custom-tag',
    },
    {
      name: 'targetRepo and targetTag together',
      destination: withPort,
      source: 'quay.io/a/b:1',
      targetRepo: 'x/y',
      targetTag: 'v2',
      repository: 'mirror/x/y',
      tag: 'v2',
      reference: 'localhost:5000/mirror/x/y:v2',
    },
    {
      name: 'by digest only: tagged with the 64 hex of the digest',
      destination: nested,
      source: `quay.io/ns/app@${DIGEST_A}`,
      repository: 'team/ocp/ns/app',
      tag: HEX_A,
      reference: `mirror.example.com/team/ocp/ns/app:${HEX_A}`,
    },
    {
      name: 'by digest only on docker.io short name',
      destination: plain,
      source: `alpine@${DIGEST_B}`,
      repository: 'library/alpine',
      tag: HEX_B,
      reference: `mirror.example.com/library/alpine:${HEX_B}`,
    },
    {
      name: 'by tag and digest: keeps only the tag',
      destination: plain,
      source: `quay.io/ns/app:1.2.3@${DIGEST_A}`,
      repository: 'ns/app',
      tag: '1.2.3',
      reference: 'mirror.example.com/ns/app:1.2.3',
    },
    {
      name: 'by tag: the archived digest does not matter',
      destination: plain,
      source: 'quay.io/ns/app:1.0',
      digest: DIGEST_B,
      repository: 'ns/app',
      tag: '1.0',
      reference: 'mirror.example.com/ns/app:1.0',
    },
    {
      name: 'targetTag wins over a by-digest source',
      destination: plain,
      source: `quay.io/ns/app@${DIGEST_A}`,
      targetTag: 'pinned',
      repository: 'ns/app',
      tag: 'pinned',
      reference: 'mirror.example.com/ns/app:pinned',
    },
  ])('$name', (c) => {
    const ref = parseImageReference(c.source);
    const image: { ref: typeof ref; targetRepo?: string; targetTag?: string } = { ref };
    if (c.targetRepo !== undefined) image.targetRepo = c.targetRepo;
    if (c.targetTag !== undefined) image.targetTag = c.targetTag;
    const digest = c.digest ?? ref.digest ?? DIGEST_A;
    expect(pushTarget(c.destination, image, digest)).toEqual({
      registry: c.destination.registry,
      repository: c.repository,
      tag: c.tag,
      reference: c.reference,
    });
  });
});

describe('pushTarget for a referrer', () => {
  it('pushes it by digest into its subject’s repository, with no tag', () => {
    const ref = parseImageReference(`quay.io/ns/app@${DIGEST_A}`);
    expect(pushTarget(parseDockerDestination('docker://mirror.example.com/pre'), { ref, targetRepo: 'other/app', role: 'referrer' }, DIGEST_A)).toEqual({
      registry: 'mirror.example.com',
      repository: 'pre/other/app',
      reference: `mirror.example.com/pre/other/app@${DIGEST_A}`,
    });
  });
});

describe('--max-nested-paths', () => {
  // oc-mirror's own cases (internal/pkg/image/image_test.go), on the repository path.
  const path = 'ocpbugs-11922/mirror-release/gitlab-org/ci-cd/gitlab-runner-ubi-images/gitlab-runner-helper-ocp';
  it.each([
    [2, 'ocpbugs-11922/mirror-release-gitlab-org-ci-cd-gitlab-runner-ubi-images-gitlab-runner-helper-ocp'],
    [3, 'ocpbugs-11922/mirror-release/gitlab-org-ci-cd-gitlab-runner-ubi-images-gitlab-runner-helper-ocp'],
    [4, 'ocpbugs-11922/mirror-release/gitlab-org/ci-cd-gitlab-runner-ubi-images-gitlab-runner-helper-ocp'],
    [5, 'ocpbugs-11922/mirror-release/gitlab-org/ci-cd/gitlab-runner-ubi-images-gitlab-runner-helper-ocp'],
    [6, path],
    [0, path],
  ])('keeps %i components as oc-mirror does', (max, expected) => {
    expect(withMaxNestedPaths(path, max)).toBe(expected);
  });

  it('flattens the target path, prefix included, for every image', () => {
    const destination = parseDockerDestination('docker://mirror.example.com/ocp', { maxNestedPaths: 2 });
    expect(pushTarget(destination, { ref: parseImageReference('quay.io/team/sub/app:1.0') }, DIGEST_A)).toMatchObject({
      repository: 'ocp/team-sub-app',
      reference: 'mirror.example.com/ocp/team-sub-app:1.0',
    });
  });
});
