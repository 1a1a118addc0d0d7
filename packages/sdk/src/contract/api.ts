/**
 * Shapes of trajgate's REST requests and responses: the one wire contract. The server's zod schemas and
 * response types are checked against these types, and the OpenAPI file (openapi/trajgate.yaml) against
 * the server's schemas (test/contract.test.ts). Names are public API: extend, never rename.
 */
import type { Dtype } from '../wire/dtypes.js';

export type { Dtype };

export interface RunInput {
  /** Total optimizer steps the run expects (phases are fractions of it). */
  plannedSteps?: number | null;
  /** n, the number of training examples (the generalization estimate needs it). */
  trainSize?: number | null;
  /** Accept checkpoints whose tensors differ from the first checkpoint's. */
  allowShapeChange?: boolean;
  tags?: Record<string, string>;
  /** Runs of one group share calibration (sibling runs); null or absent: the `family` tag stands in. */
  calibrationGroup?: string | null;
}

/** The metrics a policy's `best` class can rank by. */
export type BestMetric = 'valLoss' | 'trainLoss' | 'gradNorm' | 'gapIncrement';

/** A retention policy; every key is optional and defaults to the built-in policy. */
export interface Policy {
  budget?: { maxCheckpoints?: number | null; maxBytes?: number | null };
  /** Newest checkpoints kept for resuming. */
  latest?: number;
  phase?: { count?: number; perPhase?: number; by?: 'auto' | 'fraction' | 'dynamics' };
  change?: { max?: number; zThreshold?: number };
  best?: { metric?: BestMetric; mode?: 'min' | 'max'; count?: number } | null;
  /** Also keep steps that are multiples of this. */
  every?: number | null;
  /** How long a discarded checkpoint stays restorable. */
  graceSeconds?: number;
  /** Under a budget, discarded checkpoints a later decision may still keep are held back while the run goes on. */
  hold?: { share?: number; seconds?: number };
}

/** A policy with every default filled in: what the retention engine runs. */
export interface ResolvedPolicy {
  budget: { maxCheckpoints: number | null; maxBytes: number | null };
  latest: number;
  phase: { count: number; perPhase: number; by: 'auto' | 'fraction' | 'dynamics' };
  change: { max: number; zThreshold: number };
  best: { metric: BestMetric; mode: 'min' | 'max'; count: number } | null;
  every: number | null;
  graceSeconds: number;
  /** Present when the policy sets it; absent, share 0.5 and 3600 seconds. */
  hold?: { share: number; seconds: number };
}

/** A policy by name, or inline. */
export type PolicyRef = { name: string } | { policy: Policy };

export interface Run {
  id: string;
  plannedSteps: number | null;
  trainSize: number | null;
  allowShapeChange: boolean;
  tags: Record<string, string>;
  calibrationGroup: string | null;
  /** null: the built-in default. */
  policy: PolicyRef | null;
  createdAt: string;
  updatedAt: string;
}

export interface RunSummary extends Run {
  checkpoints: { count: number; kept: number; latestStep: number | null; bytesUploaded: number; bytesKept: number };
}

export interface TensorSummary {
  name: string;
  dtype: Dtype;
  shape: number[];
  norm: number;
  mean: number;
  maxAbs: number;
  nanCount: number;
  infCount: number;
}

/** A checkpoint's place on the trajectory, against the previous checkpoint (estimated from sketches). */
export interface Indicators {
  /** ||w_t − w_t'|| against the previous uploaded checkpoint t'; null for the first checkpoint. */
  updateNorm: number | null;
  /** updateNorm ÷ (t − t'). */
  updateNormPerStep: number | null;
  /** updateNorm ÷ ||w_t'||. */
  relativeChange: number | null;
  /** ||w_t − w_first||. */
  distanceFromStart: number;
  /** Σ updateNorm over the run up to this checkpoint. */
  pathLength: number;
  /** Cosine between this update and the previous one; null for the first two checkpoints. */
  cosinePrev: number | null;
  /** The tensors that moved most in this update. */
  topTensors: { name: string; updateNorm: number; relativeChange: number | null }[];
}

export type CheckpointStatus = 'kept' | 'discarded';

