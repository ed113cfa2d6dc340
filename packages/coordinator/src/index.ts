/**
 * The coordinator as a library: the three runs behind `meshmirror mirror` (to disk, disk to mirror,
 * mirror to mirror). The CLI parses flags into these options, calls one and prints the summary it
 * returns; `--output json` prints that summary as it is, so its types are what the JSON holds.
 */
export { mirrorToDisk, type ImageOutcome, type MirrorSummary, type MirrorToDiskOptions } from './run/mirror-to-disk.ts';
export { mirrorToMirror, type MirrorToMirrorOptions, type MirrorToMirrorSummary } from './run/mirror-to-mirror.ts';
export { diskToMirror, type DiskToMirrorOptions, type PushOutcome, type PushSummary } from './push/disk-to-mirror.ts';
export type { AgentReport } from './run/mesh-fetch.ts';
