/**
 * Node/V8 flags the CLI runs with (the root `meshmirror` script passes the same).
 *
 * - `--max-semi-space-size=2`: a small young generation keeps peak memory flat while gigabytes
 *   stream through short-lived Buffers: measured 157 MB instead of 207 MB peak RSS moving a 1 GiB
 *   blob, and no slower.
 * - `--heap-growing-percent=50`: after a full collection V8 otherwise lets the old space grow to
 *   up to about four times what survived before collecting again, and native memory freed only
 *   with the JavaScript objects that own it (file handles, fs requests, buffers) grows with it. At
 *   1.5× a run of 5,000 tiny images peaked at 328 MiB instead of 539 MiB, in the same time
 *   (137 s); the live state itself is what the per-blob changes in the run shrank.
 */
export const CLI_NODE_FLAGS = ['--max-semi-space-size=2', '--heap-growing-percent=50'];