export interface Checkpoint {
  run: string;
  step: number;
  uploadId: string;
  sha256: string;
  bytes: number;
  format: 'safetensors' | 'native';
  status: CheckpointStatus;
  blobKey: string;
  tensors: TensorSummary[];
  metadata: Record<string, string> | null;
  indicators: Indicators | null;
  /** Retention classes that keep it (e.g. `latest`, `phase`, `change`, `pinned`). */
  classes: string[];
  /** Why it is kept or was discarded, in words. */
  reasons: string[];
  pinned: boolean;
  discardedAt: string | null;
  deleteAfter: string | null;
  contentAvailable: boolean;
  createdAt: string;
  /**
   * The files of a sharded step (PUT …/checkpoints/{step}/shards/{file}), by file name; absent for a
   * single-file checkpoint. GET …/checkpoints/{step} names them.
   */
  shards?: ShardInfo[];
}

/** One file of a sharded step. */
export interface ShardInfo {
  file: string;
  bytes: number;
  /** Lowercase hex SHA-256 of the file's bytes. */
  sha256: string;
  /** Tensors the file holds. */
  tensors: number;
}

/** The answer to PUT …/checkpoints/{step}/shards/{file}. */
export interface ShardUploadResult {
  run: string;
  step: number;
  file: string;
  sha256: string;
  bytes: number;
  shardCount: number;
  /** Files of the step stored so far, this one included. */
  shardsReceived: number;
  /** staged: stored, the step waits for its other files; committed: this file completed the step; unchanged: the same bytes were stored already. */
  status: 'staged' | 'committed' | 'unchanged';
  /** The step's checkpoint once committed (with the decision its commit triggered when this file committed it), else null. */
  checkpoint: UploadResult | null;
}

/**
 * A checkpoint as GET /v1/runs/{run}/checkpoints lists it: the record, with its tensor table (most of a
 * record's size) only when asked for with `include=tensors`.
 */
export interface CheckpointListItem extends Omit<Checkpoint, 'tensors'> {
  tensors?: TensorSummary[];
}

/** A page of GET /v1/runs/{run}/checkpoints, ordered by step. */
export interface CheckpointPage {
  items: CheckpointListItem[];
  /** The last item's step when the page is full: pass it as `after` for the next page. Null on the last page. */
  next: number | null;
}

/** What the retention decision after an upload did. */
export interface DecisionSummary {
  kept: number[];
  discarded: { step: number; reasons: string[] }[];
  totals: RetentionDecision['totals'];
}

export interface UploadResult extends Checkpoint {
  /** The retention decision the upload triggered; null when the same bytes were already stored. */
  decision: DecisionSummary | null;
}

/** One step's metrics; the estimate (docs/architecture.md §7) uses the named fields. */
export interface MetricPoint {
  step: number;
  trainLoss?: number;
  valLoss?: number;
  lr?: number;
  batchSize?: number;
  /** ||ḡ||, the batch gradient's norm. */
  gradNorm?: number;
  /** tr Σ_t, the trace of the per-sample gradient covariance. */
  gradVariance?: number;
  /** ||Δw_t||, the norm of the step's weight update. */
  updateNorm?: number;
  /** <∇F_val − ∇F_train, Δw_t>, the step's measured first-order gap contribution. */
  gapIncrement?: number;
  extra?: Record<string, number>;
}

/** A page of GET /v1/runs/{run}/metrics, ordered by step, then arrival. */
export interface MetricPointPage {
  items: MetricPoint[];
  /**
   * An opaque cursor when the page is full: pass it as `after` for the next page. Null on the last page. Its
   * form is not part of the contract; build none, only pass back what the server sent.
   */
  next: string | null;
}

/**
 * What a checkpoint is when its change score makes it an event (score ≥ 3), or a stall (docs/architecture.md
 * §5): `restart` the update norm rose far above its trend and stayed up; `divergence` the training loss did;
 * `spike` either rose for this checkpoint only; `jump` it rose on the newest checkpoint, not yet known to last;
 * `reversal` the update turned back on the previous one; `stall` the weights barely moved (score 0).
 */
export type ChangeKind = 'restart' | 'divergence' | 'spike' | 'jump' | 'reversal' | 'stall';

