/**
 * Test support: the run description a mirror-to-disk run would give the archive writer for
 * `images` (all archived, as additional images), so that tests write archives whose run.json every
 * reader accepts.
 */
import type { ArchiveImage, RunDescription } from '@meshmirror/shared';

export function testRunDescription(runId: string, images: ArchiveImage[] = []): RunDescription {
  const at = '2026-01-01T00:00:00.000Z';
  return {
    tool: 'meshmirror',
    runId,
    startedAt: at,
    writtenAt: at,
    imageSetConfig: { kind: 'ImageSetConfiguration', apiVersion: 'mirror.openshift.io/v2alpha1', mirror: { additionalImages: images.map((i) => ({ name: i.name })) } },
    images: images.map((image, index) => ({
      source: image.name,
      kind: 'additional',
      origin: `mirror.additionalImages[${index}]`,
      digest: image.descriptor.digest,
      mediaType: image.descriptor.mediaType,
      target: `file://archive/${image.name}`,
      platforms: [],
      skippedPlatforms: [],
      status: 'archived',
    })),
    history: [],
  };
}
