/**
 * oc-mirror v2's delete list, `working-dir/delete/delete-images.yaml`: written by
 * `meshmirror delete --generate`, read by a person, read back by `meshmirror delete
 * --delete-yaml-file`. It can cross the air gap: made where the source registries are, applied where
 * the mirror registry is. Same fields as oc-mirror's (`DeleteImageList`, `DeleteItem`); stricter on
 * reading (oc-mirror ignores unknown fields), because a typo in a file that deletes should stop it.
 */
import { stringify } from 'yaml';
import { z } from 'zod';
import { describeError } from '../errors.ts';
import { parseImageReference, type ImageReference } from '../oci/reference.ts';
import { describeConfigValue, strictObject } from './imageset.ts';
import { parseConfigText, readConfigFile, type LoadImageSetOptions } from './load-imageset.ts';

export const DELETE_IMAGE_LIST_KIND = 'DeleteImageList';
/** The apiVersion oc-mirror writes; any is read. */
export const DELETE_IMAGE_LIST_API_VERSION = 'mirror.openshift.io/v2alpha1';

/** oc-mirror's image types (`v2alpha1.ImageType`): what an image is for. */
export const DELETE_IMAGE_TYPES = [
  'ocpRelease',
  'ocpReleaseContent',
  'cincinnatiGraph',
  'operatorCatalog',
  'operatorBundle',
  'operatorRelatedImage',
  'generic',
  'helmImage',
] as const;
export type DeleteImageType = (typeof DELETE_IMAGE_TYPES)[number];

/** `docker://HOST/REPOSITORY:TAG` or `@DIGEST`: where the mirror put the image. */
const targetReference = z.string().superRefine((value, ctx) => {
  if (!value.startsWith('docker://')) {
    ctx.addIssue({ code: 'custom', message: `expected docker://HOST/REPOSITORY:TAG (or @DIGEST), got ${describeConfigValue(value)}` });
    return;
  }
  try {
    parseImageReference(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: describeError(err) });
  }
});

export const DeleteImageListSchema = strictObject({
  kind: z.literal(DELETE_IMAGE_LIST_KIND, { error: (issue) => `expected ${DELETE_IMAGE_LIST_KIND}, got ${describeConfigValue(issue.input)}` }),
  apiVersion: z.string().min(1),
  items: z
    .array(
      strictObject({
        /** Where the image came from (the source reference), for the reader. */
        imageName: z.string().min(1),
        imageReference: targetReference,
        type: z.enum(DELETE_IMAGE_TYPES, {
          error: (issue) => `expected one of ${DELETE_IMAGE_TYPES.join(', ')}, got ${describeConfigValue(issue.input)}`,
        }),
      }),
    )
    .default([]),
});

export type DeleteImageList = z.output<typeof DeleteImageListSchema>;
export type DeleteImageItem = DeleteImageList['items'][number];

/** An item's target, parsed (the schema has checked it parses). */
export function deleteItemTarget(item: DeleteImageItem): ImageReference {
  return parseImageReference(item.imageReference);
}

/** Checks delete-list text; problems are named `file:line:col: items[3].type: …`. */
export function parseDeleteImageList(text: string, file: string): DeleteImageList {
  return parseConfigText(text, file, DeleteImageListSchema);
}

export async function loadDeleteImageList(file: string, options: LoadImageSetOptions = {}): Promise<DeleteImageList> {
  return parseDeleteImageList(await readConfigFile(file, options), file);
}

/**
 * The file's text: items sorted by `imageReference`, one per reference (the first kept), as
 * oc-mirror writes them.
 */
export function renderDeleteImageList(items: readonly DeleteImageItem[]): string {
  const unique = new Map<string, DeleteImageItem>();
  for (const item of items) if (!unique.has(item.imageReference)) unique.set(item.imageReference, item);
  const sorted = [...unique.values()].sort((a, b) => (a.imageReference < b.imageReference ? -1 : a.imageReference > b.imageReference ? 1 : 0));
  const list = {
    kind: DELETE_IMAGE_LIST_KIND,
    apiVersion: DELETE_IMAGE_LIST_API_VERSION,
    items: sorted.map(({ imageName, imageReference, type }) => ({ imageName, imageReference, type })),
  };
  return stringify(list, { lineWidth: 0 });
}
