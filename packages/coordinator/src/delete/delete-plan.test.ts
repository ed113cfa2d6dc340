import { describe, expect, it } from 'vitest';
import type { Digest } from '@meshmirror/shared';
import { planDeletes, type FoundItem, type KeptTag } from './delete-plan.ts';

const d = (c: string): Digest => `sha256:${c.repeat(64)}`;
const R = 'mirror/openshift/release';

describe('planDeletes', () => {
  it('deletes a listed manifest that no tag outside the list names', () => {
    const found: FoundItem[] = [{ id: 0, repository: R, digest: d('a'), children: [] }];
    const kept: KeptTag[] = [{ repository: R, tag: '4.19.3-x86_64-etcd', digest: d('b'), children: [] }];
    expect(planDeletes(found, kept).get(0)).toEqual({ action: 'delete', digest: d('a'), children: [], keptChildren: 0 });
  });

  it('keeps a listed tag whose manifest a kept tag names too (a component unchanged between releases)', () => {
    const found: FoundItem[] = [{ id: 0, repository: R, digest: d('a'), children: [] }];
    const kept: KeptTag[] = [{ repository: R, tag: '4.19.3-x86_64-cli', digest: d('a'), children: [] }];
    expect(planDeletes(found, kept).get(0)).toEqual({ action: 'keep', digest: d('a'), keptBy: `${R}:4.19.3-x86_64-cli` });
  });

  it('keeps a listed manifest that is a child of a kept index', () => {
    const found: FoundItem[] = [{ id: 0, repository: 'm/ubi', digest: d('c'), children: [] }];
    const kept: KeptTag[] = [{ repository: 'm/ubi', tag: 'latest', digest: d('i'), children: [d('c'), d('e')] }];
    expect(planDeletes(found, kept).get(0)).toEqual({ action: 'keep', digest: d('c'), keptBy: 'm/ubi:latest (in its index)' });
  });

  it("deletes an index's children with it, except those a kept index shares", () => {
    const found: FoundItem[] = [{ id: 0, repository: 'm/ubi', digest: d('1'), children: [d('a'), d('b'), d('c')] }];
    const kept: KeptTag[] = [{ repository: 'm/ubi', tag: '9.6', digest: d('2'), children: [d('b'), d('f')] }];
    expect(planDeletes(found, kept).get(0)).toEqual({ action: 'delete', digest: d('1'), children: [d('a'), d('c')], keptChildren: 1 });
  });

  it('two listed tags of one manifest both delete it (the executor sends one DELETE)', () => {
    const found: FoundItem[] = [
      { id: 0, repository: R, digest: d('a'), children: [] },
      { id: 1, repository: R, digest: d('a'), children: [] },
    ];
    const plan = planDeletes(found, []);
    expect(plan.get(0)).toMatchObject({ action: 'delete', digest: d('a') });
    expect(plan.get(1)).toMatchObject({ action: 'delete', digest: d('a') });
  });

  it('judges each repository on its own: a kept tag elsewhere protects nothing here', () => {
    const found: FoundItem[] = [{ id: 0, repository: 'm/a', digest: d('a'), children: [] }];
    const kept: KeptTag[] = [{ repository: 'm/b', tag: 'v1', digest: d('a'), children: [] }];
    expect(planDeletes(found, kept).get(0)).toMatchObject({ action: 'delete' });
  });
});
