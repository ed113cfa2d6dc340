/**
 * Fault matrix, archive-state group: archive folders as crashes and users leave them.
 *
 * - Killed between two chunk renames: `finish` renames each `.partial` chunk into place one by one,
 *   so a kill between two renames leaves the new run's first chunk beside the previous archive's
 *   later chunks (and the new run's last chunk still `.partial`). The state is made exactly so, by
 *   renames. Expected: `verify` names the chunk from another archive; a push refuses before it
 *   pushes anything; the same mirror command, run again, writes a whole archive without fetching.
 * - A chunk that is itself a symlink: one moved to another disk and linked back is read through the
 *   link (as tar and skopeo would); a link to a file that is no chunk (a secret) or to nothing is
 *   named, and nothing of its target is served or pushed.
 */
import { mkdir, mkdtemp, readdir, rename, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { runMeshmirror } from '../support/cli.ts';
import { diskToMirrorArgs, mirrorArgs, startMirrorFixture, type MirrorFixture } from '../support/mirror-fixture.ts';
import { skopeoInspectDigest } from '../support/skopeo.ts';
import { scenario } from './matrix.ts';

let fx: MirrorFixture;
let root: string;

const chunksIn = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((n) => /^mirror_\d{6}\.tar(\.partial)?$/.test(n)).sort();

/** Repositories of the registry under a prefix, as its catalog lists them. */
async function repositoriesUnder(prefix: string): Promise<string[]> {
  const catalog = (await (await fetch(`${fx.registry.url}/v2/_catalog?n=1000`)).json()) as { repositories?: string[] };
  return (catalog.repositories ?? []).filter((r) => r.startsWith(`${prefix}/`));
}

describe('archive state faults', () => {
  let config: string;
  let smaller: string;
  beforeAll(async () => {
    fx = await startMirrorFixture();
    root = await mkdtemp(join(tmpdir(), 'mm-faults-archive-'));
    // Tiny chunks, so an archive has several.
    config = await fx.writeConfig('archive.yaml', { additionalImages: fx.pushed.map((p) => fx.viaProxy(p.name)), archiveSize: 0.005 });
    smaller = await fx.writeConfig('archive-smaller.yaml', { additionalImages: fx.pushed.slice(0, 3).map((p) => fx.viaProxy(p.name)), archiveSize: 0.005 });
  });
  afterAll(async () => {
    if (root !== undefined) await rm(root, { recursive: true, force: true });
    await fx?.close();
  });

  scenario('archive: killed between two chunk renames', { sample: true, timeout: 240_000 }, async (record) => {
    const out = join(root, 'out-renames');
    const cache = join(root, 'cache-renames');
    // The previous archive in the folder: the whole set.
    const before = await runMeshmirror(mirrorArgs(config, out, cache, '--log-level', 'error'));
    expect(before.code, before.stderr).toBe(0);
    const oldChunks = await chunksIn(out);
    expect(oldChunks.length).toBeGreaterThanOrEqual(3);
    // The new run (a smaller set) writes its chunks as .partial elsewhere; its finish got as far as the first rename.
    const staging = join(root, 'staging');
    const next = await runMeshmirror(mirrorArgs(smaller, staging, cache, '--log-level', 'error'));
    expect(next.code, next.stderr).toBe(0);
    const newChunks = await chunksIn(staging);
    expect(newChunks.length).toBeGreaterThanOrEqual(2);
    for (const name of newChunks) await rename(join(staging, name), join(out, `${name}.partial`));
    await rename(join(out, `${newChunks[0]}.partial`), join(out, newChunks[0]!));
    const left = await chunksIn(out);

    const verify = await runMeshmirror(['verify', out]);
    const pushed = await runMeshmirror(diskToMirrorArgs(config, out, `${fx.registry.host}/renames`, join(root, 'cache-renames-push'), '--log-level', 'error'));
    const touched = await repositoriesUnder('renames');

    fx.proxy.resetStats();
    const again = await runMeshmirror(mirrorArgs(smaller, out, cache, '--log-level', 'error'));
    const fetchedAgain = fx.proxy.stats().blobBodyBytes;
    const verifiedAfter = await runMeshmirror(['verify', out]);
    const after = await chunksIn(out);
    record({
      scenario: 'archive: killed between two chunk renames',
      faults: `previous archive of ${oldChunks.length} chunks; the next run's ${newChunks.length} chunks as .partial, the first renamed into place`,
      expected: 3,
      delivered: again.code === 0 && verifiedAfter.code === 0 ? 3 : 0,
      fetchedBytes: fetchedAgain,
      uniqueBytes: fx.uniqueBlobBytes,
      outcome:
        `verify exit ${verify.code} ("${verify.stdout.split('\n')[0] ?? ''}"), push exit ${pushed.code} with ${touched.length} repositories touched ` +
        `→ re-run exit ${again.code}, ${fetchedAgain} B fetched, ${after.length} chunks, verify exit ${verifiedAfter.code}`,
    });
    // What the kill left: the new first chunk over the old ones, the rest of the new run .partial.
    expect(left).toContain(`${newChunks[1]}.partial`);
    expect(verify.code).toBe(3);
    expect(verify.stdout).toMatch(/belongs to another archive|belong\(s\) to another archive|is not part of this archive/);
    expect(pushed.code).not.toBe(0);
    expect(`${pushed.stdout}${pushed.stderr}`, pushed.stderr).toMatch(/belongs to another archive|belong\(s\) to another archive|is not part of this archive/);
    expect(touched).toEqual([]);
    expect(again.code, again.stderr).toBe(0);
    expect(fetchedAgain).toBe(0);
    expect(verifiedAfter.code, verifiedAfter.stdout).toBe(0);
    expect(after.every((n) => !n.endsWith('.partial'))).toBe(true);
    expect(after).toHaveLength(newChunks.length);
  });

  scenario('archive: a chunk that is itself a symlink', { sample: false, timeout: 240_000 }, async (record) => {
    const out = join(root, 'out-symlink');
    const made = await runMeshmirror(mirrorArgs(config, out, join(root, 'cache-symlink'), '--log-level', 'error'));
    expect(made.code, made.stderr).toBe(0);
    const chunks = await chunksIn(out);

    // Moved to another disk and linked back: read through the link.
    const elsewhere = join(root, 'other-disk');
    await mkdir(elsewhere, { recursive: true });
    await rename(join(out, chunks[0]!), join(elsewhere, chunks[0]!));
    await symlink(join(elsewhere, chunks[0]!), join(out, chunks[0]!));
    const moved = await runMeshmirror(['verify', out]);
    const target = `${fx.registry.host}/linked`;
    const push = await runMeshmirror(diskToMirrorArgs(config, out, target, join(root, 'cache-symlink-push'), '--log-level', 'error'));
    let delivered = 0;
    if (push.code === 0) {
      for (const image of fx.pushed) {
        expect(await skopeoInspectDigest(`docker://${target}/${image.name}`)).toBe(image.digest);
        delivered++;
      }
    }

    // A link to a file that is no chunk (a secret), and one to nothing.
    const hostile = join(root, 'out-symlink-hostile');
    await mkdir(hostile, { recursive: true });
    for (const name of chunks.slice(1)) await symlink(join(out, name), join(hostile, name));
    await symlink('/etc/shadow', join(hostile, chunks[0]!));
    const secret = await runMeshmirror(['verify', hostile]);
    const secretPush = await runMeshmirror(diskToMirrorArgs(config, hostile, `${fx.registry.host}/hostile`, join(root, 'cache-hostile-push'), '--log-level', 'error'));
    await rm(join(hostile, chunks[0]!));
    await symlink(join(root, 'nothing-here.tar'), join(hostile, chunks[0]!));
    const dangling = await runMeshmirror(['verify', hostile]);
    const hostileRepos = await repositoriesUnder('hostile');
    record({
      scenario: 'archive: a chunk that is itself a symlink',
      faults: `${chunks[0]} moved to another folder and symlinked back; then linked to /etc/shadow, then to nothing`,
      expected: fx.pushed.length,
      delivered,
      outcome:
        `moved: verify exit ${moved.code}, push exit ${push.code}, skopeo ✓; to /etc/shadow: verify exit ${secret.code} ("${secret.stdout.split('\n')[0] ?? ''}"), ` +
        `push exit ${secretPush.code}, ${hostileRepos.length} repositories touched; dangling: verify exit ${dangling.code} ("${dangling.stdout.split('\n')[0] ?? ''}")`,
    });
    expect(moved.code, moved.stdout).toBe(0);
    expect(push.code, push.stderr).toBe(0);
    expect(delivered).toBe(fx.pushed.length);
    expect(secret.code).toBe(3);
    expect(secret.stdout).toContain(chunks[0]);
    expect(secretPush.code).not.toBe(0);
    expect(hostileRepos).toEqual([]);
    // Nothing of the linked file is repeated anywhere.
    for (const text of [secret.stdout, secret.stderr, secretPush.stdout, secretPush.stderr]) expect(text).not.toMatch(/^root:/m);
    expect(dangling.code).not.toBe(0);
    expect(`${dangling.stdout}${dangling.stderr}`).toContain(chunks[0]);
  });
});
