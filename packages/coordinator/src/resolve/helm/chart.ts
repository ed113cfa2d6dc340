/**
 * A Helm chart as Helm's loader sees it: `Chart.yaml`, default values, templates, other files, and
 * the charts under `charts/` (folders or `.tgz` archives), read from a chart archive or a chart
 * folder. Only what rendering needs is kept; charts are small text, held whole in memory (with caps).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import { parse as parseYaml } from 'yaml';
import { MeshmirrorError } from '@meshmirror/shared';
import { scanLayer } from '../layer-files.ts';

/** `Chart.yaml`'s `dependencies[]` (or, for `apiVersion: v1` charts, `requirements.yaml`'s). */
export interface ChartDependency {
  name: string;
  version?: string;
  alias?: string;
  condition?: string;
  tags: string[];
}

export interface ChartMetadata {
  /** `Chart.yaml` as written (camelCase keys), for the config blob of the chart's OCI artifact. */
  raw: Record<string, unknown>;
  name: string;
  version: string;
  type: string;
  dependencies: ChartDependency[];
}

export interface LoadedChart {
  metadata: ChartMetadata;
  /** `values.yaml`, parsed (an empty map when there is none). */
  values: Record<string, unknown>;
  /** Files under `templates/`, by path inside the chart (`templates/deployment.yaml`). */
  templates: Array<{ path: string; text: string }>;
  /** Every other file (`.Files`), by path inside the chart, except `Chart.yaml`, `values.yaml`, `charts/` and `templates/`. */
  files: Map<string, Buffer>;
  /** Charts shipped under `charts/`, as found (aliases and conditions are applied when values are). */
  subcharts: LoadedChart[];
}

/** Helm's own caps (`MaxDecompressedChartSize`, `MaxDecompressedFileSize`). */
const MAX_CHART_BYTES = 100 * 1024 * 1024;
const MAX_FILE_BYTES = 5 * 1024 * 1024;

export function chartError(where: string, message: string, cause?: unknown): MeshmirrorError {
  return new MeshmirrorError('MM_HELM_CHART_INVALID', `${where}: ${message}`, cause === undefined ? {} : { cause });
}

/** A chart archive (`.tgz`): its files sit under one top folder, as `helm package` writes them. */
export async function loadChartArchive(bytes: Uint8Array, where: string, signal?: AbortSignal): Promise<LoadedChart> {
  const files = new Map<string, Buffer>();
  let total = 0;
  await scanLayer(Readable.from([Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)]), {
    want: () => true,
    maxFileBytes: MAX_FILE_BYTES,
    where,
    ...(signal === undefined ? {} : { signal }),
    onFile: (entry, content) => {
      total += content.length;
      if (total > MAX_CHART_BYTES) throw chartError(where, `more than ${MAX_CHART_BYTES} bytes once decompressed`);
      files.set(entry.path, content);
    },
  });
  const tops = new Set([...files.keys()].map((p) => p.split('/')[0]));
  if (tops.size !== 1) throw chartError(where, `a chart archive holds one top folder, found ${tops.size === 0 ? 'none' : [...tops].join(', ')}`);
  const [top] = tops;
  const inChart = new Map<string, Buffer>();
  for (const [p, content] of files) inChart.set(p.slice(`${top}/`.length), content);
  return chartFromFiles(inChart, where, signal);
}

/**
 * A chart folder, or a `.tgz` file, on disk (`mirror.helm.local[].path`), with its archive: the file
 * as it is, or the folder packaged as `helm package` lays it out (one top folder named after the
 * chart), byte for byte the same every time so a resumed run makes the same artifact.
 */
export async function loadChartPath(chartPath: string, signal?: AbortSignal): Promise<{ chart: LoadedChart; archive: Uint8Array }> {
  let info;
  try {
    info = await stat(chartPath);
  } catch (err) {
    throw chartError(chartPath, `cannot read the chart: ${(err as Error).message}`, err);
  }
  if (info.isFile()) {
    const archive = await readFile(chartPath);
    return { chart: await loadChartArchive(archive, chartPath, signal), archive };
  }
  const files = new Map<string, Buffer>();
  let total = 0;
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const relative = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
      if (entry.isDirectory()) {
        if (entry.name !== '.git') await walk(path.join(dir, entry.name), relative);
      } else if (entry.isFile()) {
        const content = await readFile(path.join(dir, entry.name));
        total += content.length;
        if (content.length > MAX_FILE_BYTES || total > MAX_CHART_BYTES) throw chartError(chartPath, `${relative} makes the chart larger than Helm accepts`);
        files.set(relative, content);
      }
    }
  };
  await walk(chartPath, '');
  const chart = await chartFromFiles(files, chartPath, signal);
  return { chart, archive: await packageFiles(chart.metadata.name, files) };
}

