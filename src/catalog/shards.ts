/**
 * The checkpoint_shards table: the files of sharded steps (docs/architecture.md §4). A shard row is staged
 * (`checkpoint_upload_id` null) from the moment its file is stored and valid until the step commits, when
 * the step's checkpoint row and the shard rows' link to it are written in one transaction. Each query takes
 * the database and is wrapped in `guard` by the catalog class.
 */
import { type Kysely, type Selectable, sql } from 'kysely';
import type { CheckpointFormat } from '@trajgate/sdk/wire/formats';
import type { CheckpointRecord, TensorEntry } from '../model/records.js';
import type { SketchSpec } from '../model/summary.js';
import type { NewCheckpoint, NewShard, ShardRecord } from './catalog.js';
import { inserted, num } from './rows.js';
import { insertCheckpointRows } from './insert-checkpoint.js';
import type { CheckpointShardsTable, Database } from './schema.js';
import { decodeTensorSketches, encodeSketch, encodeTensorSketches, float64Copy } from './summary-codec.js';

export async function stageShard(
  db: Kysely<Database>,
  shard: NewShard,
): Promise<{ inserted: true } | { inserted: false; existing: ShardRecord }> {
  const res = await db
    .insertInto('checkpoint_shards')
    .values({
      run_id: shard.run,
      step: shard.step,
      file: shard.file,
      shard_count: shard.shardCount,
      upload_id: shard.uploadId,
      sha256: shard.sha256,
      bytes: shard.bytes,
      format: shard.format,
      blob_key: shard.blobKey,
      tensors: JSON.stringify(shard.tensors),
      metadata: shard.metadata === null ? null : JSON.stringify(shard.metadata),
      spec: JSON.stringify(shard.summary.spec),
      weight_norm: shard.summary.weightNorm,
      sketch: encodeSketch(shard.summary.sketch),
      tensor_sketches: encodeTensorSketches(shard.summary.tensorSketches),
      created_at: new Date().toISOString(),
      checkpoint_upload_id: null,
    })
    .onConflict((oc) => oc.columns(['run_id', 'step', 'file']).doNothing())
    .executeTakeFirst();
  if (inserted(res.numInsertedOrUpdatedRows)) return { inserted: true };
  const existing = await db
    .selectFrom('checkpoint_shards')
    .selectAll()
    .where('run_id', '=', shard.run)
    .where('step', '=', shard.step)
    .where('file', '=', shard.file)
    .executeTakeFirstOrThrow();
  return { inserted: false, existing: toShardRecord(existing) };
}

/** The step's shard rows (staged and committed), ordered by file name; summaries only when asked for. */
export async function listShards(
  db: Kysely<Database>,
  run: string,
  step: number,
  withSummaries: boolean,
): Promise<ShardRecord[]> {
  const rows = await db
    .selectFrom('checkpoint_shards')
    .selectAll()
    .where('run_id', '=', run)
    .where('step', '=', step)
    .orderBy('file')
    .execute();
  return rows.map((r) => (withSummaries ? toShardRecord(r, true) : toShardRecord(r)));
}

/**
 * Commits a sharded step: its checkpoint row and summary, and the link from each staged shard to it, in
 * one transaction. (run, step) is unique: when a checkpoint exists already nothing is written.
 */
export function commitShards(
  db: Kysely<Database>,
  row: NewCheckpoint,
): Promise<{ inserted: true } | { inserted: false; existing: CheckpointRecord }> {
  return db.transaction().execute(async (trx) => {
    const written = await insertCheckpointRows(trx, row);
    if (!written.inserted) return written;
    await trx
      .updateTable('checkpoint_shards')
      .set({ checkpoint_upload_id: row.uploadId })
      .where('run_id', '=', row.run)
      .where('step', '=', row.step)
      .where('checkpoint_upload_id', 'is', null)
      .execute();
    return { inserted: true as const };
  });
}

/** Deletes the step's staged shard rows (not those of a committed step); returns the blob keys they held. */
export async function dropStagedShards(db: Kysely<Database>, run: string, step: number): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    const rows = await trx
      .selectFrom('checkpoint_shards')
      .select('blob_key')
      .where('run_id', '=', run)
      .where('step', '=', step)
      .where('checkpoint_upload_id', 'is', null)
      .execute();
    await trx
      .deleteFrom('checkpoint_shards')
      .where('run_id', '=', run)
      .where('step', '=', step)
      .where('checkpoint_upload_id', 'is', null)
      .execute();
    return rows.map((r) => r.blob_key);
  });
}

/**
 * Staged steps whose latest shard arrived before `before`: abandoned (their other shards never came).
 * Returns (run, step) pairs, at most `limit`.
 */
export async function abandonedShardSteps(
  db: Kysely<Database>,
  before: string,
  limit: number,
): Promise<{ run: string; step: number }[]> {
  const rows = await db
    .selectFrom('checkpoint_shards')
    .select(['run_id', 'step'])
    .where('checkpoint_upload_id', 'is', null)
    .groupBy(['run_id', 'step'])
    .having(sql<string>`max(created_at)`, '<', before)
    .orderBy('run_id')
    .orderBy('step')
    .limit(limit)
    .execute();
  return rows.map((r) => ({ run: r.run_id, step: num(r.step) }));
}

/**
 * The shard uploads of the run whose bytes must stay: staged ones, and those of committed checkpoints
 * whose bytes are not deleted. Keys are `${step}/${uploadId}` (what reconciliation keeps).
 */
export async function liveShardUploads(db: Kysely<Database>, run: string): Promise<Set<string>> {
  const rows = await db
    .selectFrom('checkpoint_shards as s')
    .leftJoin('checkpoints as c', (j) =>
      j
        .onRef('c.run_id', '=', 's.run_id')
        .onRef('c.step', '=', 's.step')
        .onRef('c.upload_id', '=', 's.checkpoint_upload_id'),
    )
    .select(['s.step', 's.upload_id', 's.checkpoint_upload_id', 'c.blob_deleted'])
    .where('s.run_id', '=', run)
    .execute();
  const live = new Set<string>();
  for (const r of rows) {
    const staged = r.checkpoint_upload_id === null;
    if (staged || (r.blob_deleted !== null && num(r.blob_deleted) === 0)) live.add(`${num(r.step)}/${r.upload_id}`);
  }
  return live;
}

function toShardRecord(row: Selectable<CheckpointShardsTable>, withSummary = false): ShardRecord {
  const tensors = JSON.parse(row.tensors) as TensorEntry[];
  return {
    run: row.run_id,
    step: num(row.step),
    file: row.file,
    shardCount: num(row.shard_count),
    uploadId: row.upload_id,
    sha256: row.sha256,
    bytes: num(row.bytes),
    format: row.format as CheckpointFormat,
    blobKey: row.blob_key,
    tensors,
    metadata: row.metadata === null ? null : (JSON.parse(row.metadata) as Record<string, string>),
    createdAt: row.created_at,
    checkpointUploadId: row.checkpoint_upload_id,
    summary: withSummary
      ? {
          step: num(row.step),
          spec: JSON.parse(row.spec) as SketchSpec,
          sketch: float64Copy(row.sketch),
          tensors: tensors.map((t) => ({ ...t, count: t.shape.reduce((n, d) => n * d, 1) })),
          tensorSketches: decodeTensorSketches(row.tensor_sketches),
          weightNorm: row.weight_norm,
        }
      : null,
  };
}
