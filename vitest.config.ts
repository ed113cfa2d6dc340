import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['**/node_modules/**', 'test/bench/**'],
    // Integration tests start real registries and agent processes; slow CI machines need headroom.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    // Child processes (registries, agents) and native sockets are safer in forked workers.
    pool: 'forks',
    // The CI machine has 2 cores, and each integration test file runs its own registry processes.
    maxWorkers: 2,
    // The sample of the fault matrix (test/faults) prints its table after the run.
    reporters: ['default', './test/faults/reporter.ts'],
  },
});
