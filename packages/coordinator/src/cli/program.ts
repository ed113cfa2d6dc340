import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { readFileSync } from 'node:fs';
import { describeError, parseDuration, parseRate, parseRegistryLimit, parseSize, type RegistryLimit } from '@meshmirror/shared';
import { ExitCode, exitCodeForError } from './exit-codes.ts';
// Each command's module is imported when that command runs: `agent` loads libp2p (0.17 s, 30 MB),
// which `mirror`, `serve` and `keygen` should not pay for.
import type { MirrorFlags } from './commands/mirror.ts';
import type { AgentFlags } from './commands/agent.ts';
import type { WarmFlags } from './commands/warm.ts';
import type { ListOperatorsFlags, ListReleasesFlags } from './commands/list.ts';
import type { ServeFlags } from './commands/serve.ts';
import type { DeleteFlags } from './commands/delete.ts';
import type { PruneFlags } from './commands/prune.ts';

/** Go-style booleans as oc-mirror users type them: `--src-tls-verify=false`. */
function parseBool(value: string): boolean {
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new InvalidArgumentError(`expected true or false, got "${value}"`);
}

function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a whole number, got "${value}"`);
  return n;
}

/** A byte size with an optional unit (`16MiB`, `8M`, `1.5GiB`) or a bare byte count, at least 1. */
function parseByteSize(value: string): number {
  let bytes: number;
  try {
    bytes = parseSize(value);
  } catch (err) {
    throw new InvalidArgumentError(describeError(err));
  }
  if (bytes < 1) throw new InvalidArgumentError(`expected a size of at least 1 byte, got "${value}"`);
  return bytes;
}

function parseRateFlag(value: string): number {
  try {
    return parseRate(value);
  } catch (err) {
    throw new InvalidArgumentError(describeError(err));
  }
}

/** `--limit-registry quay.io=50Mbit --limit-registry docker.io=20Mbit`: each adds one. */
function collectRegistryLimits(value: string, previous: RegistryLimit[] | undefined): RegistryLimit[] {
  try {
    return [...(previous ?? []), parseRegistryLimit(value)];
  } catch (err) {
    throw new InvalidArgumentError(describeError(err));
  }
}

/** `--agents a b`, `--agents a,b` and `--agents a --agents b` all add up. */
function collectAddresses(value: string, previous: string[] | undefined): string[] {
  return [
    ...(previous ?? []),
    ...value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  ];
}

/** The version of this meshmirror, from its package. */
function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return manifest.version ?? 'unknown';
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];
function parseLogLevel(value: string): string {
  if (!LOG_LEVELS.includes(value)) throw new InvalidArgumentError(`expected one of ${LOG_LEVELS.join(', ')}, got "${value}"`);
  return value;
}

function parseDurationFlag(value: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw new InvalidArgumentError(describeError(err));
  }
}

const program = new Command('meshmirror')
  .description('Mirror container images into disconnected sites; resumable, retrying, peer-to-peer.')
  .version(packageVersion(), '--version', 'print the version')
  // `meshmirror --version` only before a command: `list releases --version 4.19` is list's own flag.
  .enablePositionalOptions()
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(`meshmirror: ${str.replace(/^error: /, '')}`) });

/**
 * How long and how often requests are retried: the same five options, with the same meaning, on
 * every command that talks to registries.
 */
function withTransferOptions(command: Command): Command {
  return command
    .option('--retry-times <n>', 'also cap failed attempts in a row without progress at n (default: no cap; --image-timeout decides)', parseCount)
    .option('--retry-delay <duration>', 'first backoff delay; 0 = default exponential backoff', parseDurationFlag)
    .option('--image-timeout <duration>', 'keep retrying until this passes without any byte of progress (default 10m; never cuts a moving transfer)', parseDurationFlag)
    .option('--stall-timeout <duration>', 'no body bytes for this long: retry, resuming where a body broke off (default 60s)', parseDurationFlag)
    .option('--connect-timeout <duration>', 'TCP/TLS connect timeout (default 30s)', parseDurationFlag);
}

withTransferOptions(
  program
    .command('mirror')
    .description(
      'mirror an ImageSetConfiguration: `mirror -c isc.yaml file://DIR` (mirror to disk), `mirror -c isc.yaml --from file://DIR docker://HOST[/PREFIX]` (disk to mirror)',
    )
    .argument('<destination>', 'file://DIR for mirror to disk; docker://HOST[/PREFIX] with --from for disk to mirror')
    .requiredOption('-c, --config <file>', 'ImageSetConfiguration file')
    .option('--cache-dir <dir>', 'blob store and run journal (default: $HOME/.meshmirror)')
    .option('--authfile <file>', 'registry credentials (default: $REGISTRY_AUTH_FILE, containers auth.json, ~/.docker/config.json)')
    .option('--src-tls-verify [bool]', 'verify source registry TLS; false also allows plain HTTP', parseBool)
    .option('--dest-tls-verify [bool]', 'verify destination registry TLS', parseBool)
    .option('--parallel-images <n>', 'images at once (default 4); times --parallel-layers: blobs fetched and manifests looked up at once', parseCount)
    .option('--parallel-layers <n>', 'layers fetched at once per image (default 5)', parseCount),
)
  .option('--piece-size <size>', 'blobs above this size are fetched as parallel pieces, e.g. 32MiB (default 64 MiB; 16 MiB with --agents)', parseByteSize)
  .option('--from <file://DIR>', 'disk to mirror: the archive folder (mirror_*.tar) to push into the docker:// destination')
  .option(
    '--workspace <file://DIR>',
    'mirror to mirror: from the source registries straight to docker://HOST[/PREFIX]; reports and cluster resources go to DIR/working-dir',
  )
  .option(
    '--upload-chunk-size <size>',
    "bytes per upload request when pushing, e.g. 8MiB (default 16 MiB; raised to the registry's OCI-Chunk-Min-Length)",
    parseByteSize,
  )
  .option('--update-url <url>', 'update graph service for release channels (default: $UPDATE_URL_OVERRIDE, else the OCP or OKD service)')
  .option('--graph-data-url <url>', "graph-data tarball for graph: true (default: the OpenShift update service's)")
  .option('--graph-base-image <ref>', 'image the graph data is layered on for graph: true (default registry.access.redhat.com/ubi9/ubi:latest)')
  .option(
    '--agents <multiaddr...>',
    'a farm run: these agents fetch (each /ip4/HOST/tcp/PORT/p2p/PEERID, as the agent prints it; space- or comma-separated); this host writes the archive',
    collectAddresses,
  )
  .option('--limit-upstream <rate>', "this host's ceiling on bytes from registries, e.g. 100Mbit or 10MiB/s (farm agents take their own)", parseRateFlag)
  .option('--limit-registry <host=rate>', "this host's ceiling for one registry, e.g. quay.io=50Mbit (repeatable; farm agents take their own)", collectRegistryLimits)
  .option('--limit-peer <rate>', 'a farm run: ceiling on the bytes this host pulls from the agents, e.g. 500Mbit', parseRateFlag)
  .option('--status <host:port>', "serve the run's state while it goes: a live page at /, Prometheus /metrics and /api/run (JSON), e.g. 127.0.0.1:9464")
  .option(
    '--status-linger <duration>',
    'with --status: keep answering this long once the run is over, for a last scrape and the page, e.g. 5m (default 0; Ctrl-C ends it)',
    parseDurationFlag,
  )
  .option('--agents-file <file>', 'agents as for --agents, one multiaddr per line (# starts a comment); joins --agents')
  .option('--swarm-key <file>', "the farm's swarm key, for --agents")
  .option('--dry-run', 'resolve and write the mapping and the bytes to fetch; fetch nothing')
  .option(
    '--remove-signatures',
    "leave out the images' sigstore signatures (sha256-<hex>.sig tags) and OCI referrers (signatures, SBOMs, attestations), which are mirrored by default",
  )
  .option('--since-receipt <file>', "mirror to disk: leave out the blobs a push's working-dir/receipt.json says the target holds (a differential archive)")
  .option(
    '--include-dependencies',
    'add the operator bundles the selected ones need (olm.package.required, olm.gvk.required), as includeDependencies: true on every catalog',
  )
  .option('--max-nested-paths <n>', 'pushing: flatten target repository paths deeper than n components, as oc-mirror does (default 0: no limit)', parseCount)
  .option('--strict-archive', 'mirror to disk: fail (before fetching) instead of writing a chunk larger than archiveSize for a blob larger than it')
  .option('--since <date>', 'mirror to disk: leave out the blobs of images that runs in this cache archived before DATE (YYYY-MM-DD or ISO time)')
  .option('--no-verify', 'mirror to disk: do not read the archive back and check it (as meshmirror verify) once written')
  .option('--output <format>', 'text or json (a machine-readable summary on stdout)', 'text')
  .option('--log-level <level>', 'trace, debug, info, warn, error', parseLogLevel, 'warn')
  .option('--v2', 'accepted for oc-mirror compatibility; ignored')
  .action(async (destination: string, flags: MirrorFlags) => {
    const { runMirrorCommand } = await import('./commands/mirror.ts');
    process.exitCode = await runMirrorCommand(destination, flags);
  });

