/**
 * `meshmirror/run.json`, the run metadata in an archive's last chunk: what the mirror-to-disk run
 * archived (source → digest → target, per-image status), the configuration it ran with, the run
 * history and the archive's own identity. It crosses the air gap, so the archive may be read by
 * another meshmirror build than the one that wrote it: the file carries `schemaVersion`, and
 * `parseRunMetadata` reads every version this build knows, mapped to the current shape.
 *
 * Versions:
 * - none: written before run.json had a version (the legacy format). The same fields as version 1,
 *   except that archives older than the OpenShift content lack `origin`, `role`, `targetRepo` and
 *   `targetTag` on their images.
 * - 1: this file's `runMetadataSchema` without `differential`.
 * - 2: adds `differential`: the archive leaves out blobs a receipt says the target holds. Only such
 *   archives are written as version 2, so a full archive stays readable by builds that read 1, and
 *   a build that reads only 1 refuses a differential one instead of pushing it as if it were whole.
 *
 * Unknown fields are dropped, not refused, so a field that readers may ignore can be added without a
 * new version. Bump `RUN_METADATA_VERSION` (and map the previous version here) when a reader of the
 * previous version would misread the new file: a field that changes meaning, or one it must not skip.
 */
import { z } from 'zod';
import { formatConfigPath, IMAGESET_KIND } from '../config/imageset.ts';
import { isDigest } from '../oci/digest.ts';

/** The newest run.json version this build reads (and writes, for a differential archive). */
export const RUN_METADATA_VERSION = 2;

/** The version a run.json must be written as: the oldest that can say everything it holds. */
export function runMetadataVersionOf(description: { differential?: unknown }): 1 | 2 {
  return description.differential === undefined ? 1 : 2;
}

/** What a legacy image without `origin` reports as its origin (the push report's column). */
export const LEGACY_IMAGE_ORIGIN = 'archive';

const digestSchema = z.string().refine(isDigest, 'must be a sha256 digest');

/** Where an image came from in the ImageSetConfiguration. */
export const imageKindSchema = z.enum(['release', 'operator', 'additional', 'helm']);
/** What an image is for the cluster: a release payload, a filtered catalog, the update graph data, a Helm chart. */
export const imageRoleSchema = z.enum(['release-payload', 'catalog', 'graph', 'signature', 'referrer', 'helm-chart']);

/** What the archive writer adds under `archive`: the archive's identity, checked against its chunks on read. */
export const archiveInfoSchema = z.object({
  /** The id every chunk manifest of this archive carries. */
  archiveId: z.string().min(1),
  chunkCount: z.number().int().positive(),
  writtenAt: z.string(),
});
export type ArchiveInfo = z.infer<typeof archiveInfoSchema>;

/** An image the run put into the archive. Keys in the order the writer has always written them. */
export const archivedRunImageSchema = z.object({
  source: z.string().min(1),
  kind: imageKindSchema,
  /** Where the configuration names the image, e.g. `mirror.additionalImages[2]`. */
  origin: z.string(),
  role: imageRoleSchema.optional(),
  /** The repository and tag the image is pushed to, when not the source's own (release and catalog images). */
  targetRepo: z.string().optional(),
  targetTag: z.string().optional(),
  /** The top-level manifest (or index) in the archive. */
  digest: digestSchema,
  mediaType: z.string(),
  /** Where the image landed, in oc-mirror's mapping notation (`file://DIR/repo:tag`). */
  target: z.string(),
  /** Platforms kept (`os/arch[/variant]`), empty for single-manifest images. */
  platforms: z.array(z.string()),
  /** Platforms of an index that the architecture filter left out: the archive holds a sparse index. */
  skippedPlatforms: z.array(z.string()),
  /** A release payload's OpenPGP signatures (base64 of each, as the signature store served it), verified when archived. */
  releaseSignatures: z.array(z.base64()).optional(),
  status: z.literal('archived'),
});
export type ArchivedRunImage = z.infer<typeof archivedRunImageSchema>;

/** An image (or a part of the image set that yielded none) the run could not archive, with the reason. */
export const failedRunImageSchema = z.object({
  source: z.string(),
  kind: imageKindSchema,
  status: z.literal('failed'),
  code: z.string(),
  reason: z.string(),
});
export type FailedRunImage = z.infer<typeof failedRunImageSchema>;

export const runImageSchema = z.discriminatedUnion('status', [archivedRunImageSchema, failedRunImageSchema]);
export type RunImage = z.infer<typeof runImageSchema>;

/** A run of the same configuration and destination, from the coordinator's journal. */
export const runHistoryEntrySchema = z.object({
  runId: z.string(),
  startedAt: z.string(),
  finishedAt: z.string().optional(),
  state: z.enum(['running', 'partial', 'complete']),
});
export type RunHistoryEntry = z.infer<typeof runHistoryEntrySchema>;

