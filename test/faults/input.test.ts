/**
 * The `input` group of the fault matrix: generated malformed and hostile configurations, image
 * references, flags and command lines. Each case runs the real CLI and must be refused with exit 2
 * and one line naming what is wrong (field path, file, reference or flag), no stack trace, and
 * nothing fetched (every reference points at a closed loopback port; the output and cache folders
 * must not even be created). Last, a bad-input run against an output folder and cache that hold a
 * good archive leaves that archive byte for byte as it was.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { scenario } from './matrix.ts';
import { listFiles, mapLimit, refusalProblems, runCli, stderrLines, type CaseResult, type InputCase } from './hostile-inputs.ts';
import { runMeshmirror } from '../support/cli.ts';
import { extractChunks, fixtureImages, listChunks, mirrorArgs, startMirrorFixture, type MirrorFixture } from '../support/mirror-fixture.ts';
import { skopeoInspectDigest } from '../support/skopeo.ts';

const execFileAsync = promisify(execFile);

/** A registry port nothing listens on: a case that got past input checks could fetch nothing. */
const CLOSED = '127.0.0.1:1';
const REF = `${CLOSED}/sample/app:1.0`;
const HEADER = 'kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\n';
const VALID = `${HEADER}archiveSize: 1\nmirror:\n  additionalImages:\n    - name: ${REF}\n`;
const HEX64 = 'a'.repeat(64);

let root: string;
let caseNo = 0;