program
  .command('serve')
  .description('serve an OCI layout or a folder of archive chunks read-only as a registry')
  .argument('<dir>', 'OCI image layout folder or folder with mirror_*.tar chunks')
  .option('--listen <host:port>', 'address to listen on', '127.0.0.1:5000')
  .option('--repository <name>', "repository of the folder's bare-tag names (1.0, as skopeo and buildah write them) and unnamed entries (default: the folder's name)")
  .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (chain); needs --tls-key')
  .option('--tls-key <file>', 'the PEM private key of --tls-cert')
  .option('--htpasswd <file>', 'require HTTP basic authentication against this htpasswd file (bcrypt entries: htpasswd -B)')
  .option('--log-level <level>', 'trace, debug, info, warn, error', parseLogLevel, 'info')
  .action(async (dir: string, flags: ServeFlags) => {
    const { runServeCommand } = await import('./commands/serve.ts');
    process.exitCode = await runServeCommand(dir, flags);
  });

program
  .command('receipt')
  .description("make a receipt of what docker://HOST[/PREFIX] holds of the image set, by asking it (for --since-receipt, when the push's receipt is lost)")
  .argument('<destination>', 'docker://HOST[/PREFIX]: the target a push of this image set went to')
  .requiredOption('-c, --config <file>', 'ImageSetConfiguration file')
  .requiredOption('-o, --out <file>', 'where to write the receipt')
  .option('--cache-dir <dir>', 'blob store and run journal (default: $HOME/.meshmirror)')
  .option('--authfile <file>', 'registry credentials (default: $REGISTRY_AUTH_FILE, containers auth.json, ~/.docker/config.json)')
  .option('--src-tls-verify [bool]', 'verify source registry TLS; false also allows plain HTTP', parseBool)
  .option('--dest-tls-verify [bool]', 'verify destination registry TLS; false also allows plain HTTP', parseBool)
  .option('--update-url <url>', 'update graph service for release channels (default: $UPDATE_URL_OVERRIDE, else the OCP or OKD service)')
  .option('--graph-data-url <url>', "graph-data tarball for graph: true (default: the OpenShift update service's)")
  .option('--graph-base-image <ref>', 'image the graph data is layered on for graph: true (default registry.access.redhat.com/ubi9/ubi:latest)')
  .option('--max-nested-paths <n>', 'as the push used: flatten target repository paths deeper than n components', parseCount)
  .option('--output <format>', 'text or json', 'text')
  .option('--log-level <level>', 'trace, debug, info, warn, error', parseLogLevel, 'warn')
  .action(async (destination: string, flags: MirrorFlags & { out: string }) => {
    const { runReceiptCommand } = await import('./commands/mirror.ts');
    process.exitCode = await runReceiptCommand(destination, flags);
  });

