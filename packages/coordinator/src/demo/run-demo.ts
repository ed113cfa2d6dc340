/**
 * The README demo: builds a small sample image set, serves it with `meshmirror serve` as a local
 * registry, and mirrors it to disk with the real CLI, all on loopback (no outside network).
 */
import { spawn } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '@meshmirror/shared';
import { openArchive, startRegistryServer } from '@meshmirror/agent';
import { demoImageSet, writeSampleLayout } from './sample-image-set.ts';
import { CLI_NODE_FLAGS } from '../cli/node-flags.ts';

const root = resolve(process.argv[2] ?? 'demo-out');
const cli = fileURLToPath(new URL('../cli/main.ts', import.meta.url));

await rm(root, { recursive: true, force: true });
await mkdir(root, { recursive: true });
const sourceDir = join(root, 'source-layout');
const images = demoImageSet();
const written = await writeSampleLayout(sourceDir, images);
console.log(`demo: wrote ${written.images.length} sample images (${written.uniqueBlobs} blobs) to ${sourceDir}`);

const server = await startRegistryServer({ dir: sourceDir, host: '127.0.0.1', port: 0, logger: createLogger({ level: 'warn' }) });
console.log(`demo: serving them as a registry at ${server.url} (meshmirror serve)`);
try {
  const configFile = join(root, 'imageset-config.yaml');
  await writeFile(
    configFile,
    [
      'kind: ImageSetConfiguration',
      'apiVersion: mirror.openshift.io/v2alpha1',
      'archiveSize: 0.002 # GiB per chunk, tiny so the demo shows several chunks',
      'mirror:',
      '  additionalImages:',
      ...images.map((i) => `    - name: ${new URL(server.url).host}/${i.name}`),
      '',
    ].join('\n'),
  );
  const archiveDir = join(root, 'archive');
  const args = [...CLI_NODE_FLAGS, cli, 'mirror', '-c', configFile, `file://${archiveDir}`, '--cache-dir', join(root, 'cache'), '--src-tls-verify=false'];
  console.log(`demo: meshmirror mirror -c ${configFile} file://${archiveDir} --cache-dir ${join(root, 'cache')} --src-tls-verify=false\n`);
  const code = await new Promise<number>((done) => {
    spawn(process.execPath, args, { stdio: 'inherit' }).on('exit', (c) => done(c ?? 1));
  });
  if (code !== 0) {
    console.error(`demo: meshmirror exited with ${code}`);
    process.exitCode = code;
  } else {
    const archive = await openArchive(archiveDir);
    const listed = await archive.images();
    console.log(`\ndemo: the archive in ${archiveDir} holds ${listed.length} images:`);
    for (const image of listed) console.log(`  ${image.name ?? '(unnamed)'}  ${image.descriptor.digest}`);
    console.log('demo: extract every mirror_*.tar into one folder to get an OCI image layout (skopeo, crane and oras read it).');
  }
} finally {
  await server.close();
}
