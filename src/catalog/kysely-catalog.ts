import { type Kysely, sql } from 'kysely';
import type { AuditRecord, NewAuditEntry, TokenRecord } from '../model/access.js';
import {
  appendAudit,
  insertToken,
  listAudit,
  listTokens,
  revokeToken,
  tokenBySecretHash,
  withinScope,
} from './access.js';
import type {
  AuditQuery,
  Catalog,
  CheckpointListQuery,
  MetricPage,
  MetricQuery,
  NewCheckpoint,
  NewShard,
  NewToken,
  PolicyRecord,
  RetentionOutcome,
  ShardRecord,
  NewUploadSession,
  UploadSessionRecord,
} from './catalog.js';
import type { CheckpointSummary } from '../model/summary.js';
import type {
  CheckpointIndicators,
  CheckpointListItem,
  CheckpointRecord,
  MetricField,
  MetricPoint,
  RunInput,
  RunPolicyRef,
  RunRecord,
} from '../model/records.js';
import { estimateStateVersion, getEstimateState, putEstimateState } from './estimate-states.js';
import { putCalibrationScale, siblingScales } from './calibration-scales.js';
import { guard } from './guard.js';
import type { CatalogLocks } from './locks.js';
import { appendMetrics, batchProgress, deleteBatchPoints, listMetrics, metricAtCheckpoints } from './metrics.js';
import { getPolicy, listPolicies, putPolicy } from './policies.js';
import {
  CHECKPOINT_COLUMNS_BUT_TENSORS,
  inserted,
  newRunRow,
  num,
  runPatch,
  toCheckpointListItem,
  toCheckpointRecord,
  toRunRecord,
  toSummary,
} from './rows.js';
import { insertCheckpointRows } from './insert-checkpoint.js';
import type { Database } from './schema.js';
import {
  abandonedShardSteps,
  commitShards,
  dropStagedShards,
  listShards,
  liveShardUploads,
  stageShard,
} from './shards.js';
import {
  createUploadSession,
  deleteUploadSession,
  expireUploadSessions,
  getUploadSession,
  updateUploadSession,
} from './upload-sessions.js';
import { SummaryCache } from './summary-cache.js';

/** Memory for cached trajectory summaries: about 1,500 checkpoints' worth at the default sketch size. */
const SUMMARY_CACHE_BYTES = 256 * 1024 * 1024;

/** Values per IN list, far under the bound-parameter limits (SQLite 32766, Postgres 65535). */
const IN_LIST_MAX = 1000;

/**
 * The Catalog on Kysely. Every query here and in the per-table modules it delegates to (metrics.ts,
 * policies.ts, estimate-states.ts) is portable SQL (ON CONFLICT ... DO NOTHING, LIMIT, no RETURNING
 * reliance), so the same class serves SQLite and Postgres; only `factory.ts` knows the dialect, and hands in
 * the dialect's locks. Row mapping lives in rows.ts; every query runs under `guard`, so failures surface as
 * catalog_unavailable.
 */
export class KyselyCatalog implements Catalog {
  /** Parsed summaries of recently used runs (immutable rows, so valid on every replica). */
  private readonly summaries = new SummaryCache(SUMMARY_CACHE_BYTES);

  constructor(
    private readonly db: Kysely<Database>,
    private readonly locks: CatalogLocks,
  ) {}

  exclusive<T>(key: string, work: () => Promise<T>): Promise<T> {
    return this.locks.exclusive(key, work);
  }

  tryExclusive<T>(key: string, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    return this.locks.tryExclusive(key, work);
  }

  putRun(id: string, input: RunInput): Promise<{ run: RunRecord; created: boolean }> {
    return guard('putRun', () =>
      this.db.transaction().execute(async (trx) => {
        const now = new Date().toISOString();
        const res = await trx
          .insertInto('runs')
          .values({ ...newRunRow(id, now), ...runPatch(input) })
          .onConflict((oc) => oc.column('id').doNothing())
          .executeTakeFirst();
        const created = inserted(res.numInsertedOrUpdatedRows);
        if (!created) {
          await trx
            .updateTable('runs')
            .set({ ...runPatch(input), updated_at: now })
            .where('id', '=', id)
            .execute();
        }
        const row = await trx.selectFrom('runs').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
        return { run: toRunRecord(row), created };
      }),
    );
  }

  ensureRun(id: string): Promise<RunRecord> {
    return guard('ensureRun', async () => {
      await this.db
        .insertInto('runs')
        .values(newRunRow(id, new Date().toISOString()))
        .onConflict((oc) => oc.column('id').doNothing())
        .execute();
      const row = await this.db.selectFrom('runs').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
      return toRunRecord(row);
    });
  }

