import { z } from 'zod';
import { MeshmirrorError } from '../errors.ts';
import { isDigest } from './digest.ts';
import { isIndexMediaType, isManifestMediaType, MediaType } from './media-types.ts';

const digestSchema = z.string().refine(isDigest, 'must be a sha256 digest');

export const descriptorSchema = z
  .object({
    mediaType: z.string(),
    digest: digestSchema,
    size: z.number().int().nonnegative(),
    urls: z.array(z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
    platform: z
      .object({
        architecture: z.string(),
        os: z.string(),
        variant: z.string().optional(),
        'os.version': z.string().optional(),
        'os.features': z.array(z.string()).optional(),
      })
      .loose()
      .optional(),
    artifactType: z.string().optional(),
  })
  .loose();
export type Descriptor = z.infer<typeof descriptorSchema>;

export const imageManifestSchema = z
  .object({
    schemaVersion: z.literal(2),
    mediaType: z.string().optional(),
    artifactType: z.string().optional(),
    config: descriptorSchema,
    layers: z.array(descriptorSchema),
    subject: descriptorSchema.optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  })
  .loose();
export type ImageManifest = z.infer<typeof imageManifestSchema>;

export const imageIndexSchema = z
  .object({
    schemaVersion: z.literal(2),
    mediaType: z.string().optional(),
    artifactType: z.string().optional(),
    manifests: z.array(descriptorSchema),
    subject: descriptorSchema.optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  })
  .loose();
export type ImageIndex = z.infer<typeof imageIndexSchema>;

export type ParsedManifest = { kind: 'index'; mediaType: string; index: ImageIndex } | { kind: 'image'; mediaType: string; manifest: ImageManifest };

/**
 * Parses manifest bytes. The media type comes from the body when present, else from the
 * `Content-Type` the registry sent. Docker schema 1 is refused (it cannot be mirrored by digest).
 */
export function parseManifest(bytes: Uint8Array, contentType: string | undefined, where: string): ParsedManifest {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (cause) {
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: manifest is not JSON`, { cause });
  }
  const bodyType = typeof json === 'object' && json !== null && 'mediaType' in json ? json.mediaType : undefined;
  let mediaType = typeof bodyType === 'string' ? bodyType : (contentType?.split(';')[0]?.trim() ?? '');
  if (mediaType === '' || mediaType === 'application/json' || mediaType === 'application/octet-stream') {
    // OCI allows mediaType to be absent; tell an index from a manifest by its shape.
    mediaType = typeof json === 'object' && json !== null && 'manifests' in json ? MediaType.OciIndex : MediaType.OciManifest;
  }
  if (isIndexMediaType(mediaType)) {
    const parsed = imageIndexSchema.safeParse(json);
    if (!parsed.success) throw invalid(where, parsed.error);
    return { kind: 'index', mediaType, index: parsed.data };
  }
  if (isManifestMediaType(mediaType)) {
    const parsed = imageManifestSchema.safeParse(json);
    if (!parsed.success) throw invalid(where, parsed.error);
    return { kind: 'image', mediaType, manifest: parsed.data };
  }
  throw new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: unsupported manifest media type "${mediaType}"`);
}

function invalid(where: string, error: z.ZodError): MeshmirrorError {
  const issue = error.issues[0];
  const path = issue === undefined ? '' : issue.path.join('.');
  return new MeshmirrorError('MM_MANIFEST_INVALID', `${where}: invalid manifest at ${path || '(root)'}: ${issue?.message ?? ''}`);
}
