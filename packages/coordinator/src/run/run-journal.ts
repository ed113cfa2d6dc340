import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { Level } from 'level';
import { MeshmirrorError, type Digest } from '@meshmirror/shared';
import { isLockedByAnotherProcess, levelOpenReason, StoreInUseError } from '@meshmirror/agent';

/** The journal's record of one run. */
export interface RunRecord {
  runId: string;
  /** Identifies the configuration and destination; a re-run with the same key resumes the run. */
  key: string;
  startedAt: string;
  /** When an unfinished run was last taken up again (runs journalled before this field have none). */
  resumedAt?: string;
  finishedAt?: string;
  /** 'complete' once every image was archived; a run that is not complete is resumed. */
  state: 'running' | 'partial' | 'complete';
}

export type ImageState = 'resolved' | 'archived' | 'pushed' | 'failed';

export interface ImageRecord {
  source: string;
  state: ImageState;
  digest?: Digest | undefined;
  code?: string | undefined;
  reason?: string | undefined;
}

/**
 * The coordinator's run journal in LevelDB (blob and piece progress lives in each agent's store).
 * It pins what a tag resolved to while a run is unfinished, so a re-run after a failure or a
 * `kill -9` completes the same image set rather than a moving target, and it keeps each image's
 * last state for reports and for the next run.
 */
export class RunJournal {
  private readonly db: Level<string, string>;

  private constructor(db: Level<string, string>) {
    this.db = db;
  }

  static async open(dir: string): Promise<RunJournal> {
    await mkdir(dir, { recursive: true });
    const db = new Level<string, string>(dir, { valueEncoding: 'utf8' });
    try {
      await db.open();
    } catch (cause) {
      if (isLockedByAnotherProcess(cause)) throw new StoreInUseError(dir, cause);
      throw new MeshmirrorError('MM_STORE', `cannot open run journal ${dir}: ${levelOpenReason(cause)}`, { cause });
    }
    return new RunJournal(db);
  }

  /** Resumes the unfinished run with this key, or starts a new one. */
  async beginRun(key: string): Promise<{ run: RunRecord; resumed: boolean }> {
    const previous = await this.getJson<RunRecord>(`current/${key}`);
    if (previous !== undefined && previous.state !== 'complete') {
      const run: RunRecord = { ...previous, state: 'running', resumedAt: new Date().toISOString() };
      await this.db.put(`current/${key}`, JSON.stringify(run));
      return { run, resumed: true };
    }
    const run: RunRecord = { runId: randomUUID(), key, startedAt: new Date().toISOString(), state: 'running' };
    await this.db.put(`current/${key}`, JSON.stringify(run));
    return { run, resumed: false };
  }

  async finishRun(run: RunRecord, state: 'partial' | 'complete'): Promise<RunRecord> {
    const finished: RunRecord = { ...run, state, finishedAt: new Date().toISOString() };
    await this.db.put(`current/${run.key}`, JSON.stringify(finished));
    await this.db.put(`history/${run.startedAt}/${run.runId}`, JSON.stringify(finished));
    return finished;
  }

  /** The digest a tag resolved to earlier in this run, if any. */
  async pinnedDigest(run: RunRecord, source: string): Promise<Digest | undefined> {
    return (await this.getJson<{ digest: Digest }>(`pin/${run.runId}/${source}`))?.digest;
  }

  async pin(run: RunRecord, source: string, digest: Digest): Promise<void> {
    await this.db.put(`pin/${run.runId}/${source}`, JSON.stringify({ digest }));
  }

  async recordImages(run: RunRecord, images: ImageRecord[]): Promise<void> {
    await this.db.batch(images.map((image) => ({ type: 'put' as const, key: `image/${run.runId}/${image.source}`, value: JSON.stringify(image) })));
  }

  async images(run: RunRecord): Promise<ImageRecord[]> {
    const records: ImageRecord[] = [];
    const prefix = `image/${run.runId}/`;
    for await (const value of this.db.values({ gte: prefix, lt: `${prefix}\xff` })) records.push(JSON.parse(value) as ImageRecord);
    return records;
  }

  /**
   * An upload session left by an interrupted push, per target repository and blob. The URL is a
   * capability for that one upload (it may carry the registry's signed state), never a credential.
   */
  async uploadSession(registry: string, repository: string, digest: Digest): Promise<string | undefined> {
    return (await this.getJson<{ url: string }>(`upload/${registry}/${repository}/${digest}`))?.url;
  }

  async saveUploadSession(registry: string, repository: string, digest: Digest, url: string): Promise<void> {
    await this.db.put(`upload/${registry}/${repository}/${digest}`, JSON.stringify({ url, at: new Date().toISOString() }));
  }