  getRun(id: string): Promise<RunRecord | null> {
    return guard('getRun', async () => {
      const row = await this.db.selectFrom('runs').selectAll().where('id', '=', id).executeTakeFirst();
      return row ? toRunRecord(row) : null;
    });
  }

  listRuns(page: { limit: number; after?: string; scope?: readonly string[] }): Promise<RunRecord[]> {
    return guard('listRuns', async () => {
      let q = this.db.selectFrom('runs').selectAll().orderBy('id').limit(page.limit);
      if (page.after !== undefined) q = q.where('id', '>', page.after);
      if (page.scope) q = q.where(withinScope('id', page.scope));
      return (await q.execute()).map(toRunRecord);
    });
  }

  uploadIds(run: string): Promise<Map<number, string>> {
    return guard('uploadIds', async () => {
      const rows = await this.db
        .selectFrom('checkpoints')
        .select(['step', 'upload_id'])
        .where('run_id', '=', run)
        .where('blob_deleted', '=', 0)
        .execute();
      return new Map(rows.map((r) => [num(r.step), r.upload_id]));
    });
  }

  countRuns(scope: readonly string[]): Promise<number> {
    return guard('countRuns', async () => {
      const row = await this.db
        .selectFrom('runs')
        .select((eb) => eb.fn.countAll<number | string>().as('n'))
        .where(withinScope('id', scope))
        .executeTakeFirstOrThrow();
      return num(row.n);
    });
  }

  insertToken(token: NewToken): Promise<TokenRecord> {
    return guard('insertToken', () => insertToken(this.db, token));
  }

  tokenBySecretHash(hash: string): Promise<(TokenRecord & { secretHash: string }) | null> {
    return guard('tokenBySecretHash', () => tokenBySecretHash(this.db, hash));
  }

  listTokens(): Promise<TokenRecord[]> {
    return guard('listTokens', () => listTokens(this.db));
  }

  revokeToken(id: string, actor: string): Promise<TokenRecord | null> {
    return guard('revokeToken', () => revokeToken(this.db, id, actor));
  }

  appendAudit(entries: readonly NewAuditEntry[]): Promise<void> {
    return guard('appendAudit', () => appendAudit(this.db, entries));
  }

  listAudit(query: AuditQuery): Promise<AuditRecord[]> {
    return guard('listAudit', () => listAudit(this.db, query));
  }

  insertCheckpoint(row: NewCheckpoint): Promise<{ inserted: true } | { inserted: false; existing: CheckpointRecord }> {
    return guard('insertCheckpoint', () => this.db.transaction().execute((trx) => insertCheckpointRows(trx, row)));
  }

  getCheckpoint(run: string, step: number): Promise<CheckpointRecord | null> {
    return guard('getCheckpoint', async () => {
      const row = await this.db
        .selectFrom('checkpoints')
        .selectAll()
        .where('run_id', '=', run)
        .where('step', '=', step)
        .executeTakeFirst();
      return row ? toCheckpointRecord(row) : null;
    });
  }

  firstCheckpoint(run: string): Promise<CheckpointRecord | null> {
    return guard('firstCheckpoint', async () => {
      const row = await this.db
        .selectFrom('checkpoints')
        .selectAll()
        .where('run_id', '=', run)
        .orderBy('step')
        .limit(1)
        .executeTakeFirst();
      return row ? toCheckpointRecord(row) : null;
    });
  }

  listCheckpoints(run: string, query: CheckpointListQuery & { tensors: true }): Promise<CheckpointRecord[]>;
  listCheckpoints(run: string, query?: CheckpointListQuery): Promise<CheckpointListItem[]>;
  listCheckpoints(run: string, query: CheckpointListQuery = {}): Promise<CheckpointListItem[]> {
    return guard('listCheckpoints', async () => {
      let q = this.db.selectFrom('checkpoints').where('run_id', '=', run).orderBy('step');
      if (query.status !== undefined) q = q.where('status', '=', query.status);
      if (query.afterStep !== undefined) q = q.where('step', '>', query.afterStep);
      if (query.limit !== undefined) q = q.limit(query.limit);
      // The tensor column is left unread unless asked for: it is most of a row (and, on Postgres, TOASTed).
      if (query.tensors) return (await q.selectAll().execute()).map(toCheckpointRecord);
      return (await q.select(CHECKPOINT_COLUMNS_BUT_TENSORS).execute()).map(toCheckpointListItem);
    });
  }

