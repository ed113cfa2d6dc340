import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestHex, MediaType, REF_NAME_ANNOTATION, sha256Digest, type Descriptor, type Digest } from '@meshmirror/shared';
import { writeTestLayout, type TestLayout } from '../layout/test-layout-fixture.ts';
import { parseRange } from './byte-range.ts';
import { startRegistryServer, type RunningRegistryServer } from './registry-server.ts';

let work: string;
let layoutDir: string;
let layout: TestLayout;
let server: RunningRegistryServer;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mm-registry-server-'));
  layoutDir = join(work, 'layout');
  layout = await writeTestLayout(layoutDir, [
    { name: 'sample/app:1.0', platforms: [{ architecture: 'amd64', layerSizes: [5000] }] },
    { name: 'sample/app:1.1', platforms: [{ architecture: 'amd64', layerSizes: [6000, 3 * 1024 * 1024] }] },
    {
      name: 'registry.example.com/team/multi:2.0',
      platforms: [
        { architecture: 'amd64', layerSizes: [100] },
        { architecture: 'arm64', layerSizes: [200] },
      ],
    },
  ]);
  server = await startRegistryServer({ dir: layoutDir, host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  await server.close();
  await rm(work, { recursive: true, force: true });
});

function image(name: string) {
  const found = layout.images.find((i) => i.name === name);
  if (found === undefined) throw new Error(`no image ${name}`);
  return found;
}

async function blobBytes(digest: Digest): Promise<Buffer> {
  return await readFile(join(layoutDir, 'blobs', 'sha256', digestHex(digest)));
}

/** What a client that reads every manifest form sends. */
const ACCEPT_ALL = [MediaType.OciIndex, MediaType.OciManifest, MediaType.DockerManifestList, MediaType.DockerManifest].join(', ');

async function errorCodes(response: Response): Promise<string[]> {
  const body = (await response.json()) as { errors: Array<{ code: string }> };
  return body.errors.map((e) => e.code);
}

