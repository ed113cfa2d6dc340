/**
 * `meshmirror serve` against the OCI distribution spec v1.1 (pull and content discovery), checked
 * the way the spec's conformance suite checks a registry and then some: statuses, headers, error
 * bodies, `Accept`, ranges, tag and catalog pagination, referrers, a read-only registry's answer to
 * writes. It runs against `serve` of a folder of archive chunks written by `meshmirror mirror` from a
 * real registry, and of those chunks extracted with `tar` into a layout.
 *
 * Where the spec leaves room (which error code, how a manifest the client did not accept is
 * answered, what a read-only registry says to a write), the same requests go to distribution's
 * registry holding the same images, read-only, and `serve` must answer as it does.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaType, sha256Digest, type Digest } from '@meshmirror/shared';
import { startRegistry, type RunningRegistry } from './support/registry.ts';
import { buildServeFixture, SBOM_TYPE, startServeProcess, type ServedImage, type ServeFixture, type ServeProcess } from './support/serve-fixture.ts';

/** The codes the spec allows in an error body, plus distribution's own for a bad `n`. */
const ERROR_CODES = [
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'BLOB_UPLOAD_UNKNOWN',
  'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN',
  'NAME_INVALID',
  'NAME_UNKNOWN',
  'SIZE_INVALID',
  'UNAUTHORIZED',
  'DENIED',
  'UNSUPPORTED',
  'TOOMANYREQUESTS',
  'PAGINATION_NUMBER_INVALID',
];
const ACCEPT_ALL = [MediaType.OciIndex, MediaType.OciManifest, MediaType.DockerManifestList, MediaType.DockerManifest].join(', ');
/** The conformance suite's digest of something no registry holds. */
const DUMMY_DIGEST = sha256Digest('hello world');

let fx: ServeFixture;
let reference: RunningRegistry;
const served: Record<'archive' | 'layout', ServeProcess | undefined> = { archive: undefined, layout: undefined };

beforeAll(async () => {
  fx = await buildServeFixture();
  // distribution in read-only mode over the same storage: the reference for a registry that refuses writes.
  reference = await startRegistry({ storageDir: fx.registry.storageDir, config: { storage: { maintenance: { readonly: { enabled: true } } } } });
  served.archive = await startServeProcess(fx.archiveDir);
  served.layout = await startServeProcess(fx.layoutDir);
}, 120_000);

afterAll(async () => {
  await served.archive?.stop();
  await served.layout?.stop();
  await reference?.stop();
  await fx?.close();
});

interface Answer {
  status: number;
  headers: Headers;
  body: Buffer;
  /** The first error code of a JSON error body. */
  code: string | undefined;
}

async function ask(base: string, path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  const response = await fetch(`${base}${path}`, {
    method: init.method ?? 'GET',
    headers: init.headers ?? {},
    ...(init.body === undefined ? {} : { body: init.body }),
  });
  const body = Buffer.from(await response.arrayBuffer());
  let code: string | undefined;
  if (response.status >= 400 && (response.headers.get('content-type') ?? '').startsWith('application/json') && body.length > 0) {
    code = (JSON.parse(body.toString('utf8')) as { errors?: Array<{ code: string }> }).errors?.[0]?.code;
  }
  return { status: response.status, headers: response.headers, body, code };
}

function sha256(bytes: Buffer): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Every image of the fixture, and the Accept a client that reads its form sends. */
function images(): Array<[string, ServedImage]> {
  return [
    ['an OCI manifest', fx.ociApp],
    ['an OCI index', fx.ociMulti],
    ['a Docker schema 2 manifest', fx.dockerApp],
    ['a Docker manifest list', fx.dockerMulti],
    ['an image mirrored by digest', fx.pinned],
  ];
}

