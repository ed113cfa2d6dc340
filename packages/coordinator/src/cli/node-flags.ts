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
 * - `--external-memory-accounted-in-global-limit`: every byte that streams through arrives in a
 *   fresh Buffer (socket reads, decrypted messages), and V8 otherwise starts a full mark-compact for
 *   every 64 MiB of such external memory, however small the heap: 26 full collections mirroring
 *   496 MiB on one host, marking the whole heap each time on the second core. Counted in the heap's
 *   global limit instead, they come when the limit is reached: 1 to 4 in that run, user CPU 2.4 to
 *   2.9 s instead of 3.5 to 3.7 s, the same peak memory; in a farm of three, each agent's CPU fell
 *   from about 4.6 s to 3.9 s and the writer's user CPU from 7.9 s to 6.0 s.
 */
export const CLI_NODE_FLAGS = ['--max-semi-space-size=2', '--heap-growing-percent=50', '--external-memory-accounted-in-global-limit'];
