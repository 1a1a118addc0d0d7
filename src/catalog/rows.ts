/**
 * Row <-> record mapping for runs, checkpoints and checkpoint summaries, and the normalisation of what the
 * drivers return. Columns hold portable types only (see schema.ts): JSON as text, booleans as 0/1.
 */
import type { Insertable, Selectable, Updateable } from 'kysely';
import type { NewCheckpoint } from './catalog.js';
import type { CheckpointSummary, SketchSpec } from '../model/summary.js';
import {
  RunPolicyRef as RunPolicyRefSchema,
  CheckpointIndicators as CheckpointIndicatorsSchema,
  CheckpointRecord as CheckpointRecordSchema,
  type CheckpointListItem,
  type CheckpointRecord,
  type CheckpointStatus,
  type RunInput,
  type RunRecord,
  type TensorEntry,
} from '../model/records.js';
import type { CheckpointSummariesTable, CheckpointsTable, RunsTable } from './schema.js';
import { decodeTensorSketches, encodeSketch, encodeTensorSketches, float64Copy } from './summary-codec.js';

/** Whether an `insert ... on conflict do nothing` wrote its row, from its numInsertedOrUpdatedRows. */
export const inserted = (n: bigint | undefined): boolean => n !== undefined && n > 0n;

/** int8 columns come back as strings from Postgres, numbers from SQLite. */
export const num = (v: number | string): number => (typeof v === 'number' ? v : Number(v));
export const numOrNull = (v: number | string | null): number | null => (v === null ? null : num(v));

// ---- runs

export function newRunRow(id: string, now: string): Insertable<RunsTable> {
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
export function runPatch(input: RunInput): Updateable<RunsTable> {
  const patch: Updateable<RunsTable> = {};
  if (input.plannedSteps !== undefined) patch.planned_steps = input.plannedSteps;
  if (input.trainSize !== undefined) patch.train_size = input.trainSize;
  if (input.allowShapeChange !== undefined) patch.allow_shape_change = input.allowShapeChange ? 1 : 0;
  if (input.tags !== undefined) patch.tags = JSON.stringify(input.tags);
  if (input.calibrationGroup !== undefined) patch.calibration_group = input.calibrationGroup;
  return patch;
}

export function toRunRecord(row: Selectable<RunsTable>): RunRecord {
  return {
    id: row.id,
    plannedSteps: numOrNull(row.planned_steps),
    trainSize: numOrNull(row.train_size),
    allowShapeChange: row.allow_shape_change === 1,
    tags: JSON.parse(row.tags) as Record<string, string>,
    calibrationGroup: row.calibration_group,
    policy: row.policy === null ? null : RunPolicyRefSchema.parse(JSON.parse(row.policy)),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

// ---- checkpoints

export function toCheckpointRow(c: NewCheckpoint, now: string): Insertable<CheckpointsTable> {
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

export function toSummaryRow(run: string, summary: CheckpointSummary): Insertable<CheckpointSummariesTable> {
  return {
    run_id: run,
    step: summary.step,
    spec: JSON.stringify(summary.spec),
    weight_norm: summary.weightNorm,
    sketch: encodeSketch(summary.sketch),
    tensor_sketches: encodeTensorSketches(summary.tensorSketches),
  };
}

/** What getSummaries selects: a summary row joined with its checkpoint's `tensors`. */
export interface SummaryRow {
  step: number | string;
  spec: string;
  weight_norm: number;
  sketch: Uint8Array;
  tensor_sketches: Uint8Array;
  tensors: string;
}

export function toSummary(row: SummaryRow): CheckpointSummary {
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

/** Every checkpoints column but `tensors`, for listings. */
export const CHECKPOINT_COLUMNS_BUT_TENSORS = [
  'run_id',
  'step',
  'upload_id',
  'sha256',
  'bytes',
  'format',
  'status',
  'blob_key',
  'metadata',
  'indicators',
  'classes',
  'reasons',
  'pinned',
  'blob_deleted',
  'discarded_at',
  'delete_after',
  'created_at',
] as const satisfies readonly Exclude<keyof CheckpointsTable, 'tensors'>[];

export function toCheckpointRecord(row: Selectable<CheckpointsTable>): CheckpointRecord {
  return { ...toCheckpointListItem(row), tensors: JSON.parse(row.tensors) as TensorEntry[] };
}

/** The record without its tensor table. */
export function toCheckpointListItem(row: Omit<Selectable<CheckpointsTable>, 'tensors'>): CheckpointListItem {
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
