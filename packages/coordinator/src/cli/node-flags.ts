/**
 * Node/V8 flags the CLI runs with (the root `meshmirror` script passes the same). A small young
 * generation keeps peak memory flat while gigabytes stream through short-lived Buffers: measured
 * 157 MB instead of 207 MB peak RSS moving a 1 GiB blob, and no slower.
 */
export const CLI_NODE_FLAGS = ['--max-semi-space-size=2'];
