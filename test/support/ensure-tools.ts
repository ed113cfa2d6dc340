/**
 * Makes sure the programs the integration tests run are installed: distribution's registry,
 * skopeo, podman, buildah, umoci, htpasswd, openssl and chromium, and as root also ip and tc for
 * the namespace tests. As root on Debian/Ubuntu it installs missing ones with apt-get; otherwise it
 * says how to install them and fails. Never skips silently.
 *
 * Run with Node 24 before vitest: `node test/support/ensure-tools.ts && vitest run`.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

interface Tool {
  /** Program name looked up on PATH (or an absolute path). */
  command: string;
  /** The Debian package that provides it. */
  debianPackage: string;
  /** Needed only by tests that run as root (the network-namespace farm). */
  rootOnly?: boolean;
}

const TOOLS: Tool[] = [
  { command: process.env['MESHMIRROR_REGISTRY_BIN'] ?? 'docker-registry', debianPackage: 'docker-registry' },
  { command: process.env['MESHMIRROR_SKOPEO_BIN'] ?? 'skopeo', debianPackage: 'skopeo' },
  // The clients `meshmirror serve` is pulled by and whose layouts it serves (test/serve-clients.test.ts).
  { command: 'podman', debianPackage: 'podman' },
  { command: 'buildah', debianPackage: 'buildah' },
  { command: 'umoci', debianPackage: 'umoci' },
  { command: 'htpasswd', debianPackage: 'apache2-utils' },
  { command: 'openssl', debianPackage: 'openssl' },
  // The live status page's test drives it headless through playwright-core (test/status-page.test.ts).
  { command: 'chromium', debianPackage: 'chromium' },
  { command: 'ip', debianPackage: 'iproute2', rootOnly: true },
  { command: 'tc', debianPackage: 'iproute2', rootOnly: true },
];

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findOnPath(command: string): string | undefined {
  if (command.includes('/')) return isExecutable(command) ? command : undefined;
  // Debian's sbin folders hold some of these and are not always on a non-root PATH.
  const folders = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/bin'];
  for (const folder of folders) {
    if (folder === '') continue;
    const candidate = join(folder, command);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function missingTools(): Tool[] {
  const root = process.getuid?.() === 0;
  return TOOLS.filter((tool) => (root || tool.rootOnly !== true) && findOnPath(tool.command) === undefined);
}

function run(command: string, args: string[]): void {
  const result = spawnSync(command, args, {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (result.error !== undefined) throw result.error;
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal}`);
  }
}

function main(): number {
  const missing = missingTools();
  if (missing.length === 0) return 0;

  const packages = [...new Set(missing.map((tool) => tool.debianPackage))];
  const names = missing.map((tool) => tool.command).join(', ');
  const isRoot = process.getuid?.() === 0;
  const aptGet = findOnPath('apt-get');
  if (!isRoot || aptGet === undefined) {
    process.stderr.write(`meshmirror tests need ${names}: install them with \`sudo apt-get install -y ${packages.join(' ')}\` (Debian/Ubuntu packages), then rerun.\n`);
    return 1;
  }

  process.stderr.write(`meshmirror tests need ${names}; installing Debian packages: ${packages.join(' ')}\n`);
  try {
    // Another apt-get (unattended upgrades, a second test run) may hold the locks: wait for it instead of failing at once.
    const waitForLocks = ['-o', 'DPkg::Lock::Timeout=600', '-o', 'Acquire::Lock::Timeout=600'];
    run(aptGet, [...waitForLocks, 'update']);
    run(aptGet, [...waitForLocks, 'install', '-y', '--no-install-recommends', ...packages]);
  } catch (error) {
    process.stderr.write(`installing ${packages.join(' ')} failed: ${(error as Error).message}\n`);
    return 1;
  }
  const stillMissing = missingTools();
  if (stillMissing.length > 0) {
    process.stderr.write(`still missing after apt-get install: ${stillMissing.map((tool) => tool.command).join(', ')}\n`);
    return 1;
  }
  return 0;
}

process.exitCode = main();
