/**
 * An archive as a blob supply (disk to mirror): always ready, every blob placed in the target
 * straight from its tar chunk with resumable chunked uploads, the upload sessions kept in the
 * journal so a re-run carries on where an interrupted upload stopped.
 */
import type { HostBackoff, Logger, RegistryPushClient, RetryPolicy } from '@meshmirror/shared';
import { uploadBlob, type ArchiveReader, type UploadModes } from '@meshmirror/agent';
import type { RunJournal } from '../run/run-journal.ts';
import type { BlobPlacement } from './registry-sink.ts';

export interface ArchivePlacementOptions {
  client: RegistryPushClient;
  /** The target registry host. */
  registry: string;
  journal: RunJournal;
  retry: RetryPolicy;
  backoff: HostBackoff;
  stallTimeoutMs: number;
  /** Bytes per PATCH. */
  chunkBytes: number;
  logger: Logger;
  signal?: AbortSignal;
}

export function archivePlacement(reader: ArchiveReader, options: ArchivePlacementOptions): BlobPlacement {
  const { journal, registry, signal } = options;
  // Registries that refused a chunked upload: every later blob goes to them monolithic.
  const modes: UploadModes = { monolithic: new Set() };
  return {
    place: (blob, repository, mountFrom, onBytesSent) => {
      const where = reader.locateBlob(blob.digest);
      return uploadBlob({
        client: options.client,
        target: { registry, repository },
        digest: blob.digest,
        size: blob.size,
        source: {
          where: where === undefined ? `blob ${blob.digest}` : `${where.file} entry ${where.entry}`,
          openRange: (start, end, rangeSignal) => reader.openUnverified(blob.digest, start, end, rangeSignal === undefined ? {} : { signal: rangeSignal }),
        },
        chunkBytes: options.chunkBytes,
        retry: options.retry,
        backoff: options.backoff,
        stallTimeoutMs: options.stallTimeoutMs,
        mountFrom,
        modes,
        journal: {
          session: (repo, d) => journal.uploadSession(registry, repo, d),
          saveSession: (repo, d, url) => journal.saveUploadSession(registry, repo, d, url),
          clearSession: (repo, d) => journal.clearUploadSession(registry, repo, d),
        },
        logger: options.logger,
        onBytesSent,
        ...(signal === undefined ? {} : { signal }),
      });
    },
  };
}
