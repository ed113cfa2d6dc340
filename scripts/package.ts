/**
 * `pnpm package`: one self-contained meshmirror for linux-x64, to carry into a disconnected site where
 * neither Node nor npm is installed.
 *
 * dist/meshmirror-<version>-linux-x64/
 *   bin/meshmirror     POSIX sh launcher: runs lib/node on lib/meshmirror.mjs with the CLI's V8 flags
 *   lib/node           the pinned Node 24 (the `node` devDependency), copied as is
 *   lib/*.mjs          the CLI bundled by esbuild; commands stay lazily loaded chunks
 *   lib/node_modules/  packages that load a native addon (LevelDB), with their runtime dependencies
 *   README
 * and beside it the tarball of that folder and a `sha256sum -c` file for it.
 *
 * A tarball with its own Node rather than a single executable application: a SEA cannot load the
 * LevelDB addon from inside itself (it would have to write it out to disk first), and its main script
 * can `require` only Node's built-in modules.
 */
import { build, type Plugin } from 'esbuild';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, copyFile, cp, mkdir, open, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { CLI_NODE_FLAGS } from '../packages/coordinator/src/cli/node-flags.ts';

const execFileAsync = promisify(execFile);

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI_ENTRY = join(ROOT, 'packages/coordinator/src/cli/main.ts');
const PLATFORM = 'linux-x64';

/**
 * Packages esbuild cannot bundle: they load a prebuilt `.node` addon through node-gyp-build, which
 * looks for it on disk relative to the package. They are left out of the bundle and copied whole,
 * less what only building from source needs.
 */
const NATIVE_PACKAGES: Record<string, { buildOnly: string[] }> = {
  'classic-level': { buildOnly: ['deps', 'binding.cc', 'binding.gyp'] },
};

/**
 * The bundle is ESM, but bundled CommonJS modules (and the externals above) `require`. Node gives an
 * ES module no `require`, so every output file makes its own, resolving from lib/.
 */
const REQUIRE_BANNER = "import { createRequire as __meshmirrorCreateRequire } from 'node:module';\nconst require = __meshmirrorCreateRequire(import.meta.url);";

export interface PackageOptions {
  /** Where the folder, tarball and checksum go. Default `dist/` in the repository. */
  outDir?: string;
  signal?: AbortSignal;
}

export interface PackageFolder {
  version: string;
  /** The unpacked folder, `…/meshmirror-<version>-linux-x64`. */
  dir: string;
}

export interface BuiltPackage extends PackageFolder {
  tarball: string;
  /** `<tarball>.sha256`, in the format `sha256sum -c` reads. */
  checksumFile: string;
  sha256: string;
  tarballBytes: number;
}

/** `meshmirror-<version>-linux-x64`: the folder inside the tarball and the tarball's name without `.tar.gz`. */
export function packageName(version: string): string {
  return `meshmirror-${version}-${PLATFORM}`;
}

export async function coordinatorVersion(): Promise<string> {
  const manifest = JSON.parse(await readFile(join(ROOT, 'packages/coordinator/package.json'), 'utf8')) as { version: string };
  return manifest.version;
}

export async function buildPackage(options: PackageOptions = {}): Promise<BuiltPackage> {
  const signal = options.signal ?? new AbortController().signal;
  const outDir = options.outDir ?? join(ROOT, 'dist');
  const name = packageName(await coordinatorVersion());
  const tarball = join(outDir, `${name}.tar.gz`);
  const checksumFile = `${tarball}.sha256`;

  await Promise.all([tarball, checksumFile].map((path) => rm(path, { force: true })));
  const { version, dir } = await buildPackageFolder({ ...options, outDir });

  signal.throwIfAborted();
  // The system tar keeps modes, and gzip runs in a process of its own beside it. Level 3, not the
  // default 6: measured 2.9 s instead of 6.0 s for this folder, for 47 MiB instead of 44 MiB.
  const tarArgs = ['--create', '--use-compress-program=gzip -3', '--file', tarball, '--owner=0', '--group=0', '--numeric-owner', '--directory', outDir, name];
  await execFileAsync('tar', tarArgs, { signal });
  const sha256 = await sha256File(tarball, signal);
  await writeFile(checksumFile, `${sha256}  ${basename(tarball)}\n`);
  return { version, dir, tarball, checksumFile, sha256, tarballBytes: (await stat(tarball)).size };
}

/**
 * The unpacked folder alone, `<outDir>/meshmirror-<version>-linux-x64`, as `tar -xzf` of the tarball
 * gives it, without packing it (the tarball and checksum cost a few seconds more): what the
 * benchmarks run meshmirror from, as installed. buildPackage() makes this folder, then the tarball.
 */
