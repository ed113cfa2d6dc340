/**
 * `working-dir/receipt.json`: what a target registry holds after a push (disk to mirror, mirror to
 * mirror), for the next mirror to disk to leave out. Small by design: digests and sizes, never
 * bodies. It crosses the air gap back to the connected side, so it carries a version like run.json.
 */
import { z } from 'zod';
import { isDigest, type Digest } from '../oci/digest.ts';

/** The receipt version this build writes, and the newest it reads. */
export const RECEIPT_VERSION = 1;

const digestSchema = z.string().refine(isDigest, 'must be a sha256 digest');

export const receiptSchema = z.object({
  schemaVersion: z.literal(RECEIPT_VERSION),
  tool: z.literal('meshmirror'),
  /** `docker://HOST[/PREFIX]`, as the push was given it. */
  target: z.string().min(1),
  writtenAt: z.string(),
  /** Size of every blob and manifest the target holds, by digest, each once. */
  sizes: z.record(digestSchema, z.number().int().nonnegative()),
  /** Per repository of the target: the manifests and the blobs (configs, layers) it holds. */
  repositories: z.record(z.string().min(1), z.object({ manifests: z.array(digestSchema), blobs: z.array(digestSchema) })),
});
export type Receipt = z.infer<typeof receiptSchema>;

/** What one push run knows the target to hold: per repository, manifests and blobs with their sizes. */
export interface ReceiptContent {
  repository: string;
  manifests: Array<{ digest: Digest; size: number }>;
  blobs: Array<{ digest: Digest; size: number }>;
}

/** A receipt for `target` listing `content`, merged into `previous` when it is one for the same target. */
export function makeReceipt(target: string, content: ReceiptContent[], previous: Receipt | undefined, writtenAt = new Date()): Receipt {
  const base = previous?.target === target ? previous : undefined;
  const sizes: Record<Digest, number> = { ...base?.sizes };
  const repositories = new Map<string, { manifests: Set<Digest>; blobs: Set<Digest> }>();
  for (const [name, repo] of Object.entries(base?.repositories ?? {})) {
    repositories.set(name, { manifests: new Set(repo.manifests), blobs: new Set(repo.blobs) });
  }
  for (const c of content) {
    const repo = repositories.get(c.repository) ?? { manifests: new Set<Digest>(), blobs: new Set<Digest>() };
    for (const m of c.manifests) {
      repo.manifests.add(m.digest);
      sizes[m.digest] = m.size;
    }
    for (const b of c.blobs) {
      repo.blobs.add(b.digest);
      sizes[b.digest] = b.size;
    }
    repositories.set(c.repository, repo);
  }
  return {
    schemaVersion: RECEIPT_VERSION,
    tool: 'meshmirror',
    target,
    writtenAt: writtenAt.toISOString(),
    sizes,
    repositories: Object.fromEntries(
      [...repositories.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, r]) => [name, { manifests: [...r.manifests].sort(), blobs: [...r.blobs].sort() }]),
    ),
  };
}

export type ReceiptParse = { success: true; data: Receipt } | { success: false; problem: string };

/** Reads a receipt (its parsed JSON); `problem` names the field at fault, or says a newer meshmirror wrote it. */
export function parseReceipt(value: unknown): ReceiptParse {
  const version = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)['schemaVersion'] : undefined;
  if (typeof version === 'number' && version > RECEIPT_VERSION) {
    return { success: false, problem: `was written by a newer meshmirror (receipt version ${version}; this build reads up to ${RECEIPT_VERSION})` };
  }
  const parsed = receiptSchema.safeParse(value);
  if (parsed.success) return { success: true, data: parsed.data };
  const issue = parsed.error.issues[0];
  return { success: false, problem: `is not a meshmirror receipt: at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'not valid'}` };
}