describe('registry server', () => {
  it('answers the API version check', async () => {
    const response = await fetch(`${server.url}/v2/`);
    expect(response.status).toBe(200);
    expect(response.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
  });

  it('lists the repositories a client can address (not the registry-qualified aliases) and tags, with pagination', async () => {
    const catalog = (await (await fetch(`${server.url}/v2/_catalog`)).json()) as { repositories: string[] };
    expect(catalog.repositories).toEqual(['sample/app', 'team/multi']);
    expect(server.repositories).toEqual(['sample/app', 'team/multi']);
    const firstPage = await fetch(`${server.url}/v2/_catalog?n=1`);
    expect(((await firstPage.json()) as { repositories: string[] }).repositories).toEqual(['sample/app']);
    expect(firstPage.headers.get('link')).toBe('</v2/_catalog?last=sample%2Fapp&n=1>; rel="next"');
    const lastPage = await fetch(`${server.url}/v2/_catalog?n=1&last=sample%2Fapp`);
    expect(await lastPage.json()).toEqual({ repositories: ['team/multi'] });
    expect(lastPage.headers.get('link')).toBeNull();
    const tags = (await (await fetch(`${server.url}/v2/sample/app/tags/list`)).json()) as { tags: string[] };
    expect(tags).toEqual({ name: 'sample/app', tags: ['1.0', '1.1'] });
    const aliasTags = await fetch(`${server.url}/v2/registry.example.com/team/multi/tags/list`);
    expect(await aliasTags.json()).toEqual({ name: 'registry.example.com/team/multi', tags: ['2.0'] });
    const unknown = await fetch(`${server.url}/v2/nope/tags/list`);
    expect(unknown.status).toBe(404);
    expect(await errorCodes(unknown)).toEqual(['NAME_UNKNOWN']);
  });

  it('serves manifests by tag and by digest with their media type and digest', async () => {
    const multi = image('registry.example.com/team/multi:2.0');
    for (const name of ['team/multi', 'registry.example.com/team/multi']) {
      const response = await fetch(`${server.url}/v2/${name}/manifests/2.0`, { headers: { Accept: ACCEPT_ALL } });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe(MediaType.OciIndex);
      expect(response.headers.get('docker-content-digest')).toBe(multi.descriptor.digest);
      expect(sha256Digest(Buffer.from(await response.arrayBuffer()))).toBe(multi.descriptor.digest);
    }
    // A child of the index is only a blob in the layout; it is a manifest by digest in the index's repository, and only there.
    const index = JSON.parse((await blobBytes(multi.descriptor.digest)).toString()) as { manifests: Array<{ digest: Digest }> };
    const child = index.manifests[1]!.digest;
    const response = await fetch(`${server.url}/v2/team/multi/manifests/${child}`, { headers: { Accept: MediaType.OciManifest } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(MediaType.OciManifest);
    expect(Buffer.from(await response.arrayBuffer()).equals(await blobBytes(child))).toBe(true);
    for (const name of ['sample/app', 'some/other/repo']) {
      const elsewhere = await fetch(`${server.url}/v2/${name}/manifests/${child}`, { headers: { Accept: MediaType.OciManifest } });
      expect(elsewhere.status).toBe(404);
      expect(await errorCodes(elsewhere)).toEqual(['MANIFEST_UNKNOWN']);
    }

    const head = await fetch(`${server.url}/v2/sample/app/manifests/1.0`, { method: 'HEAD', headers: { Accept: MediaType.OciManifest } });
    expect(head.status).toBe(200);
    expect(head.headers.get('docker-content-digest')).toBe(image('sample/app:1.0').descriptor.digest);
    expect(Number(head.headers.get('content-length'))).toBe(image('sample/app:1.0').descriptor.size);
  });

  it('answers unknown manifests and non-manifest blobs with MANIFEST_UNKNOWN', async () => {
    const layer = layout.blobs.find((b) => b.size === 5000)!.digest;
    // An invalid tag is not found, as in distribution and the conformance suite (the spec allows only tags and digests).
    for (const path of [
      'sample/app/manifests/9.9',
      `sample/app/manifests/${layer}`,
      `sample/app/manifests/${sha256Digest('x')}`,
      'sample/app/manifests/.INVALID_MANIFEST_NAME',
      'sample/app/manifests/sha256:totallywrong',
    ]) {
      const response = await fetch(`${server.url}/v2/${path}`, { headers: { Accept: ACCEPT_ALL } });
      expect(response.status, path).toBe(404);
      expect(await errorCodes(response)).toEqual(['MANIFEST_UNKNOWN']);
    }
    // Distribution answers a manifest of a repository it does not have with MANIFEST_UNKNOWN too (NAME_UNKNOWN is for tags/list).
    const unknownRepo = await fetch(`${server.url}/v2/nope/manifests/1.0`, { headers: { Accept: ACCEPT_ALL } });
    expect(unknownRepo.status).toBe(404);
    expect(await errorCodes(unknownRepo)).toEqual(['MANIFEST_UNKNOWN']);
  });

  it('answers Accept as distribution does: a manifest the client does not take is not found', async () => {
    const app = image('sample/app:1.0').descriptor.digest;
    for (const accept of [undefined, MediaType.DockerManifest, `${MediaType.OciIndex}, ${MediaType.DockerManifest}`]) {
      const response = await fetch(`${server.url}/v2/sample/app/manifests/1.0`, { headers: accept === undefined ? {} : { Accept: accept } });
      expect(response.status, accept).toBe(404);
      expect(await errorCodes(response)).toEqual(['MANIFEST_UNKNOWN']);
    }
    const withQuality = await fetch(`${server.url}/v2/sample/app/manifests/1.0`, {
      headers: { Accept: `${MediaType.DockerManifest};q=0.9, ${MediaType.OciManifest} ; q=0.5` },
    });
    expect(withQuality.status).toBe(200);
    expect(withQuality.headers.get('docker-content-digest')).toBe(app);
    const indexToManifestClient = await fetch(`${server.url}/v2/team/multi/manifests/2.0`, { headers: { Accept: MediaType.OciManifest } });
    expect(indexToManifestClient.status).toBe(404);
    expect(await errorCodes(indexToManifestClient)).toEqual(['MANIFEST_UNKNOWN']);
  });

  it('answers If-None-Match with 304 for manifests and blobs', async () => {
    const app = image('sample/app:1.0').descriptor.digest;
    const manifest = await fetch(`${server.url}/v2/sample/app/manifests/1.0`, { headers: { Accept: MediaType.OciManifest, 'If-None-Match': `"${app}"` } });
    expect(manifest.status).toBe(304);
    const layer = layout.blobs.find((b) => b.size === 5000)!.digest;
    const blob = await fetch(`${server.url}/v2/sample/app/blobs/${layer}`, { headers: { 'If-None-Match': `"${layer}"` } });
    expect(blob.status).toBe(304);
    expect(blob.headers.get('etag')).toBe(`"${layer}"`);
  });

  it('serves a blob only in a repository that holds it', async () => {
    const appLayer = layout.blobs.find((b) => b.size === 5000)!.digest;
    const multiLayer = layout.blobs.find((b) => b.size === 200)!.digest;
    expect((await fetch(`${server.url}/v2/team/multi/blobs/${multiLayer}`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${server.url}/v2/registry.example.com/team/multi/blobs/${multiLayer}`, { method: 'HEAD' })).status).toBe(200);
    for (const path of [`team/multi/blobs/${appLayer}`, `nope/blobs/${appLayer}`, `sample/app/blobs/${image('sample/app:1.0').descriptor.digest}`]) {
      const response = await fetch(`${server.url}/v2/${path}`);
      expect(response.status, path).toBe(404);
      expect(await errorCodes(response)).toEqual(['BLOB_UNKNOWN']);
    }
  });

  it('pages tags with n and last, n=0 giving an empty page without a link', async () => {
    const first = await fetch(`${server.url}/v2/sample/app/tags/list?n=1`);
    expect(await first.json()).toEqual({ name: 'sample/app', tags: ['1.0'] });
    expect(first.headers.get('link')).toBe('</v2/sample/app/tags/list?last=1.0&n=1>; rel="next"');
    const second = await fetch(`${server.url}/v2/sample/app/tags/list?last=1.0&n=1`);
    expect(await second.json()).toEqual({ name: 'sample/app', tags: ['1.1'] });
    expect(second.headers.get('link')).toBeNull();
    const none = await fetch(`${server.url}/v2/sample/app/tags/list?n=0`);
    expect(await none.json()).toEqual({ name: 'sample/app', tags: [] });
    expect(none.headers.get('link')).toBeNull();
    const bad = await fetch(`${server.url}/v2/sample/app/tags/list?n=-1`);
    expect(bad.status).toBe(400);
    expect(await errorCodes(bad)).toEqual(['PAGINATION_NUMBER_INVALID']);
  });

  it('serves blob ranges: a-b, a-, suffix, 416 when unsatisfiable', async () => {
    const layer = layout.blobs.find((b) => b.size === 5000)!.digest;
    const bytes = await blobBytes(layer);
    const url = `${server.url}/v2/sample/app/blobs/${layer}`;

    const whole = await fetch(url);
    expect(whole.status).toBe(200);
    expect(whole.headers.get('accept-ranges')).toBe('bytes');
    expect(Buffer.from(await whole.arrayBuffer()).equals(bytes)).toBe(true);

    const cases: Array<[string, number, number]> = [
      ['bytes=100-199', 100, 199],
      ['bytes=4990-', 4990, 4999],
      ['bytes=-10', 4990, 4999],
      ['bytes=4000-999999', 4000, 4999],
    ];
    for (const [range, start, end] of cases) {
      const response = await fetch(url, { headers: { Range: range } });
      expect(response.status).toBe(206);
      expect(response.headers.get('content-range')).toBe(`bytes ${start}-${end}/5000`);
      expect(Buffer.from(await response.arrayBuffer()).equals(bytes.subarray(start, end + 1))).toBe(true);
    }
    const unsatisfiable = await fetch(url, { headers: { Range: 'bytes=5000-' } });
    expect(unsatisfiable.status).toBe(416);
    expect(unsatisfiable.headers.get('content-range')).toBe('bytes */5000');
    expect(await unsatisfiable.text()).toBe('');

    const head = await fetch(url, { method: 'HEAD' });
    expect(head.headers.get('content-length')).toBe('5000');
    expect(head.headers.get('docker-content-digest')).toBe(layer);
  });

  it('refuses writes with 405 UNSUPPORTED and the methods it allows', async () => {
    for (const [method, path] of [
      ['PUT', 'sample/app/manifests/1.0'],
      ['POST', 'sample/app/blobs/uploads/'],
      ['DELETE', `sample/app/blobs/${layout.blobs[0]!.digest}`],
    ] as const) {
      const response = await fetch(`${server.url}/v2/${path}`, { method, body: method === 'DELETE' ? null : '{}' });
      expect(response.status).toBe(405);
      expect(response.headers.get('allow')).toBe('GET, HEAD');
      expect(await errorCodes(response)).toEqual(['UNSUPPORTED']);
    }
  });

  it('rejects malformed digests and names before touching the disk', async () => {
    const badDigest = await fetch(`${server.url}/v2/sample/app/blobs/sha256:..%2F..%2Foci-layout`);
    expect(badDigest.status).toBe(400);
    expect(await errorCodes(badDigest)).toEqual(['DIGEST_INVALID']);
    const otherAlgorithm = await fetch(`${server.url}/v2/sample/app/blobs/sha512:${'a'.repeat(128)}`);
    expect(otherAlgorithm.status).toBe(404);
    expect(await errorCodes(otherAlgorithm)).toEqual(['BLOB_UNKNOWN']);
    const badName = await fetch(`${server.url}/v2/sample/..%2F..%2Fx/manifests/1.0`);
    expect(badName.status).toBe(400);
    expect(await errorCodes(badName)).toEqual(['NAME_INVALID']);
  });

  it('never completes a blob whose bytes are wrong: 500 for a small one, a cut connection for a large one', async () => {
    const dir = join(work, 'tampered');
    await cp(layoutDir, dir, { recursive: true });
    const tamper = async (digest: Digest, at: number): Promise<void> => {
      const file = join(dir, 'blobs', 'sha256', digestHex(digest));
      const bytes = await readFile(file);
      bytes[at] = (bytes[at] ?? 0) ^ 0xff;
      await writeFile(file, bytes);
    };
    const small = layout.blobs.find((b) => b.size === 6000)!.digest;
    const large = layout.blobs.find((b) => b.size === 3 * 1024 * 1024)!.digest;
    await tamper(small, 10);
    await tamper(large, 10);
    const tampered = await startRegistryServer({ dir, port: 0 });
    try {
      const smallResponse = await fetch(`${tampered.url}/v2/sample/app/blobs/${small}`);
      expect(smallResponse.status).toBe(500);
      expect(((await smallResponse.json()) as { errors: Array<{ message: string }> }).errors[0]?.message).toContain('digest mismatch');

      const largeResponse = await fetch(`${tampered.url}/v2/sample/app/blobs/${large}`);
      expect(largeResponse.status).toBe(200);
      await expect(largeResponse.arrayBuffer()).rejects.toThrow();
      // The server stays up for other requests.
      expect((await fetch(`${tampered.url}/v2/`)).status).toBe(200);
    } finally {
      await tampered.close();
    }
  });
});

describe('referrers API', () => {
  const EMPTY_CONFIG: Descriptor = {
    mediaType: 'application/vnd.oci.empty.v1+json',
    digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
    size: 2,
  };
  const SBOM_TYPE = 'application/spdx+json';
  const SIGNATURE_TYPE = 'application/vnd.dev.cosign.artifact.sig.v1+json';
  let dir: string;
  let subject: Descriptor;
  let sbom: Descriptor;
  let signature: Descriptor;
  let referrersServer: RunningRegistryServer;

  /** Writes a blob into the layout the way the fixture does, and returns its descriptor. */
  async function putBlob(bytes: Buffer, mediaType: string): Promise<Descriptor> {
    const digest = sha256Digest(bytes);
    await writeFile(join(dir, 'blobs', 'sha256', digestHex(digest)), bytes);
    return { mediaType, digest, size: bytes.length };
  }

  beforeAll(async () => {
    dir = join(work, 'referrers');
    const written = await writeTestLayout(dir, [{ name: 'sample/signed:1.0', platforms: [{ architecture: 'amd64', layerSizes: [300] }] }]);
    subject = written.images[0]!.descriptor;
    const subjectRef = { mediaType: subject.mediaType, digest: subject.digest, size: subject.size };

    expect(sha256Digest('{}')).toBe(EMPTY_CONFIG.digest);
    await putBlob(Buffer.from('{}'), EMPTY_CONFIG.mediaType);
    const sbomLayer = await putBlob(Buffer.from('{"spdxVersion":"SPDX-2.3"}'), SBOM_TYPE);
    sbom = await putBlob(
      Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, artifactType: SBOM_TYPE, config: EMPTY_CONFIG, layers: [sbomLayer], subject: subjectRef }),
      ),
      MediaType.OciManifest,
    );
    const signatureLayer = await putBlob(Buffer.from('signed payload'), 'application/vnd.dev.cosign.simplesigning.v1+json');
    signature = await putBlob(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MediaType.OciManifest,
          artifactType: SIGNATURE_TYPE,
          config: EMPTY_CONFIG,
          layers: [signatureLayer],
          subject: subjectRef,
          annotations: { 'dev.sigstore.cosign/signature': 'MEUCIQ' },
        }),
      ),
      MediaType.OciManifest,
    );
    // Referrers are top-level entries of index.json, as meshmirror archives them: named by digest, or not named.
    const indexFile = join(dir, 'index.json');
    const index = JSON.parse(await readFile(indexFile, 'utf8')) as { manifests: Descriptor[] };
    index.manifests.push({ ...sbom, annotations: { [REF_NAME_ANNOTATION]: `registry.example.com/sample/signed@${sbom.digest}` } }, signature);
    await writeFile(indexFile, JSON.stringify(index));
    referrersServer = await startRegistryServer({ dir, port: 0 });
  });

  afterAll(async () => {
    await referrersServer.close();
  });

  it('lists every manifest of the repository whose subject is the digest, named or not, with artifact type and annotations', async () => {
    const response = await fetch(`${referrersServer.url}/v2/sample/signed/referrers/${subject.digest}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(MediaType.OciIndex);
    expect(response.headers.get('oci-filters-applied')).toBeNull();
    const expected = [
      { mediaType: MediaType.OciManifest, digest: sbom.digest, size: sbom.size, artifactType: SBOM_TYPE },
      {
        mediaType: MediaType.OciManifest,
        digest: signature.digest,
        size: signature.size,
        artifactType: SIGNATURE_TYPE,
        annotations: { 'dev.sigstore.cosign/signature': 'MEUCIQ' },
      },
    ].sort((a, b) => (a.digest < b.digest ? -1 : 1));
    expect(await response.json()).toEqual({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: expected });

    const head = await fetch(`${referrersServer.url}/v2/sample/signed/referrers/${subject.digest}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-type')).toBe(MediaType.OciIndex);

    // The referrers are content of the subject's repository: their manifests and blobs are served there.
    for (const referrer of [sbom, signature]) {
      const response = await fetch(`${referrersServer.url}/v2/sample/signed/manifests/${referrer.digest}`, { headers: { Accept: MediaType.OciManifest } });
      expect(response.status).toBe(200);
    }
    expect((await fetch(`${referrersServer.url}/v2/sample/signed/blobs/${EMPTY_CONFIG.digest}`, { method: 'HEAD' })).status).toBe(200);
  });

  it('lists nothing in a repository that does not hold the subject, still with 200', async () => {
    const response = await fetch(`${referrersServer.url}/v2/any/name/referrers/${subject.digest}`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] });
  });

  it('filters by artifactType and says so', async () => {
    const response = await fetch(`${referrersServer.url}/v2/sample/signed/referrers/${subject.digest}?artifactType=${encodeURIComponent(SBOM_TYPE)}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('oci-filters-applied')).toBe('artifactType');
    const body = (await response.json()) as { manifests: Descriptor[] };
    expect(body.manifests.map((m) => m.digest)).toEqual([sbom.digest]);
  });

  it('answers an unknown subject with an empty list, never 404', async () => {
    for (const digest of [sha256Digest('nothing refers to this'), sbom.digest]) {
      const response = await fetch(`${referrersServer.url}/v2/sample/signed/referrers/${digest}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe(MediaType.OciIndex);
      expect(await response.json()).toEqual({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] });
    }
  });

  it('rejects a malformed digest with 400 DIGEST_INVALID', async () => {
    for (const reference of ['sha256:..%2F..%2Foci-layout', '1.0']) {
      const response = await fetch(`${referrersServer.url}/v2/sample/signed/referrers/${reference}`);
      expect(response.status).toBe(400);
      expect(await errorCodes(response)).toEqual(['DIGEST_INVALID']);
    }
  });
});

describe('parseRange', () => {
  it('reads single byte ranges and ignores what it cannot serve as one range', () => {
    expect(parseRange('bytes=0-0', 10)).toEqual({ start: 0, end: 0 });
    expect(parseRange('bytes=5-', 10)).toEqual({ start: 5, end: 9 });
    expect(parseRange('bytes=-3', 10)).toEqual({ start: 7, end: 9 });
    expect(parseRange('bytes=-30', 10)).toEqual({ start: 0, end: 9 });
    expect(parseRange('bytes=10-', 10)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', 10)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-1,3-4', 10)).toBeUndefined();
    expect(parseRange('bytes=5-2', 10)).toBeUndefined();
    expect(parseRange('items=0-1', 10)).toBeUndefined();
  });
});

describe('Docker formats, bare tags and unnamed entries', () => {
  let dir: string;
  let list: Descriptor;
  let amd64: Descriptor;
  let arm64: Descriptor;
  let legacy: Descriptor;
  let pinned: Descriptor;
  let unnamedImage: Descriptor;
  let dockerServer: RunningRegistryServer;

  async function putJson(body: unknown, mediaType: string): Promise<Descriptor> {
    const bytes = Buffer.from(JSON.stringify(body));
    const digest = sha256Digest(bytes);
    await writeFile(join(dir, 'blobs', 'sha256', digestHex(digest)), bytes);
    return { mediaType, digest, size: bytes.length };
  }

  async function dockerManifest(architecture: string): Promise<Descriptor> {
    const layer = await putJson({ layer: architecture }, MediaType.DockerLayerGzip);
    const config = await putJson({ architecture, os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.digest] } }, MediaType.DockerConfig);
    return await putJson({ schemaVersion: 2, mediaType: MediaType.DockerManifest, config, layers: [layer] }, MediaType.DockerManifest);
  }

  beforeAll(async () => {
    // A folder named as a user would name it: the repository of its bare tags becomes `my-images`.
    dir = join(work, 'My Images');
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    arm64 = await dockerManifest('arm64');
    amd64 = await dockerManifest('amd64');
    list = await putJson(
      {
        schemaVersion: 2,
        mediaType: MediaType.DockerManifestList,
        manifests: [
          { ...arm64, platform: { architecture: 'arm64', os: 'linux' } },
          { ...amd64, platform: { architecture: 'amd64', os: 'linux' } },
        ],
      },
      MediaType.DockerManifestList,
    );
    legacy = await dockerManifest('s390x');
    pinned = await dockerManifest('ppc64le');
    unnamedImage = await dockerManifest('riscv64');
    const named = (descriptor: Descriptor, name: string): Descriptor => ({ ...descriptor, annotations: { [REF_NAME_ANNOTATION]: name } });
    await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(
      join(dir, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciIndex,
        manifests: [named(list, '1.0'), named(legacy, 'quay.io/team/legacy:2.0'), named(pinned, `quay.io/team/pinned@${pinned.digest}`), unnamedImage],
      }),
    );
    dockerServer = await startRegistryServer({ dir, port: 0 });
  });

  afterAll(async () => {
    await dockerServer.close();
  });

  it('serves bare tags and unnamed entries in the folder repository, and a by-digest name under its digest hex', async () => {
    expect(dockerServer.repositories).toEqual(['my-images', 'team/legacy', 'team/pinned']);
    expect(await (await fetch(`${dockerServer.url}/v2/my-images/tags/list`)).json()).toEqual({ name: 'my-images', tags: ['1.0'] });
    expect(await (await fetch(`${dockerServer.url}/v2/team/pinned/tags/list`)).json()).toEqual({ name: 'team/pinned', tags: [digestHex(pinned.digest)] });
    const unnamed = await fetch(`${dockerServer.url}/v2/my-images/manifests/${unnamedImage.digest}`, { headers: { Accept: MediaType.DockerManifest } });
    expect(unnamed.status).toBe(200);
    const renamed = await startRegistryServer({ dir, port: 0, repository: 'mirror/tools' });
    try {
      expect(renamed.repositories).toEqual(['mirror/tools', 'team/legacy', 'team/pinned']);
    } finally {
      await renamed.close();
    }
    await expect(startRegistryServer({ dir, port: 0, repository: 'Not/Valid' })).rejects.toThrow(/--repository "Not\/Valid" is not a repository name/);
  });

  it('answers a schema 2 client asking for a manifest list by tag with the linux/amd64 manifest', async () => {
    const response = await fetch(`${dockerServer.url}/v2/my-images/manifests/1.0`, { headers: { Accept: MediaType.DockerManifest } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(MediaType.DockerManifest);
    expect(response.headers.get('docker-content-digest')).toBe(amd64.digest);
    expect(sha256Digest(Buffer.from(await response.arrayBuffer()))).toBe(amd64.digest);
    // By digest the list is what was asked for, whatever the client accepts.
    const byDigest = await fetch(`${dockerServer.url}/v2/my-images/manifests/${list.digest}`, { headers: { Accept: MediaType.DockerManifest } });
    expect(byDigest.status).toBe(200);
    expect(byDigest.headers.get('docker-content-digest')).toBe(list.digest);
    const listClient = await fetch(`${dockerServer.url}/v2/my-images/manifests/1.0`, { headers: { Accept: ACCEPT_ALL } });
    expect(listClient.headers.get('content-type')).toBe(MediaType.DockerManifestList);
    expect(listClient.headers.get('docker-content-digest')).toBe(list.digest);
    // A client that takes neither lists nor schema 2: distribution's MANIFEST_INVALID.
    const ociOnly = await fetch(`${dockerServer.url}/v2/my-images/manifests/1.0`, { headers: { Accept: MediaType.OciManifest } });
    expect(ociOnly.status).toBe(400);
    expect(await errorCodes(ociOnly)).toEqual(['MANIFEST_INVALID']);
  });

  it('serves a schema 2 manifest to any client, as distribution 3 does', async () => {
    for (const accept of [undefined, MediaType.OciManifest]) {
      const response = await fetch(`${dockerServer.url}/v2/team/legacy/manifests/2.0`, { headers: accept === undefined ? {} : { Accept: accept } });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe(MediaType.DockerManifest);
      expect(response.headers.get('docker-content-digest')).toBe(legacy.digest);
      await response.body?.cancel();
    }
  });
});
