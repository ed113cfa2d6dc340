/**
 * The OpenShift update graph (Cincinnati): asks the update service for one channel's graph, checks
 * its shape, and picks the releases a `mirror.platform.channels[]` entry names, with oc-mirror's
 * semantics (channel head by default, version ranges, `full`, `shortestPath`).
 *
 * The graph service is on the internet and a disconnected run may see it once: answers are kept in
 * a cache by URL, so a resumed run (or a second architecture asking the same URL) selects the same
 * releases without asking again.
 */
import { z } from 'zod';
import { describeError, MeshmirrorError, throwIfAborted, type Logger, type RetryPolicy } from '@meshmirror/shared';
import { DocumentClient, reasonOf } from '../document-client.ts';

export const OCP_UPDATE_URL = 'https://api.openshift.com/api/upgrades_info/v1/graph';
export const OKD_UPDATE_URL = 'https://origin-release.ci.openshift.org/graph';

/** Node metadata listing the channels a release is in, comma-separated. */
export const CHANNELS_METADATA_KEY = 'io.openshift.upgrades.graph.release.channels';

/** The real graphs are a few MiB; a body far larger than that is not an update graph. */
export const DEFAULT_MAX_GRAPH_BYTES = 64 * 1024 * 1024;

/** Validation issues named in one message; the rest are counted. */
const MAX_REPORTED_ISSUES = 5;

// ---- the graph document ----------------------------------------------------------------------

/** A node of the graph as the selection sees it. */
export interface ReleaseNode {
  version: string;
  /** The release payload image, by digest. */
  payload: string;
  /** From the `io.openshift.upgrades.graph.release.channels` metadata; empty when the node has none. */
  channels: string[];
  metadata: Record<string, string>;
}

export interface UpdateGraph {
  nodes: ReleaseNode[];
  /** `[from, to]` indices into `nodes`, every one checked to be in range. */
  edges: Array<[number, number]>;
  /** Updates that are recommended only under conditions (risks); by version, flattened. */
  conditionalEdges: Array<{ from: string; to: string }>;
}

// Semver as Cincinnati writes it: `4.19.2`, `4.19.0-rc.3`, `4.15.0-0.okd-2024-03-10-010116`.
const SEMVER = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

// Loose objects throughout: Cincinnati adds fields over time, and an unknown field must not cost a run.
const nodeIndex = z.number().int().nonnegative();
const graphSchema = z.looseObject({
  nodes: z.array(
    z.looseObject({
      version: z.string().regex(SEMVER, { error: 'expected a semantic version such as 4.19.2' }),
      payload: z.string().min(1),
      metadata: z.record(z.string(), z.string()).default({}),
    }),
  ),
  edges: z.array(z.tuple([nodeIndex, nodeIndex])).default([]),
  conditionalEdges: z.array(z.looseObject({ edges: z.array(z.looseObject({ from: z.string().min(1), to: z.string().min(1) })) })).default([]),
});

/**
 * Validates a graph body (unknown extra fields allowed). Errors are `MM_MANIFEST_INVALID` naming
 * `where` (the URL) and the bad path, e.g. `nodes[3].payload`. Checks every edge index is in range.
 */
export function parseUpdateGraph(body: unknown, where: string): UpdateGraph {
  const parsed = graphSchema.safeParse(body);
  if (!parsed.success) {
    const issues = parsed.error.issues;
    const named = issues.slice(0, MAX_REPORTED_ISSUES).map((issue) => `${formatPath(issue.path)}: ${issue.message}`);
    const more = issues.length > named.length ? `; and ${issues.length - named.length} more` : '';
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `update graph from ${where} is invalid: ${named.join('; ')}${more}`, {
      data: { where, path: formatPath(issues[0]?.path ?? []) },
    });
  }
  const { data } = parsed;
  const nodes = data.nodes.map((node): ReleaseNode => ({
    version: node.version,
    payload: node.payload,
    channels: (node.metadata[CHANNELS_METADATA_KEY] ?? '')
      .split(',')
      .map((name) => name.trim())
      .filter((name) => name !== ''),
    metadata: node.metadata,
  }));
  data.edges.forEach((edge, e) => {
    edge.forEach((index, side) => {
      if (index >= nodes.length) {
        const path = `edges[${e}][${side}]`;
        throw new MeshmirrorError(
          'MM_MANIFEST_INVALID',
          `update graph from ${where} is invalid: ${path}: there is no node ${index} (the graph has ${nodes.length} nodes)`,
          { data: { where, path } },
        );
      }
    });
  });
  return {
    nodes,
    edges: data.edges.map(([from, to]): [number, number] => [from, to]),
    conditionalEdges: data.conditionalEdges.flatMap((conditional) => conditional.edges.map(({ from, to }) => ({ from, to }))),
  };
}

