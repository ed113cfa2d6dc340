/**
 * Benchmarks time meshmirror as installed: the package of `pnpm package` (scripts/package.ts) is
 * built into a temporary folder and MESHMIRROR_BIN points meshmirrorCommand() (test/support/cli.ts),
 * and so every helper that starts meshmirror, at its bin/meshmirror. `BENCH_FROM_SOURCES=1` runs the
 * TypeScript sources instead.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPackageFolder } from '../../scripts/package.ts';

export interface MeshmirrorUnderTest {
  /** How meshmirror runs, for the results: `as installed: PATH` or `from the sources (…)`. */
  mode: string;
  /** Removes the package built for the benchmark. */
  remove(): Promise<void>;
}

/** Sets MESHMIRROR_BIN for this process and its children, and says on stdout (after `label: `) which meshmirror runs. */
export async function useInstalledMeshmirror(label: string): Promise<MeshmirrorUnderTest> {
  const fromSources = (process.env['BENCH_FROM_SOURCES'] ?? '') !== '' && process.env['BENCH_FROM_SOURCES'] !== '0';
  if (fromSources) {
    delete process.env['MESHMIRROR_BIN'];
    const mode = 'from the sources (BENCH_FROM_SOURCES=1)';
    console.log(`${label}: meshmirror runs ${mode}`);
    return { mode, remove: () => Promise.resolve() };
  }
  const started = performance.now();
  const packageDir = await mkdtemp(join(tmpdir(), 'meshmirror-bench-package-'));
  const installed = await buildPackageFolder({ outDir: packageDir });
  process.env['MESHMIRROR_BIN'] = join(installed.dir, 'bin', 'meshmirror');
  const mode = `as installed: ${process.env['MESHMIRROR_BIN']}`;
  console.log(`${label}: meshmirror runs ${mode} (built by scripts/package.ts in ${((performance.now() - started) / 1000).toFixed(1)} s)`);
  return { mode, remove: () => rm(packageDir, { recursive: true, force: true }) };
}
