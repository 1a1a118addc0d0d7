import { z } from 'zod';
import { METRIC_FIELDS } from '../model/records.js';

/**
 * The stored state of a run's estimate accumulator (the catalog keeps it as opaque JSON per run): its zod
 * schema, its version and its empty value. Bump STATE_VERSION on any change to the schema or to what a
 * stored field means, and register a migration from the previous version (migration.ts).
 */
export const STATE_VERSION = 3;

const num = z.number();
const opt = num.optional();

/** One step's merged values (the estimate's inputs only). */
const StepRecord = z.object({
  step: num,
  trainLoss: opt,
  valLoss: opt,
  lr: opt,
  batchSize: opt,
  gradNorm: opt,
  gradVariance: opt,
  updateNorm: opt,
  gapIncrement: opt,
  gapIncrementFresh: opt,
  trainEvalLoss: opt,
  preconditionedVariance: opt,
});
export type StepRecord = z.infer<typeof StepRecord>;
export type RecordField = Exclude<keyof StepRecord, 'step'>;

/** Running sums, each a Σ over folded steps (span-weighted); `*Steps` count the steps a sum covers. */
export const TOTAL_KEYS = [
  'steps',
  /** Σ ||Δw_t||·sqrt(tr Σ_t): B_T·√n. */
  'bSteps',
  'bSum',
  /** Σ η_t·tr Σ_t: E_T·n. */
  'eSteps',
  'eSum',
  /** Σ ||Δw_t||². */
  'soSteps',
  'soSum',
  /** Measured decomposition: gDirect + gRaw − gSelfFitM + gSelfFitOne/n (see measuredGapParts). */
  'gSteps',
  'gDirect',
  'gRaw',
  'gSelfFitM',
  'gSelfFitOne',
  /** Σ of the client's gapIncrement as logged, weighted the same way. */
  'gUncorrected',
  /**
   * Σ tr(P_t Σ_t), the expected first-order gap increment of the update Δw_t = −P_t ḡ_t, ·n: the logged
   * extra.preconditionedVariance where a step has one, else (||Δw_t|| / ||ḡ_t||)·tr Σ_t (P_t a multiple of I).
   */
  'fSteps',
  'fSum',
  /** Σ ||Δw_t||·sqrt(max(0, 1 − tr Σ_t/(m·||ḡ_t||²)))·sqrt(tr Σ_t): B_T with minibatch noise removed, ·√n. */
  'cSteps',
  'cSum',
] as const;
export type TotalKey = (typeof TOTAL_KEYS)[number];
export type Totals = Record<TotalKey, number>;

const Totals = z.object(Object.fromEntries(TOTAL_KEYS.map((k) => [k, num])) as Record<TotalKey, typeof num>);

const Carry = z.object({
  step: num.nullable(),
  lr: num.nullable(),
  gradVariance: num.nullable(),
  batchSize: num.nullable(),
  updateNorm: num.nullable(),
  gradNorm: num.nullable(),
  trainLoss: num.nullable(),
  lastGapStep: num.nullable(),
  preconditionedVariance: num.nullable(),
});
export type Carry = z.infer<typeof Carry>;

/**
 * An evaluation point's values, merged by step (a later arrival wins field by field). Kept apart from the
 * training records and paired with the indicator at its own step when the estimate is read, so it may
 * arrive at any time. `gap` is set only on entries migrated from version 1, which kept the observed gap.
 */
const EvalEntry = z.object({ step: num, valLoss: opt, trainEvalLoss: opt, trainLoss: opt, gap: opt });
export type EvalEntry = z.infer<typeof EvalEntry>;

/** An evaluation point with its observed gap. */
export interface EvalPoint {
  step: number;
  gap: number;
  valLoss: number | null;
  /** Whether the gap uses the batch training loss (no trainEvalLoss). */
  fromBatch: boolean;
}

const Counters = z.object({
  records: num,
  normClient: num,
  normLrGrad: num,
  normCheckpoint: num,
  gapFresh: num,
  gapCorrected: num,
  gapUncorrectable: num,
  minLr: num.nullable(),
  maxLr: num.nullable(),
  nonPositiveLr: num,
  minBatchSize: num.nullable(),
  maxBatchSize: num.nullable(),
});
export type Counters = z.infer<typeof Counters>;

/** Cumulative totals at a folded step. */
const Snapshot = z.object({ step: num, totals: z.array(num) });
export type Snapshot = z.infer<typeof Snapshot>;

