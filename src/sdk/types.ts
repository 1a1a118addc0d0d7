/** Shapes of trajgate's REST responses (openapi/trajgate.yaml is the full contract). */
export type Dtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export interface RunInput {
  plannedSteps?: number | null;
  trainSize?: number | null;
  allowShapeChange?: boolean;
  tags?: Record<string, string>;
}

export interface Run {
  id: string;
  plannedSteps: number | null;
  trainSize: number | null;
  allowShapeChange: boolean;
  tags: Record<string, string>;
  policy: { name: string } | { policy: Record<string, unknown> } | null;
  createdAt: string;
  updatedAt: string;
}

export interface RunSummary extends Run {
  checkpoints: { count: number; kept: number; latestStep: number | null; bytesUploaded: number; bytesKept: number };
}

export interface Indicators {
  updateNorm: number | null;
  updateNormPerStep: number | null;
  relativeChange: number | null;
  distanceFromStart: number;
  pathLength: number;
  cosinePrev: number | null;
  topTensors: { name: string; updateNorm: number; relativeChange: number | null }[];
}

export interface Checkpoint {
  run: string;
  step: number;
  uploadId: string;
  sha256: string;
  bytes: number;
  format: 'safetensors' | 'native';
  status: 'kept' | 'discarded';
  tensors: { name: string; dtype: Dtype; shape: number[]; norm: number; mean: number; maxAbs: number; nanCount: number; infCount: number }[];
  metadata: Record<string, string> | null;
  indicators: Indicators | null;
  classes: string[];
  reasons: string[];
  pinned: boolean;
  discardedAt: string | null;
  deleteAfter: string | null;
  contentAvailable: boolean;
  createdAt: string;
}

export interface UploadResult extends Checkpoint {
  /** The retention decision the upload triggered; null when the same bytes were already stored. */
  decision: { kept: number[]; discarded: { step: number; reasons: string[] }[]; totals: Record<string, unknown> } | null;
}

export interface MetricPoint {
  step: number;
  trainLoss?: number;
  valLoss?: number;
  lr?: number;
  batchSize?: number;
  gradNorm?: number;
  gradVariance?: number;
  updateNorm?: number;
  gapIncrement?: number;
  extra?: Record<string, number>;
}

export interface TrajectoryItem extends Indicators {
  step: number;
  phase: string;
  changeScore: number;
  trainLoss: number | null;
}

export interface Trajectory {
  items: TrajectoryItem[];
  phases: { method: string; names: string[]; boundaries: { phase: string; fromStep: number; toStep: number }[] };
  totals: { checkpoints: number; firstStep: number | null; lastStep: number | null; pathLength: number; distanceFromStart: number };
}

export interface PolicyRecord {
  name: string;
  builtIn: boolean;
  policy: Record<string, unknown>;
  resolved: Record<string, unknown>;
  createdAt: string | null;
  updatedAt: string | null;
}

export interface RetentionDecision {
  checkpoints: { step: number; keep: boolean; classes: string[]; reasons: string[]; phase: string; changeScore: number }[];
  totals: { checkpoints: number; kept: number; bytesKept: number; bytesUploaded: number; coverage: { mean: number; max: number } };
}

/** The generalization estimate (GET /v1/runs/{run}/estimate); see the OpenAPI file for every field. */
export type Estimate = Record<string, unknown> & {
  step: number | null;
  trainSize: number | null;
  indicator: number | null;
  expectedIncrement: number | null;
  measuredGap: number | null;
  measuredGapUncorrected?: number | null;
  secondOrder: number | null;
  secondOrderRatio?: number | null;
  calibrated: boolean;
  gap: { estimate: number; low: number; high: number } | null;
  warnings: { code: string; message: string }[];
  missing: string[];
};

export interface EstimateHistoryEntry {
  step: number;
  indicator: number | null;
  expectedIncrement: number | null;
  measuredGap: number | null;
  secondOrder: number | null;
  observedGap: number | null;
  gap: { estimate: number; low: number; high: number } | null;
}

export type Progress = (sentBytes: number, totalBytes: number | null) => void;
