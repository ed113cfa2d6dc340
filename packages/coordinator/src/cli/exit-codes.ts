import { ConfigError, MeshmirrorError } from '@meshmirror/shared';
import type { ImageKind } from '../resolve/image-set.ts';

/**
 * Exit codes. A run where some images failed exits with 64 plus one bit per kind of image that
 * failed, so scripts can tell a failed release image from a failed additional image without parsing
 * output: 65 release, 66 operator, 68 additional, 72 Helm (and sums, e.g. 69 = release + additional).
 */
export const ExitCode = {
  Ok: 0,
  /** An unexpected failure (store, disk, bug): nothing about the image set was judged. */
  Fatal: 1,
  /** Bad input: flags, configuration file, image reference, auth file. Nothing was fetched. */
  BadInput: 2,
  /** `verify` found the archive damaged or incomplete (each problem is printed). */
  ArchiveDamaged: 3,
  /**
   * `prune` refused: a mirror run or an agent has the store open. Nothing was changed, and the same
   * command later (or with it stopped) will do.
   */
  StoreInUse: 4,
  /** Interrupted (SIGINT/SIGTERM); the journal is consistent and a re-run resumes. */
  Interrupted: 130,
  PartialBase: 64,
} as const;

const KIND_BITS: Record<ImageKind, number> = { release: 1, operator: 2, additional: 4, helm: 8 };

export function exitCodeForSummary(summary: { outcomes: Array<{ state: string; kind: ImageKind }> }): number {
  let bits = 0;
  for (const outcome of summary.outcomes) if (outcome.state === 'failed') bits |= KIND_BITS[outcome.kind];
  return bits === 0 ? ExitCode.Ok : ExitCode.PartialBase + bits;
}

export function exitCodeForError(err: unknown): number {
  if (err instanceof ConfigError) return ExitCode.BadInput;
  if (err instanceof MeshmirrorError) {
    switch (err.code) {
      case 'MM_CONFIG_INVALID':
      case 'MM_CONFIG_UNREADABLE':
      case 'MM_REFERENCE_INVALID':
      case 'MM_AUTHFILE_INVALID':
      case 'MM_SWARM_KEY_INVALID':
      case 'MM_USAGE':
        return ExitCode.BadInput;
      case 'MM_ABORTED':
        return ExitCode.Interrupted;
      default:
        return ExitCode.Fatal;
    }
  }
  return ExitCode.Fatal;
}