  getSummaries(run: string, steps?: readonly number[]): Promise<CheckpointSummary[]> {
    return guard('getSummaries', async () => {
      if (steps && steps.length === 0) return [];
      // Committed summaries never change: read only those not cached (all steps first, when none are given).
      const wanted = [...new Set(steps ?? (await this.summarySteps(run)))].sort((a, b) => a - b);
      const cached = this.summaries.get(run, wanted);
      const missing = wanted.filter((step) => !cached.has(step));
      const q = this.db
        .selectFrom('checkpoint_summaries as s')
        .innerJoin('checkpoints as c', (join) => join.onRef('c.run_id', '=', 's.run_id').onRef('c.step', '=', 's.step'))
        .select(['s.step', 's.spec', 's.weight_norm', 's.sketch', 's.tensor_sketches', 'c.tensors'])
        .where('s.run_id', '=', run);
      // One IN list per chunk of sorted steps keeps under the bound-parameter limits.
      for (let i = 0; i < missing.length; i += IN_LIST_MAX) {
        const rows = await q.where('s.step', 'in', missing.slice(i, i + IN_LIST_MAX)).execute();
        const read = rows.map(toSummary);
        this.summaries.add(run, read);
        for (const summary of read) cached.set(summary.step, summary);
      }
      return wanted.flatMap((step) => cached.get(step) ?? []);
    });
  }

  private async summarySteps(run: string): Promise<number[]> {
    const rows = await this.db
      .selectFrom('checkpoint_summaries')
      .select('step')
      .where('run_id', '=', run)
      .orderBy('step')
      .execute();
    return rows.map((r) => num(r.step));
  }

  setIndicators(run: string, entries: readonly { step: number; indicators: CheckpointIndicators }[]): Promise<void> {
    if (entries.length === 0) return Promise.resolve();
    return guard('setIndicators', () =>
      this.db.transaction().execute(async (trx) => {
        for (const { step, indicators } of entries) {
          await trx
            .updateTable('checkpoints')
            .set({ indicators: JSON.stringify(indicators) })
            .where('run_id', '=', run)
            .where('step', '=', step)
            .execute();
        }
      }),
    );
  }

  appendMetrics(run: string, points: readonly MetricPoint[], batchKey: string | null = null): Promise<number> {
    return guard('appendMetrics', () => appendMetrics(this.db, run, points, batchKey));
  }

  batchProgress(run: string, key: string): Promise<{ stored: number; folded: boolean }> {
    return guard('batchProgress', () => batchProgress(this.db, run, key));
  }

  deleteBatchPoints(run: string, key: string): Promise<void> {
    return guard('deleteBatchPoints', () => deleteBatchPoints(this.db, run, key));
  }

  listMetrics(run: string, query: MetricQuery): Promise<MetricPage> {
    return guard('listMetrics', () => listMetrics(this.db, run, query));
  }

  putPolicy(name: string, policy: Record<string, unknown>): Promise<{ created: boolean; record: PolicyRecord }> {
    return guard('putPolicy', () => putPolicy(this.db, name, policy));
  }

  getPolicy(name: string): Promise<PolicyRecord | null> {
    return guard('getPolicy', () => getPolicy(this.db, name));
  }

  listPolicies(): Promise<PolicyRecord[]> {
    return guard('listPolicies', () => listPolicies(this.db));
  }

  setRunPolicy(run: string, ref: RunPolicyRef | null): Promise<void> {
    return guard('setRunPolicy', async () => {
      await this.db
        .updateTable('runs')
        .set({ policy: ref === null ? null : JSON.stringify(ref), updated_at: new Date().toISOString() })
        .where('id', '=', run)
        .execute();
    });
  }

  applyRetention(
    run: string,
    outcomes: readonly RetentionOutcome[],
    audit: readonly NewAuditEntry[] = [],
  ): Promise<void> {
    if (outcomes.length === 0) return Promise.resolve();
    return guard('applyRetention', () =>
      this.db.transaction().execute(async (trx) => {
        await appendAudit(trx, audit);
        for (const o of outcomes) {
          await trx
            .updateTable('checkpoints')
            .set({
              status: o.status,
              classes: JSON.stringify(o.classes),
              reasons: JSON.stringify(o.reasons),
              discarded_at: o.discardedAt,
              delete_after: o.deleteAfter,
            })
            .where('run_id', '=', run)
            .where('step', '=', o.step)
            .execute();
        }
      }),
    );
  }

  setPinned(run: string, step: number, pinned: boolean): Promise<void> {
    return guard('setPinned', async () => {
      await this.db
        .updateTable('checkpoints')
        .set({ pinned: pinned ? 1 : 0 })
        .where('run_id', '=', run)
        .where('step', '=', step)
        .execute();
    });
  }