withTransferOptions(
  program
    .command('delete')
    .description(
      "oc-mirror's delete workflow: `delete --generate -c delete-isc.yaml --workspace file://DIR docker://HOST[/PREFIX]` lists what a mirror of that content pushed there; `delete --delete-yaml-file FILE docker://HOST[/PREFIX]` deletes those manifests (blobs are left to the registry's garbage collector)",
    )
    .argument('<destination>', 'docker://HOST[/PREFIX]: the registry the images were mirrored to')
    .option('--generate', 'step 1: write DIR/working-dir/delete/delete-images.yaml (and delete-imageset-config.yaml) for review; nothing is deleted')
    .option('-c, --config <file>', 'with --generate: the DeleteImageSetConfiguration')
    .option('--workspace <file://DIR>', 'with --generate: where the list goes (DIR/working-dir/delete/)')
    .option('--delete-id <id>', 'with --generate: name the files delete-images-<id>.yaml and delete-imageset-config-<id>.yaml')
    .option('--delete-signatures', "with --generate: also list the images' sigstore signature tags (sha256-<hex>.sig), of an index and each child")
    .option('--delete-yaml-file <file>', 'step 2: delete the manifests this list names (a tag that an image not in the list shares is kept)')
    .option('--force-cache-delete', "oc-mirror's; not supported (meshmirror's cache is a blob store every run shares)")
    .option('--delete-v1-images', "oc-mirror's; not supported (meshmirror never pushed oc-mirror v1's tags)")
    .option('--cache-dir <dir>', 'with --generate: blob store and run journal for resolving (default: $HOME/.meshmirror)')
    .option('--authfile <file>', 'registry credentials (default: $REGISTRY_AUTH_FILE, containers auth.json, ~/.docker/config.json)')
    .option('--src-tls-verify [bool]', 'with --generate: verify source registry TLS; false also allows plain HTTP', parseBool)
    .option('--dest-tls-verify [bool]', 'deleting: verify the destination registry TLS; false also allows plain HTTP', parseBool)
    .option('--parallel-images <n>', 'with --generate: release payloads read at once (default 4); 5 times this: manifests looked up at once', parseCount),
)
  .option('--max-nested-paths <n>', 'as the mirror used: flatten target repository paths deeper than n components', parseCount)
  .option('--include-dependencies', 'with --generate: as the mirror used, includeDependencies: true on every catalog')
  .option('--update-url <url>', 'with --generate: update graph service for release channels (default: $UPDATE_URL_OVERRIDE, else the OCP or OKD service)')
  .option('--graph-data-url <url>', 'with --generate: graph-data tarball for graph: true')
  .option('--graph-base-image <ref>', 'with --generate: image the graph data is layered on for graph: true')
  .option('--output <format>', 'text or json (a machine-readable summary on stdout)', 'text')
  .option('--log-level <level>', 'trace, debug, info, warn, error', parseLogLevel, 'warn')
  .option('--v2', 'accepted for oc-mirror compatibility; ignored')
  .action(async (destination: string, flags: DeleteFlags) => {
    const { runDeleteCommand } = await import('./commands/delete.ts');
    process.exitCode = await runDeleteCommand(destination, flags);
  });

