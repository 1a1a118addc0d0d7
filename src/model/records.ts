import { z } from 'zod';
import { PolicyInput } from './policy.js';
import { DTYPES } from '@trajgate/sdk/wire/dtypes';
import { CHECKPOINT_FORMATS } from '@trajgate/sdk/wire/formats';

/**
 * Records as the catalog stores them and the API returns them. Names here are public API: extend, never
 * rename. Timestamps are ISO-8601 strings.
 */
const finite = z.number().refine(Number.isFinite, 'must be a finite number');
const nonNegInt = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

export const RunInput = z
  .object({
    /** Total optimizer steps the run expects; enables phase-by-step-fraction. */
    plannedSteps: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).nullable().optional(),
    /** n, the number of training examples; the generalization estimate scales by 1/sqrt(n). */
    trainSize: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).nullable().optional(),
    /** Accept checkpoints whose tensor set or shapes differ from the run's first checkpoint. */
    allowShapeChange: z.boolean().optional(),
    tags: z.record(z.string().max(256), z.string().max(1024)).optional(),
    /** Runs of one group share calibration (sibling runs); null: the run's `family` tag stands in. */
    calibrationGroup: z.string().min(1).max(256).nullable().optional(),
  })
  .strict();
export type RunInput = z.infer<typeof RunInput>;

/** A run's retention policy: a named policy, or one given inline (a partial policy). */
export const RunPolicyRef = z.union([
  z.object({ name: z.string() }).strict(),
  z.object({ policy: PolicyInput }).strict(),
]);
/** The shape of a policy reference before the inline policy is checked (for error messages that name the key). */
export const RunPolicyRefShape = z.union([
  z.object({ name: z.string() }).strict(),
  z.object({ policy: z.record(z.string(), z.unknown()) }).strict(),
]);
export type RunPolicyRef = z.infer<typeof RunPolicyRef>;

export const RunRecord = z.object({
  id: z.string(),
  plannedSteps: z.number().int().nullable(),
  trainSize: z.number().int().nullable(),
  allowShapeChange: z.boolean(),
  tags: z.record(z.string(), z.string()),
  calibrationGroup: z.string().nullable(),
  /** Null: the built-in default policy. */
  policy: RunPolicyRef.nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type RunRecord = z.infer<typeof RunRecord>;

/** A tensor of a checkpoint with its exact statistics (NaN and ±Inf elements counted, not in the others). */
export const TensorEntry = z.object({
  name: z.string(),
  dtype: z.enum(DTYPES),
  shape: z.array(nonNegInt),
  norm: z.number(),
  mean: z.number(),
  maxAbs: z.number(),
  nanCount: nonNegInt,
  infCount: nonNegInt,
});
export type TensorEntry = z.infer<typeof TensorEntry>;

/** One file of a sharded step. */
export const ShardInfo = z.object({
  file: z.string(),
  bytes: nonNegInt,
  sha256: z.string(),
  tensors: nonNegInt,
});
export type ShardInfo = z.infer<typeof ShardInfo>;

export const CheckpointStatus = z.enum(['kept', 'discarded']);
export type CheckpointStatus = z.infer<typeof CheckpointStatus>;

/** A checkpoint's place on the trajectory against the previous uploaded checkpoint (docs/architecture.md §5). */
export const CheckpointIndicators = z.object({
  /** ||w_t − w_t'||, estimated from sketches; null for the first checkpoint. */
  updateNorm: z.number().nullable(),
  /** updateNorm ÷ (t − t'). */
  updateNormPerStep: z.number().nullable(),
  /** updateNorm ÷ ||w_t'||. */
  relativeChange: z.number().nullable(),
  /** ||w_t − w_first||. */
  distanceFromStart: z.number(),
  /** Σ updateNorm over the run up to this checkpoint. */
  pathLength: z.number(),
  /** Cosine between this update and the previous one; null for the first two checkpoints. */
  cosinePrev: z.number().nullable(),
  /** The tensors that moved most in this update. */
  topTensors: z.array(z.object({ name: z.string(), updateNorm: z.number(), relativeChange: z.number().nullable() })),
});
export type CheckpointIndicators = z.infer<typeof CheckpointIndicators>;

export const CheckpointRecord = z.object({
  run: z.string(),
  step: nonNegInt,
  uploadId: z.string(),
  sha256: z.string(),
  bytes: nonNegInt,
  format: z.enum(CHECKPOINT_FORMATS),
  status: CheckpointStatus,
  blobKey: z.string(),
  tensors: z.array(TensorEntry),
  metadata: z.record(z.string(), z.string()).nullable(),
  /** Null until computed (the upload's commit computes it). */
  indicators: CheckpointIndicators.nullable(),
  /** Retention classes holding the checkpoint (empty once discarded). */
  classes: z.array(z.string()),
  /** Why the checkpoint is kept, or why it was discarded. */
  reasons: z.array(z.string()),
  pinned: z.boolean(),
  discardedAt: z.string().nullable(),
  /** When a discarded checkpoint's bytes will be deleted; until then it can be restored. */
  deleteAfter: z.string().nullable(),
  /** False once the bytes are gone from the blob store. */
  contentAvailable: z.boolean(),
  createdAt: z.string(),
  /** The files of a sharded step, by file name; absent for a single-file checkpoint. */
  shards: z.array(ShardInfo).optional(),
});
export type CheckpointRecord = z.infer<typeof CheckpointRecord>;

/** A checkpoint in a list: the record, with its tensor table only when asked for (`?include=tensors`). */
export const CheckpointListItem = CheckpointRecord.extend({ tensors: z.array(TensorEntry).optional() });
export type CheckpointListItem = z.infer<typeof CheckpointListItem>;

/** A page of a run's checkpoints; `next` is the last item's step when the page is full (pass it as `after`). */
export const CheckpointPage = z.object({ items: z.array(CheckpointListItem), next: nonNegInt.nullable() });
export type CheckpointPage = z.infer<typeof CheckpointPage>;

/** One logged training step. Only `step` is required; absent fields are null in the series. */
export const MetricPoint = z
  .object({
    step: nonNegInt,
    trainLoss: finite.optional(),
    valLoss: finite.optional(),
    lr: finite.optional(),
    batchSize: z.number().int().positive().optional(),
    gradNorm: finite.optional(),
    /** tr Σ_t: trace of the per-sample gradient covariance. */
    gradVariance: finite.optional(),
    /** ||Δw_t||, the norm of this step's weight update. */
    updateNorm: finite.optional(),
    /** <∇F_val − ∇F_train, Δw_t>, the step's measured first-order gap contribution. */
    gapIncrement: finite.optional(),
    extra: z.record(z.string().max(128), finite).optional(),
  })
  .strict();
export type MetricPoint = z.infer<typeof MetricPoint>;

/** A page of a run's metric series; `next` is an opaque cursor (pass it as `after`), null on the last page. */
export const MetricPointPage = z.object({ items: z.array(MetricPoint), next: z.string().nullable() });
export type MetricPointPage = z.infer<typeof MetricPointPage>;

export const METRIC_FIELDS = [
  'trainLoss',
  'valLoss',
  'lr',
  'batchSize',
  'gradNorm',
  'gradVariance',
  'updateNorm',
  'gapIncrement',
] as const;
export type MetricField = (typeof METRIC_FIELDS)[number];