export interface TrajectoryItem extends Indicators {
  step: number;
  phase: string;
  /** How far this checkpoint departs from the run's recent trend (docs/architecture.md §5); 0 for a stall. */
  changeScore: number;
  /** The terms of changeScore. */
  changeComponents: { update: number; loss: number; reversal: number };
  /** The event this checkpoint is, or a stall; null for an ordinary checkpoint. */
  changeKind: ChangeKind | null;
  /** Mean training loss logged since the previous checkpoint, or null. */
  trainLoss: number | null;
}

export interface Trajectory {
  items: TrajectoryItem[];
  phases: {
    method: 'fraction' | 'dynamics';
    names: string[];
    boundaries: { phase: string; fromStep: number; toStep: number }[];
  };
  totals: {
    checkpoints: number;
    firstStep: number | null;
    lastStep: number | null;
    pathLength: number;
    distanceFromStart: number;
  };
}

export interface PolicyRecord {
  name: string;
  builtIn: boolean;
  /** As stored. */
  policy: Policy;
  /** With every default filled in. */
  resolved: ResolvedPolicy;
  createdAt: string | null;
  updatedAt: string | null;
}

/** Why a checkpoint is kept (docs/architecture.md §6). */
export type RetentionClass = 'latest' | 'pinned' | 'change' | 'best' | 'every' | 'phase';

export interface CheckpointDecision {
  step: number;
  keep: boolean;
  /** The classes holding a kept checkpoint; empty when it is not kept. */
  classes: RetentionClass[];
  /** Why it is kept (one sentence per class), or why not (one sentence; a second when its bytes are held back). Never empty. */
  reasons: string[];
  phase: string;
  changeScore: number;
}

/** What a retention policy keeps of a run (applied, or simulated). */
export interface RetentionDecision {
  checkpoints: CheckpointDecision[];
  totals: {
    checkpoints: number;
    kept: number;
    bytesKept: number;
    bytesUploaded: number;
    budget: { maxCheckpoints: number | null; maxBytes: number | null };
    /** Distance from each checkpoint to its nearest kept one, as a fraction of the run's path length. */
    coverage: { mean: number; max: number };
  };
}

export type {
  Calibration,
  Estimate,
  EstimateWarning,
  GapInterval,
  HistoryEntry,
  MissingInput,
  ObservedGap,
  PhaseContribution,
  Trend,
} from './estimate.js';
/** One entry of GET /v1/runs/{run}/estimate/history. */
export type { HistoryEntry as EstimateHistoryEntry } from './estimate.js';

/**
 * Access control (docs/architecture.md §8). Each role includes the ones before it: `reader` (every GET in
 * scope), `writer` (training jobs: runs, uploads, metrics), `operator` (policies, pins, restores,
 * simulations), `admin` (tokens, the audit trail, every run).
 */
export type Role = 'reader' | 'writer' | 'operator' | 'admin';

/** POST /v1/tokens. `runs`: exact run ids or prefixes ending in `*` (`["team-a-*"]`, `["*"]` for all). */
export interface TokenInput {
  name: string;
  role: Role;
  runs: string[];
  /** ISO-8601; absent or null: the token does not expire. */
  expiresAt?: string | null;
}

/** A token as listed: never its secret. */
export interface Token {
  id: string;
  name: string;
  role: Role;
  runs: string[];
  expiresAt: string | null;
  createdAt: string;
  /** The token (id) or `admin-env` that created it. */
  createdBy: string;
  revokedAt: string | null;
}

/** The answer to POST /v1/tokens: the only time the secret is shown. */
export interface CreatedToken extends Token {
  /** Send as `Authorization: Bearer <token>`. Stored by the gateway only as a hash. */
  token: string;
}

export type AuditAction =
  | 'token.create'
  | 'token.revoke'
  | 'policy.put'
  | 'run.policy'
  | 'checkpoint.pin'
  | 'checkpoint.unpin'
  | 'checkpoint.restore'
  | 'checkpoint.discard'
  | 'checkpoint.delete';

/** One entry of the audit trail (GET /v1/audit). */
export interface AuditEntry {
  /** Increasing; pages continue after it. */
  id: number;
  at: string;
  /** A token id, `admin-env` (the bootstrap token), `anonymous` (no access control) or `collector`. */
  actor: string;
  action: AuditAction;
  run: string | null;
  step: number | null;
  /** Before/after where the action changed something (a policy), reasons of a discard. */
  details: Record<string, unknown>;
}