withTransferOptions(
  program
    .command('warm')
    .description(
      "fill a farm's stores with an image set ahead of a transfer window: the agents fetch, nothing is written; a later mirror with the same agents takes every blob from them",
    )
    .requiredOption('-c, --config <file>', 'ImageSetConfiguration file')
    .option(
      '--agents <multiaddr...>',
      'the farm: these agents fetch (each /ip4/HOST/tcp/PORT/p2p/PEERID, as the agent prints it; space- or comma-separated)',
      collectAddresses,
    )
    .option('--agents-file <file>', 'agents as for --agents, one multiaddr per line (# starts a comment); joins --agents')
    .option('--swarm-key <file>', "the farm's swarm key")
    .option('--cache-dir <dir>', 'the coordinator identity and run journal (default: $HOME/.meshmirror)')
    .option('--authfile <file>', "registry credentials for resolving (each agent fetches with its own host's)")
    .option('--src-tls-verify [bool]', 'verify source registry TLS; false also allows plain HTTP', parseBool)
    .option('--parallel-images <n>', 'images at once (default 4); times --parallel-layers: manifests looked up at once', parseCount)
    .option('--parallel-layers <n>', 'blobs each agent fetches at once (default 5)', parseCount),
)
  .option('--remove-signatures', "leave out the images' sigstore signatures and OCI referrers")
  .option('--include-dependencies', 'add the operator bundles the selected ones need, as includeDependencies: true on every catalog')
  .option('--update-url <url>', 'update graph service for release channels (default: $UPDATE_URL_OVERRIDE, else the OCP or OKD service)')
  .option('--graph-data-url <url>', "graph-data tarball for graph: true (default: the OpenShift update service's)")
  .option('--graph-base-image <ref>', 'image the graph data is layered on for graph: true')
  .option('--output <format>', 'text or json (a machine-readable summary on stdout)', 'text')
  .option('--log-level <level>', 'trace, debug, info, warn, error', parseLogLevel, 'warn')
  .action(async (flags: WarmFlags) => {
    const { runWarmCommand } = await import('./commands/warm.ts');
    process.exitCode = await runWarmCommand(flags);
  });