/** A blob a differential archive leaves out, and where the receipt says the target holds it. */
export const omittedBlobSchema = z.object({
  digest: digestSchema,
  size: z.number().int().nonnegative(),
  /** Repositories of the receipt's target holding it (a few): where a push mounts it from. */
  repositories: z.array(z.string()),
});
export type OmittedBlob = z.infer<typeof omittedBlobSchema>;

/**
 * What a differential archive was made against (a receipt, `--since-receipt`; or a date, `--since`:
 * what this cache archived before it), and what it leaves out.
 */
export const differentialSchema = z
  .object({
    receipt: z
      .object({
        /** The receipt file as given, for the person reading an error. */
        file: z.string(),
        /** sha256 of the receipt file's bytes. */
        digest: digestSchema,
        target: z.string(),
        writtenAt: z.string(),
      })
      .optional(),
    /** `--since`: the blobs of images earlier runs archived before this time are left out. */
    since: z.string().optional(),
    omitted: z.array(omittedBlobSchema),
    omittedBytes: z.number().int().nonnegative(),
  })
  .refine((d) => (d.receipt === undefined) !== (d.since === undefined), 'names either a receipt or a date');
export type Differential = z.infer<typeof differentialSchema>;

/** What a differential archive was made against, in words: the receipt (file, target, time) or the date. */
export function differentialBasis(d: Differential): string {
  if (d.receipt !== undefined) return `the receipt ${d.receipt.file} of ${d.receipt.target} (written ${d.receipt.writtenAt})`;
  return `what this cache archived before ${d.since ?? '?'} (--since)`;
}

const runFields = {
  tool: z.literal('meshmirror'),
  runId: z.string().min(1),
  startedAt: z.string(),
  writtenAt: z.string(),
  /**
   * The configuration as the run parsed it (defaults filled in, the `meshmirror:` block in
   * milliseconds), so the ImageSetConfiguration schema, which reads the file form, cannot check it.
   * Nothing reads it back yet: only its kind and apiVersion are checked.
   */
  imageSetConfig: z.looseObject({ kind: z.literal(IMAGESET_KIND), apiVersion: z.string() }),
  /** Archived images first, then failed ones. */
  images: z.array(runImageSchema),
  history: z.array(runHistoryEntrySchema),
  /** Present in a differential archive only (run.json version 2). */
  differential: differentialSchema.optional(),
};

/** What a run says about itself: run.json without `schemaVersion` and `archive`, which the archive writer adds. */
export const runDescriptionSchema = z.object(runFields);
export type RunDescription = z.infer<typeof runDescriptionSchema>;

/** run.json as this build writes it. */
export const runMetadataSchema = z.object({
  schemaVersion: z.union([z.literal(1), z.literal(2)]),
  ...runFields,
  archive: archiveInfoSchema,
});
export type RunMetadata = z.infer<typeof runMetadataSchema>;

/** run.json without `schemaVersion`, mapped to the current shape. */
export const legacyRunMetadataSchema = z
  .object({
    ...runFields,
    images: z.array(z.discriminatedUnion('status', [archivedRunImageSchema.extend({ origin: z.string().default(LEGACY_IMAGE_ORIGIN) }), failedRunImageSchema])),
    archive: archiveInfoSchema,
  })
  .transform((legacy): RunMetadata => ({ schemaVersion: 1, ...legacy }));

export type RunMetadataParse = { success: true; data: RunMetadata } | { success: false; problem: string };

/**
 * Reads run.json (its parsed JSON) of any version this build knows. On failure, `problem` says why
 * in words that follow the file's name: written by a newer meshmirror, or the path of the bad field.
 */
export function parseRunMetadata(value: unknown): RunMetadataParse {
  const version = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)['schemaVersion'] : undefined;
  if (typeof version === 'number' && Number.isInteger(version) && version > RUN_METADATA_VERSION) {
    return {
      success: false,
      problem: `was written by a newer meshmirror (run.json version ${version}; this build reads up to ${RUN_METADATA_VERSION}); use a meshmirror at least as new as the one that wrote the archive`,
    };
  }
  const parsed = version === undefined ? legacyRunMetadataSchema.safeParse(value) : runMetadataSchema.safeParse(value);
  if (parsed.success) {
    if (parsed.data.schemaVersion === 1 && parsed.data.differential !== undefined) {
      return { success: false, problem: 'is not meshmirror run metadata (run.json version 1) at differential: only version 2 may be differential' };
    }
    return { success: true, data: parsed.data };
  }
  const which = version === undefined ? 'run.json without a version' : `run.json version ${JSON.stringify(version)}`;
  return { success: false, problem: `is not meshmirror run metadata (${which}) ${describeRunMetadataIssue(parsed.error)}` };
}

/** `at images[3].digest: must be a sha256 digest`, for the first issue zod found. */
export function describeRunMetadataIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  return `at ${formatConfigPath(issue?.path ?? []) || '(root)'}: ${issue?.message ?? 'not valid'}`;
}
