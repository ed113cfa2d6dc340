/**
 * `pnpm bench:mesh` (root): the farm on separate hosts (network namespaces, see
 * test/support/namespace-farm.ts), every host's uplink to the registry shaped to the same rate
 * (BENCH_RATE_MBIT, default 100 Mbit/s: at 200 a 2-core machine running five hosts is CPU-bound),
 * the LAN between farm hosts unshaped. In one run it times:
 *
 * - the release-like set of `pnpm bench` (BENCH_BYTES, default 520 MB): `skopeo copy --all` image by
 *   image on one shaped host, meshmirror alone on one shaped host, meshmirror with one agent, and
 *   meshmirror with three agents BENCH_MESH_REPEAT times (default 3; the median counts: one such
 *   run on the 2-core machine moves by a second either way, a tenth of it, while the link-bound
 *   one-agent run moves by 0.2 s in 23);
 * - one 1 GiB blob (BENCH_BIG_BLOB_BYTES): one agent (64 MiB pieces), and three agents at each piece size in
 *   BENCH_PIECE_SIZES (MiB, default "16,32,64").
 *
 * Every run starts from empty agent stores, an empty coordinator cache and the same page cache (as root:
 * emptied, then the registry storage read back in; see same-start.ts). Upstream bytes are what
 * the registry's access log says it served, per run. Prints wall times, ratios against the targets
 * (three agents <= 0.40x one agent; upstream <= 1.01x unique; the 1 GiB blob across three <= 0.45x).
 *
 * The coordinator and the agents run as installed: the package of `pnpm package` (scripts/package.ts)
 * is built into a temporary folder first and MESHMIRROR_BIN points the support helpers at its
 * bin/meshmirror. `BENCH_FROM_SOURCES=1` runs the TypeScript sources instead.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatBytes } from '@meshmirror/shared';
import { releaseLikeImageSet } from '../../packages/coordinator/src/demo/sample-image-set.ts';
import { runMeshmirror } from '../support/cli.ts';
import { mirrorArgs, writeImageSetConfig } from '../support/mirror-fixture.ts';
import { servedBetween, startNamespaceFarm, type NamespaceFarm } from '../support/namespace-farm.ts';
import { canBuildNetworks } from '../support/netns.ts';
import { useInstalledMeshmirror, type MeshmirrorUnderTest } from './installed.ts';
import { sameStart, sameStartNote } from './same-start.ts';

const MB = 1_000_000;
const MiB = 1024 * 1024;
const rateMbit = Number(process.env['BENCH_RATE_MBIT'] ?? 100);
const totalBytes = Number(process.env['BENCH_BYTES'] ?? 520 * MB);
const bigBlobBytes = Number(process.env['BENCH_BIG_BLOB_BYTES'] ?? 1024 ** 3);
const pieceSizes = (process.env['BENCH_PIECE_SIZES'] ?? '16,32,64').split(',').map((s) => Number(s.trim()) * MiB);
const threeAgentRuns = Math.max(1, Number(process.env['BENCH_MESH_REPEAT'] ?? 3));
const BIG_IMAGE = 'bench/one-big-blob:1.0';

if (!(await canBuildNetworks())) {
  console.error('bench:mesh needs root with `ip netns` and `tc` (it builds a host per namespace); run it as root.');
  process.exit(2);
}

interface Run {
  label: string;
  seconds: number;
  upstreamBytes: number;
}

let farm: NamespaceFarm | undefined;
/** The package the benchmark runs, removed at the end. */
let underTest: MeshmirrorUnderTest | undefined;
/** Each run's coordinator log, kept after the bench for a look at what happened. */
const logDir = await mkdtemp(join(tmpdir(), 'meshmirror-bench-mesh-logs-'));
let run = 0;

