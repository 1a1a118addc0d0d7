import type { Catalog } from '../catalog/catalog.js';
import type { RunEstimates } from '../estimate/run-estimates.js';
import type { CheckpointIngest, IngestOutcome, IngestRequest } from '../ingest/ingest-checkpoint.js';
import type { CheckpointRecord, RunRecord } from '../model/records.js';
import type { Telemetry } from '../observability/telemetry.js';
import type { RetentionDecision } from '../retention/engine.js';
import type { RetentionService } from '../retention/service.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { PhaseMethod } from '../trajectory/phase-segmentation.js';
import type { PolicyBook } from './policy-book.js';
import type { ShardIngest, ShardRequest } from './shard-ingest.js';
import type { TrajectoryRecorder } from './trajectory-recorder.js';

/** The types the run service takes and gives. */

/** Who asks: the actor recorded in the audit trail, and the run scope new runs count against. */
export interface Caller {
  actor: string;
  scope: readonly string[];
}

export interface RunServiceDeps {
  /** Most runs one caller's scope may hold (TRAJGATE_MAX_RUNS_PER_SCOPE). */
  maxRunsPerScope: number;
  catalog: Catalog;
  blobs: BlobStore;
  ingest: CheckpointIngest;
  shards: ShardIngest;
  trajectory: TrajectoryRecorder;
  retention: RetentionService;
  estimates: RunEstimates;
  policies: PolicyBook;
  telemetry: Telemetry;
}

export interface UploadRequest extends IngestRequest {
  caller: Caller;
  /** Pin the checkpoint once stored (retention never evicts a pinned checkpoint). */
  pin?: boolean;
}

export interface UploadOutcome extends IngestOutcome {
  /** The retention decision the new checkpoint triggered; null when the same bytes were already stored. */
  decision: RetentionDecision | null;
}

export interface ShardUploadRequest extends ShardRequest {
  caller: Caller;
}

export interface ShardUploadOutcome {
  status: 'staged' | 'committed' | 'unchanged';
  file: string;
  sha256: string;
  bytes: number;
  shardCount: number;
  /** Files of the step stored so far, this one included. */
  shardsReceived: number;
  /** The step's checkpoint with its files once committed, else null. */
  checkpoint: CheckpointRecord | null;
  /** The retention decision this file's commit of the step triggered, else null. */
  decision: RetentionDecision | null;
}

export interface RunSummary extends RunRecord {
  checkpoints: { count: number; kept: number; latestStep: number | null; bytesUploaded: number; bytesKept: number };
}

/** Overrides of the run's phase settings for one trajectory read (a different view, not the run's). */
export interface TrajectoryView {
  phases?: number;
  by?: PhaseMethod | 'auto';
  window?: number;
}