  /**
   * Forgets upload sessions saved before `before` (ms since the epoch). A session saved before they
   * carried a time counts as saved now, and is stamped so (unless `dryRun`).
   */
  async pruneUploadSessions(before: number, options: { now: number; dryRun: boolean }): Promise<{ removed: number; kept: number; unstamped: number }> {
    const stale: string[] = [];
    const unstamped: Array<{ key: string; value: string }> = [];
    let kept = 0;
    for await (const [key, value] of this.db.iterator({ gte: 'upload/', lt: 'upload/\xff' })) {
      const at = Date.parse(String((JSON.parse(value) as { at?: unknown }).at));
      if (!Number.isFinite(at)) {
        unstamped.push({ key, value: JSON.stringify({ ...(JSON.parse(value) as object), at: new Date(options.now).toISOString() }) });
        kept += 1;
      } else if (at < before) {
        stale.push(key);
      } else {
        kept += 1;
      }
    }
    if (!options.dryRun) {
      await this.db.batch([...stale.map((key) => ({ type: 'del' as const, key })), ...unstamped.map(({ key, value }) => ({ type: 'put' as const, key, value }))]);
    }
    return { removed: stale.length, kept, unstamped: unstamped.length };
  }

  async clearUploadSession(registry: string, repository: string, digest: Digest): Promise<void> {
    await this.db.del(`upload/${registry}/${repository}/${digest}`);
  }

  /** The digest last pushed under a target reference (`registry/repository:tag`), if any. */
  async pushedImage(reference: string): Promise<Digest | undefined> {
    return (await this.getJson<{ digest: Digest }>(`pushed/${reference}`))?.digest;
  }

  async recordPushedImage(reference: string, digest: Digest): Promise<void> {
    await this.db.put(`pushed/${reference}`, JSON.stringify({ digest, at: new Date().toISOString() }));
  }

  /**
   * An answer remembered for the rest of one run (an update graph response, by URL): a resumed run
   * selects the same releases without asking again, even if the graph moved meanwhile.
   */
  async runCached(run: RunRecord, key: string): Promise<string | undefined> {
    return await this.db.get(`run-cache/${run.runId}/${key}`);
  }

  async putRunCached(run: RunRecord, key: string, value: string): Promise<void> {
    await this.db.put(`run-cache/${run.runId}/${key}`, value);
  }

  /**
   * A fact derived from content-addressed input (the component list read from a release payload,
   * by the payload's digest): true forever, so no run reads that input again.
   */
  async derived(key: string): Promise<string | undefined> {
    return await this.db.get(`derived/${key}`);
  }

  async putDerived(key: string, value: string): Promise<void> {
    await this.db.put(`derived/${key}`, value);
  }

  /**
   * Every run the journal knows, finished or not, each in its latest state: an unfinished run (a
   * run interrupted, or a `--dry-run`, which the next run of the same configuration resumes) is
   * only under `current/`; a finished one is in the history too.
   */
  async runs(): Promise<RunRecord[]> {
    const byId = new Map<string, RunRecord>();
    for (const run of await this.history()) byId.set(run.runId, run);
    for await (const value of this.db.values({ gte: 'current/', lt: 'current/\xff' })) {
      const run = JSON.parse(value) as RunRecord;
      byId.set(run.runId, run);
    }
    return [...byId.values()];
  }

  /**
   * Forgets runs: their history entries, image outcomes, pinned digests and cached answers, and the
   * configuration's current run when it is one of them (the next run of it starts afresh). What
   * outlives runs stays: derived facts, pushed digests, upload sessions.
   */
  async forgetRuns(runs: RunRecord[]): Promise<void> {
    for (const run of runs) {
      for (const prefix of [`image/${run.runId}/`, `pin/${run.runId}/`, `run-cache/${run.runId}/`]) await this.db.clear({ gte: prefix, lt: `${prefix}\xff` });
      const current = await this.getJson<RunRecord>(`current/${run.key}`);
      await this.db.batch([
        { type: 'del', key: `history/${run.startedAt}/${run.runId}` },
        ...(current?.runId === run.runId ? [{ type: 'del' as const, key: `current/${run.key}` }] : []),
      ]);
    }
  }

  /** Earlier runs, oldest first (for the archive's history). */
  async history(): Promise<RunRecord[]> {
    const runs: RunRecord[] = [];
    for await (const value of this.db.values({ gte: 'history/', lt: 'history/\xff' })) runs.push(JSON.parse(value) as RunRecord);
    return runs;
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  private async getJson<T>(key: string): Promise<T | undefined> {
    const value = await this.db.get(key);
    return value === undefined ? undefined : (JSON.parse(value) as T);
  }
}