const list = program.command('list').description('what oc-mirror list shows, for writing an ImageSetConfiguration');

list
  .command('releases')
  .description('the versions of a release channel (from the update graph), or the channels of a version')
  .option('--channel <name>', 'list the versions of this channel (default: stable-<version>)')
  .option('--version <x.y>', 'an OpenShift version such as 4.19')
  .option('--channels', 'list the channels of --version instead')
  .option(
    '--filter-by-archs <archs>',
    'architectures, comma-separated: amd64 (default), arm64, ppc64le, s390x, multi',
    (v: string) => v.split(',').filter((a) => a !== ''),
    ['amd64'],
  )
  .option('--update-url <url>', 'update graph service (default: $UPDATE_URL_OVERRIDE, else the OCP service)')
  .option('--output <format>', 'text or json', 'text')
  .option('--log-level <level>', 'trace, debug, info, warn, error', parseLogLevel, 'warn')
  .action(async (flags: ListReleasesFlags) => {
    const { runListReleasesCommand } = await import('./commands/list.ts');
    process.exitCode = await runListReleasesCommand(flags);
  });

list
  .command('operators')
  .description("a catalog's packages and default channels, a package's channels and heads, or a channel's versions")
  .requiredOption('--catalog <ref>', 'the catalog image, e.g. registry.redhat.io/redhat/redhat-operator-index:v4.19')
  .option('--package <name>', "list this package's channels and their heads")
  .option('--channel <name>', "with --package: list this channel's versions")
  .option('--cache-dir <dir>', 'blob store for the catalog layers (default: $HOME/.meshmirror)')
  .option('--authfile <file>', 'registry credentials (default: $REGISTRY_AUTH_FILE, containers auth.json, ~/.docker/config.json)')
  .option('--src-tls-verify [bool]', 'verify the registry TLS; false also allows plain HTTP', parseBool)
  .option('--output <format>', 'text or json', 'text')
  .option('--log-level <level>', 'trace, debug, info, warn, error', parseLogLevel, 'warn')
  .action(async (flags: ListOperatorsFlags) => {
    const { runListOperatorsCommand } = await import('./commands/list.ts');
    process.exitCode = await runListOperatorsCommand(flags);
  });

program
  .command('verify')
  .description('check an archive before carrying it: every chunk, tar header and blob digest, and every image complete (no network)')
  .argument('<dir>', 'folder with mirror_*.tar chunks')
  .option('--output <format>', 'text (one line per problem) or json', 'text')
  .action(async (dir: string, flags: { output: string }) => {
    const { runVerifyCommand } = await import('./commands/verify.ts');
    process.exitCode = await runVerifyCommand(dir, flags);
  });

