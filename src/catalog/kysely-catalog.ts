import { type Insertable, type Kysely, type Selectable, type Updateable, sql } from 'kysely';
import { errors, isAppError } from '../errors.js';
import type { Catalog, MetricQuery, NewCheckpoint, PolicyRecord, RetentionOutcome } from './catalog.js';
import type { CheckpointSummary, SketchSpec } from '../model/summary.js';
import {
  RunPolicyRef as RunPolicyRefSchema,
  type RunPolicyRef,
  CheckpointIndicators as CheckpointIndicatorsSchema,
  CheckpointRecord as CheckpointRecordSchema,
  type CheckpointIndicators,
  type CheckpointRecord,
  type CheckpointStatus,
  METRIC_FIELDS,
  type MetricField,
  type MetricPoint,
  type RunInput,
  type RunRecord,
  type TensorEntry,
} from '../model/records.js';
import type {
  CheckpointSummariesTable,
  CheckpointsTable,
  Database,
  MetricPointsTable,
  PoliciesTable,
  RunsTable,
} from './schema.js';
import { decodeTensorSketches, encodeSketch, encodeTensorSketches, float64Copy } from './summary-codec.js';

/**
 * The Catalog on Kysely. Every query here is portable SQL (ON CONFLICT ... DO NOTHING, LIMIT, no RETURNING
 * reliance), so the same class serves SQLite and Postgres; only `factory.ts` knows the dialect.
 */
export class KyselyCatalog implements Catalog {
  constructor(private readonly db: Kysely<Database>) {}

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

  listRuns(page: { limit: number; after?: string }): Promise<RunRecord[]> {
    return guard('listRuns', async () => {
      let q = this.db.selectFrom('runs').selectAll().orderBy('id').limit(page.limit);
      if (page.after !== undefined) q = q.where('id', '>', page.after);
      return (await q.execute()).map(toRunRecord);
    });
  }

