import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { Level } from 'level';
import { MeshmirrorError, type Digest } from '@meshmirror/shared';

/** The journal's record of one run. */
export interface RunRecord {
  runId: string;
  /** Identifies the configuration and destination; a re-run with the same key resumes the run. */
  key: string;
  startedAt: string;
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
      throw new MeshmirrorError('MM_STORE', `cannot open run journal ${dir}: ${(cause as Error).message}`, { cause });
    }
    return new RunJournal(db);
  }

  /** Resumes the unfinished run with this key, or starts a new one. */
  async beginRun(key: string): Promise<{ run: RunRecord; resumed: boolean }> {
    const previous = await this.getJson<RunRecord>(`current/${key}`);
    if (previous !== undefined && previous.state !== 'complete') {
      const run: RunRecord = { ...previous, state: 'running' };
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
    await this.db.put(`upload/${registry}/${repository}/${digest}`, JSON.stringify({ url }));
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