/** One meshmirror run from the coordinator's host: fresh stores, fresh cache; wall time and bytes the registry served. */
async function meshmirror(label: string, config: string, agentCount: number, pieceSize: number | undefined): Promise<Run> {
  const f = farm!;
  const name = `run-${++run}`;
  const agents = agentCount > 0 ? await f.startAgents(name, agentCount) : [];
  try {
    await sameStart(f.registry.storageDir);
    const before = await f.upstream();
    const args = [...mirrorArgs(config, join(f.dir, `${name}-out`), await f.coordinatorCache(`${name}-cache`), '--log-level', 'info')];
    if (pieceSize !== undefined) args.push('--piece-size', String(pieceSize));
    if (agents.length > 0) args.push('--swarm-key', f.keyFile, '--agents', ...agents.map((a) => a.addresses[0] ?? ''));
    const started = process.hrtime.bigint();
    const result = await runMeshmirror(args, { host: f.coordinator });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    if (result.code !== 0) throw new Error(`${label} failed (${result.code}): ${result.stderr.slice(-3000)}`);
    const served = [...servedBetween(before, await f.upstream()).values()].reduce((a, b) => a + b, 0);
    // Why bytes crossed twice, when they did: the coordinator's log says.
    const log = join(logDir, `${name}.log`);
    await writeFile(log, result.stderr);
    const count = (msg: string): number => result.stderr.split(`"msg":"${msg}`).length - 1;
    const events = [
      ['endgame: duplicating a slow piece', 'endgame duplicates'],
      ['pull from agent failed', 'failed pulls'],
      ['agent lost', 'agents lost'],
    ]
      .map(([msg, what]) => [count(msg!), what] as const)
      .filter(([n]) => n > 0)
      .map(([n, what]) => `${n} ${what}`);
    console.log(`bench:mesh: ${label}: ${seconds.toFixed(1)} s, ${formatBytes(served)} from upstream${events.length > 0 ? `; ${events.join(', ')} (${log})` : ''}`);
    return { label, seconds, upstreamBytes: served };
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    // The run's stores and archive are not needed again; the disk is.
    await rm(join(f.dir, `${name}-out`), { recursive: true, force: true });
    await rm(join(f.dir, `${name}-cache`), { recursive: true, force: true });
    for (let i = 1; i <= f.agentHosts.length; i++) await rm(join(f.dir, `${name}-${i}`), { recursive: true, force: true });
  }
}

/** `skopeo copy --all`, image by image, into one OCI layout, on the coordinator's shaped host. */
async function skopeo(refs: string[]): Promise<Run> {
  const f = farm!;
  const layout = join(f.dir, 'skopeo-layout');
  await rm(layout, { recursive: true, force: true });
  await sameStart(f.registry.storageDir);
  const before = await f.upstream();
  const started = process.hrtime.bigint();
  for (const ref of refs) {
    const name = ref.slice(ref.indexOf('/') + 1);
    await f.coordinator.run('skopeo', ['copy', '--all', '--src-tls-verify=false', '--quiet', `docker://${ref}`, `oci:${layout}:${name}`]);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const served = [...servedBetween(before, await f.upstream()).values()].reduce((a, b) => a + b, 0);
  await rm(layout, { recursive: true, force: true });
  console.log(`bench:mesh: skopeo: ${seconds.toFixed(1)} s, ${formatBytes(served)} from upstream`);
  return { label: 'skopeo copy --all, image by image, one host', seconds, upstreamBytes: served };
}

/** The run with the median time (the lower middle one of an even count). */
function median(runs: Run[]): Run {
  return [...runs].sort((a, b) => a.seconds - b.seconds)[Math.floor((runs.length - 1) / 2)]!;
}

function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join('  '));
}

