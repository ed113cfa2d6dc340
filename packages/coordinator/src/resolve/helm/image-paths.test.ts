import { describe, expect, it } from 'vitest';
import { compileImagePath, DEFAULT_IMAGE_PATHS, ImagePathError } from './image-paths.ts';

const deployment = {
  kind: 'Deployment',
  spec: {
    template: {
      spec: {
        initContainers: [{ name: 'init', image: 'quay.io/a/init:1' }],
        containers: [
          { name: 'app', image: 'quay.io/a/app:2' },
          { name: 'side', image: 'quay.io/a/side@sha256:' + 'a'.repeat(64) },
        ],
        custom: { images: { main: 'quay.io/a/custom:3' } },
      },
    },
  },
};

describe('compileImagePath', () => {
  it.each([
    ['{.spec.template.spec.containers[*].image}', ['quay.io/a/app:2', `quay.io/a/side@sha256:${'a'.repeat(64)}`]],
    ['{.spec.template.spec.initContainers[*].image}', ['quay.io/a/init:1']],
    ['{.spec.template.spec.containers[0].image}', ['quay.io/a/app:2']],
    ['{.spec.template.spec.containers[-1].name}', ['side']],
    ["{.spec.template.spec['custom'].images.main}", ['quay.io/a/custom:3']],
    ['{.spec.template.spec.custom.images[*]}', ['quay.io/a/custom:3']],
    ['{..image}', ['quay.io/a/init:1', 'quay.io/a/app:2', `quay.io/a/side@sha256:${'a'.repeat(64)}`]],
    ['{.kind}{.spec.template.spec.containers[0].name}', ['Deployment', 'app']],
    ['{.spec.containers[*].image}', []],
    ['.spec.template.spec.initContainers[*].image', ['quay.io/a/init:1']],
  ])('%s', (expression, expected) => {
    expect(compileImagePath(expression)(deployment)).toEqual(expected);
  });

  it('reads a pod at the defaults', () => {
    const pod = { spec: { initContainers: [{ image: 'x/init:1' }], containers: [{ image: 'x/app:1' }] } };
    expect(DEFAULT_IMAGE_PATHS.flatMap((p) => compileImagePath(p)(pod))).toEqual(['x/init:1', 'x/app:1']);
  });

  it.each(['{.spec.containers[?(@.name=="app")].image}', '{.spec.containers[0:2].image}', '{}', '{.spec.}', '{.spec[0}'])('refuses %s by name', (expression) => {
    expect(() => compileImagePath(expression)).toThrow(ImagePathError);
    expect(() => compileImagePath(expression)).toThrow(JSON.stringify(expression));
  });
});