program
  .command('prune')
  .description(
    "remove what no kept run uses from the coordinator's cache (--cache-dir), or what a farm agent has not used within --older-than from its data folder (--data)",
  )
  .option('--cache-dir <dir>', 'the coordinator cache to prune: blob store and run journal (default: $HOME/.meshmirror)')
  .option('--data <dir>', "a farm agent's data folder to prune instead (the agent must be stopped)")
  .option('--older-than <age>', 'keep every run active, and (with --data) every blob used, within this long, e.g. 30d, 12h (default 30d)')
  .option('--keep-runs <n>', 'with --cache-dir: also keep the n most recent runs, however old (default 1)', parseCount)
  .option('--dry-run', 'report what would go; remove nothing')
  .option('--output <format>', 'text or json', 'text')
  .option('--log-level <level>', 'trace, debug, info, warn, error', parseLogLevel, 'warn')
  .action(async (flags: PruneFlags) => {
    const { runPruneCommand } = await import('./commands/prune.ts');
    process.exitCode = await runPruneCommand(flags);
  });

program
  .command('agent')
  .description('run a mirroring agent: a blob store on this host that fetches and shares blobs over the mesh')
  .option('--config <file>', 'a YAML file with any of data, swarmKey, listen, allow, authfile, logLevel (flags win; paths relative to the file)')
  .option('--data <dir>', 'data folder: blob store, peer identity (required here or in --config)')
  .option('--swarm-key <file>', "the farm's swarm key (meshmirror keygen; required here or in --config)")
  .option('--listen <multiaddr...>', 'addresses to listen on (default /ip4/0.0.0.0/tcp/4001)')
  .option('--allow <peerid...>', "peer ids admitted: the coordinator's (meshmirror identity) and the other agents' (default: every peer holding the swarm key)")
  .option('--authfile <file>', "this host's registry credentials (default: $REGISTRY_AUTH_FILE, containers auth.json, ~/.docker/config.json)")
  .option('--limit-upstream <rate>', "this host's ceiling on bytes from registries, over all its fetches, e.g. 100Mbit or 10MiB/s", parseRateFlag)
  .option('--limit-registry <host=rate>', 'a ceiling for one registry, e.g. quay.io=50Mbit (repeatable; under --limit-upstream)', collectRegistryLimits)
  .option('--limit-peer <rate>', "this host's ceiling on bytes it serves over the mesh, e.g. 500Mbit", parseRateFlag)
  .option('--status <host:port>', "serve this agent's Prometheus /metrics and /api/agent (JSON), e.g. 0.0.0.0:9465")
  .option('--log-level <level>', 'trace, debug, info, warn, error (default info)', parseLogLevel)
  .action(async (flags: AgentFlags) => {
    const { runAgentCommand } = await import('./commands/agent.ts');
    process.exitCode = await runAgentCommand(flags);
  });

program
  .command('identity')
  .description("print this coordinator's peer id (created on first use), for the agents' --allow")
  .option('--cache-dir <dir>', 'where the coordinator keeps its identity (default: $HOME/.meshmirror)')
  .action(async (flags: { cacheDir?: string }) => {
    const { runIdentityCommand } = await import('./commands/identity.ts');
    process.exitCode = await runIdentityCommand(flags);
  });

program
  .command('keygen')
  .description('make a swarm key: the shared secret that admits hosts to a mirroring farm')
  .requiredOption('--swarm-key <file>', 'where to write the key (created with mode 600)')
  .option('--force', 'replace an existing key file')
  .action(async (flags: { swarmKey: string; force?: boolean }) => {
    const { runKeygenCommand } = await import('./commands/keygen.ts');
    process.exitCode = await runKeygenCommand(flags);
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander already printed its one-line message (or the help).
    process.exitCode = err.exitCode === 0 ? ExitCode.Ok : ExitCode.BadInput;
  } else {
    process.stderr.write(`meshmirror: error: ${describeError(err)}\n`);
    process.exitCode = exitCodeForError(err);
  }
}
