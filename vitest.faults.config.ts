import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

/** `pnpm test:faults`: every scenario of the fault matrix, and the table. */
export default defineConfig({
  test: {
    ...base.test,
    include: ['test/faults/**/*.test.ts'],
    env: { MESHMIRROR_FAULTS: 'full' },
    reporters: ['default', './test/faults/reporter.ts'],
    testTimeout: 600_000,
  },
});