/** `['nodes', 3, 'payload']` → `nodes[3].payload`; keys that are not identifiers are quoted. */
function formatPath(path: ReadonlyArray<PropertyKey>): string {
  if (path.length === 0) return 'body';
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (typeof segment === 'string' && /^[A-Za-z_$][\w$]*$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out;
}

// ---- versions ----------------------------------------------------------------------------------

/**
 * Semver precedence: major.minor.patch numerically, a pre-release before its release, pre-release
 * identifiers compared numerically when numeric (and before alphanumeric ones), build metadata
 * ignored. Inputs that are not semver compare part by part the same way, missing parts as 0.
 */
export function compareVersions(a: string, b: string): number {
  const va = splitVersion(a);
  const vb = splitVersion(b);
  for (let i = 0; i < Math.max(va.core.length, vb.core.length, 3); i++) {
    const diff = compareIdentifiers(va.core[i] ?? '0', vb.core[i] ?? '0');
    if (diff !== 0) return diff;
  }
  if (va.pre.length === 0 || vb.pre.length === 0) return vb.pre.length - va.pre.length;
  for (let i = 0; i < Math.min(va.pre.length, vb.pre.length); i++) {
    const diff = compareIdentifiers(va.pre[i]!, vb.pre[i]!);
    if (diff !== 0) return diff;
  }
  return va.pre.length - vb.pre.length;
}

function splitVersion(version: string): { core: string[]; pre: string[] } {
  const withoutBuild = version.split('+', 1)[0] ?? '';
  const dash = withoutBuild.indexOf('-');
  const core = dash < 0 ? withoutBuild : withoutBuild.slice(0, dash);
  return { core: core.split('.'), pre: dash < 0 ? [] : withoutBuild.slice(dash + 1).split('.') };
}

function compareIdentifiers(a: string, b: string): number {
  const numericA = /^\d+$/.test(a);
  const numericB = /^\d+$/.test(b);
  if (numericA && numericB) return Math.sign(Number(a) - Number(b));
  if (numericA !== numericB) return numericA ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---- selection ---------------------------------------------------------------------------------

export interface ChannelSelection {
  name: string;
  minVersion?: string | undefined;
  maxVersion?: string | undefined;
  full: boolean;
  shortestPath: boolean;
}

/**
 * The releases a channel entry names, as oc-mirror selects them; sorted by version ascending, no
 * duplicates. `where` (the graph's URL) goes into every error.
 *
 * - no minVersion/maxVersion, not full: the channel head only;
 * - only minVersion: minVersion up to the head; only maxVersion: maxVersion alone; both: the range;
 * - full: the whole channel, or the part of it between minVersion and maxVersion when given;
 * - shortestPath: instead of every release in that range, the releases on a breadth-first shortest
 *   path over the edges (conditional ones included) from its lowest to its highest release.
 */
export function selectReleases(graph: UpdateGraph, channel: ChannelSelection, where: string): ReleaseNode[] {
  const label = `channel ${channel.name} (${where})`;
  const members = channelMembers(graph, channel.name);
  const first = members[0];
  const head = members.at(-1);
  if (first === undefined || head === undefined) {
    throw new MeshmirrorError('MM_NOT_FOUND', `${label}: the update graph has no release in this channel (check the channel name and the architecture)`, {
      data: { channel: channel.name, where },
    });
  }
  const member = (field: 'minVersion' | 'maxVersion', version: string | undefined): ReleaseNode | undefined => {
    if (version === undefined) return undefined;
    const node = members.find((n) => n.version === version);
    if (node !== undefined) return node;
    const has = first === head ? first.version : `${first.version} … ${head.version}`;
    throw new MeshmirrorError('MM_NOT_FOUND', `${label}: ${field} ${version} is not in the channel (it has ${has})`, {
      data: { channel: channel.name, where, [field]: version },
    });
  };
  const min = member('minVersion', channel.minVersion);
  const max = member('maxVersion', channel.maxVersion);

  // oc-mirror's defaults: without `full` a missing minVersion means "start where you end" (a
  // maxVersion alone, or the head alone); with `full` it means the channel's first release.
  const from = min ?? (channel.full ? first : (max ?? head));
  const to = max ?? head;
  if (compareVersions(from.version, to.version) > 0) {
    throw new MeshmirrorError('MM_CONFIG_INVALID', `${label}: maxVersion ${to.version} is older than minVersion ${from.version}`, {
      data: { channel: channel.name, where, minVersion: from.version, maxVersion: to.version },
    });
  }
  if (channel.shortestPath) return shortestPath(graph, members, from, to, label);
  return members.filter((n) => compareVersions(n.version, from.version) >= 0 && compareVersions(n.version, to.version) <= 0);
}

/**
 * The channel's releases, sorted and without duplicate versions. A graph whose nodes carry no
 * channel metadata at all (a hand-made graph, some mirrors of the service) is taken as one channel.
 */
function channelMembers(graph: UpdateGraph, channel: string): ReleaseNode[] {
  const labelled = graph.nodes.some((node) => CHANNELS_METADATA_KEY in node.metadata);
  const seen = new Set<string>();
  const members: ReleaseNode[] = [];
  for (const node of graph.nodes) {
    if (labelled && !node.channels.includes(channel)) continue;
    if (seen.has(node.version)) continue;
    seen.add(node.version);
    members.push(node);
  }
  return members.sort((a, b) => compareVersions(a.version, b.version));
}

/**
 * Breadth-first from `from` to `to` over the channel's edges, conditional edges included (as
 * oc-mirror does: a conditional update is still an update a cluster may take). Neighbours are
 * visited in ascending version order, so among equally short paths the one through the lower
 * releases wins, whatever order the service lists its edges in. Only channel members are stepped
 * on: a cluster following this channel cannot pass through a release outside it.
 */
function shortestPath(graph: UpdateGraph, members: ReleaseNode[], from: ReleaseNode, to: ReleaseNode, label: string): ReleaseNode[] {
  const byVersion = new Map(members.map((node) => [node.version, node]));
  const next = new Map<string, Set<string>>();
  const link = (a: string | undefined, b: string | undefined): void => {
    if (a === undefined || b === undefined || !byVersion.has(a) || !byVersion.has(b)) return;
    let targets = next.get(a);
    if (targets === undefined) next.set(a, (targets = new Set()));
    targets.add(b);
  };
  for (const [a, b] of graph.edges) link(graph.nodes[a]?.version, graph.nodes[b]?.version);
  for (const edge of graph.conditionalEdges) link(edge.from, edge.to);

  const previous = new Map<string, string | undefined>([[from.version, undefined]]);
  const queue = [from.version];
  for (let i = 0; i < queue.length && !previous.has(to.version); i++) {
    const current = queue[i]!;
    const neighbours = [...(next.get(current) ?? [])].sort(compareVersions);
    for (const neighbour of neighbours) {
      if (previous.has(neighbour)) continue;
      previous.set(neighbour, current);
      queue.push(neighbour);
    }
  }
  if (!previous.has(to.version)) {
    throw new MeshmirrorError('MM_NOT_FOUND', `${label}: no upgrade path from ${from.version} to ${to.version} in the channel (shortestPath)`, {
      data: { from: from.version, to: to.version },
    });
  }
  const path: ReleaseNode[] = [];
  for (let version: string | undefined = to.version; version !== undefined; version = previous.get(version)) {
    path.push(byVersion.get(version)!);
  }
  return path.reverse();
}

// ---- the client --------------------------------------------------------------------------------

export interface GraphCache {
  get(key: string): Promise<string | undefined>;
  put(key: string, body: string): Promise<void>;
}

export interface UpdateGraphClientOptions {
  /** Base URL override for both types (from --update-url or UPDATE_URL_OVERRIDE); else OCP/OKD defaults. */
  baseUrl?: string;
  /** Verify TLS (default true). */
  tlsVerify?: boolean;
  /** Time to establish a connection, ms (default 30 s). */
  connectTimeoutMs?: number;
  /** Time from sending the request to its response headers, and the longest silence in the body, ms (default 30 s). */
  headersTimeoutMs?: number;
  /** 5xx, 429 and network failures are retried under this policy (default `DEFAULT_RETRY_POLICY`); `Retry-After` is honoured. */
  retry?: RetryPolicy;
  /** Responses cached by URL: a re-run (or a second channel/arch asking the same URL) does not ask again. */
  cache?: GraphCache;
  /** A larger body is refused (default 64 MiB). */
  maxBodyBytes?: number;
  logger: Logger;
}

export interface GraphRequest {
  channel: string;
  arch: string;
  type: 'ocp' | 'okd';
}

export class UpdateGraphClient {
  readonly #options: UpdateGraphClientOptions;
  readonly #documents: DocumentClient;
  readonly #logger: Logger;
  #closed = false;

  constructor(options: UpdateGraphClientOptions) {
    if (options.baseUrl !== undefined) checkBaseUrl(options.baseUrl);
    this.#options = options;
    this.#logger = options.logger.child({ component: 'coordinator:update-graph' });
    this.#documents = new DocumentClient({
      ...(options.tlsVerify === undefined ? {} : { tlsVerify: options.tlsVerify }),
      ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }),
      ...(options.headersTimeoutMs === undefined ? {} : { headersTimeoutMs: options.headersTimeoutMs }),
      ...(options.retry === undefined ? {} : { retry: options.retry }),
      tlsAdvice: {
        untrusted: 'trust its CA (NODE_EXTRA_CA_CERTS) or turn TLS verification off for the update service (--src-tls-verify=false)',
        notTls: 'use an http:// update URL',
      },
      logger: this.#logger,
    });
  }

  /** The URL it would ask (for messages and cache keys). */
  urlFor(request: GraphRequest): string {
    // An override may carry query parameters of its own (`?id=…`); they are kept.
    const url = new URL(this.#options.baseUrl ?? (request.type === 'okd' ? OKD_UPDATE_URL : OCP_UPDATE_URL));
    url.searchParams.set('channel', request.channel);
    url.searchParams.set('arch', request.arch);
    return url.toString();
  }

  /** GET {base}?channel=NAME&arch=ARCH with Accept: application/json; returns the parsed graph; uses the cache. */
  async channelGraph(request: GraphRequest, options: { signal?: AbortSignal } = {}): Promise<UpdateGraph> {
    const { signal } = options;
    throwIfAborted(signal);
    if (this.#closed) throw new MeshmirrorError('MM_USAGE', 'the update graph client is closed');
    const url = this.urlFor(request);
    const label = `channel ${request.channel} (${request.arch})`;

    const cached = await this.#options.cache?.get(url);
    if (cached !== undefined) {
      try {
        const graph = parseUpdateGraph(parseJson(cached, url, label, undefined), url);
        this.#logger.debug({ url, nodes: graph.nodes.length }, 'update graph from the cache');
        return graph;
      } catch (err) {
        // Only validated bodies are cached, so this is a damaged cache: the service is the truth.
        this.#logger.warn({ url, err: describeError(err) }, 'cached update graph is unusable; asking the update service again');
      }
    }

    const answer = await this.#documents.get(url, {
      label,
      what: 'an update graph',
      accept: 'application/json',
      maxBytes: this.#options.maxBodyBytes ?? DEFAULT_MAX_GRAPH_BYTES,
      ...(signal === undefined ? {} : { signal }),
    });
    const text = answer.bytes.toString('utf8');
    const graph = parseUpdateGraph(parseJson(text, url, label, answer.contentType), url);
    this.#logger.debug({ url, nodes: graph.nodes.length, edges: graph.edges.length }, 'update graph received');
    await this.#options.cache?.put(url, text);
    return graph;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#documents.close();
  }
}

function checkBaseUrl(baseUrl: string): void {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new MeshmirrorError('MM_USAGE', `update service URL "${baseUrl}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new MeshmirrorError('MM_USAGE', `update service URL "${baseUrl}" is not an http:// or https:// URL`);
  }
}

function parseJson(text: string, url: string, label: string, contentType: string | undefined): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    const type = contentType === undefined ? '' : ` (content-type ${contentType})`;
    throw new MeshmirrorError('MM_MANIFEST_INVALID', `${label}: GET ${url}: the answer is not JSON${type}: ${reasonOf(error)}`, {
      cause: error,
      data: { url },
    });
  }
}