async function packageFiles(name: string, files: Map<string, Buffer>): Promise<Uint8Array> {
  const pack = tar.pack();
  const gzip = createGzip();
  const chunks: Buffer[] = [];
  gzip.on('data', (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise<void>((resolve, reject) => {
    gzip.on('end', resolve);
    gzip.on('error', reject);
  });
  pack.pipe(gzip);
  for (const [p, content] of [...files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    pack.entry({ name: `${name}/${p}`, size: content.length, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0, uname: '', gname: '' }, content);
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function chartFromFiles(files: Map<string, Buffer>, where: string, signal: AbortSignal | undefined): Promise<LoadedChart> {
  const chartYaml = files.get('Chart.yaml');
  if (chartYaml === undefined) throw chartError(where, 'Chart.yaml is missing');
  const raw = parseYamlMap(chartYaml, `${where}: Chart.yaml`);
  const name = raw['name'];
  const version = raw['version'];
  if (typeof name !== 'string' || name === '') throw chartError(where, 'Chart.yaml: name is missing');
  if (typeof version !== 'string' && typeof version !== 'number') throw chartError(where, `Chart.yaml: version is missing (chart ${name})`);
  const chartWhere = `${where} (chart ${name})`;
  const requirements = files.get('requirements.yaml');
  const dependencyList =
    raw['apiVersion'] === 'v1' && requirements !== undefined ? parseYamlMap(requirements, `${chartWhere}: requirements.yaml`)['dependencies'] : raw['dependencies'];
  const metadata: ChartMetadata = {
    raw,
    name,
    version: String(version),
    type: typeof raw['type'] === 'string' ? raw['type'] : 'application',
    dependencies: parseDependencies(dependencyList, chartWhere),
  };
  const valuesFile = files.get('values.yaml');
  const values = valuesFile === undefined ? {} : parseYamlMap(valuesFile, `${chartWhere}: values.yaml`);

  const templates: LoadedChart['templates'] = [];
  const other = new Map<string, Buffer>();
  const subchartFiles = new Map<string, Map<string, Buffer>>();
  const subchartArchives: Array<{ path: string; bytes: Buffer }> = [];
  for (const [p, content] of files) {
    if (p.startsWith('templates/')) templates.push({ path: p, text: content.toString('utf8') });
    else if (p.startsWith('charts/')) {
      const rest = p.slice('charts/'.length);
      const slash = rest.indexOf('/');
      if (slash === -1) {
        if (rest.endsWith('.tgz') || rest.endsWith('.tar.gz')) subchartArchives.push({ path: p, bytes: content });
        continue;
      }
      const dir = rest.slice(0, slash);
      const inner = subchartFiles.get(dir) ?? new Map<string, Buffer>();
      inner.set(rest.slice(slash + 1), content);
      subchartFiles.set(dir, inner);
    } else if (p !== 'Chart.yaml' && p !== 'values.yaml' && p !== 'requirements.yaml' && p !== 'requirements.lock') other.set(p, content);
  }
  templates.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

  const subcharts: LoadedChart[] = [];
  for (const [dir, inner] of [...subchartFiles].sort(([a], [b]) => (a < b ? -1 : 1))) {
    // A folder under charts/ without Chart.yaml is not a chart (Helm skips it too).
    if (inner.has('Chart.yaml')) subcharts.push(await chartFromFiles(inner, `${chartWhere}: charts/${dir}`, signal));
  }
  for (const archive of subchartArchives) subcharts.push(await loadChartArchive(archive.bytes, `${chartWhere}: ${archive.path}`, signal));
  return { metadata, values, templates, files: other, subcharts };
}

function parseDependencies(list: unknown, where: string): ChartDependency[] {
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw chartError(where, 'dependencies must be a list');
  return list.map((entry: unknown, i) => {
    if (typeof entry !== 'object' || entry === null) throw chartError(where, `dependencies[${i}] must be a map`);
    const d = entry as Record<string, unknown>;
    if (typeof d['name'] !== 'string' || d['name'] === '') throw chartError(where, `dependencies[${i}].name is missing`);
    const dependency: ChartDependency = { name: d['name'], tags: Array.isArray(d['tags']) ? d['tags'].map(String) : [] };
    if (typeof d['version'] === 'string') dependency.version = d['version'];
    if (typeof d['alias'] === 'string' && d['alias'] !== '') dependency.alias = d['alias'];
    if (typeof d['condition'] === 'string' && d['condition'] !== '') dependency.condition = d['condition'];
    return dependency;
  });
}

export function parseYamlMap(content: Buffer | string, where: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = parseYaml(typeof content === 'string' ? content : content.toString('utf8'), { merge: true });
  } catch (err) {
    throw chartError(where, `not valid YAML: ${(err as Error).message}`, err);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw chartError(where, 'expected a map');
  return parsed as Record<string, unknown>;
}