export async function buildPackageFolder(options: PackageOptions = {}): Promise<PackageFolder> {
  const signal = options.signal ?? new AbortController().signal;
  const outDir = options.outDir ?? join(ROOT, 'dist');
  const version = await coordinatorVersion();
  const dir = join(outDir, packageName(version));
  const lib = join(dir, 'lib');

  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'bin'), { recursive: true });
  await mkdir(lib, { recursive: true });

  signal.throwIfAborted();
  const nodeBinary = await pinnedNodeBinary(signal);
  await copyFile(nodeBinary.path, join(lib, 'node'));
  await chmod(join(lib, 'node'), 0o755);
  if (nodeBinary.license !== undefined) await copyFile(nodeBinary.license, join(lib, 'LICENSE.node'));

  signal.throwIfAborted();
  const importers = await bundleCli(lib);
  for (const [pkg, importerDir] of importers) await copyNativePackage(pkg, importerDir, join(lib, 'node_modules'), new Map(), signal);

  await writeFile(join(dir, 'bin', 'meshmirror'), launcherScript(), { mode: 0o755 });
  await writeFile(join(dir, 'README'), readmeText(version, nodeBinary.version));
  return { version, dir };
}

/**
 * The Node binary of the pinned `node` devDependency (its bin/node is a launcher in node_modules/.bin;
 * the real file is in the pnpm store), checked to be what the far side runs: an x86-64 ELF of Node 24.
 */
async function pinnedNodeBinary(signal: AbortSignal): Promise<{ path: string; version: string; license: string | undefined }> {
  const path = await realpath(join(ROOT, 'node_modules/node/bin/node'));
  const header = Buffer.alloc(20);
  const file = await open(path);
  try {
    await file.read(header, 0, header.length, 0);
  } finally {
    await file.close();
  }
  const isElf = header.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  // EI_CLASS 2 is 64-bit, EI_DATA 1 little-endian, e_machine 62 is x86-64.
  if (!isElf || header[4] !== 2 || header[5] !== 1 || header.readUInt16LE(18) !== 62) throw new Error(`${path} is not an x86-64 ELF executable`);
  const { stdout } = await execFileAsync(path, ['--version'], { signal });
  const version = stdout.trim();
  if (!/^v24\./.test(version)) throw new Error(`${path} is Node ${version}; the package needs Node 24`);
  const license = join(dirname(path), '..', 'node_modules', `node-${PLATFORM}`, 'LICENSE');
  const hasLicense = await stat(license).then(
    () => true,
    () => false,
  );
  return { path, version, license: hasLicense ? license : undefined };
}

/**
 * Bundles the CLI into `lib` with esbuild. Returns, for each native package the sources import, the
 * folder it was imported from (where its copy is resolved).
 */
