import type { ColumnType } from 'kysely';

/**
 * The catalog's tables as Kysely sees them. Only portable column types: JSON is stored as text, booleans as
 * 0/1 integers and timestamps as ISO-8601 text, so SQLite and Postgres share every query. Integer columns
 * are `bigint` in the DDL (SQLite gives them INTEGER affinity); the Postgres driver returns int8 as a
 * string, hence `number | string` on the read side, normalised by the row mappers.
 *
 * Adding a column: a new migration in `migrations.ts`, a field here, and one line in each mapper.
 */
export interface Database {
  runs: RunsTable;
  checkpoints: CheckpointsTable;
  metric_points: MetricPointsTable;
  checkpoint_summaries: CheckpointSummariesTable;
  policies: PoliciesTable;
  estimate_states: EstimateStatesTable;
  tokens: TokensTable;
  audit: AuditTable;
  metric_batches: MetricBatchesTable;
  calibration_scales: CalibrationScalesTable;
  checkpoint_shards: CheckpointShardsTable;
  upload_sessions: UploadSessionsTable;
}

/**
 * One file of a sharded step (docs/architecture.md §4): staged while `checkpoint_upload_id` is null, part of
 * the step's committed checkpoint once it names that checkpoint's upload id. Carries the shard's own
 * statistics and summary, summed into the step's at commit.
 */
export interface CheckpointShardsTable {
  run_id: string;
  step: Int;
  file: string;
  shard_count: Int;
  upload_id: string;
  sha256: string;
  bytes: Int;
  format: string;
  blob_key: string;
  /** JSON TensorEntry[]. */
  tensors: string;
  metadata: string | null;
  /** JSON SketchSpec. */
  spec: string;
  weight_norm: number;
  sketch: Uint8Array;
  tensor_sketches: Uint8Array;
  created_at: string;
  checkpoint_upload_id: string | null;
}

/** Each calibrated run's own gap-per-indicator scale, by calibration group (sibling calibration). */
export interface CalibrationScalesTable {
  run_id: string;
  group_name: string;
  scale: number;
  points: Int;
  updated_at: string;
}

export interface TokensTable {
  id: string;
  name: string;
  role: string;
  /** JSON array of run scope patterns. */
  runs: string;
  /** Hex SHA-256 of the secret; the secret itself is never stored. */
  secret_hash: string;
  expires_at: string | null;
  created_at: string;
  created_by: string;
  revoked_at: string | null;
}

export interface AuditTable {
  /** Assigned by the database (autoincrement / identity). */
  id: ColumnType<number | string, never, never>;
  at: string;
  actor: string;
  action: string;
  run_id: string | null;
  step: Int | null;
  /** JSON object. */
  details: string;
}

export interface EstimateStatesTable {
  run_id: string;
  /** JSON of the estimate accumulator's state. */
  state: string;
  updated_at: string;
  /** 1 for the first state stored, one more with each later put. */
  version: ColumnType<number | string, number | undefined, number>;
}

export interface PoliciesTable {
  name: string;
  /** JSON policy input (partial; defaults are filled when it is applied). */
  policy: string;
  created_at: string;
  updated_at: string;
}

/** Integer columns: written as numbers, read back as numbers (SQLite) or decimal strings (Postgres int8). */
type Int = ColumnType<number | string, number, number>;

export interface RunsTable {
  id: string;
  planned_steps: Int | null;
  train_size: Int | null;
  /** 0 or 1. */
  allow_shape_change: number;
  /** JSON object of string -> string. */
  tags: string;
  /** The run's calibration group, or null (the `family` tag then stands in). */
  calibration_group: ColumnType<string | null, string | null | undefined, string | null>;
  /** JSON RunPolicyRef, or null for the default policy. */
  policy: ColumnType<string | null, string | null | undefined, string | null>;
  created_at: string;
  updated_at: string;
}

export interface CheckpointsTable {
  run_id: string;
  step: Int;
  upload_id: string;
  sha256: string;
  bytes: Int;
  format: string;
  status: string;
  blob_key: string;
  /** JSON array of TensorEntry. */
  tensors: string;
  /** JSON object of string -> string, or null. */
  metadata: string | null;
  /** JSON CheckpointIndicators, or null until computed. */
  indicators: string | null;
  /** JSON string arrays: the retention classes holding the checkpoint, and why it is kept or discarded. */
  classes: ColumnType<string, string | undefined, string>;
  reasons: ColumnType<string, string | undefined, string>;
  /** 0 or 1. */
  pinned: ColumnType<number, number | undefined, number>;
  /** 1 once a discarded checkpoint's bytes are gone from the blob store. */
  blob_deleted: ColumnType<number, number | undefined, number>;
  discarded_at: ColumnType<string | null, string | null | undefined, string | null>;
  /** When the collector may delete a discarded checkpoint's bytes. */
  delete_after: ColumnType<string | null, string | null | undefined, string | null>;
  created_at: string;
}

export interface CheckpointSummariesTable {
  run_id: string;
  step: Int;
  /** JSON SketchSpec. */
  spec: string;
  weight_norm: number;
  /** Float64 little-endian buckets. */
  sketch: Uint8Array;
  /** `summary-codec.ts` layout. */
  tensor_sketches: Uint8Array;
}

export interface MetricPointsTable {
  /** Arrival order (grows across the table). Assigned by the database. */
  id: ColumnType<number | string, never, never>;
  run_id: string;
  step: Int;
  train_loss: number | null;
  val_loss: number | null;
  lr: number | null;
  batch_size: Int | null;
  grad_norm: number | null;
  grad_variance: number | null;
  update_norm: number | null;
  gap_increment: number | null;
  /** JSON object of string -> number, or null. */
  extra: string | null;
  /** The Idempotency-Key of the batch that brought the point, or null. */
  batch_key: string | null;
}

/** Idempotent metric batches whose points are stored and folded into the estimate. */
export interface MetricBatchesTable {
  run_id: string;
  batch_key: string;
  points: Int;
  created_at: string;
}

/** A resumable (tus) upload in progress (catalog/upload-sessions.ts). */
export interface UploadSessionsTable {
  id: string;
  run_id: string;
  step: Int;
  length: Int;
  upload_offset: Int;
  /** JSON: the creation's metadata (content type, declared SHA-256, pin). */
  metadata: string;
  expires_at: string;
  created_at: string;
}
