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
}

/** A retention policy; every key is optional and defaults to the built-in policy. */
export interface Policy {
  budget?: { maxCheckpoints?: number | null; maxBytes?: number | null };
  /** Newest checkpoints kept for resuming. */
  latest?: number;
  phase?: { count?: number; perPhase?: number; by?: 'auto' | 'fraction' | 'dynamics' };
  change?: { max?: number; zThreshold?: number };
  best?: { metric?: string; mode?: 'min' | 'max'; count?: number } | null;
  /** Also keep steps that are multiples of this. */
  every?: number | null;
  /** How long a discarded checkpoint stays restorable. */
  graceSeconds?: number;
}

/** A policy by name, or inline. */
export type PolicyRef = { name: string } | { policy: Policy };

export interface Run {
  id: string;
  plannedSteps: number | null;
  trainSize: number | null;
  allowShapeChange: boolean;
  tags: Record<string, string>;
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
  updateNorm: number | null;
  updateNormPerStep: number | null;
  relativeChange: number | null;
  distanceFromStart: number;
  pathLength: number;
  cosinePrev: number | null;
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
}

export interface UploadResult extends Checkpoint {
  /** The retention decision the upload triggered; null when the same bytes were already stored. */
  decision: {
    kept: number[];
    discarded: { step: number; reasons: string[] }[];
    totals: Record<string, unknown>;
  } | null;
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

export interface TrajectoryItem extends Indicators {
  step: number;
  phase: string;
  changeScore: number;
  changeComponents: { update: number; loss: number; reversal: number };
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
  resolved: Required<Policy>;
  createdAt: string | null;
  updatedAt: string | null;
}

export interface RetentionDecision {
  checkpoints: {
    step: number;
    keep: boolean;
    classes: string[];
    reasons: string[];
    phase: string;
    changeScore: number;
  }[];
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

export interface GapInterval {
  estimate: number;
  low: number;
  high: number;
}

/** The generalization estimate (GET /v1/runs/{run}/estimate): a trajectory-based indicator after Fu et al. */
export interface Estimate {
  /** Highest step seen. */
  step: number | null;
  trainSize: number | null;
  /** B_T = Σ_t ||Δw_t|| sqrt(tr Σ_t / n). */
  indicator: number | null;
  /** Σ_t η_t tr Σ_t / n. */
  expectedIncrement: number | null;
  /** Σ_t gapIncrement_t; null when not logged. */
  measuredGap: number | null;
  /** Σ_t ||Δw_t||². */
  secondOrder: number | null;
  observedGap: { step: number; gap: number; valLoss: number } | null;
  calibrated: boolean;
  gap: GapInterval | null;
  /** Contributions per training phase. */
  phases: Record<string, unknown>;
  trend: Record<string, unknown>;
  warnings: { code: string; message: string }[];
  missing: ('trainSize' | 'gradVariance' | 'updateNorm' | 'lr' | 'valLoss')[];
  /** Σ_t gapIncrement_t exactly as logged (measuredGap subtracts the self-fit term); not in the contract yet. */
  measuredGapUncorrected?: number | null;
  /** secondOrder ÷ indicator; not in the contract yet. */
  secondOrderRatio?: number | null;
  /** Other fields the server adds beyond the contract (calibration, coverage, sources, counts). */
  [key: string]: unknown;
}

export interface EstimateHistoryEntry {
  step: number;
  indicator: number | null;
  expectedIncrement: number | null;
  measuredGap: number | null;
  secondOrder: number | null;
  observedGap: number | null;
  gap: GapInterval | null;
}
