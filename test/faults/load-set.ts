/**
 * A large set of tiny images for the load group of the fault matrix: N images of ten small layers
 * and a config each, written as an OCI image layout that `meshmirror serve` then serves as a real
 * registry. Per image, nine layers are its own and one is a base layer shared with 1 in 100 other
 * images, so the set has about 10 blobs per image and dedupe is exercised.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeSampleLayout, type SampleImage } from '../../packages/coordinator/src/demo/sample-image-set.ts';

/** Images per shared base layer. */
const IMAGES_PER_BASE = 100;
/** Layers of an image that no other image has. */
const OWN_LAYERS = 9;
/** Repositories the images are spread over (several tags per repository at larger counts). */
const REPOSITORIES = 100;

export interface LoadSet {
  /** The OCI image layout. */
  dir: string;
  /** `repository:tag` of every image, in order. */
  names: string[];
  /** Distinct layers and configs (the blobs a mirror fetches with `GET /blobs/`). */
  uniqueBlobs: number;
  /** Their total size. */
  uniqueBlobBytes: number;
  /** Distinct manifests (one per image). */
  manifests: number;
  /** How long writing the layout took. */
  writeMs: number;
}

/** A size of 200–699 bytes, fixed by the seed. */
function layerSize(seed: string): number {
  let h = 2166136261;
  for (let i = 0; i < seed.length; i += 1) h = Math.imul(h ^ seed.charCodeAt(i), 16777619);
  return 200 + ((h >>> 0) % 500);
}

export function loadImageName(i: number): string {
  return `load/r${String(i % REPOSITORIES).padStart(3, '0')}:v${i}`;
}

/** The images of a set of `count`, deterministic: the same count always gives the same digests. */
export function loadImages(count: number): SampleImage[] {
  const images: SampleImage[] = [];
  for (let i = 0; i < count; i += 1) {
    const baseSeed = `load/base-${Math.floor(i / IMAGES_PER_BASE)}`;
    const layers = [{ seed: baseSeed, size: layerSize(baseSeed) }];
    for (let l = 0; l < OWN_LAYERS; l += 1) {
      const seed = `load/${i}/layer-${l}`;
      layers.push({ seed, size: layerSize(seed) });
    }
    images.push({ name: loadImageName(i), platforms: [{ architecture: 'amd64', layers }] });
  }
  return images;
}

/** Writes a set of `count` images into `dir`, in batches so the generator's own memory stays small. */
export async function writeLoadSet(dir: string, count: number): Promise<LoadSet> {
  const started = Date.now();
  const images = loadImages(count);
  let uniqueBlobs = 0;
  let uniqueBytes = 0;
  let manifests = 0;
  let manifestBytes = 0;
  const batch = 1000;
  for (let at = 0; at < images.length; at += batch) {
    // Base layers never straddle a batch (1000 is a multiple of IMAGES_PER_BASE), so the per-call
    // counts of distinct blobs add up to the set's.
    const written = await writeSampleLayout(dir, images.slice(at, at + batch));
    uniqueBlobs += written.uniqueBlobs;
    uniqueBytes += written.uniqueBytes;
    manifests += written.images.length;
    manifestBytes += written.manifestBytes;
  }
  return {
    dir,
    names: images.map((image) => image.name),
    uniqueBlobs: uniqueBlobs - manifests,
    uniqueBlobBytes: uniqueBytes - manifestBytes,
    manifests,
    writeMs: Date.now() - started,
  };
}

/** Sum of the sizes of the files in `blobs/sha256` of a layout, and their count. */
export async function layoutBlobStats(dir: string): Promise<{ count: number; bytes: number; names: Set<string> }> {
  const blobsDir = join(dir, 'blobs', 'sha256');
  const names = (await readdir(blobsDir)).filter((n) => /^[0-9a-f]{64}$/.test(n));
  let bytes = 0;
  for (const name of names) bytes += (await stat(join(blobsDir, name))).size;
  return { count: names.length, bytes, names: new Set(names) };
}

/** The `org.opencontainers.image.ref.name` → digest entries of a layout's index.json. */
export async function layoutIndex(dir: string): Promise<Map<string, string>> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as {
    manifests: Array<{ digest: string; annotations?: Record<string, string> }>;
  };
  const entries = new Map<string, string>();
  for (const m of index.manifests) {
    const name = m.annotations?.['org.opencontainers.image.ref.name'];
    if (name !== undefined) entries.set(name, m.digest);
  }
  return entries;
}

/**
 * Peak memory of a process and its descendants, polled from /proc: the sum of the tree's current
 * RSS at each poll (its highest value is the tree's peak as sampled) and each process's own
 * high-water mark (VmHWM, exact for a single process, read until it exits).
 */
export class TreeMemorySampler {
  readonly #root: number;
  readonly #hwm = new Map<number, number>();
  #peakTreeRss = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(rootPid: number, intervalMs = 100) {
    this.#root = rootPid;
    this.#timer = setInterval(() => void this.sample(), intervalMs);
    void this.sample();
  }

  /** Highest sampled sum of VmRSS over the tree, or the largest VmHWM if higher, in bytes. */
  get peakBytes(): number {
    return Math.max(this.#peakTreeRss, ...this.#hwm.values(), 0);
  }

  /** Processes seen in the tree. */
  get processes(): number {
    return this.#hwm.size;
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async sample(): Promise<void> {
    let total = 0;
    for (const pid of await this.#tree()) {
      const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
      if (status === undefined) continue;
      const rss = kib(status, 'VmRSS');
      const hwm = kib(status, 'VmHWM');
      total += rss;
      if (hwm > (this.#hwm.get(pid) ?? 0)) this.#hwm.set(pid, hwm);
    }
    if (total > this.#peakTreeRss) this.#peakTreeRss = total;
  }

  async #tree(): Promise<number[]> {
    const pids = [this.#root];
    for (let i = 0; i < pids.length; i += 1) {
      const children = await readFile(`/proc/${pids[i]}/task/${pids[i]}/children`, 'utf8').catch(() => '');
      for (const c of children.trim().split(/\s+/)) if (c !== '') pids.push(Number(c));
    }
    return pids;
  }
}

function kib(status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return m?.[1] === undefined ? 0 : Number(m[1]) * 1024;
}