describe.each(['archive', 'layout'] as const)('serve of the %s, by the spec', (kind) => {
  const base = (): string => served[kind]!.url;
  const errors: Answer[] = [];
  const remember = (answer: Answer): Answer => {
    if (answer.status >= 400 && answer.body.length > 0) errors.push(answer);
    return answer;
  };

  it('answers the API version check (GET and HEAD /v2/) with the distribution header', async () => {
    for (const method of ['GET', 'HEAD']) {
      const answer = await ask(base(), '/v2/', { method });
      expect(answer.status).toBe(200);
      expect(answer.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
    }
  });

  it('serves every manifest by tag and by digest with its Content-Type, Content-Length and Docker-Content-Digest', async () => {
    for (const [what, image] of images()) {
      for (const reference of [image.tags[0]!, image.digest]) {
        const path = `/v2/${image.repository}/manifests/${reference}`;
        const get = await ask(base(), path, { headers: { Accept: image.mediaType } });
        expect(get.status, `${what} ${reference}`).toBe(200);
        expect(get.headers.get('content-type')).toBe(image.mediaType);
        expect(get.headers.get('docker-content-digest')).toBe(image.digest);
        expect(Number(get.headers.get('content-length'))).toBe(image.size);
        expect(sha256(get.body)).toBe(image.digest);
        const head = await ask(base(), path, { method: 'HEAD', headers: { Accept: image.mediaType } });
        expect(head.status).toBe(200);
        expect(head.body).toHaveLength(0);
        for (const header of ['content-type', 'content-length', 'docker-content-digest']) expect(head.headers.get(header), header).toBe(get.headers.get(header));
      }
      for (const [platform, child] of image.platforms) {
        const get = await ask(base(), `/v2/${image.repository}/manifests/${child.digest}`, { headers: { Accept: child.mediaType } });
        expect(get.status, `${what} ${platform}`).toBe(200);
        expect(sha256(get.body)).toBe(child.digest);
      }
    }
  });

  it('serves every blob whole and in ranges (206, 416), with its digest and length', async () => {
    for (const [what, image] of images()) {
      for (const digest of image.blobs) {
        const path = `/v2/${image.repository}/blobs/${digest}`;
        const whole = await ask(base(), path);
        expect(whole.status, what).toBe(200);
        expect(sha256(whole.body)).toBe(digest);
        expect(whole.headers.get('docker-content-digest')).toBe(digest);
        const size = whole.body.length;
        const head = await ask(base(), path, { method: 'HEAD' });
        expect(head.status).toBe(200);
        expect(Number(head.headers.get('content-length'))).toBe(size);
        expect(head.headers.get('docker-content-digest')).toBe(digest);
        const ranges: Array<[string, number, number]> = [
          ['bytes=0-9', 0, 9],
          [`bytes=${size - 5}-`, size - 5, size - 1],
          ['bytes=-7', size - 7, size - 1],
          [`bytes=10-${size + 100}`, 10, size - 1],
        ];
        for (const [range, start, end] of ranges) {
          const part = await ask(base(), path, { headers: { Range: range } });
          expect(part.status, range).toBe(206);
          expect(part.headers.get('content-range')).toBe(`bytes ${start}-${end}/${size}`);
          expect(Number(part.headers.get('content-length'))).toBe(end - start + 1);
          expect(part.body.equals(whole.body.subarray(start, end + 1))).toBe(true);
        }
        const beyond = await ask(base(), path, { headers: { Range: `bytes=${size}-` } });
        expect(beyond.status).toBe(416);
        expect(beyond.headers.get('content-range')).toBe(`bytes */${size}`);
      }
    }
  });

  it('answers 404 for what it does not hold, including an invalid tag, with the spec error codes', async () => {
    const app = fx.ociApp.repository;
    const cases: Array<[string, string, number, string | undefined]> = [
      ['GET', `/v2/${app}/blobs/${DUMMY_DIGEST}`, 404, 'BLOB_UNKNOWN'],
      ['HEAD', `/v2/${app}/blobs/${DUMMY_DIGEST}`, 404, undefined],
      ['GET', `/v2/${app}/manifests/no-such-tag`, 404, 'MANIFEST_UNKNOWN'],
      ['HEAD', `/v2/${app}/manifests/no-such-tag`, 404, undefined],
      // The conformance suite's nonexistent manifest: not a valid tag, and not found.
      ['GET', `/v2/${app}/manifests/.INVALID_MANIFEST_NAME`, 404, 'MANIFEST_UNKNOWN'],
      ['HEAD', `/v2/${app}/manifests/.INVALID_MANIFEST_NAME`, 404, undefined],
      ['GET', `/v2/${app}/manifests/${DUMMY_DIGEST}`, 404, 'MANIFEST_UNKNOWN'],
      ['GET', `/v2/${app}/no-such-endpoint`, 404, 'UNSUPPORTED'],
      ['GET', `/v2/no/such/repository/tags/list`, 404, 'NAME_UNKNOWN'],
    ];
    for (const [method, path, status, code] of cases) {
      const answer = remember(await ask(base(), path, { method, headers: { Accept: ACCEPT_ALL } }));
      expect(answer.status, `${method} ${path}`).toBe(status);
      if (code !== undefined) expect(answer.code, `${method} ${path}`).toBe(code);
    }
    // The conformance suite's "400 response body" check: a malformed digest is 400 or 404, with a spec code when 400.
    const malformed = remember(await ask(base(), `/v2/${app}/manifests/sha256:totallywrong`, { headers: { Accept: MediaType.OciManifest } }));
    expect([400, 404]).toContain(malformed.status);
    expect(ERROR_CODES).toContain(malformed.code);
  });

  it('serves a manifest or blob by digest only in a repository that holds it', async () => {
    const multiLayer = fx.ociMulti.blobs[0]!;
    const cases: Array<[string, string]> = [
      [`/v2/${fx.ociApp.repository}/blobs/${multiLayer}`, 'BLOB_UNKNOWN'],
      [`/v2/not/mirrored/blobs/${multiLayer}`, 'BLOB_UNKNOWN'],
      [`/v2/${fx.ociMulti.repository}/manifests/${fx.ociApp.digest}`, 'MANIFEST_UNKNOWN'],
      [`/v2/${fx.ociApp.repository}/manifests/${fx.ociMulti.platforms.get('arm64/v8')!.digest}`, 'MANIFEST_UNKNOWN'],
      [`/v2/not/mirrored/manifests/${fx.ociApp.digest}`, 'MANIFEST_UNKNOWN'],
      // A manifest is not a blob, as in distribution.
      [`/v2/${fx.ociApp.repository}/blobs/${fx.ociApp.digest}`, 'BLOB_UNKNOWN'],
    ];
    for (const [path, code] of cases) {
      const answer = remember(await ask(base(), path, { headers: { Accept: ACCEPT_ALL } }));
      expect(answer.status, path).toBe(404);
      expect(answer.code, path).toBe(code);
    }
  });

  it('lists tags in lexical order, pages them with n, last and a Link header, and n=0 gives none', async () => {
    const path = `/v2/${fx.ociApp.repository}/tags/list`;
    const all = await ask(base(), path);
    expect(JSON.parse(all.body.toString())).toEqual({ name: fx.ociApp.repository, tags: fx.ociApp.tags });
    expect(all.headers.get('link')).toBeNull();
    const collected: string[] = [];
    let next: string | undefined = `${path}?n=2`;
    let pages = 0;
    while (next !== undefined) {
      const page = await ask(base(), next);
      expect(page.status).toBe(200);
      const tags = (JSON.parse(page.body.toString()) as { tags: string[] }).tags;
      const link = page.headers.get('link');
      // Fewer than n only on the last page.
      if (link !== null) expect(tags).toHaveLength(2);
      collected.push(...tags);
      next = link === null ? undefined : /^<([^>]+)>; rel="next"$/.exec(link)?.[1];
      pages++;
    }
    expect(collected).toEqual(fx.ociApp.tags);
    expect(pages).toBe(3);
    const none = await ask(base(), `${path}?n=0`);
    expect(JSON.parse(none.body.toString())).toEqual({ name: fx.ociApp.repository, tags: [] });
    expect(none.headers.get('link')).toBeNull();
    const after = await ask(base(), `${path}?last=1.3`);
    expect(JSON.parse(after.body.toString()).tags).toEqual(['1.4']);
    const pinned = await ask(base(), `/v2/${fx.pinned.repository}/tags/list`);
    expect(JSON.parse(pinned.body.toString()).tags).toEqual(fx.pinned.tags);
  });

  it('lists in _catalog exactly the repositories a client can pull from, paged with a Link header', async () => {
    const all = await ask(base(), '/v2/_catalog');
    expect(JSON.parse(all.body.toString())).toEqual({ repositories: fx.repositories });
    const first = await ask(base(), '/v2/_catalog?n=2');
    expect(JSON.parse(first.body.toString()).repositories).toEqual(fx.repositories.slice(0, 2));
    expect(first.headers.get('link')).toBe(`</v2/_catalog?last=${encodeURIComponent(fx.repositories[1]!)}&n=2>; rel="next"`);
    for (const repository of fx.repositories) {
      const tags = await ask(base(), `/v2/${repository}/tags/list`);
      expect(tags.status, repository).toBe(200);
    }
  });

  it('lists referrers (artifactType, OCI-Filters-Applied) and serves them in the subject repository', async () => {
    const path = `/v2/${fx.ociApp.repository}/referrers/${fx.ociApp.digest}`;
    const listed = await ask(base(), path);
    expect(listed.status).toBe(200);
    expect(listed.headers.get('content-type')).toBe(MediaType.OciIndex);
    const sbomEntry = { mediaType: MediaType.OciManifest, digest: fx.sbom.digest, size: fx.sbom.size, artifactType: SBOM_TYPE };
    expect(JSON.parse(listed.body.toString())).toEqual({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [sbomEntry] });
    expect(listed.headers.get('oci-filters-applied')).toBeNull();
    const filtered = await ask(base(), `${path}?artifactType=${encodeURIComponent(SBOM_TYPE)}`);
    expect(filtered.headers.get('oci-filters-applied')).toBe('artifactType');
    expect(JSON.parse(filtered.body.toString()).manifests).toEqual([sbomEntry]);
    const other = await ask(base(), `${path}?artifactType=application%2Fvnd.example.signature`);
    expect(other.headers.get('oci-filters-applied')).toBe('artifactType');
    expect(JSON.parse(other.body.toString()).manifests).toEqual([]);
    for (const subject of [fx.ociMulti.digest, DUMMY_DIGEST]) {
      const none = await ask(base(), `/v2/${fx.ociApp.repository}/referrers/${subject}`);
      expect(none.status).toBe(200);
      expect(JSON.parse(none.body.toString()).manifests).toEqual([]);
    }
    const invalid = remember(await ask(base(), `/v2/${fx.ociApp.repository}/referrers/sha256:not-a-digest`));
    expect(invalid.status).toBe(400);
    expect(invalid.code).toBe('DIGEST_INVALID');
    const sbom = await ask(base(), `/v2/${fx.ociApp.repository}/manifests/${fx.sbom.digest}`, { headers: { Accept: MediaType.OciManifest } });
    expect(sbom.status).toBe(200);
    expect(sha256(sbom.body)).toBe(fx.sbom.digest);
  });

  it('refuses every write with 405 UNSUPPORTED', async () => {
    const app = fx.ociApp.repository;
    const writes: Array<[string, string]> = [
      ['POST', `/v2/${app}/blobs/uploads/`],
      ['PUT', `/v2/${app}/manifests/9.9`],
      ['PATCH', `/v2/${app}/blobs/uploads/some-upload`],
      ['DELETE', `/v2/${app}/manifests/${fx.ociApp.digest}`],
      ['DELETE', `/v2/${app}/blobs/${fx.ociApp.blobs[0]!}`],
    ];
    for (const [method, path] of writes) {
      const answer = remember(await ask(base(), path, { method, ...(method === 'DELETE' ? {} : { body: '{}' }) }));
      expect(answer.status, `${method} ${path}`).toBe(405);
      expect(answer.code).toBe('UNSUPPORTED');
      expect(answer.headers.get('allow')).toBe('GET, HEAD');
    }
  });

  it('gives every error body the spec form {"errors":[{"code","message","detail"}]}', () => {
    expect(errors.length).toBeGreaterThan(15);
    for (const answer of errors) {
      const body = JSON.parse(answer.body.toString()) as { errors: Array<Record<string, unknown>> };
      expect(body.errors).toHaveLength(1);
      const [error] = body.errors;
      expect(ERROR_CODES).toContain(error!['code']);
      expect(typeof error!['message']).toBe('string');
      expect(error).toHaveProperty('detail');
    }
  });
});

/**
 * One request, asked of distribution and of serve: what must agree. Bodies are compared for JSON
 * lists; error bodies only by code (distribution's messages and details are its own).
 */
interface Probe {
  what: string;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  /** Headers that must be equal (absent on both counts as equal). */
  compare?: string[];
  /** Compare the bodies as JSON. */
  json?: boolean;
}

const MANIFEST_HEADERS = ['content-type', 'content-length', 'docker-content-digest', 'etag'];
const ACCEPTS: Array<[string, string | undefined]> = [
  ['no Accept', undefined],
  ['OCI manifest', MediaType.OciManifest],
  ['OCI index', MediaType.OciIndex],
  ['OCI manifest and index', `${MediaType.OciManifest}, ${MediaType.OciIndex}`],
  ['schema 2', MediaType.DockerManifest],
  ['manifest list', MediaType.DockerManifestList],
  ['schema 2 and manifest list', `${MediaType.DockerManifest}, ${MediaType.DockerManifestList}`],
  ['every form, with q', `${MediaType.OciIndex};q=0.9, ${MediaType.OciManifest}, ${MediaType.DockerManifestList};q=0.5, ${MediaType.DockerManifest}`],
];

function probes(): Probe[] {
  const list: Probe[] = [];
  for (const [, image] of images()) {
    for (const [acceptName, accept] of ACCEPTS) {
      const types = accept ?? '';
      for (const reference of [image.tags[0]!, image.digest]) {
        const byTag = reference !== image.digest;
        // distribution 2.8 rewrites a schema 2 manifest asked for by tag by a client that takes
        // neither it (nor, for a list, lists) into schema 1; distribution 3 and serve do not.
        if (byTag && image.repository === fx.pinned.repository) continue;
        if (byTag && image === fx.dockerApp && !types.includes(MediaType.DockerManifest)) continue;
        if (byTag && image === fx.dockerMulti && !types.includes(MediaType.DockerManifestList) && !types.includes(MediaType.DockerManifest)) continue;
        for (const method of ['GET', 'HEAD']) {
          list.push({
            what: `${method} ${image.mediaType} by ${byTag ? 'tag' : 'digest'}, ${acceptName}`,
            method,
            path: `/v2/${image.repository}/manifests/${reference}`,
            ...(accept === undefined ? {} : { headers: { Accept: accept } }),
            compare: MANIFEST_HEADERS,
          });
        }
      }
    }
  }
  const app = fx.ociApp.repository;
  const layer = fx.ociApp.blobs[1]!;
  list.push(
    { what: 'manifest of an unknown repository by tag', path: '/v2/not/mirrored/manifests/1.0', headers: { Accept: ACCEPT_ALL } },
    { what: 'manifest of an unknown repository by digest', path: `/v2/not/mirrored/manifests/${fx.ociApp.digest}`, headers: { Accept: ACCEPT_ALL } },
    { what: 'manifest held in another repository', path: `/v2/${fx.ociMulti.repository}/manifests/${fx.ociApp.digest}`, headers: { Accept: ACCEPT_ALL } },
    { what: 'unknown tag', path: `/v2/${app}/manifests/9.9`, headers: { Accept: ACCEPT_ALL } },
    {
      what: 'invalid tag (status only: distribution answers it as a route it does not have)',
      path: `/v2/${app}/manifests/.INVALID_MANIFEST_NAME`,
      headers: { Accept: ACCEPT_ALL },
    },
    { what: 'manifest If-None-Match', path: `/v2/${app}/manifests/1.0`, headers: { Accept: ACCEPT_ALL, 'If-None-Match': `"${fx.ociApp.digest}"` } },
    { what: 'blob held in another repository', path: `/v2/${fx.ociMulti.repository}/blobs/${layer}` },
    { what: 'blob of an unknown repository', path: `/v2/not/mirrored/blobs/${layer}` },
    { what: 'blob with a sha512 digest', path: `/v2/${app}/blobs/sha512:${'a'.repeat(128)}` },
    { what: 'blob with a short sha256 digest', path: `/v2/${app}/blobs/sha256:${'a'.repeat(63)}` },
    {
      what: 'blob HEAD',
      method: 'HEAD',
      path: `/v2/${app}/blobs/${layer}`,
      compare: ['content-length', 'docker-content-digest', 'etag', 'accept-ranges', 'content-type'],
    },
    { what: 'blob If-None-Match', path: `/v2/${app}/blobs/${layer}`, headers: { 'If-None-Match': `"${layer}"` }, compare: ['etag', 'docker-content-digest'] },
    { what: 'blob range a-b', path: `/v2/${app}/blobs/${layer}`, headers: { Range: 'bytes=3-12' }, compare: ['content-range', 'content-length'] },
    { what: 'blob range a-', path: `/v2/${app}/blobs/${layer}`, headers: { Range: 'bytes=20-' }, compare: ['content-range', 'content-length'] },
    { what: 'blob range -n', path: `/v2/${app}/blobs/${layer}`, headers: { Range: 'bytes=-6' }, compare: ['content-range', 'content-length'] },
    { what: 'tags of an unknown repository', path: '/v2/not/mirrored/tags/list' },
    { what: 'tags', path: `/v2/${fx.ociMulti.repository}/tags/list`, json: true },
    { what: 'catalog', path: '/v2/_catalog', json: true },
    { what: 'catalog page 1', path: '/v2/_catalog?n=2', json: true, compare: ['link'] },
    { what: 'catalog page 2', path: `/v2/_catalog?n=2&last=${encodeURIComponent(fx.repositories[1]!)}`, json: true, compare: ['link'] },
    { what: 'catalog past the end', path: `/v2/_catalog?n=2&last=${encodeURIComponent(fx.repositories.at(-1)!)}`, json: true, compare: ['link'] },
    { what: 'API version check', path: '/v2/', json: true, compare: ['docker-distribution-api-version'] },
    { what: 'blob upload (status, Allow)', method: 'POST', path: `/v2/${app}/blobs/uploads/`, compare: ['allow'] },
    { what: 'manifest put (status, Allow)', method: 'PUT', path: `/v2/${app}/manifests/9.9`, compare: ['allow'] },
    { what: 'manifest delete (status, Allow)', method: 'DELETE', path: `/v2/${app}/manifests/${fx.ociApp.digest}`, compare: ['allow'] },
  );
  return list;
}

describe.each(['archive', 'layout'] as const)('serve of the %s where the spec leaves room: as distribution answers', (kind) => {
  it('answers every probe with distribution’s status, error code and headers', async () => {
    const all = probes();
    expect(all.length).toBeGreaterThan(100);
    const differences: string[] = [];
    for (const probe of all) {
      const init = { method: probe.method ?? 'GET', headers: probe.headers ?? {}, ...(probe.method === 'PUT' || probe.method === 'POST' ? { body: '{}' } : {}) };
      const [theirs, ours] = await Promise.all([ask(reference.url, probe.path, init), ask(served[kind]!.url, probe.path, init)]);
      const found: string[] = [];
      if (theirs.status !== ours.status) found.push(`status ${ours.status}, distribution ${theirs.status}`);
      else if (theirs.code !== undefined && theirs.code !== ours.code) found.push(`code ${ours.code ?? '-'}, distribution ${theirs.code}`);
      for (const header of probe.compare ?? []) {
        if (theirs.status >= 400) continue;
        const [a, b] = [theirs.headers.get(header), ours.headers.get(header)];
        if (a !== b) found.push(`${header} ${b ?? '-'}, distribution ${a ?? '-'}`);
      }
      if (probe.json === true && theirs.status === 200 && !isDeepStrictEqualJson(theirs.body, ours.body)) {
        found.push(`body ${ours.body.toString()}, distribution ${theirs.body.toString()}`);
      }
      if (found.length > 0) differences.push(`${probe.what}: ${found.join('; ')}`);
    }
    expect(differences).toEqual([]);
  });
});

function isDeepStrictEqualJson(a: Buffer, b: Buffer): boolean {
  return JSON.stringify(JSON.parse(a.toString('utf8'))) === JSON.stringify(JSON.parse(b.toString('utf8')));
}
