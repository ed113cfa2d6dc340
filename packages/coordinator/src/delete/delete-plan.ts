/**
 * Which manifests a delete removes, decided from what the registry holds, so that an image that
 * stays never loses a manifest it needs. In the registry API a manifest is deleted by digest and
 * takes every tag that points at it; an index's children are manifests of their own. Per
 * repository (a manifest deleted in one repository stays in every other):
 *
 * - An image stays when one of its repository's tags is not in the list: the manifest that tag
 *   names, and every manifest under it when it is an index, are kept. So a listed tag whose
 *   manifest a kept tag shares (a release component unchanged between two releases, a child of a
 *   kept index) is left in place, reported `kept`: deleting the digest would take the other tag.
 * - A listed manifest that nothing kept uses is deleted once, however many listed tags name it.
 * - An index's children go after the index, and only those that nothing kept uses. A child is
 *   never deleted apart from its index unless it is listed itself.
 *
 * Manifests that no tag reaches (not listed, not under a kept tag) are nobody's: they are not
 * looked for. Pure.
 */
import type { Digest } from '@meshmirror/shared';

/** A listed item as the registry holds it: its manifest and, for an index, every manifest under it (parents before children). */
export interface FoundItem {
  id: number;
  repository: string;
  digest: Digest;
  children: Digest[];
}

/** A tag of a listed item's repository that is not in the list, with what it names. */
export interface KeptTag {
  repository: string;
  tag: string;
  digest: Digest;
  children: Digest[];
}

export type ItemDecision =
  /** Delete `digest`, then `children` in order; `keptChildren` of its children stay (a kept image uses them). */
  | { action: 'delete'; digest: Digest; children: Digest[]; keptChildren: number }
  /** Delete nothing: `digest` is also what `keptBy` (a tag that stays, or an index under it) needs. */
  | { action: 'keep'; digest: Digest; keptBy: string };

export function planDeletes(found: readonly FoundItem[], kept: readonly KeptTag[]): Map<number, ItemDecision> {
  const protectedBy = new Map<string, string>();
  const protect = (repository: string, digest: Digest, by: string): void => {
    const key = `${repository} ${digest}`;
    if (!protectedBy.has(key)) protectedBy.set(key, by);
  };
  // Tags first: "kept by tag X" says more than "kept as a child of X".
  for (const k of kept) protect(k.repository, k.digest, `${k.repository}:${k.tag}`);
  for (const k of kept) for (const child of k.children) protect(k.repository, child, `${k.repository}:${k.tag} (in its index)`);

  const decisions = new Map<number, ItemDecision>();
  for (const item of found) {
    const keptBy = protectedBy.get(`${item.repository} ${item.digest}`);
    if (keptBy !== undefined) {
      decisions.set(item.id, { action: 'keep', digest: item.digest, keptBy });
      continue;
    }
    const children = item.children.filter((c) => !protectedBy.has(`${item.repository} ${c}`));
    decisions.set(item.id, { action: 'delete', digest: item.digest, children, keptChildren: item.children.length - children.length });
  }
  return decisions;
}
