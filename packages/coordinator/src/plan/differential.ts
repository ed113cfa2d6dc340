/**
 * A differential mirror to disk: the blobs a receipt says the target already holds
 * (`--since-receipt`), or those of the images an earlier run in this cache archived before a date
 * (`--since`, oc-mirror's flag), are left out of the plan, so they are neither fetched nor archived. Manifests are always
 * archived (small, and they tell the far side what to tag). Each blob left out keeps a few of the
 * target repositories that hold it, for the push to mount it from.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { MeshmirrorError, parseReceipt, sha256Digest, type Differential, type Digest, type OmittedBlob, type Receipt } from '@meshmirror/shared';
import type { ResolvedImage } from '../resolve/image-set.ts';
import type { RunJournal } from '../run/run-journal.ts';
import type { MirrorPlan } from './plan.ts';

/** A receipt as read for `--since-receipt`: the file, its digest, its content. */
export interface SinceReceipt {
  file: string;
  digest: Digest;
  receipt: Receipt;
}

/** Reads and checks the receipt file; a bad one is a usage error naming the file and the field. */
export async function readSinceReceipt(file: string): Promise<SinceReceipt> {
  const path = resolve(file);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (cause) {
    throw new MeshmirrorError('MM_USAGE', `--since-receipt ${path}: cannot read: ${(cause as Error).message}`, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new MeshmirrorError('MM_USAGE', `--since-receipt ${path}: not JSON (a receipt is working-dir/receipt.json of a push)`);
  }
  const parsed = parseReceipt(json);
  if (!parsed.success) throw new MeshmirrorError('MM_USAGE', `--since-receipt ${path}: ${parsed.problem}`);
  return { file: path, digest: sha256Digest(bytes), receipt: parsed.data };
}

/** Repositories kept per blob left out: enough to mount from, few enough to keep run.json small. */
const HOLDERS_KEPT = 3;

/**
 * Removes from `plan` every blob the receipt lists with the same size, and says what was left out.
 * The plan's `uniqueBytes` stays the whole set's.
 */
export function leaveOutReceived(plan: MirrorPlan, since: SinceReceipt): Differential {
  const holders = new Map<Digest, string[]>();
  for (const [repository, held] of Object.entries(since.receipt.repositories)) {
    for (const digest of held.blobs) {
      const list = holders.get(digest) ?? [];
      if (list.length < HOLDERS_KEPT) list.push(repository);
      holders.set(digest, list);
    }
  }
  const omitted: OmittedBlob[] = [];
  for (const blob of [...plan.blobs.values()]) {
    const repositories = holders.get(blob.digest);
    if (repositories === undefined || since.receipt.sizes[blob.digest] !== blob.size) continue;
    plan.blobs.delete(blob.digest);
    omitted.push({ digest: blob.digest, size: blob.size, repositories });
  }
  const { target, writtenAt } = since.receipt;
  return { receipt: { file: since.file, digest: since.digest, target, writtenAt }, omitted, omittedBytes: omitted.reduce((n, b) => n + b.size, 0) };
}

/** `--since DATE`: `YYYY-MM-DD` (oc-mirror's form) or an ISO 8601 time. */
export function parseSince(value: string): Date {
  const date = /^\d{4}-\d{2}-\d{2}$/.test(value) ? new Date(`${value}T00:00:00Z`) : new Date(value);
  if (Number.isNaN(date.getTime())) throw new MeshmirrorError('MM_USAGE', `--since "${value}": expected a date (YYYY-MM-DD) or an ISO 8601 time`);
  return date;
}

/** The manifests (top digests) that runs in this cache archived and finished before `since`. */
export async function archivedBefore(journal: RunJournal, since: Date): Promise<Set<Digest>> {
  const digests = new Set<Digest>();
  for (const run of await journal.history()) {
    if (run.finishedAt === undefined || new Date(run.finishedAt) >= since) continue;
    for (const image of await journal.images(run)) if (image.state === 'archived' && image.digest !== undefined) digests.add(image.digest);
  }
  return digests;
}

/**
 * Removes from `plan` the blobs of every image whose manifest an earlier run archived before
 * `since` (an image by digest is the same bytes), and says what was left out.
 */
export function leaveOutArchived(plan: MirrorPlan, images: ResolvedImage[], archived: ReadonlySet<Digest>, since: Date): Differential {
  const omitted: OmittedBlob[] = [];
  for (const image of images) {
    if (!archived.has(image.descriptor.digest)) continue;
    for (const { digest } of image.blobs) {
      const blob = plan.blobs.get(digest);
      if (blob === undefined) continue;
      plan.blobs.delete(digest);
      omitted.push({ digest, size: blob.size, repositories: [] });
    }
  }
  return { since: since.toISOString(), omitted, omittedBytes: omitted.reduce((n, b) => n + b.size, 0) };
}