  listDueDeletions(
    now: string,
    limit: number,
  ): Promise<{ run: string; step: number; blobKey: string; bytes: number }[]> {
    return guard('listDueDeletions', async () => {
      const rows = await this.db
        .selectFrom('checkpoints')
        .select(['run_id', 'step', 'blob_key', 'bytes'])
        .where('status', '=', 'discarded')
        .where('blob_deleted', '=', 0)
        .where('delete_after', '<=', now)
        .orderBy('delete_after')
        .limit(limit)
        .execute();
      return rows.map((r) => ({ run: r.run_id, step: num(r.step), blobKey: r.blob_key, bytes: num(r.bytes) }));
    });
  }

  markBlobDeleted(run: string, step: number, audit: readonly NewAuditEntry[] = []): Promise<boolean> {
    return guard('markBlobDeleted', () =>
      this.db.transaction().execute(async (trx) => {
        const res = await trx
          .updateTable('checkpoints')
          .set({ blob_deleted: 1 })
          .where('run_id', '=', run)
          .where('step', '=', step)
          .where('status', '=', 'discarded')
          .where('blob_deleted', '=', 0)
          .executeTakeFirst();
        if (!(res.numUpdatedRows > 0n)) return false;
        await appendAudit(trx, audit);
        return true;
      }),
    );
  }

  metricAtCheckpoints(
    run: string,
    field: MetricField,
    mode: 'mean' | 'last',
  ): Promise<{ step: number; value: number | null }[]> {
    return guard('metricAtCheckpoints', () => metricAtCheckpoints(this.db, run, field, mode));
  }

  getEstimateState(run: string): Promise<{ state: unknown; version: number } | null> {
    return guard('getEstimateState', () => getEstimateState(this.db, run));
  }

  estimateStateVersion(run: string): Promise<number | null> {
    return guard('estimateStateVersion', () => estimateStateVersion(this.db, run));
  }

  putEstimateState(run: string, state: unknown, folded?: { key: string; points: number }): Promise<number> {
    return guard('putEstimateState', () => putEstimateState(this.db, run, state, folded));
  }

  putCalibrationScale(run: string, entry: { group: string; scale: number; points: number }): Promise<void> {
    return guard('putCalibrationScale', () => putCalibrationScale(this.db, run, entry));
  }

  siblingScales(group: string, except: string, limit: number): Promise<number[]> {
    return guard('siblingScales', () => siblingScales(this.db, group, except, limit));
  }

  stageShard(shard: NewShard): Promise<{ inserted: true } | { inserted: false; existing: ShardRecord }> {
    return guard('stageShard', () => stageShard(this.db, shard));
  }

  listShards(run: string, step: number, options: { summaries?: boolean } = {}): Promise<ShardRecord[]> {
    return guard('listShards', () => listShards(this.db, run, step, options.summaries === true));
  }

  commitShards(row: NewCheckpoint): Promise<{ inserted: true } | { inserted: false; existing: CheckpointRecord }> {
    return guard('commitShards', () => commitShards(this.db, row));
  }

  dropStagedShards(run: string, step: number): Promise<string[]> {
    return guard('dropStagedShards', () => dropStagedShards(this.db, run, step));
  }

  abandonedShardSteps(before: string, limit: number): Promise<{ run: string; step: number }[]> {
    return guard('abandonedShardSteps', () => abandonedShardSteps(this.db, before, limit));
  }

  liveShardUploads(run: string): Promise<Set<string>> {
    return guard('liveShardUploads', () => liveShardUploads(this.db, run));
  }

  createUploadSession(session: NewUploadSession): Promise<void> {
    return guard('createUploadSession', () => createUploadSession(this.db, session));
  }

  getUploadSession(id: string): Promise<UploadSessionRecord | null> {
    return guard('getUploadSession', () => getUploadSession(this.db, id));
  }

  updateUploadSession(
    id: string,
    change: { offset: number; expiresAt: string; expectOffset?: number },
  ): Promise<boolean> {
    return guard('updateUploadSession', () => updateUploadSession(this.db, id, change));
  }

  deleteUploadSession(id: string): Promise<boolean> {
    return guard('deleteUploadSession', () => deleteUploadSession(this.db, id));
  }

  expireUploadSessions(now: string, limit: number): Promise<string[]> {
    return guard('expireUploadSessions', () => expireUploadSessions(this.db, now, limit));
  }

  ping(): Promise<void> {
    return guard('ping', async () => {
      await sql`select 1`.execute(this.db);
    });
  }

  close(): Promise<void> {
    return guard('close', async () => {
      await this.locks.close();
      await this.db.destroy();
    });
  }
}
