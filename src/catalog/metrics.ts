/**
 * The metric_points table: the record field <-> column map, row mapping, and the queries behind the
 * Catalog's metric methods. Each takes the database and is wrapped in `guard` by the catalog class.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { type Insertable, type Kysely, type Selectable, sql } from 'kysely';
import type { MetricPage, MetricQuery } from './catalog.js';
import { METRIC_FIELDS, type MetricField, type MetricPoint } from '../model/records.js';
import { num } from './rows.js';
import type { Database, MetricPointsTable } from './schema.js';

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

/**
 * Rows per INSERT: few enough that one statement (SQLite runs it synchronously) takes a few milliseconds,
 * and rows x columns stay far under SQLite's 32766 bound-parameter limit.
 */
const METRIC_CHUNK_ROWS = 1000;

/**
 * Appends points in the given order; returns how many were stored. Each chunk of METRIC_CHUNK_ROWS is one
 * INSERT (atomic on its own), and between chunks the event loop and the database's one connection are free
 * for other requests: a large batch holds neither for longer than a chunk. A failure part-way leaves the
 * chunks before it stored (one transaction over the batch would hold the connection, and every other
 * request that needs the catalog, for the whole batch: about a second for 100,000 points).
 */
export async function appendMetrics(
  db: Kysely<Database>,
  run: string,
  points: readonly MetricPoint[],
  batchKey: string | null = null,
): Promise<number> {
  for (let i = 0; i < points.length; i += METRIC_CHUNK_ROWS) {
    if (i > 0) await nextTurn();
    const rows = points.slice(i, i + METRIC_CHUNK_ROWS).map((p) => toMetricRow(run, p, batchKey));
    await db.insertInto('metric_points').values(rows).execute();
  }
  return points.length;
}

/**
 * Points ordered by (step, arrival), with step in [fromStep, toStep], after the cursor, at most `limit`. The
 * arrival order is the row id, which grows across the table; the cursor is the last point's (step, id).
 */
export async function listMetrics(db: Kysely<Database>, run: string, query: MetricQuery): Promise<MetricPage> {
  let q = db
    .selectFrom('metric_points')
    .select([...METRIC_SELECT, 'id'])
    .where('run_id', '=', run)
    .orderBy('step')
    .orderBy('id')
    .limit(query.limit);
  if (query.fromStep !== undefined) q = q.where('step', '>=', query.fromStep);
  if (query.toStep !== undefined) q = q.where('step', '<=', query.toStep);
  const after = query.after;
  if (after !== undefined) {
    q = q.where((eb) =>
      eb.or([eb('step', '>', after.step), eb.and([eb('step', '=', after.step), eb('id', '>', after.seq)])]),
    );
  }
  const rows = await q.execute();
  const last = rows[rows.length - 1];
  const next = rows.length === query.limit && last ? { step: num(last.step), seq: num(last.id) } : null;
  return { items: rows.map(toMetricPoint), next };
}

/**
 * Per checkpoint of the run (ordered by step), the mean or the last value of `field` logged in
 * (previous checkpoint's step, this checkpoint's step]; null where nothing was logged.
 */
export async function metricAtCheckpoints(
  db: Kysely<Database>,
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
  const rows = await db
    .selectFrom('checkpoints as c')
    .select(['c.step', value.as('value')])
    .where('c.run_id', '=', run)
    .orderBy('c.step')
    .execute();
  return rows.map((r) => ({ step: num(r.step), value: r.value === null ? null : Number(r.value) }));
}

function toMetricRow(run: string, p: MetricPoint, batchKey: string | null): MetricInsert {
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
    batch_key: batchKey,
  };
}

/** How far an idempotent batch got: points stored with its key, and whether it was folded (recorded). */
export async function batchProgress(
  db: Kysely<Database>,
  run: string,
  key: string,
): Promise<{ stored: number; folded: boolean }> {
  const [count, batch] = await Promise.all([
    db
      .selectFrom('metric_points')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('run_id', '=', run)
      .where('batch_key', '=', key)
      .executeTakeFirstOrThrow(),
    db
      .selectFrom('metric_batches')
      .select('points')
      .where('run_id', '=', run)
      .where('batch_key', '=', key)
      .executeTakeFirst(),
  ]);
  return { stored: num(count.n), folded: batch !== undefined };
}

/** Removes the points a batch left when it was cut part-way (so the retry stores each once). */
export async function deleteBatchPoints(db: Kysely<Database>, run: string, key: string): Promise<void> {
  await db.deleteFrom('metric_points').where('run_id', '=', run).where('batch_key', '=', key).execute();
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