  insertCheckpoint(row: NewCheckpoint): Promise<{ inserted: true } | { inserted: false; existing: CheckpointRecord }> {
    return guard('insertCheckpoint', () =>
      this.db.transaction().execute(async (trx) => {
        const res = await trx
          .insertInto('checkpoints')
          .values(toCheckpointRow(row, new Date().toISOString()))
          .onConflict((oc) => oc.columns(['run_id', 'step']).doNothing())
          .executeTakeFirst();
        if (inserted(res.numInsertedOrUpdatedRows)) {
          await trx.insertInto('checkpoint_summaries').values(toSummaryRow(row.run, row.summary)).execute();
          return { inserted: true as const };
        }
        const existing = await trx
          .selectFrom('checkpoints')
          .selectAll()
          .where('run_id', '=', row.run)
          .where('step', '=', row.step)
          .executeTakeFirstOrThrow();
        return { inserted: false as const, existing: toCheckpointRecord(existing) };
      }),
    );
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

  listCheckpoints(run: string, filter?: { status?: CheckpointStatus }): Promise<CheckpointRecord[]> {
    return guard('listCheckpoints', async () => {
      let q = this.db.selectFrom('checkpoints').selectAll().where('run_id', '=', run).orderBy('step');
      if (filter?.status !== undefined) q = q.where('status', '=', filter.status);
      return (await q.execute()).map(toCheckpointRecord);
    });
  }

  getSummaries(run: string, steps?: readonly number[]): Promise<CheckpointSummary[]> {
    return guard('getSummaries', async () => {
      if (steps && steps.length === 0) return [];
      let q = this.db
        .selectFrom('checkpoint_summaries as s')
        .innerJoin('checkpoints as c', (join) => join.onRef('c.run_id', '=', 's.run_id').onRef('c.step', '=', 's.step'))
        .select(['s.step', 's.spec', 's.weight_norm', 's.sketch', 's.tensor_sketches', 'c.tensors'])
        .where('s.run_id', '=', run)
        .orderBy('s.step');
      if (steps) q = q.where('s.step', 'in', [...steps]);
      return (await q.execute()).map(toSummary);
    });
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

  appendMetrics(run: string, points: readonly MetricPoint[]): Promise<number> {
    if (points.length === 0) return Promise.resolve(0);
    return guard('appendMetrics', () =>
      this.db.transaction().execute(async (trx) => {
        for (let i = 0; i < points.length; i += METRIC_CHUNK_ROWS) {
          const rows = points.slice(i, i + METRIC_CHUNK_ROWS).map((p) => toMetricRow(run, p));
          await trx.insertInto('metric_points').values(rows).execute();
        }
        return points.length;
      }),
    );
  }

  listMetrics(run: string, query: MetricQuery): Promise<MetricPoint[]> {
    return guard('listMetrics', async () => {
      let q = this.db
        .selectFrom('metric_points')
        .select(METRIC_SELECT)
        .where('run_id', '=', run)
        .orderBy('step')
        .orderBy('id')
        .limit(query.limit);
      if (query.fromStep !== undefined) q = q.where('step', '>=', query.fromStep);
      if (query.toStep !== undefined) q = q.where('step', '<=', query.toStep);
      return (await q.execute()).map(toMetricPoint);
    });
  }

  putPolicy(name: string, policy: Record<string, unknown>): Promise<{ created: boolean; record: PolicyRecord }> {
    return guard('putPolicy', () =>
      this.db.transaction().execute(async (trx) => {
        const now = new Date().toISOString();
        const text = JSON.stringify(policy);
        const res = await trx
          .insertInto('policies')
          .values({ name, policy: text, created_at: now, updated_at: now })
          .onConflict((oc) => oc.column('name').doNothing())
          .executeTakeFirst();
        const created = inserted(res.numInsertedOrUpdatedRows);
        if (!created)
          await trx.updateTable('policies').set({ policy: text, updated_at: now }).where('name', '=', name).execute();
        const row = await trx.selectFrom('policies').selectAll().where('name', '=', name).executeTakeFirstOrThrow();
        return { created, record: toPolicyRecord(row) };
      }),
    );
  }

  getPolicy(name: string): Promise<PolicyRecord | null> {
    return guard('getPolicy', async () => {
      const row = await this.db.selectFrom('policies').selectAll().where('name', '=', name).executeTakeFirst();
      return row ? toPolicyRecord(row) : null;
    });
  }

  listPolicies(): Promise<PolicyRecord[]> {
    return guard('listPolicies', async () =>
      (await this.db.selectFrom('policies').selectAll().orderBy('name').execute()).map(toPolicyRecord),
    );
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

  applyRetention(run: string, outcomes: readonly RetentionOutcome[]): Promise<void> {
    if (outcomes.length === 0) return Promise.resolve();
    return guard('applyRetention', () =>
      this.db.transaction().execute(async (trx) => {
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

  listDueDeletions(now: string, limit: number): Promise<{ run: string; step: number; blobKey: string }[]> {
    return guard('listDueDeletions', async () => {
      const rows = await this.db
        .selectFrom('checkpoints')
        .select(['run_id', 'step', 'blob_key'])
        .where('status', '=', 'discarded')
        .where('blob_deleted', '=', 0)
        .where('delete_after', '<=', now)
        .orderBy('delete_after')
        .limit(limit)
        .execute();
      return rows.map((r) => ({ run: r.run_id, step: num(r.step), blobKey: r.blob_key }));
    });
  }

  markBlobDeleted(run: string, step: number): Promise<void> {
    return guard('markBlobDeleted', async () => {
      await this.db
        .updateTable('checkpoints')
        .set({ blob_deleted: 1 })
        .where('run_id', '=', run)
        .where('step', '=', step)
        .execute();
    });
  }

  metricAtCheckpoints(
    run: string,
    field: MetricField,
    mode: 'mean' | 'last',
  ): Promise<{ step: number; value: number | null }[]> {
    const column = sql.ref(`m.${METRIC_COLUMNS[field]}`);
    const previous = sql`coalesce((select max(p.step) from checkpoints p where p.run_id = c.run_id and p.step < c.step), -1)`;
    const inInterval = sql`m.run_id = c.run_id and m.step > ${previous} and m.step <= c.step and ${column} is not null`;
    const value =
      mode === 'mean'
        ? sql<number | null>`(select avg(${column}) from metric_points m where ${inInterval})`
        : sql<
            number | null
          >`(select ${column} from metric_points m where ${inInterval} order by m.step desc, m.id desc limit 1)`;
    return guard('metricAtCheckpoints', async () => {
      const rows = await this.db
        .selectFrom('checkpoints as c')
        .select(['c.step', value.as('value')])
        .where('c.run_id', '=', run)
        .orderBy('c.step')
        .execute();
      return rows.map((r) => ({ step: num(r.step), value: r.value === null ? null : Number(r.value) }));
    });
  }

  getEstimateState(run: string): Promise<unknown> {
    return guard('getEstimateState', async () => {
      const row = await this.db
        .selectFrom('estimate_states')
        .select('state')
        .where('run_id', '=', run)
        .executeTakeFirst();
      return row ? (JSON.parse(row.state) as unknown) : null;
    });
  }

  putEstimateState(run: string, state: unknown): Promise<void> {
    return guard('putEstimateState', async () => {
      const text = JSON.stringify(state);
      const now = new Date().toISOString();
      await this.db
        .insertInto('estimate_states')
        .values({ run_id: run, state: text, updated_at: now })
        .onConflict((oc) => oc.column('run_id').doUpdateSet({ state: text, updated_at: now }))
        .execute();
    });
  }

  ping(): Promise<void> {
    return guard('ping', async () => {
      await sql`select 1`.execute(this.db);
    });
  }

  close(): Promise<void> {
    return guard('close', () => this.db.destroy());
  }
}

/** Runs `fn`, turning any non-AppError (driver, constraint, corrupt JSON) into `catalog_unavailable`. */
async function guard<T>(operation: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isAppError(err)) throw err;
    throw errors.catalogUnavailable(`catalog ${operation} failed`, err);
  }
}

const inserted = (n: bigint | undefined): boolean => n !== undefined && n > 0n;

/** int8 columns come back as strings from Postgres, numbers from SQLite. */
const num = (v: number | string): number => (typeof v === 'number' ? v : Number(v));
const numOrNull = (v: number | string | null): number | null => (v === null ? null : num(v));

// ---- runs

function toPolicyRecord(row: Selectable<PoliciesTable>): PolicyRecord {
  return {
    name: row.name,
    policy: JSON.parse(row.policy) as Record<string, unknown>,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function newRunRow(id: string, now: string): Insertable<RunsTable> {
  return {
    id,
    planned_steps: null,
    train_size: null,
    allow_shape_change: 0,
    tags: '{}',
    created_at: now,
    updated_at: now,
  };
}

/** Only the fields present in `input`: absent fields keep their stored values on update. */
function runPatch(input: RunInput): Updateable<RunsTable> {
  const patch: Updateable<RunsTable> = {};
  if (input.plannedSteps !== undefined) patch.planned_steps = input.plannedSteps;
  if (input.trainSize !== undefined) patch.train_size = input.trainSize;
  if (input.allowShapeChange !== undefined) patch.allow_shape_change = input.allowShapeChange ? 1 : 0;
  if (input.tags !== undefined) patch.tags = JSON.stringify(input.tags);
  return patch;
}

function toRunRecord(row: Selectable<RunsTable>): RunRecord {
  return {
    id: row.id,
    plannedSteps: numOrNull(row.planned_steps),
    trainSize: numOrNull(row.train_size),
    allowShapeChange: row.allow_shape_change === 1,
    tags: JSON.parse(row.tags) as Record<string, string>,
    policy: row.policy === null ? null : RunPolicyRefSchema.parse(JSON.parse(row.policy)),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

// ---- checkpoints

function toCheckpointRow(c: NewCheckpoint, now: string): Insertable<CheckpointsTable> {
  return {
    run_id: c.run,
    step: c.step,
    upload_id: c.uploadId,
    sha256: c.sha256,
    bytes: c.bytes,
    format: c.format,
    status: 'kept' satisfies CheckpointStatus,
    blob_key: c.blobKey,
    tensors: JSON.stringify(c.tensors),
    metadata: c.metadata === null ? null : JSON.stringify(c.metadata),
    indicators: null,
    created_at: now,
  };
}

function toSummaryRow(run: string, summary: CheckpointSummary): Insertable<CheckpointSummariesTable> {
  return {
    run_id: run,
    step: summary.step,
    spec: JSON.stringify(summary.spec),
    weight_norm: summary.weightNorm,
    sketch: encodeSketch(summary.sketch),
    tensor_sketches: encodeTensorSketches(summary.tensorSketches),
  };
}

interface SummaryRow {
  step: number | string;
  spec: string;
  weight_norm: number;
  sketch: Uint8Array;
  tensor_sketches: Uint8Array;
  tensors: string;
}

function toSummary(row: SummaryRow): CheckpointSummary {
  const tensors = (JSON.parse(row.tensors) as TensorEntry[]).map((t) => ({
    ...t,
    count: t.shape.reduce((n, d) => n * d, 1),
  }));
  return {
    step: num(row.step),
    spec: JSON.parse(row.spec) as SketchSpec,
    sketch: float64Copy(row.sketch),
    tensors,
    tensorSketches: decodeTensorSketches(row.tensor_sketches),
    weightNorm: row.weight_norm,
  };
}

const CheckpointEnums = CheckpointRecordSchema.pick({ format: true, status: true });

function toCheckpointRecord(row: Selectable<CheckpointsTable>): CheckpointRecord {
  // format and status are checked: a stray value in the database must not reach clients as a valid enum.
  const { format, status } = CheckpointEnums.parse({ format: row.format, status: row.status });
  return {
    run: row.run_id,
    step: num(row.step),
    uploadId: row.upload_id,
    sha256: row.sha256,
    bytes: num(row.bytes),
    format,
    status,
    blobKey: row.blob_key,
    tensors: JSON.parse(row.tensors) as TensorEntry[],
    metadata: row.metadata === null ? null : (JSON.parse(row.metadata) as Record<string, string>),
    indicators: row.indicators === null ? null : CheckpointIndicatorsSchema.parse(JSON.parse(row.indicators)),
    classes: JSON.parse(row.classes) as string[],
    reasons: JSON.parse(row.reasons) as string[],
    pinned: row.pinned === 1,
    discardedAt: row.discarded_at,
    deleteAfter: row.delete_after,
    contentAvailable: row.blob_deleted === 0,
    createdAt: row.created_at,
  };
}

// ---- metric points

type MetricColumn = Exclude<keyof MetricPointsTable, 'id' | 'run_id' | 'step' | 'extra'>;

/** Record field -> column, for the optional numeric fields. */
const METRIC_COLUMNS = {
  trainLoss: 'train_loss',
  valLoss: 'val_loss',
  lr: 'lr',
  batchSize: 'batch_size',
  gradNorm: 'grad_norm',
  gradVariance: 'grad_variance',
  updateNorm: 'update_norm',
  gapIncrement: 'gap_increment',
} as const satisfies Record<MetricField, MetricColumn>;

const METRIC_SELECT = ['step', ...METRIC_FIELDS.map((f) => METRIC_COLUMNS[f]), 'extra'] as const;

type MetricInsert = Required<Omit<Insertable<MetricPointsTable>, 'id'>>;

/** Columns bound per inserted row; chunks keep rows x columns under SQLite's 32766 bound-parameter limit. */
const METRIC_ROW_PARAMS = 3 + METRIC_FIELDS.length;
const METRIC_CHUNK_ROWS = Math.floor(30_000 / METRIC_ROW_PARAMS);

function toMetricRow(run: string, p: MetricPoint): MetricInsert {
  // Every row carries every column (null when absent): a multi-row VALUES needs the same column list.
  return {
    run_id: run,
    step: p.step,
    train_loss: p.trainLoss ?? null,
    val_loss: p.valLoss ?? null,
    lr: p.lr ?? null,
    batch_size: p.batchSize ?? null,
    grad_norm: p.gradNorm ?? null,
    grad_variance: p.gradVariance ?? null,
    update_norm: p.updateNorm ?? null,
    gap_increment: p.gapIncrement ?? null,
    extra: p.extra === undefined ? null : JSON.stringify(p.extra),
  };
}

type MetricRow = Pick<Selectable<MetricPointsTable>, (typeof METRIC_SELECT)[number]>;

/** Absent (null) fields are omitted, never returned as null. */
function toMetricPoint(row: MetricRow): MetricPoint {
  const point: MetricPoint = { step: num(row.step) };
  for (const field of METRIC_FIELDS) {
    const v = row[METRIC_COLUMNS[field]];
    if (v !== null) point[field] = num(v);
  }
  if (row.extra !== null) point.extra = JSON.parse(row.extra) as Record<string, number>;
  return point;
}