async function bundleCli(lib: string): Promise<Map<string, string>> {
  const importers = new Map<string, string>();
  const leaveOutNative: Plugin = {
    name: 'meshmirror-native-packages',
    setup(b) {
      b.onResolve({ filter: /^[^./]/ }, (args) => {
        const pkg = packageOfSpecifier(args.path);
        if (!(pkg in NATIVE_PACKAGES)) return undefined;
        importers.set(pkg, args.resolveDir);
        return { path: args.path, external: true };
      });
    },
  };
  const result = await build({
    entryPoints: { meshmirror: CLI_ENTRY },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    // ESM chunks keep the sources' dynamic imports lazy: `--help` does not load libp2p or the chart renderer.
    splitting: true,
    outdir: lib,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunk-[hash]',
    banner: { js: REQUIRE_BANNER },
    plugins: [leaveOutNative, inlineModuleRelativeReads],
    logLevel: 'warning',
  });
  if (result.errors.length > 0) throw new Error(`esbuild failed: ${result.errors.map((e) => e.text).join('; ')}`);
  // main.ts's `#!/usr/bin/env node` would run the entry on whatever Node is installed; bin/meshmirror runs it.
  const entry = join(lib, 'meshmirror.mjs');
  await writeFile(entry, (await readFile(entry, 'utf8')).replace(/^#!.*\n/, ''));
  await chmod(entry, 0o644);
  return importers;
}

/** `@scope/name/sub` → `@scope/name`; `name/sub` → `name`. */
function packageOfSpecifier(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? specifier);
}

/**
 * The bundle lives in lib/, not where the sources were, so a file a source reads relative to itself
 * (`readFileSync(new URL('../../package.json', import.meta.url), 'utf8')`, the `--version`) is read
 * now and inlined as a string. Any other use of `import.meta.url` in our sources fails the build
 * rather than break on the far side.
 */
const inlineModuleRelativeReads: Plugin = {
  name: 'meshmirror-inline-module-relative-reads',
  setup(b) {
    const ownSources = new RegExp(`^${escapeRegExp(join(ROOT, 'packages'))}/[^/]+/src/.*\\.ts$`);
    b.onLoad({ filter: ownSources }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      const read = /readFileSync\(new URL\((['"])([^'"]+)\1, import\.meta\.url\), (['"])utf-?8\3\)/g;
      let inlined = source;
      for (const match of source.matchAll(read)) {
        const target = fileURLToPath(new URL(match[2] ?? '', `file://${args.path}`));
        inlined = inlined.replace(match[0], JSON.stringify(await readFile(target, 'utf8')));
      }
      if (inlined.includes('import.meta.url')) throw new Error(`${relative(ROOT, args.path)} uses import.meta.url, which points at lib/ in the bundle`);
      return { contents: inlined, loader: 'ts' };
    });
  },
};

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Copies package `pkg`, as found from `fromDir`, and its runtime dependencies into one flat
 * node_modules (real files: the pnpm store holds them behind symlinks). Two versions of one
 * dependency would need nesting, which nothing here needs yet, so that fails the build.
 */
async function copyNativePackage(pkg: string, fromDir: string, into: string, copied: Map<string, string>, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  const source = await findPackageDir(pkg, fromDir);
  const already = copied.get(pkg);
  if (already !== undefined) {
    if (already !== source) throw new Error(`two versions of ${pkg} are needed (${already} and ${source})`);
    return;
  }
  copied.set(pkg, source);
  const buildOnly = new Set((NATIVE_PACKAGES[pkg]?.buildOnly ?? []).map((entry) => join(source, entry)));
  const prebuilds = join(source, 'prebuilds');
  await cp(source, join(into, pkg), {
    recursive: true,
    dereference: true,
    filter: (path) => {
      if (buildOnly.has(path) || path === join(source, 'node_modules')) return false;
      // Only this platform's prebuilt addon, and only for glibc: the bundled Node is linked against it.
      if (dirname(path) === prebuilds) return basename(path) === PLATFORM;
      return !(dirname(path) === join(prebuilds, PLATFORM) && path.endsWith('.musl.node'));
    },
  });
  const manifest = JSON.parse(await readFile(join(source, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  for (const dependency of Object.keys(manifest.dependencies ?? {})) await copyNativePackage(dependency, source, into, copied, signal);
}

/** Node's lookup: `node_modules/<pkg>` in `fromDir` and each folder above it; the real path of the first. */
async function findPackageDir(pkg: string, fromDir: string): Promise<string> {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', ...pkg.split('/'));
    const found = await realpath(candidate).catch(() => undefined);
    if (found !== undefined) return found;
    if (dirname(dir) === dir) throw new Error(`cannot find package ${pkg} from ${fromDir}`);
  }
}

async function sha256File(path: string, signal: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash, { signal });
  return hash.digest('hex');
}

/**
 * The launcher. `$0` may be a symlink (e.g. /usr/local/bin/meshmirror), so links are followed to the
 * real bin/ first; `readlink` without `-f` is the portable part of it.
 */
function launcherScript(): string {
  return `#!/bin/sh
# meshmirror, self-contained: runs the Node in ../lib on the bundled CLI; no Node needs to be installed.
set -e
self=$0
while [ -h "$self" ]; do
  link=$(readlink "$self")
  case $link in
    /*) self=$link ;;
    *) self=$(dirname "$self")/$link ;;
  esac
done
lib=$(cd "$(dirname "$self")/../lib" && pwd -P)
exec "$lib/node" ${CLI_NODE_FLAGS.join(' ')} "$lib/meshmirror.mjs" "$@"
`;
}

function readmeText(version: string, nodeVersion: string): string {
  const name = packageName(version);
  return `meshmirror ${version} for Linux on x86-64, self-contained
${'='.repeat(`meshmirror ${version} for Linux on x86-64, self-contained`.length)}

Nothing else needs to be installed: lib/node is Node.js ${nodeVersion}, used only by this
meshmirror (lib/LICENSE.node is its licence). It runs on Linux on x86-64 with glibc 2.28 or
newer (RHEL 8 and later, Debian 10 and later, Ubuntu 20.04 and later).

Check and unpack:

    sha256sum -c ${name}.tar.gz.sha256
    tar -xzf ${name}.tar.gz -C /opt

Run it from where it was unpacked, or link it into the PATH (the link is followed):

    /opt/${name}/bin/meshmirror --help
    ln -s /opt/${name}/bin/meshmirror /usr/local/bin/meshmirror

Push an archive carried across into the mirror registry:

    meshmirror mirror -c imageset-config.yaml --from file:///media/archive docker://mirror.example.com:8443/ocp

Every command of meshmirror works from here: mirror, serve, verify, receipt, list, agent, identity,
keygen. The project's README explains each.
`;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { 'out-dir': { type: 'string' } } });
  const started = performance.now();
  const built = await buildPackage(values['out-dir'] === undefined ? {} : { outDir: resolve(values['out-dir']) });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const mib = (built.tarballBytes / 1024 / 1024).toFixed(1);
  process.stdout.write(`${relative(process.cwd(), built.tarball)} (${mib} MiB, sha256 ${built.sha256}) in ${seconds} s\n`);
  process.stdout.write(`${relative(process.cwd(), built.checksumFile)}\n${relative(process.cwd(), built.dir)}${sep}\n`);
}