try {
  // Before the farm starts: keygen, identity, the agents and the coordinator all start through
  // test/support, which runs MESHMIRROR_BIN. The namespaces are network-only, so the path is the same in them.
  underTest = await useInstalledMeshmirror('bench:mesh');
  const releaseLike = releaseLikeImageSet({ totalBytes });
  const images = [...releaseLike, { name: BIG_IMAGE, platforms: [{ architecture: 'amd64', layers: [{ seed: 'bench-big', size: bigBlobBytes }] }] }];
  console.log(
    `bench:mesh: generating a release-like set of at least ${formatBytes(totalBytes)} and one ${formatBytes(bigBlobBytes)} blob; hosts shaped to ${rateMbit} Mbit/s`,
  );
  farm = await startNamespaceFarm({ images, agentMbit: [rateMbit, rateMbit, rateMbit], coordinatorMbit: rateMbit });
  const setRefs = farm.pushed.filter((p) => p.name !== BIG_IMAGE).map((p) => farm!.ref(p.name));
  const setConfig = await writeImageSetConfig(join(farm.dir, 'release-like.yaml'), { additionalImages: setRefs, archiveSize: 8 });
  const bigConfig = await writeImageSetConfig(join(farm.dir, 'big.yaml'), { additionalImages: [farm.ref(BIG_IMAGE)], archiveSize: 8 });

  const sk = await skopeo(setRefs);
  // The release-like runs use each mode's own default piece size (no --piece-size).
  const alone = await meshmirror('meshmirror, one host, no agents', setConfig, 0, undefined);
  const one = await meshmirror('meshmirror, one agent', setConfig, 1, undefined);
  const threes: Run[] = [];
  for (let i = 1; i <= threeAgentRuns; i++) threes.push(await meshmirror(`meshmirror, three agents (run ${i} of ${threeAgentRuns})`, setConfig, 3, undefined));
  const three = median(threes);
  const setUnique = farm.uniqueBlobBytes - bigBlobBytes;

  const bigOne = await meshmirror(`one ${formatBytes(bigBlobBytes)} blob, one agent`, bigConfig, 1, 64 * MiB);
  const bigThree: Run[] = [];
  for (const piece of pieceSizes)
    bigThree.push(await meshmirror(`one ${formatBytes(bigBlobBytes)} blob, three agents, ${formatBytes(piece)} pieces`, bigConfig, 3, piece));

  console.log('');
  console.log(`meshmirror runs ${underTest.mode}; ${sameStartNote()}`);
  console.log(`Release-like set: ${setRefs.length} images, ${formatBytes(setUnique)} of unique blobs; every host's uplink ${rateMbit} Mbit/s`);
  table([
    ['run', 'wall time', 'vs one agent', 'upstream / unique'],
    ...[sk, alone, one, ...threes].map((r) => [r.label, `${r.seconds.toFixed(1)} s`, (r.seconds / one.seconds).toFixed(2), (r.upstreamBytes / setUnique).toFixed(3)]),
  ]);
  if (threes.length > 1) {
    const times = threes.map((r) => r.seconds);
    console.log(
      `three agents, ${threes.length} runs: median ${three.seconds.toFixed(1)} s, mean ${(times.reduce((a, b) => a + b, 0) / times.length).toFixed(1)} s, ${Math.min(...times).toFixed(1)} to ${Math.max(...times).toFixed(1)} s`,
    );
  }
  console.log('');
  console.log(`One ${formatBytes(bigBlobBytes)} blob`);
  table([
    ['run', 'wall time', 'vs one agent', 'upstream / unique'],
    ...[bigOne, ...bigThree].map((r) => [r.label, `${r.seconds.toFixed(1)} s`, (r.seconds / bigOne.seconds).toFixed(2), (r.upstreamBytes / bigBlobBytes).toFixed(3)]),
  ]);
  console.log('');
  const ratio = three.seconds / one.seconds;
  const worstUpstream = Math.max(...threes.map((r) => r.upstreamBytes / setUnique), ...bigThree.map((r) => r.upstreamBytes / bigBlobBytes));
  const bestBig = bigThree.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  const bigRatio = bestBig.seconds / bigOne.seconds;
  const verdict = (ok: boolean): string => (ok ? 'met' : 'NOT met');
  console.log(`three agents / one agent: ${ratio.toFixed(2)}${threes.length > 1 ? ' (the median run)' : ''} (target <= 0.40: ${verdict(ratio <= 0.4)})`);
  console.log(`upstream / unique, worst farm run: ${worstUpstream.toFixed(3)} (target <= 1.01: ${verdict(worstUpstream <= 1.01)})`);
  console.log(`1 GiB blob, three agents / one agent: ${bigRatio.toFixed(2)} with ${bestBig.label.replace(/.*, /, '')} (target <= 0.45: ${verdict(bigRatio <= 0.45)})`);
  console.log(`three agents / skopeo on one host: ${(three.seconds / sk.seconds).toFixed(2)}`);
} finally {
  await farm?.close();
  await underTest?.remove();
}