const CheckpointNorm = z.object({ step: num, perStep: num.nullable() });
export type CheckpointNorm = z.infer<typeof CheckpointNorm>;

/** The metric fields, plus the three the estimate reads from `extra`. */
export const INPUT_FIELDS = [...METRIC_FIELDS, 'gapIncrementFresh', 'trainEvalLoss', 'preconditionedVariance'] as const;
const fieldCounts = z.object(Object.fromEntries(INPUT_FIELDS.map((k) => [k, num])) as Record<RecordField, typeof num>);
export type FieldCounts = z.infer<typeof fieldCounts>;

export const AccumulatorState = z.object({
  version: z.literal(STATE_VERSION),
  options: z.object({ reorderWindow: num, holdLimit: num, maxSnapshots: num, recentEvals: num, maxEvals: num }),
  carry: Carry,
  totals: Totals,
  counters: Counters,
  /** Evaluation points by step (at most options.maxEvals; past that every other one is dropped). */
  evals: z.array(EvalEntry),
  snapshots: z.array(Snapshot),
  snapshotSpacing: num,
  lastSnapshotStep: num.nullable(),
  pending: z.array(StepRecord),
  checkpoints: z.array(CheckpointNorm),
  /** Highest step seen in any point. */
  maxStep: num.nullable(),
  points: num,
  latePoints: num,
  seen: fieldCounts,
  nonFinite: fieldCounts,
  /** Negative variances or norms, non-integer or non-positive batch sizes: ignored and counted. */
  invalid: fieldCounts,
  checkpointsSeen: num,
  checkpointNonFinite: num,
});
export type AccumulatorState = z.infer<typeof AccumulatorState>;

export interface AccumulatorOptions {
  /** Step records kept unfolded to absorb out-of-order arrival (default 256). */
  reorderWindow?: number;
  /** Most records buffered while waiting for a checkpoint's update norm (default 8192). */
  holdLimit?: number;
  /** Snapshots kept for history, phases and calibration cut-offs; thinned past this (default 1024). */
  maxSnapshots?: number;
  /** Evaluation points the trend uses (default 8). */
  recentEvals?: number;
  /** Evaluation points kept for calibration and history; thinned past this (default 2048). */
  maxEvals?: number;
}

const zeroCounts = (): FieldCounts => Object.fromEntries(INPUT_FIELDS.map((k) => [k, 0])) as FieldCounts;
const zeroTotals = (): Totals => Object.fromEntries(TOTAL_KEYS.map((k) => [k, 0])) as Totals;

export function packTotals(t: Totals): number[] {
  return TOTAL_KEYS.map((k) => t[k]);
}

export function unpackTotals(values: readonly number[]): Totals {
  const t = zeroTotals();
  TOTAL_KEYS.forEach((k, i) => {
    t[k] = values[i] ?? 0;
  });
  return t;
}

export function initialState(options: AccumulatorOptions): AccumulatorState {
  return {
    version: STATE_VERSION,
    options: {
      reorderWindow: options.reorderWindow ?? 256,
      holdLimit: options.holdLimit ?? 8192,
      maxSnapshots: Math.max(4, options.maxSnapshots ?? 1024),
      recentEvals: Math.max(2, options.recentEvals ?? 8),
      maxEvals: Math.max(8, options.maxEvals ?? 2048),
    },
    carry: {
      step: null,
      lr: null,
      gradVariance: null,
      batchSize: null,
      updateNorm: null,
      gradNorm: null,
      trainLoss: null,
      lastGapStep: null,
      preconditionedVariance: null,
    },
    totals: zeroTotals(),
    counters: {
      records: 0,
      normClient: 0,
      normLrGrad: 0,
      normCheckpoint: 0,
      gapFresh: 0,
      gapCorrected: 0,
      gapUncorrectable: 0,
      minLr: null,
      maxLr: null,
      nonPositiveLr: 0,
      minBatchSize: null,
      maxBatchSize: null,
    },
    evals: [],
    snapshots: [],
    snapshotSpacing: 1,
    lastSnapshotStep: null,
    pending: [],
    checkpoints: [],
    maxStep: null,
    points: 0,
    latePoints: 0,
    seen: zeroCounts(),
    nonFinite: zeroCounts(),
    invalid: zeroCounts(),
    checkpointsSeen: 0,
    checkpointNonFinite: 0,
  };
}
