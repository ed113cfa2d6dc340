/**
 * `meshmirror receipt docker://HOST[/PREFIX] -c isc.yaml -o FILE`: a receipt made by asking the
 * target directly, for a site that lost the one its push wrote. The image set is resolved as mirror
 * to disk resolves it (source registries, update graph, catalogs), then every manifest and blob of
 * it is looked for (HEAD) where a push would have put it; what is there goes into the receipt.
 */
import { mkdir, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import pLimit from 'p-limit';
import { formatBytes, makeReceipt, throwIfAborted, type Digest, type ReceiptContent, type RegistryPushClient } from '@meshmirror/shared';
import type { FailedImage, ResolvedImage } from '../resolve/image-set.ts';
import { pushTarget, type PushDestination } from '../push/push-targets.ts';
import { writeReportFile } from '../report/report-file.ts';
import { registrySource, type RegistrySourceOptions } from './image-source.ts';
import { withRun } from './run-skeleton.ts';

export interface TargetReceiptOptions extends Omit<RegistrySourceOptions, 'removeSignatures'> {
  destination: PushDestination;
  /** Holds the run journal (tags stay pinned while a run is unfinished). */
  cacheDir: string;
  /** Asks the target. */
  targetClient: RegistryPushClient;
  /** The receipt file to write. */
  out: string;
}

export interface ReceiptSummary {
  receipt: string;
  target: string;
  images: { requested: number; resolved: number; failed: number };
  manifests: { checked: number; held: number };
  blobs: { checked: number; held: number; heldBytes: number };
  failed: Array<Pick<FailedImage, 'source' | 'kind' | 'origin' | 'code' | 'reason'>>;
}

/** HEADs asked of the target at once. */
const LOOKUPS = 16;

export async function targetReceipt(options: TargetReceiptOptions): Promise<ReceiptSummary> {
  const { config, destination, logger } = options;
  const target = `docker://${destination.registry}${destination.prefix === '' ? '' : `/${destination.prefix}`}`;
  return await withRun(
    { cacheDir: options.cacheDir, identity: { mode: 'receipt', config, destination }, config, logger, component: 'coordinator:receipt' },
    async (ctx) => {
      const sourced = await registrySource(options).images(ctx);
      const held = await heldInTarget(sourced.images, options);
      await mkdir(dirname(options.out), { recursive: true });
      await writeReportFile(`${options.out}.partial`, `${JSON.stringify(makeReceipt(target, held.content, undefined))}\n`);
      await rename(`${options.out}.partial`, options.out);
      await ctx.journal.finishRun(ctx.run, sourced.failed.length === 0 ? 'complete' : 'partial');
      return {
        receipt: options.out,
        target,
        images: { requested: sourced.requested, resolved: sourced.images.length, failed: sourced.failed.length },
        manifests: held.manifests,
        blobs: held.blobs,
        failed: sourced.failed.map(({ source, kind, origin, code, reason }) => ({ source, kind, origin, code, reason })),
      };
    },
  );
}

/** Every manifest and blob of the images, looked for where a push puts them; each (repository, digest) once. */
async function heldInTarget(images: ResolvedImage[], options: TargetReceiptOptions) {
  const { destination, targetClient: client, signal } = options;
  const abortable = signal === undefined ? {} : { signal };
  const limit = pLimit(LOOKUPS);
  const asked = new Map<string, Promise<boolean>>();
  const ask = (kind: 'manifest' | 'blob', repository: string, digest: Digest): Promise<boolean> => {
    const key = `${kind} ${repository} ${digest}`;
    let answer = asked.get(key);
    if (answer === undefined) {
      const location = { registry: destination.registry, repository };
      answer = limit(async () => {
        throwIfAborted(signal);
        return kind === 'blob' ? await client.blobExists(location, digest, abortable) : (await client.manifestDigest(location, digest, abortable)) === digest;
      });
      asked.set(key, answer);
    }
    return answer;
  };
  const content: ReceiptContent[] = await Promise.all(
    images.map(async (image) => {
      const { repository } = pushTarget(destination, image, image.descriptor.digest);
      const manifests = await Promise.all(
        image.manifests.map(async (m) => ((await ask('manifest', repository, m.digest)) ? [{ digest: m.digest, size: m.bytes.byteLength }] : [])),
      );
      const blobs = await Promise.all(image.blobs.map(async (b) => ((await ask('blob', repository, b.digest)) ? [{ digest: b.digest, size: b.size }] : [])));
      return { repository, manifests: manifests.flat(), blobs: blobs.flat() };
    }),
  );
  const count = (kind: string) => [...asked.keys()].filter((k) => k.startsWith(`${kind} `)).length;
  const heldOf = async (kind: string) => {
    let n = 0;
    for (const [key, answer] of asked) if (key.startsWith(`${kind} `) && (await answer)) n += 1;
    return n;
  };
  const heldBlobs = new Map(content.flatMap((c) => c.blobs.map((b) => [b.digest, b.size] as const)));
  return {
    content,
    manifests: { checked: count('manifest'), held: await heldOf('manifest') },
    blobs: { checked: count('blob'), held: await heldOf('blob'), heldBytes: [...heldBlobs.values()].reduce((n, s) => n + s, 0) },
  };
}

/** The receipt command's summary a person reads. */
export function receiptSummaryText(s: ReceiptSummary): string {
  const lines = [
    `receipt ${s.receipt} for ${s.target}: ${s.images.resolved} images of ${s.images.requested} resolved`,
    `  held by the target: ${s.manifests.held} of ${s.manifests.checked} manifests, ${s.blobs.held} of ${s.blobs.checked} blobs (${formatBytes(s.blobs.heldBytes)})`,
  ];
  for (const f of s.failed) lines.push(`  failed: ${f.source} (${f.kind}): ${f.reason}`);
  return lines.join('\n');
}
