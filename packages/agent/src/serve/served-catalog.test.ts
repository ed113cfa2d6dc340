import { describe, expect, it } from 'vitest';
import { MediaType, sha256Digest, silentLogger, type ArchivedRunImage, type Descriptor, type FolderImage } from '@meshmirror/shared';
import { buildServedCatalog, findRepository, folderRepositoryName } from './served-catalog.ts';

function descriptor(seed: string): Descriptor {
  return { mediaType: MediaType.OciManifest, digest: sha256Digest(seed), size: 100 };
}

function runImage(source: string, d: Descriptor, extra: Partial<ArchivedRunImage> = {}): ArchivedRunImage {
  return {
    source,
    kind: 'additional',
    origin: 'mirror.additionalImages[0]',
    digest: d.digest,
    mediaType: d.mediaType,
    target: `file://out/${source}`,
    platforms: [],
    skippedPlatforms: [],
    status: 'archived',
    ...extra,
  };
}

function tagsOf(images: FolderImage[], runImages: ArchivedRunImage[] = [], folderRepository = 'layout'): Record<string, string[]> {
  const catalog = buildServedCatalog({ images, runImages, folderRepository, logger: silentLogger() });
  return Object.fromEntries([...catalog.repositories].map(([name, repository]) => [name, [...repository.tags.keys()].sort()]));
}

describe('buildServedCatalog', () => {
  it('serves a reference under the repository and tag a push gives it', () => {
    const app = descriptor('app');
    const pinned = descriptor('pinned');
    expect(
      tagsOf([
        { name: 'quay.io/team/app:1.0', descriptor: app },
        { name: 'sample/app:1.1', descriptor: descriptor('app-1.1') },
        { name: `127.0.0.1:5000/team/pinned@${sha256Digest('source')}`, descriptor: pinned },
        { name: 'ubuntu:22.04', descriptor: descriptor('ubuntu') },
      ]),
    ).toEqual({
      'team/app': ['1.0'],
      'sample/app': ['1.1'],
      'team/pinned': [pinned.digest.slice('sha256:'.length)],
      'library/ubuntu': ['22.04'],
    });
  });

  it("notes the indexes whose platforms the run filtered (run.json's skippedPlatforms), and only those", () => {
    const sparse = { ...descriptor('sparse'), mediaType: MediaType.OciIndex };
    const whole = { ...descriptor('whole'), mediaType: MediaType.OciIndex };
    const catalog = buildServedCatalog({
      images: [
        { name: 'quay.io/team/multi:1.0', descriptor: sparse },
        { name: 'quay.io/team/multi:1.1', descriptor: whole },
      ],
      runImages: [
        runImage('quay.io/team/multi:1.0', sparse, { platforms: ['linux/arm64'], skippedPlatforms: ['linux/amd64'] }),
        runImage('quay.io/team/multi:1.1', whole, { platforms: ['linux/amd64', 'linux/arm64'] }),
      ],
      folderRepository: 'layout',
      logger: silentLogger(),
    });
    expect([...catalog.sparseIndexes]).toEqual([sparse.digest]);
  });

  it("follows the run's target names and leaves referrers untagged", () => {
    const release = descriptor('release');
    const sbom = descriptor('sbom');
    const releaseSource = `quay.io/openshift-release-dev/ocp-release@${release.digest}`;
    const sbomSource = `quay.io/team/app@${sbom.digest}`;
    const catalog = buildServedCatalog({
      images: [
        { name: releaseSource, descriptor: release },
        { name: sbomSource, descriptor: sbom },
      ],
      runImages: [
        runImage(releaseSource, release, { kind: 'release', role: 'release-payload', targetRepo: 'openshift/release-images', targetTag: '4.16.3-x86_64' }),
        runImage(sbomSource, sbom, { role: 'referrer' }),
      ],
      folderRepository: 'layout',
      logger: silentLogger(),
    });
    expect([...catalog.repositories.keys()].sort()).toEqual(['openshift/release-images', 'team/app']);
    expect([...catalog.repositories.get('openshift/release-images')!.tags]).toEqual([['4.16.3-x86_64', release]]);
    const app = catalog.repositories.get('team/app')!;
    expect(app.tags.size).toBe(0);
    expect([...app.roots.keys()]).toEqual([sbom.digest]);
  });

  it('puts bare tags (skopeo, buildah, umoci) and unnamed entries in the folder repository, unless run.json names the image', () => {
    const one = descriptor('1.0');
    const unnamed = descriptor('unnamed');
    const runNamed = descriptor('alpine');
    const catalog = buildServedCatalog({
      images: [{ name: '1.0', descriptor: one }, { name: 'latest', descriptor: one }, { descriptor: unnamed }, { name: 'alpine', descriptor: runNamed }],
      runImages: [runImage('alpine', runNamed)],
      folderRepository: 'skopeo-layout',
      logger: silentLogger(),
    });
    expect([...catalog.repositories.keys()].sort()).toEqual(['library/alpine', 'skopeo-layout']);
    const folder = catalog.repositories.get('skopeo-layout')!;
    expect([...folder.tags.keys()]).toEqual(['1.0', 'latest']);
    expect([...folder.roots.keys()]).toEqual([one.digest, unnamed.digest]);
    expect(catalog.unnamed).toEqual([unnamed]);
  });

  it('answers registry-qualified aliases that are valid names, without listing them, and never a contested one', () => {
    const catalog = buildServedCatalog({
      images: [
        { name: 'quay.io/team/app:1.0', descriptor: descriptor('quay') },
        { name: 'localhost:5000/team/other:1.0', descriptor: descriptor('local') },
        { name: 'registry.example.com/shared/x:1.0', descriptor: descriptor('a') },
        { name: 'registry.example.com/shared/x:2.0', descriptor: descriptor('b') },
      ],
      folderRepository: 'layout',
      logger: silentLogger(),
    });
    expect([...catalog.repositories.keys()].sort()).toEqual(['shared/x', 'team/app', 'team/other']);
    expect(findRepository(catalog, 'quay.io/team/app')?.name).toBe('team/app');
    expect(findRepository(catalog, 'registry.example.com/shared/x')?.name).toBe('shared/x');
    expect(findRepository(catalog, 'localhost:5000/team/other')).toBeUndefined();
    expect(findRepository(catalog, 'docker.io/team/app')).toBeUndefined();
  });

  it('keeps the first of two entries that give one tag', () => {
    const first = descriptor('first');
    const catalog = buildServedCatalog({
      images: [
        { name: 'quay.io/team/app:1.0', descriptor: first },
        { name: 'docker.io/team/app:1.0', descriptor: descriptor('second') },
      ],
      folderRepository: 'layout',
      logger: silentLogger(),
    });
    expect(catalog.repositories.get('team/app')!.tags.get('1.0')).toEqual(first);
    // Each registry-qualified alias names the one repository both entries give.
    expect(findRepository(catalog, 'quay.io/team/app')?.name).toBe('team/app');
  });
});

describe('folderRepositoryName', () => {
  it('makes the folder name a repository name, or checks --repository', () => {
    expect(folderRepositoryName('/data/skopeo-layout')).toBe('skopeo-layout');
    expect(folderRepositoryName('/data/My Images_2024')).toBe('my-images-2024');
    expect(folderRepositoryName('/data/---')).toBe('image');
    expect(folderRepositoryName('/data/x', 'mirror/tools')).toBe('mirror/tools');
    expect(() => folderRepositoryName('/data/x', 'Tools')).toThrow(/--repository "Tools" is not a repository name/);
  });
});
