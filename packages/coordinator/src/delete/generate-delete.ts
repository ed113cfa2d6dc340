/**
 * `meshmirror delete --generate`: the first step of oc-mirror's delete workflow. The
 * DeleteImageSetConfiguration is resolved exactly as a mirror run resolves the same content (the
 * same image source, pins and all, but no signatures: oc-mirror's generate leaves them out too), each
 * image is mapped to where a push to the destination put it, and the list is written to
 * `working-dir/delete/delete-images[-ID].yaml` for a person to read before anything is deleted, with
 * the configuration beside it as `delete-imageset-config[-ID].yaml`. Nothing here talks to the
 * destination: the list can be made on the connected side and carried to the registry.
 */
import { mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { stringify } from 'yaml';
import {
  DELETE_IMAGESET_KIND,
  describeError,
  errorCode,
  formatDuration,
  IMAGESET_API_V2ALPHA1,
  parseManifest,
  renderDeleteImageList,
  throwIfAborted,
  type DeleteImageType,
  type Digest,
  type RepositoryLocation,
} from '@meshmirror/shared';
import type { FailedImage, ResolvedImage } from '../resolve/image-set.ts';
import { type PushDestination } from '../push/push-targets.ts';
import { writeReportFile } from '../report/report-file.ts';
import { registrySource, type RegistrySourceOptions } from '../run/image-source.ts';
import { withRun } from '../run/run-skeleton.ts';
import { deleteItemsFor } from './delete-items.ts';

export interface GenerateDeleteOptions extends Omit<RegistrySourceOptions, 'removeSignatures'> {
  destination: PushDestination;
  /** Holds the run journal (tags stay pinned while a generate run is unfinished). */
  cacheDir: string;
  /** `--workspace file://DIR`: the files go to `DIR/working-dir/delete/`. */
  workspace: string;
  /** `--delete-id X`: the files are named `delete-images-X.yaml` and `delete-imageset-config-X.yaml`. */
  deleteId?: string;
  /** `--delete-signatures`: the images' sigstore `.sig` tags are listed too. */
  deleteSignatures: boolean;
  /** The configuration's `delete:` as its file has it, saved beside the list for review. */
  deleteSection: unknown;
}

export interface DeleteGenerateSummary {
  mode: 'delete-generate';
  runId: string;
  resumed: boolean;
  destination: string;
  /** The files written; none when nothing resolved. */
  files: { deleteImages?: string; deleteImageSetConfig?: string };
  images: { requested: number; resolved: number; failed: number };
  items: { total: number; signatures: number; byType: Partial<Record<DeleteImageType, number>> };
  failed: Array<Pick<FailedImage, 'source' | 'kind' | 'origin' | 'code' | 'reason'>>;
  warnings: string[];
  durationMs: number;
}

/** The label every OLM bundle image carries (operator-sdk and opm write it): how a bundle is told from its operands. */
const BUNDLE_LABEL = 'operators.operatorframework.io.bundle.mediatype.v1';
/** Image configs read at once to tell bundles from related images. */
const CONFIG_READS = 16;

export async function generateDeleteList(options: GenerateDeleteOptions): Promise<DeleteGenerateSummary> {
  const started = Date.now();
  const { config, destination, logger } = options;
  const target = `docker://${destination.registry}${destination.prefix === '' ? '' : `/${destination.prefix}`}`;
  const identity = { mode: 'delete-generate', config, destination };
  return await withRun({ cacheDir: options.cacheDir, identity, config, logger, component: 'coordinator:delete' }, async (ctx) => {
    const sourced = await registrySource({ ...options, removeSignatures: true }).images(ctx);
    const bundles = await bundleDigests(sourced.images, options, ctx.warnings);
    const items = deleteItemsFor(sourced.images, destination, { deleteSignatures: options.deleteSignatures, bundles });
    const files: DeleteGenerateSummary['files'] = {};
    if (items.length > 0) {
      const dir = join(options.workspace, 'working-dir', 'delete');
      const suffix = options.deleteId === undefined ? '' : `-${options.deleteId}`;
      await mkdir(dir, { recursive: true });
      files.deleteImages = await writeAtomically(join(dir, `delete-images${suffix}.yaml`), renderDeleteImageList(items));
      const saved = { kind: DELETE_IMAGESET_KIND, apiVersion: IMAGESET_API_V2ALPHA1, delete: options.deleteSection };
      files.deleteImageSetConfig = await writeAtomically(join(dir, `delete-imageset-config${suffix}.yaml`), stringify(saved, { lineWidth: 0 }));
    }
    if (sourced.failed.length > 0) ctx.warnings.push('some images could not be resolved: the list lacks them (re-run to retry them)');
    await ctx.journal.finishRun(ctx.run, sourced.failed.length === 0 ? 'complete' : 'partial');
    const byType: Partial<Record<DeleteImageType, number>> = {};
    for (const item of items) byType[item.type] = (byType[item.type] ?? 0) + 1;
    return {
      mode: 'delete-generate',
      runId: ctx.run.runId,
      resumed: ctx.resumed,
      destination: target,
      files,
      images: { requested: sourced.requested, resolved: sourced.images.length, failed: sourced.failed.length },
      items: { total: items.length, signatures: items.filter((i) => i.imageReference.endsWith('.sig')).length, byType },
      failed: sourced.failed.map(({ source, kind, origin, code, reason }) => ({ source, kind, origin, code, reason })),
      warnings: ctx.warnings,
      durationMs: Date.now() - started,
    };
  });
}

async function writeAtomically(path: string, text: string): Promise<string> {
  await writeReportFile(`${path}.partial`, text);
  await rename(`${path}.partial`, path);
  return path;
}

/**
 * The operator images that are bundles, by their config's OLM bundle label (oc-mirror compares with
 * the catalog's `olm.bundle` image; the label says the same of the image itself). One that cannot
 * be read is taken for a related image, with a warning: only the item's type depends on it.
 */
async function bundleDigests(images: readonly ResolvedImage[], options: GenerateDeleteOptions, warnings: string[]): Promise<Set<Digest>> {
  const { client, signal } = options;
  const limit = pLimit(CONFIG_READS);
  const bundles = new Set<Digest>();
  let unreadable = 0;
  await Promise.all(
    images
      .filter((image) => image.kind === 'operator' && image.role === undefined)
      .map((image) =>
        limit(async () => {
          throwIfAborted(signal);
          const config = firstConfigDigest(image);
          if (config === undefined) return;
          const location: RepositoryLocation = image.fetchFrom ?? { registry: image.ref.registry, repository: image.ref.repository };
          try {
            const bytes = await client.getBlob(location, config, signal === undefined ? {} : { signal });
            const json = JSON.parse(Buffer.from(bytes).toString('utf8')) as { config?: { Labels?: Record<string, string> | null } };
            if (json.config?.Labels?.[BUNDLE_LABEL] !== undefined) bundles.add(image.descriptor.digest);
          } catch (err) {
            if (signal?.aborted === true) throw err;
            unreadable += 1;
            options.logger.warn({ image: image.source, code: errorCode(err), err: describeError(err) }, 'image config could not be read; listed as a related image');
          }
        }),
      ),
  );
  if (unreadable > 0) warnings.push(`${unreadable} operator images' configs could not be read: they are listed as operatorRelatedImage, bundles or not`);
  return bundles;
}

/** The config of the image's first image manifest: an index's first kept child stands for it (every platform of a bundle is a bundle). */
function firstConfigDigest(image: ResolvedImage): Digest | undefined {
  for (const m of image.manifests) {
    const parsed = parseManifest(m.bytes, m.mediaType, image.source);
    if (parsed.kind === 'image') return parsed.manifest.config.digest;
  }
  return undefined;
}

/** The generate step's summary a person reads. */
export function deleteGenerateSummaryText(s: DeleteGenerateSummary): string {
  const lines = [
    `delete --generate for ${s.destination} finished in ${formatDuration(s.durationMs)}: ${s.images.resolved} images of ${s.images.requested} resolved, ${s.images.failed} failed`,
  ];
  if (s.files.deleteImages === undefined) {
    lines.push('  nothing to delete: no file written');
  } else {
    const types = Object.entries(s.items.byType)
      .map(([type, n]) => `${n} ${type}`)
      .join(', ');
    lines.push(`  ${s.items.total} items to delete (${types}${s.items.signatures > 0 ? `; ${s.items.signatures} of them signatures` : ''})`);
    lines.push(`  list: ${s.files.deleteImages}`);
    lines.push(`  configuration: ${s.files.deleteImageSetConfig ?? ''}`);
    lines.push(`  review the list, then: meshmirror delete --delete-yaml-file ${s.files.deleteImages} ${s.destination}`);
  }
  for (const w of s.warnings) lines.push(`  warning: ${w}`);
  for (const f of s.failed) lines.push(`  failed: ${f.source} (${f.kind}): ${f.reason}`);
  return lines.join('\n');
}