async function caseDir(): Promise<string> {
  const dir = join(root, `case-${String(++caseNo).padStart(3, '0')}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** `mirror -c FILE file://WORK/out` with FILE holding `text`, plus `extra` flags. */
function configCase(name: string, text: string | Buffer, names: Array<string | RegExp>, ...extra: string[]): InputCase {
  return {
    name,
    args: async (work) => {
      await writeFile(join(work, 'isc.yaml'), text);
      return ['mirror', '-c', join(work, 'isc.yaml'), `file://${join(work, 'out')}`, '--cache-dir', join(work, 'cache'), '--dry-run', ...extra];
    },
    names: ['isc.yaml', ...names],
  };
}

/** The valid file with `mirror:` replaced by `body` (indented as under the top level). */
const withMirror = (body: string) => `${HEADER}archiveSize: 1\nmirror:\n${body}`;
const withTop = (extra: string) => `${VALID}${extra}`;

// ---- configurations: one mutation each of a valid ImageSetConfiguration ----

const laughs = ['a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
for (let i = 1; i < 10; i++)
  laughs.push(
    `a${i}: &a${i} [${Array(9)
      .fill(`*a${i - 1}`)
      .join(', ')}]`,
  );

const configCases: InputCase[] = [
  configCase('kind wrong', VALID.replace('kind: ImageSetConfiguration', 'kind: ImageSetConfig'), ['kind']),
  configCase('kind missing', VALID.replace('kind: ImageSetConfiguration\n', ''), ['kind']),
  configCase('kind a list', VALID.replace('kind: ImageSetConfiguration', 'kind: [ImageSetConfiguration]'), ['kind']),
  configCase('apiVersion v1', VALID.replace('mirror.openshift.io/v2alpha1', 'v1'), ['apiVersion']),
  configCase('apiVersion v1alpha1', VALID.replace('v2alpha1', 'v1alpha1'), ['apiVersion', 'v1alpha1']),
  configCase('apiVersion a number', VALID.replace('mirror.openshift.io/v2alpha1', '2'), ['apiVersion']),
  configCase('archiveSize negative', VALID.replace('archiveSize: 1', 'archiveSize: -1'), ['archiveSize']),
  configCase('archiveSize zero', VALID.replace('archiveSize: 1', 'archiveSize: 0'), ['archiveSize']),
  configCase('archiveSize NaN', VALID.replace('archiveSize: 1', 'archiveSize: .nan'), ['archiveSize', 'NaN']),
  configCase('archiveSize infinite', VALID.replace('archiveSize: 1', 'archiveSize: .inf'), ['archiveSize']),
  configCase('archiveSize 1e400', VALID.replace('archiveSize: 1', 'archiveSize: 1e400'), ['archiveSize']),
  configCase('archiveSize huge (1e12 GiB)', VALID.replace('archiveSize: 1', 'archiveSize: 1000000000000'), ['archiveSize']),
  configCase('archiveSize text', VALID.replace('archiveSize: 1', 'archiveSize: big'), ['archiveSize']),
  configCase('archiveSize "8Gi"', VALID.replace('archiveSize: 1', 'archiveSize: 8Gi'), ['archiveSize']),
  configCase('archiveSize a list', VALID.replace('archiveSize: 1', 'archiveSize: [1]'), ['archiveSize']),
  configCase('mirror a string', `${HEADER}mirror: everything\n`, ['mirror']),
  configCase('mirror a list', `${HEADER}mirror:\n  - ${REF}\n`, ['mirror']),
  configCase('additionalImages a mapping', withMirror(`  additionalImages:\n    name: ${REF}\n`), ['mirror.additionalImages']),
  configCase('additionalImages item a string', withMirror(`  additionalImages:\n    - ${REF}\n`), ['mirror.additionalImages[0]']),
  configCase('name null', withMirror('  additionalImages:\n    - name: ~\n'), ['mirror.additionalImages[0].name']),
  configCase('name empty', withMirror('  additionalImages:\n    - name: ""\n'), ['mirror.additionalImages[0].name']),
  configCase('name a list', withMirror(`  additionalImages:\n    - name: [${REF}]\n`), ['mirror.additionalImages[0].name']),
  configCase('name a mapping', withMirror('  additionalImages:\n    - name: {a: b}\n'), ['mirror.additionalImages[0].name']),
  configCase('second item name missing', withMirror(`  additionalImages:\n    - name: ${REF}\n    - targetTag: x\n`), ['mirror.additionalImages[1]']),
  configCase('unknown top-level field', withTop('mirrors:\n  additionalImages: []\n'), ['mirrors']),
  configCase('unknown field in mirror', withMirror(`  additionalImage:\n    - name: ${REF}\n`), ['mirror.additionalImage']),
  configCase('unknown field in an image', withMirror(`  additionalImages:\n    - name: ${REF}\n      nmae: x\n`), ['mirror.additionalImages[0]', 'nmae']),
  configCase('unknown field in meshmirror', withTop('meshmirror:\n  parallelImage: 3\n'), ['meshmirror', 'parallelImage']),
  configCase('__proto__ field', withTop('__proto__:\n  polluted: true\n'), ['__proto__']),
  configCase('YAML: unclosed flow list', withMirror('  additionalImages:\n    - name: [unclosed\n'), [/isc\.yaml:\d+:\d+/]),
  configCase('YAML: tab indentation', `${HEADER}mirror:\n\tadditionalImages: []\n`, [/isc\.yaml:\d+:\d+/]),
  configCase('YAML: bad indentation', `${HEADER}mirror:\n  additionalImages:\n - name: x\n   - name: y\n`, [/isc\.yaml:\d+:\d+/]),
  configCase('YAML: duplicate key', `${VALID}mirror:\n  additionalImages: []\n`, [/isc\.yaml:\d+:\d+/, 'mirror']),
  configCase('YAML: two documents', `${VALID}---\n${VALID}`, ['more than one YAML document']),
  configCase('YAML: billion laughs', `${VALID}${laughs.join('\n')}\n`, [/isc\.yaml:\d+:\d+/]),
  configCase('YAML: alias to itself', `${VALID}loop: &x\n  again: *x\n`, [/isc\.yaml:\d+:\d+/]),
  configCase('YAML: undefined alias', `${VALID}x: *nowhere\n`, [/isc\.yaml:\d+:\d+/]),
  configCase('YAML: nesting 50k deep', `${VALID}deep: ${'['.repeat(50_000)}${']'.repeat(50_000)}\n`, [/isc\.yaml/]),
  configCase('a 10 MB line', withMirror(`  additionalImages:\n    - name: ${CLOSED}/${'a'.repeat(10 * 1024 * 1024)}:1\n`), ['mirror.additionalImages[0].name']),
  configCase('binary file with NUL bytes', Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 0, 1, 2, 0xff, 0xfe, 0, 0x0a, 0x00, 0x3a]), []),
  configCase('empty file', '', ['empty']),
  configCase('only a comment', '# nothing here\n', ['empty']),
  configCase('top level a list', `- ${REF}\n`, []),
  configCase('top level a scalar', 'ImageSetConfiguration\n', []),
  configCase('blockedImages a string', withMirror(`  additionalImages:\n    - name: ${REF}\n  blockedImages: all\n`), ['mirror.blockedImages']),
  configCase('blockedImages name empty', withMirror(`  additionalImages:\n    - name: ${REF}\n  blockedImages:\n    - name: ""\n`), ['mirror.blockedImages[0].name']),
  configCase('blockedImages name a list', withMirror(`  additionalImages:\n    - name: ${REF}\n  blockedImages:\n    - name: [a]\n`), ['mirror.blockedImages[0].name']),
  configCase('operators a mapping', withMirror(`  operators:\n    catalog: ${CLOSED}/cat:1\n`), ['mirror.operators']),
  configCase('operator catalog missing', withMirror('  operators:\n    - packages:\n        - name: foo\n'), ['mirror.operators[0]', 'catalog']),
  configCase('operator catalog bad reference', withMirror('  operators:\n    - catalog: "not a ref!"\n'), ['mirror.operators[0].catalog']),
  configCase('operator packages a string', withMirror(`  operators:\n    - catalog: ${CLOSED}/cat:v4.19\n      packages: foo\n`), ['mirror.operators[0].packages']),
  configCase('operator package name missing', withMirror(`  operators:\n    - catalog: ${CLOSED}/cat:v4.19\n      packages:\n        - channels: []\n`), [
    'mirror.operators[0].packages[0]',
  ]),
  configCase(
    'channel minVersion > maxVersion',
    withMirror('  platform:\n    channels:\n      - name: stable-4.19\n        minVersion: 4.19.9\n        maxVersion: 4.19.2\n'),
    ['mirror.platform.channels[0]'],
  ),
  configCase('channel minVersion not semver', withMirror('  platform:\n    channels:\n      - name: stable-4.19\n        minVersion: four\n'), [
    'mirror.platform.channels[0].minVersion',
  ]),
  configCase('channel name missing', withMirror('  platform:\n    channels:\n      - minVersion: 4.19.2\n'), ['mirror.platform.channels[0]']),
  configCase('channel type unknown', withMirror('  platform:\n    channels:\n      - name: stable-4.19\n        type: rhel\n'), ['mirror.platform.channels[0].type']),
  configCase('architectures a string', withMirror('  platform:\n    architectures: amd64\n    channels:\n      - name: stable-4.19\n'), [
    'mirror.platform.architectures',
  ]),
  configCase('meshmirror parallelImages 0', withTop('meshmirror:\n  parallelImages: 0\n'), ['meshmirror.parallelImages']),
  configCase('meshmirror parallelLayers -1', withTop('meshmirror:\n  parallelLayers: -1\n'), ['meshmirror.parallelLayers']),
  configCase('meshmirror imageTimeout forever', withTop('meshmirror:\n  imageTimeout: forever\n'), ['meshmirror.imageTimeout']),
  configCase('meshmirror stallTimeout 0s', withTop('meshmirror:\n  stallTimeout: 0s\n'), ['meshmirror.stallTimeout']),
  configCase('meshmirror retryTimes 1.5', withTop('meshmirror:\n  retryTimes: 1.5\n'), ['meshmirror.retryTimes']),
  configCase('meshmirror retryDelay -1s', withTop('meshmirror:\n  retryDelay: -1s\n'), ['meshmirror.retryDelay']),
  configCase('meshmirror srcTlsVerify maybe', withTop('meshmirror:\n  srcTlsVerify: maybe\n'), ['meshmirror.srcTlsVerify']),
  configCase('meshmirror a list', withTop('meshmirror:\n  - parallelImages: 3\n'), ['meshmirror']),
  {
    name: 'config is a directory',
    args: async (work) => {
      await mkdir(join(work, 'isc.yaml'));
      return ['mirror', '-c', join(work, 'isc.yaml'), `file://${join(work, 'out')}`, '--cache-dir', join(work, 'cache'), '--dry-run'];
    },
    names: ['isc.yaml'],
  },
  {
    name: 'config missing',
    args: (work) => ['mirror', '-c', join(work, 'isc.yaml'), `file://${join(work, 'out')}`, '--cache-dir', join(work, 'cache'), '--dry-run'],
    names: ['isc.yaml'],
  },
  {
    name: 'config is a FIFO with no writer',
    args: async (work) => {
      await execFileAsync('mkfifo', [join(work, 'isc.yaml')]);
      return ['mirror', '-c', join(work, 'isc.yaml'), `file://${join(work, 'out')}`, '--cache-dir', join(work, 'cache'), '--dry-run'];
    },
    names: ['isc.yaml'],
  },
  {
    // Root reads through mode 000, so the file's content is what gets judged.
    name: 'config mode 000 (as root: read anyway)',
    args: async (work) => {
      await writeFile(join(work, 'isc.yaml'), VALID.replace('archiveSize: 1', 'archiveSize: -1'));
      await chmod(join(work, 'isc.yaml'), 0o000);
      return ['mirror', '-c', join(work, 'isc.yaml'), `file://${join(work, 'out')}`, '--cache-dir', join(work, 'cache'), '--dry-run'];
    },
    names: ['isc.yaml', process.getuid?.() === 0 ? 'archiveSize' : 'cannot read'],
  },
  {
    // The same file for a user who cannot read it: the CLI dropped to nobody with setpriv.
    name: 'config mode 000 (as nobody: unreadable)',
    args: async (work) => {
      await chmod(work, 0o755);
      await writeFile(join(work, 'isc.yaml'), VALID);
      await chmod(join(work, 'isc.yaml'), 0o000);
      return ['mirror', '-c', join(work, 'isc.yaml'), `file://${join(work, 'out')}`, '--cache-dir', join(work, 'cache'), '--dry-run'];
    },
    wrap: (argv) => ({ command: 'setpriv', args: ['--reuid=65534', '--regid=65534', '--clear-groups', '--', ...argv] }),
    names: ['isc.yaml', 'cannot read'],
  },
];

// ---- image references, each in additionalImages[0].name (or where named) ----

const refCase = (name: string, ref: string, where = 'mirror.additionalImages[0].name'): InputCase =>
  configCase(`reference: ${name}`, withMirror(`  additionalImages:\n    - name: ${JSON.stringify(ref)}\n`), [where]);

const referenceCases: InputCase[] = [
  refCase('uppercase repository', `${CLOSED}/Sample/App:1.0`),
  refCase('digest too short', `${CLOSED}/sample/app@sha256:abc123`),
  refCase('digest too long', `${CLOSED}/sample/app@sha256:${HEX64}00`),
  refCase('digest algorithm md5', `${CLOSED}/sample/app@md5:${'a'.repeat(32)}`),
  refCase('digest not hex', `${CLOSED}/sample/app@sha256:${'g'.repeat(64)}`),
  refCase('digest uppercase hex', `${CLOSED}/sample/app@sha256:${'A'.repeat(64)}`),
  refCase('digest without algorithm', `${CLOSED}/sample/app@${HEX64}`),
  refCase('two digests', `${CLOSED}/sample/app@sha256:${HEX64}@sha256:${HEX64}`),
  refCase('tag 129 characters', `${CLOSED}/sample/app:${'t'.repeat(129)}`),
  refCase('tag starting with -', `${CLOSED}/sample/app:-1`),
  refCase('empty tag', `${CLOSED}/sample/app:`),
  refCase('.. component', `${CLOSED}/sample/../../etc/passwd:1`),
  refCase('. component', `${CLOSED}/./app:1`),
  refCase('double slash', `${CLOSED}//app:1`),
  refCase('trailing slash', `${CLOSED}/sample/:1`),
  refCase('control character', `${CLOSED}/sample/ap\u0001p:1`),
  refCase('newline', `${CLOSED}/sample/app:1\nrm -rf /`),
  refCase('shell ;', `${CLOSED}/sample/app;rm -rf ~:1`),
  refCase('shell $()', `${CLOSED}/sample/$(id):1`),
  refCase('shell backticks', `${CLOSED}/sample/\`id\`:1`),
  refCase('shell pipe', `${CLOSED}/sample/app|cat:1`),
  refCase('space', `${CLOSED}/sample/my app:1`),
  refCase('https:// scheme', 'https://quay.io/sample/app:1'),
  refCase('http:// scheme', 'http://quay.io/sample/app:1'),
  refCase('oci:// in additionalImages', 'oci:///tmp/layout'),
  refCase('port 99999', '127.0.0.1:99999/sample/app:1'),
  refCase('port 0', '127.0.0.1:0/sample/app:1'),
  refCase('port not a number', '127.0.0.1:http/sample/app:1'),
  refCase('empty name', ' '),
  refCase('only a tag', ':1.0'),
  refCase('only a digest', `@sha256:${HEX64}`),
  refCase('repository 300 characters', `${CLOSED}/${'a'.repeat(300)}:1`),
  refCase('unicode homoglyph', `${CLOSED}/sаmple/app:1`),
  refCase('percent-encoded ..', `${CLOSED}/sample/%2e%2e/app:1`),
  refCase('backslash', `${CLOSED}/sample\\..\\app:1`),
  configCase(
    'reference: blockedImages neither reference nor regex',
    withMirror(`  additionalImages:\n    - name: ${REF}\n  blockedImages:\n    - name: "quay.io/a/(b"\n`),
    ['mirror.blockedImages[0].name'],
  ),
  configCase('reference: release image with ..', withMirror('  platform:\n    release: "quay.io/openshift/../release:4.19"\n'), ['mirror.platform.release']),
  configCase('reference: targetRepo uppercase', withMirror(`  additionalImages:\n    - name: ${REF}\n      targetRepo: Team/App\n`), [
    'mirror.additionalImages[0].targetRepo',
  ]),
  configCase('reference: targetTag with /', withMirror(`  additionalImages:\n    - name: ${REF}\n      targetTag: a/b\n`), ['mirror.additionalImages[0].targetTag']),
  {
    name: 'reference: --graph-base-image malformed',
    args: async (work) => {
      await writeFile(join(work, 'isc.yaml'), VALID);
      return [
        'mirror',
        '-c',
        join(work, 'isc.yaml'),
        `file://${join(work, 'out')}`,
        '--cache-dir',
        join(work, 'cache'),
        '--dry-run',
        '--graph-base-image',
        'UPPER/..:x',
      ];
    },
    names: ['--graph-base-image', 'UPPER/..:x'],
  },
];

// ---- flags of `mirror` ----

/** A swarm key file with `content` and `mode`. */
async function swarmKey(work: string, content: string, mode = 0o600): Promise<string> {
  const file = join(work, 'swarm.key');
  await writeFile(file, content, { mode });
  await chmod(file, mode);
  return file;
}
const GOOD_KEY = `/key/swarm/psk/1.0.0/\n/base16/\n${'ab'.repeat(32)}\n`;

/** `mirror -c VALID file://WORK/out --dry-run` with `extra` flags; `names` must name the flag. */
function flagCase(
  name: string,
  extra: string[] | ((work: string) => string[] | Promise<string[]>),
  names: Array<string | RegExp> | ((work: string) => Array<string | RegExp>),
): InputCase {
  return {
    name,
    args: async (work) => {
      await writeFile(join(work, 'isc.yaml'), VALID);
      const more = typeof extra === 'function' ? await extra(work) : extra;
      return ['mirror', '-c', join(work, 'isc.yaml'), `file://${join(work, 'out')}`, '--cache-dir', join(work, 'cache'), '--dry-run', ...more];
    },
    names,
  };
}

/** `mirror` with the given positional destination and flags (no defaults added). */
function destinationCase(name: string, rest: (work: string) => string[], names: Array<string | RegExp>): InputCase {
  return {
    name,
    args: async (work) => {
      await writeFile(join(work, 'isc.yaml'), VALID);
      return ['mirror', '-c', join(work, 'isc.yaml'), '--cache-dir', join(work, 'cache'), ...rest(work)];
    },
    names,
  };
}

const flagCases: InputCase[] = [
  flagCase('--parallel-images 0', ['--parallel-images', '0'], ['--parallel-images']),
  flagCase('--parallel-images -1', ['--parallel-images', '-1'], ['--parallel-images']),
  flagCase('--parallel-images abc', ['--parallel-images', 'abc'], ['--parallel-images']),
  flagCase('--parallel-images 1.5', ['--parallel-images', '1.5'], ['--parallel-images']),
  flagCase('--parallel-images 1e999', ['--parallel-images', '1e999'], ['--parallel-images']),
  flagCase('--parallel-layers 0', ['--parallel-layers', '0'], ['--parallel-layers']),
  flagCase('--retry-times -3', ['--retry-times=-3'], ['--retry-times']),
  flagCase('--retry-times x', ['--retry-times', 'x'], ['--retry-times']),
  flagCase('--image-timeout forever', ['--image-timeout', 'forever'], ['--image-timeout']),
  flagCase('--image-timeout 0', ['--image-timeout', '0'], ['--image-timeout']),
  flagCase('--image-timeout -5s', ['--image-timeout=-5s'], ['--image-timeout']),
  flagCase('--stall-timeout 10 parsecs', ['--stall-timeout', '10 parsecs'], ['--stall-timeout']),
  flagCase('--retry-delay -1s', ['--retry-delay=-1s'], ['--retry-delay']),
  flagCase('--connect-timeout NaN', ['--connect-timeout', 'NaN'], ['--connect-timeout', 'NaN']),
  flagCase('--piece-size 0', ['--piece-size', '0'], ['--piece-size']),
  // Units are fine (64MiB); an unknown one is not.
  flagCase('--piece-size 64XiB', ['--piece-size', '64XiB'], ['--piece-size', 'XiB']),
  flagCase('--limit-upstream fast', ['--limit-upstream', 'fast'], ['--limit-upstream']),
  flagCase('--status without a port', ['--status', 'localhost'], ['--status']),
  flagCase('--upload-chunk-size 0', ['--upload-chunk-size', '0'], ['--upload-chunk-size']),
  flagCase('--archive-size (not a flag)', ['--archive-size', '5'], ['--archive-size']),
  flagCase('unknown flag', ['--paralel-images', '3'], ['--paralel-images']),
  flagCase('--src-tls-verify=maybe', ['--src-tls-verify=maybe'], ['--src-tls-verify']),
  flagCase('--output yaml', ['--output', 'yaml'], ['--output']),
  flagCase('--log-level loud', ['--log-level', 'loud'], ['--log-level']),
  flagCase('--update-url ftp://', ['--update-url', 'ftp://example.com/graph'], ['--update-url']),
  flagCase('--graph-data-url not a URL', ['--graph-data-url', 'graph.tar.gz'], ['--graph-data-url']),
  flagCase(
    '--authfile missing',
    (work) => ['--authfile', join(work, 'auth.json')],
    (work) => [join(work, 'auth.json')],
  ),
  flagCase(
    '--authfile garbage JSON',
    async (work) => {
      await writeFile(join(work, 'auth.json'), '{"auths": {"quay.io": {"auth": ');
      return ['--authfile', join(work, 'auth.json')];
    },
    (work) => [join(work, 'auth.json')],
  ),
  flagCase(
    '--authfile a directory',
    async (work) => {
      await mkdir(join(work, 'auth.json'));
      return ['--authfile', join(work, 'auth.json')];
    },
    (work) => [join(work, 'auth.json')],
  ),
  flagCase(
    '--authfile auths a list',
    async (work) => {
      await writeFile(join(work, 'auth.json'), '{"auths": [1, 2]}');
      return ['--authfile', join(work, 'auth.json')];
    },
    (work) => [join(work, 'auth.json')],
  ),
  flagCase(
    '--authfile auth not base64 user:pass',
    async (work) => {
      await writeFile(join(work, 'auth.json'), '{"auths": {"127.0.0.1:1": {"auth": "%%%not-base64%%%"}}}');
      return ['--authfile', join(work, 'auth.json')];
    },
    (work) => [join(work, 'auth.json')],
  ),
  flagCase('--agents with a garbage swarm key', async (work) => ['--swarm-key', await swarmKey(work, 'not a key\n'), '--agents', '/ip4/127.0.0.1/tcp/1'], [
    'swarm.key',
  ]),
  flagCase('--agents without --swarm-key', ['--agents', '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWBadBadBad'], ['--swarm-key']),
  flagCase(
    '--agents malformed multiaddr',
    async (work) => {
      return ['--swarm-key', await swarmKey(work, GOOD_KEY), '--agents', '/ip4/999.1.1.1/tcp/x'];
    },
    ['--agents'],
  ),
  destinationCase('destination a bare path', (work) => [join(work, 'out'), '--dry-run'], ['destination']),
  destinationCase('destination s3://', () => ['s3://bucket/out', '--dry-run'], ['s3://bucket/out']),
  destinationCase('destination file:// empty', () => ['file://', '--dry-run'], ['file://']),
  destinationCase('destination missing', () => ['--dry-run'], ['destination']),
  destinationCase('docker:// without --from', () => [`docker://${CLOSED}/mirror`], [`docker://${CLOSED}/mirror`, '--from']),
  destinationCase('--from with a file:// destination', (work) => ['--from', `file://${work}`, `file://${join(work, 'out')}`], ['--from']),
  destinationCase('--from not file://', (work) => ['--from', work, `docker://${CLOSED}/mirror`], ['--from']),
  destinationCase('--from a missing folder', (work) => ['--from', `file://${join(work, 'nope')}`, `docker://${CLOSED}/mirror`], ['--from', 'nope']),
  destinationCase('docker:// destination empty', (work) => ['--from', `file://${work}`, 'docker://'], ['docker://']),
  destinationCase('docker:// destination uppercase path', (work) => ['--from', `file://${work}`, `docker://${CLOSED}/Mirror`], [`${CLOSED}/Mirror`]),
  destinationCase('docker:// destination port 99999', (work) => ['--from', `file://${work}`, 'docker://127.0.0.1:99999/mirror'], ['127.0.0.1:99999']),
  destinationCase('--workspace not file://', (work) => ['--workspace', work, `docker://${CLOSED}/mirror`], ['--workspace']),
];

// ---- other commands ----

const agentArgs = (work: string, key: string, ...extra: string[]) => [
  'agent',
  '--data',
  join(work, 'data'),
  '--swarm-key',
  key,
  '--listen',
  '/ip4/127.0.0.1/tcp/0',
  ...extra,
];

const commandCases: InputCase[] = [
  { name: 'unknown command', args: () => ['mirorr', '-c', 'x.yaml'], names: ['mirorr'] },
  { name: 'serve a missing folder', args: (work) => ['serve', join(work, 'nope'), '--listen', '127.0.0.1:0'], names: ['nope'] },
  {
    name: 'serve a file',
    args: async (work) => {
      await writeFile(join(work, 'file'), 'x');
      return ['serve', join(work, 'file'), '--listen', '127.0.0.1:0'];
    },
    names: ['file'],
  },
  { name: 'serve an empty folder', args: (work) => ['serve', work, '--listen', '127.0.0.1:0'], names: [/case-\d+/] },
  {
    name: 'serve a layout whose index.json is garbage',
    args: async (work) => {
      await writeFile(join(work, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
      await writeFile(join(work, 'index.json'), '{"manifests": [');
      return ['serve', work, '--listen', '127.0.0.1:0'];
    },
    names: ['index.json'],
    // A damaged layout is not a flag or configuration: README's "1 anything else".
    code: 1,
  },
  { name: 'serve --listen without port', args: (work) => ['serve', work, '--listen', 'localhost'], names: ['--listen'] },
  { name: 'serve --listen port 99999', args: (work) => ['serve', work, '--listen', '127.0.0.1:99999'], names: ['--listen', '99999'] },
  { name: 'serve --listen a multiaddr', args: (work) => ['serve', work, '--listen', '/ip4/127.0.0.1/tcp/5000'], names: ['--listen'] },
  {
    name: 'serve --log-level loud',
    args: async (work) => {
      await writeFile(join(work, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
      await writeFile(join(work, 'index.json'), '{"schemaVersion":2,"manifests":[]}');
      return ['serve', work, '--listen', '127.0.0.1:0', '--log-level', 'loud'];
    },
    names: ['--log-level'],
  },
  { name: 'agent without --swarm-key', args: (work) => ['agent', '--data', join(work, 'data')], names: ['--swarm-key'] },
  { name: 'agent swarm key missing', args: (work) => agentArgs(work, join(work, 'swarm.key')), names: ['swarm.key'] },
  { name: 'agent swarm key garbage', args: async (work) => agentArgs(work, await swarmKey(work, 'not a key at all\n')), names: ['swarm.key'] },
  { name: 'agent swarm key empty', args: async (work) => agentArgs(work, await swarmKey(work, '')), names: ['swarm.key'] },
  { name: 'agent swarm key mode 644', args: async (work) => agentArgs(work, await swarmKey(work, GOOD_KEY, 0o644)), names: ['swarm.key'] },
  {
    name: 'agent swarm key a directory',
    args: async (work) => {
      await mkdir(join(work, 'swarm.key'));
      return agentArgs(work, join(work, 'swarm.key'));
    },
    names: ['swarm.key'],
  },
  {
    name: 'agent --allow malformed peer id',
    args: async (work) => agentArgs(work, await swarmKey(work, GOOD_KEY), '--allow', 'QmNotAPeer!'),
    names: ['--allow', 'QmNotAPeer!'],
  },
  {
    name: 'agent --listen malformed multiaddr',
    args: async (work) => ['agent', '--data', join(work, 'data'), '--swarm-key', await swarmKey(work, GOOD_KEY), '--listen', '/ip4/999.0.0.1/tcp/x'],
    names: ['--listen'],
  },
  {
    name: 'agent --listen host:port',
    args: async (work) => ['agent', '--data', join(work, 'data'), '--swarm-key', await swarmKey(work, GOOD_KEY), '--listen', '127.0.0.1:4001'],
    names: ['--listen'],
  },
  {
    name: 'agent --data is a file',
    args: async (work) => {
      await writeFile(join(work, 'data'), 'x');
      return agentArgs(work, await swarmKey(work, GOOD_KEY));
    },
    names: ['data'],
    code: 1, // a disk problem: README's "1 anything else (disk, store)"
  },
  {
    name: 'agent --authfile garbage',
    args: async (work) => {
      await writeFile(join(work, 'auth.json'), 'garbage');
      return agentArgs(work, await swarmKey(work, GOOD_KEY), '--authfile', join(work, 'auth.json'));
    },
    names: ['auth.json'],
  },
  {
    name: 'keygen over an existing file',
    args: async (work) => ['keygen', '--swarm-key', await swarmKey(work, GOOD_KEY)],
    names: ['swarm.key'],
  },
  { name: 'keygen into a missing folder', args: (work) => ['keygen', '--swarm-key', join(work, 'nope', 'swarm.key')], names: ['swarm.key'] },
  {
    name: 'identity --cache-dir is a file',
    args: async (work) => {
      await writeFile(join(work, 'cache'), 'x');
      return ['identity', '--cache-dir', join(work, 'cache')];
    },
    names: ['cache'],
    code: 1, // a disk problem: README's "1 anything else (disk, store)"
  },
];

const groups: Array<{ group: string; cases: InputCase[]; sample: boolean }> = [
  { group: 'configurations', cases: configCases, sample: true },
  { group: 'image references', cases: referenceCases, sample: false },
  { group: 'flags and destinations', cases: flagCases, sample: true },
  { group: 'commands (serve, agent, keygen, identity)', cases: commandCases, sample: false },
];

/** Runs each case in a folder of its own; a case passes when it is refused plainly and nothing was made. */
async function runCases(cases: InputCase[]): Promise<CaseResult[]> {
  return mapLimit(cases, 4, async (c) => {
    const work = await caseDir();
    const argv = await c.args(work);
    const started = Date.now();
    const result = await runCli(argv, c.wrap);
    const ms = Date.now() - started;
    const names = typeof c.names === 'function' ? c.names(work) : c.names;
    const problems = refusalProblems(result, names, c.code ?? 2);
    // Nothing fetched, nothing begun: no output folder, no cache, no agent data.
    for (const made of ['out', 'cache', 'data']) {
      const files = await listFiles(join(work, made));
      if (files.length > 0) {
        problems.push(`${made}/ now holds ${files.slice(0, 3).join(', ')}`);
      }
    }
    if (result.stdout.trim() !== '') problems.push(`stdout: ${result.stdout.trim().slice(0, 80)}`);
    const line = (stderrLines(result.stderr)[0] ?? '').replaceAll(root, '$T');
    return { name: c.name, ok: problems.length === 0, code: result.code, line, problems, ms };
  });
}

/** `exit 2` or `exit 2 (3× exit 1: damaged layout/disk, as documented)`. */
function codes(results: CaseResult[]): string {
  const others = results.filter((r) => r.code !== 2);
  return others.length === 0
    ? 'exit 2'
    : `exit 2 (${others.length}× exit ${[...new Set(others.map((r) => r.code))].join('/')}: damaged layout or disk, README's "anything else")`;
}

function printResults(group: string, results: CaseResult[]): void {
  const width = Math.max(...results.map((r) => r.name.length));
  const text = results.map(
    (r) =>
      `${r.ok ? '✓' : '✗'} ${r.name.padEnd(width)}  exit ${String(r.code)}  ${r.line.length > 160 ? `${r.line.slice(0, 157)}...` : r.line}${r.ok ? '' : `\n    ✗ ${r.problems.join('; ')}`}`,
  );
  console.log(`input: ${group} (${results.length} cases)\n${text.join('\n')}`);
}

describe('fault matrix: input', () => {
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'meshmirror-input-'));
  });
  afterAll(async () => {
    await execFileAsync('chmod', ['-R', 'u+rwX', root]).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });

  for (const { group, cases, sample } of groups) {
    // Outside the full matrix, a sample group runs every case; the CI sample is the groups marked so.
    scenario(`input: ${group}`, { sample, timeout: 600_000 }, async (record) => {
      const results = await runCases(cases);
      printResults(group, results);
      const good = results.filter((r) => r.ok).length;
      const failed = results.filter((r) => !r.ok);
      record({
        scenario: `input: ${group}`,
        faults: `${cases.length} generated bad inputs`,
        expected: cases.length,
        delivered: good,
        outcome:
          failed.length === 0
            ? `${good}/${cases.length} rejected: ${codes(results)}, one line naming the field/file/flag, no stack trace, nothing fetched`
            : `${good}/${cases.length} rejected plainly; ✗ ${failed.map((f) => `${f.name}: ${f.problems[0] ?? ''}`).join('; ')}`,
      });
      expect(failed.map((f) => `${f.name}: ${f.problems.join('; ')} | ${f.line}`)).toEqual([]);
    });
  }

  scenario('input: bad input loses nothing already done', { sample: true, timeout: 300_000 }, async (record) => {
    const MiB = 1024 * 1024;
    const images = fixtureImages({ bigLayerBytes: MiB }).slice(0, 2);
    const fx: MirrorFixture = await startMirrorFixture(images);
    try {
      const good = await fx.writeConfig('good.yaml', { additionalImages: images.map((i) => fx.viaProxy(i.name)), archiveSize: 0.002 });
      const out = join(fx.dir, 'out');
      const cache = join(fx.dir, 'cache');
      const first = await runMeshmirror(mirrorArgs(good, out, cache));
      expect(first.code, first.stderr).toBe(0);
      const chunksBefore = await listChunks(out);
      expect(chunksBefore.length).toBeGreaterThan(1);
      const snapshot = async () => {
        const files = [...(await listFiles(out)).map((f) => `out/${f}`), ...(await listFiles(cache)).map((f) => `cache/${f}`)].filter(
          (f) => f.startsWith('out/mirror_') || f.startsWith('cache/store/'),
        );
        return new Map(await Promise.all(files.map(async (f) => [f, (await readFile(join(fx.dir, f))).toString('base64')] as const)));
      };
      const before = await snapshot();
      const fetchedBefore = fx.proxy.stats().blobBodyBytes;

      // Bad input against the same output folder and cache: a bad config, a bad flag, a bad reference.
      const badConfig = join(fx.dir, 'bad.yaml');
      await writeFile(badConfig, (await readFile(good, 'utf8')).replace('archiveSize: 0.002', 'archiveSize: -1'));
      const badRef = join(fx.dir, 'badref.yaml');
      await writeFile(badRef, (await readFile(good, 'utf8')).replace('sample/app:1.0', 'sample/App:1.0'));
      const runs = [
        await runMeshmirror(mirrorArgs(badConfig, out, cache)),
        await runMeshmirror(mirrorArgs(good, out, cache, '--parallel-images', '0')),
        await runMeshmirror(mirrorArgs(badRef, out, cache)),
      ];
      const lines = runs.map((r) => stderrLines(r.stderr).join(' | ').replaceAll(fx.dir, '$T'));
      console.log(`input: bad input over a good archive\n${lines.map((l) => `  ${l}`).join('\n')}`);
      const after = await snapshot();
      const unchanged = [...before].every(([f, content]) => after.get(f) === content) && after.size === before.size;
      const fetched = fx.proxy.stats().blobBodyBytes;

      // The archive is still whole: extracted, skopeo reads each image with its source digest.
      const layout = join(fx.dir, 'layout');
      await extractChunks(out, layout);
      const digests = await Promise.all(fx.pushed.map(async (p) => [p, await skopeoInspectDigest(`oci:${layout}:${fx.viaProxy(p.name)}`)] as const));
      const intact = digests.filter(([p, d]) => d === p.digest).length;
      record({
        scenario: 'input: bad input loses nothing already done',
        faults: 'bad config, bad flag, bad reference run into an out/cache holding a good archive',
        expected: images.length,
        delivered: unchanged ? intact : 0,
        fetchedBytes: fetched,
        uniqueBytes: fx.uniqueBlobBytes,
        outcome: `${runs.map((r) => `exit ${String(r.code)}`).join(', ')}; ${before.size} archive/store files ${unchanged ? 'byte-identical' : 'CHANGED'}, skopeo ✓ ${intact}/${images.length}`,
      });
      for (const r of runs) expect(refusalProblems(r, [])).toEqual([]);
      expect(lines[0]).toContain('archiveSize');
      expect(lines[1]).toContain('--parallel-images');
      expect(lines[2]).toContain('mirror.additionalImages[1].name');
      expect(unchanged).toBe(true);
      expect(fetched).toBe(fetchedBefore);
      expect(fetched).toBe(fx.uniqueBlobBytes);
      expect(intact).toBe(images.length);
    } finally {
      await fx.close();
    }
  });
});
