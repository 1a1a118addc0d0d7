import { z } from 'zod';
import type { MetricPoint } from '../catalog/records.js';

/**
 * The running state of a run's generalization estimate (DESIGN §7), fed metric points in arrival order and
 * maintained incrementally: reading it folds at most the small reorder buffer, never the run.
 *
 * Contract (what the sums mean, whatever the batching):
 * - Points logged at the same step merge into one step record; a later arrival overrides a field an
 *   earlier one set (extras merge key by key).
 * - Records are folded in step order. A record stands for the steps since the previous record
 *   (span = step − previous step; the first record counts from step 0). Its per-step values are its own,
 *   or, for a field it lacks, the latest earlier record's (carried forward).
 * - Out-of-order arrival: the newest `reorderWindow` step records (up to a quarter more between folds)
 *   wait in a buffer sorted by step; older ones are folded for good. A point whose step is at or below the last folded step arrives too late:
 *   it is dropped and counted (`latePoints`). Within the window the result equals a fold over all
 *   points sorted by step.
 * - ||Δw_t||: the record's updateNorm, else lr·gradNorm (the plain-SGD update), else a carried client
 *   value, else the gateway's checkpoint update norm per step for the checkpoint interval holding t. A
 *   record that needs a checkpoint norm stays buffered until a checkpoint at or after its step arrives
 *   (at most `holdLimit` records; past that it folds with the latest checkpoint's norm).
 * - gapIncrement is a sampled measurement: a record carrying one stands for the steps since the previous
 *   record carrying one. Its value: extra.gapIncrementFresh when present (∇F_train from a training
 *   batch independent of the step's: unbiased for <∇F_μ − ∇F_S, Δw_t>); else gapIncrement minus its
 *   self-fit term η·tr Σ·(1/m − 1/n) (the specified value takes ∇F_train from the step's own batch, and
 *   <ḡ, ḡ> carries Var(ḡ): on MNIST that term is ~100× the gap); else gapIncrement as logged (warned).
 * - Observed gap at an evaluation point (a record with valLoss): valLoss − extra.trainEvalLoss (loss on
 *   the training set at the evaluated weights) when present, else − the batch trainLoss (one batch,
 *   measured before the step: noisy; warned).
 * Sums are kept free of n (trainSize), which the read supplies: B_T = bSum/√n, E_T = eSum/n.
 */

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
});
export type StepRecord = z.infer<typeof StepRecord>;
type RecordField = Exclude<keyof StepRecord, 'step'>;

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
  /** Least-squares sums over evaluation points of (x = bSum at the point, y = observed gap). */
  'calK',
  'calXY',
  'calXX',
  'calYY',
  /** Lag-1 sums over successive evaluation points (x_i·x_{i−1}, x_i·y_{i−1} + y_i·x_{i−1}, y_i·y_{i−1}). */
  'calXXLag',
  'calXYLag',
  'calYYLag',
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
  calPrevX: num.nullable(),
  calPrevY: num.nullable(),
});
type Carry = z.infer<typeof Carry>;

const EvalPoint = z.object({ step: num, gap: num, valLoss: num, x: num.nullable() });
export type EvalPoint = z.infer<typeof EvalPoint>;

const Counters = z.object({
  records: num,
  evaluationPoints: num,
  evalFromTrainEval: num,
  evalFromBatch: num,
  evalWithoutTrainLoss: num,
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
type Counters = z.infer<typeof Counters>;

/** Cumulative totals at a folded step; observedGap set at evaluation points. */
const Snapshot = z.object({ step: num, totals: z.array(num), observedGap: num.nullable() });
export type Snapshot = z.infer<typeof Snapshot>;

const CheckpointNorm = z.object({ step: num, perStep: num.nullable() });

const INPUT_FIELDS = [
  'trainLoss',
  'valLoss',
  'lr',
  'batchSize',
  'gradNorm',
  'gradVariance',
  'updateNorm',
  'gapIncrement',
  'gapIncrementFresh',
  'trainEvalLoss',
] as const;
const fieldCounts = z.object(Object.fromEntries(INPUT_FIELDS.map((k) => [k, num])) as Record<RecordField, typeof num>);
export type FieldCounts = z.infer<typeof fieldCounts>;

export const AccumulatorState = z.object({
  version: z.literal(1),
  options: z.object({ reorderWindow: num, holdLimit: num, maxSnapshots: num, recentEvals: num }),
  carry: Carry,
  totals: Totals,
  counters: Counters,
  recent: z.array(EvalPoint),
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
  /** Evaluation points kept for the trend (default 8). */
  recentEvals?: number;
}

/** A checkpoint's update norm per step (‖w_s − w_s'‖ ÷ (s − s')), from the trajectory indicators. */
export interface CheckpointUpdate {
  step: number;
  updateNormPerStep: number | null;
  /** NaN/Inf weights in the checkpoint. */
  nonFiniteCount?: number;
}

/** The folded state as a read sees it: committed sums plus the reorder buffer folded into a copy. */
export interface AccumulatorView {
  totals: Totals;
  counters: Counters;
  carry: Carry;
  recent: EvalPoint[];
  /** Committed snapshots, then (when asked for) one per buffered record. */
  snapshots: Snapshot[];
  maxStep: number | null;
  points: number;
  latePoints: number;
  seen: FieldCounts;
  nonFinite: FieldCounts;
  invalid: FieldCounts;
  checkpointsSeen: number;
  checkpointNonFinite: number;
  /** Buffered records whose norm came from the latest checkpoint pending the covering one. */
  provisionalNorms: number;
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

function initialState(options: AccumulatorOptions): AccumulatorState {
  return {
    version: 1,
    options: {
      reorderWindow: options.reorderWindow ?? 256,
      holdLimit: options.holdLimit ?? 8192,
      maxSnapshots: Math.max(4, options.maxSnapshots ?? 1024),
      recentEvals: Math.max(2, options.recentEvals ?? 8),
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
      calPrevX: null,
      calPrevY: null,
    },
    totals: zeroTotals(),
    counters: {
      records: 0,
      evaluationPoints: 0,
      evalFromTrainEval: 0,
      evalFromBatch: 0,
      evalWithoutTrainLoss: 0,
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
    recent: [],
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

export class EstimateAccumulator {
  private constructor(private readonly s: AccumulatorState) {}

  static create(options: AccumulatorOptions = {}): EstimateAccumulator {
    return new EstimateAccumulator(initialState(options));
  }

  /** Restores a state written by toJSON (validated; throws a ZodError on a foreign shape). */
  static fromJSON(json: unknown): EstimateAccumulator {
    return new EstimateAccumulator(AccumulatorState.parse(json));
  }

  /** Plain JSON (finite numbers and nulls only), for the catalog. */
  toJSON(): AccumulatorState {
    return structuredClone(this.s);
  }

  /** Number of points offered, including late ones. */
  get pointCount(): number {
    return this.s.points;
  }

  /** Feeds points in arrival order; any batching gives the same state. */
  add(points: readonly MetricPoint[]): this {
    for (const p of points) {
      this.s.points++;
      const rec = this.sanitize(p);
      if (!rec) continue;
      this.s.maxStep = this.s.maxStep === null ? rec.step : Math.max(this.s.maxStep, rec.step);
      if (this.s.carry.step !== null && rec.step <= this.s.carry.step) {
        this.s.latePoints++;
        continue;
      }
      insertSorted(this.s.pending, rec);
      this.commitReady();
    }
    return this;
  }

  /** Feeds the gateway's checkpoint update norms (in upload order; a step already known is ignored). */
  addCheckpoints(updates: readonly CheckpointUpdate[]): this {
    for (const u of updates) {
      if (!Number.isInteger(u.step) || u.step < 0) continue;
      this.s.checkpointsSeen++;
      if (u.nonFiniteCount && u.nonFiniteCount > 0) this.s.checkpointNonFinite += u.nonFiniteCount;
      const perStep =
        u.updateNormPerStep !== null && Number.isFinite(u.updateNormPerStep) && u.updateNormPerStep >= 0
          ? u.updateNormPerStep
          : null;
      const list = this.s.checkpoints;
      const last = list[list.length - 1];
      if (last && u.step <= last.step) continue;
      list.push({ step: u.step, perStep });
    }
    this.commitReady();
    return this;
  }

  /**
   * The folded state with the reorder buffer folded into a copy. `withSnapshots`: 'none' (cheapest),
   * 'every' (one per buffered record, for phase boundaries and calibration cut-offs) or 'rule' (the
   * snapshot rule a commit applies, for history).
   */
  view(withSnapshots: 'none' | 'every' | 'rule' = 'none'): AccumulatorView {
    const s = this.s;
    const fold: FoldState = {
      carry: { ...s.carry },
      totals: { ...s.totals },
      counters: { ...s.counters },
      recent: s.recent.slice(),
      recentLimit: s.options.recentEvals,
    };
    const snapshots = withSnapshots === 'none' ? [] : s.snapshots.slice();
    const rule = { spacing: s.snapshotSpacing, last: s.lastSnapshotStep };
    let provisionalNorms = 0;
    for (const rec of s.pending) {
      const norm = checkpointNorm(s.checkpoints, rec.step);
      if (norm.provisional && clientNorm(rec, fold.carry) === null) provisionalNorms++;
      const observed = foldRecord(fold, rec, norm.value);
      if (withSnapshots === 'every')
        snapshots.push({ step: rec.step, totals: packTotals(fold.totals), observedGap: observed });
      else if (withSnapshots === 'rule')
        snapshotRule(snapshots, rule, s.options.maxSnapshots, rec.step, fold.totals, observed);
    }
    return {
      totals: fold.totals,
      counters: fold.counters,
      carry: fold.carry,
      recent: fold.recent,
      snapshots,
      maxStep: s.maxStep,
      points: s.points,
      latePoints: s.latePoints,
      seen: { ...s.seen },
      nonFinite: { ...s.nonFinite },
      invalid: { ...s.invalid },
      checkpointsSeen: s.checkpointsSeen,
      checkpointNonFinite: s.checkpointNonFinite,
      provisionalNorms,
    };
  }

  /** Folds buffered records that can no longer be reordered and whose inputs are complete. */
  private commitReady(): void {
    const s = this.s;
    const fold: FoldState = {
      carry: s.carry,
      totals: s.totals,
      counters: s.counters,
      recent: s.recent,
      recentLimit: s.options.recentEvals,
    };
    const rule = { spacing: s.snapshotSpacing, last: s.lastSnapshotStep };
    // Folding waits until the buffer exceeds the window by a slack, then folds down to the window: the
    // same decisions per point whatever the batching, with one splice per slack's worth of points.
    if (s.pending.length <= s.options.reorderWindow + commitSlack(s.options.reorderWindow)) return;
    let done = 0;
    while (s.pending.length - done > s.options.reorderWindow) {
      const rec = s.pending[done];
      const needsCheckpoint = clientNorm(rec, s.carry) === null;
      const norm = checkpointNorm(s.checkpoints, rec.step);
      if (needsCheckpoint && norm.provisional && s.pending.length - done <= s.options.holdLimit) break;
      const observed = foldRecord(fold, rec, needsCheckpoint ? norm.value : null);
      snapshotRule(s.snapshots, rule, s.options.maxSnapshots, rec.step, s.totals, observed);
      done++;
    }
    if (done > 0) s.pending.splice(0, done);
    s.snapshotSpacing = rule.spacing;
    s.lastSnapshotStep = rule.last;
  }

  /** Keeps finite, valid values; counts the rest. Null when the point has no usable step. */
  private sanitize(p: MetricPoint): StepRecord | null {
    if (!Number.isInteger(p.step) || p.step < 0) return null;
    const rec: StepRecord = { step: p.step };
    this.take(rec, 'trainLoss', p.trainLoss, ANY);
    this.take(rec, 'valLoss', p.valLoss, ANY);
    this.take(rec, 'lr', p.lr, ANY);
    this.take(rec, 'batchSize', p.batchSize, POSITIVE_INT);
    this.take(rec, 'gradNorm', p.gradNorm, NON_NEGATIVE);
    this.take(rec, 'gradVariance', p.gradVariance, NON_NEGATIVE);
    this.take(rec, 'updateNorm', p.updateNorm, NON_NEGATIVE);
    this.take(rec, 'gapIncrement', p.gapIncrement, ANY);
    if (p.extra) {
      this.take(rec, 'gapIncrementFresh', p.extra.gapIncrementFresh, ANY);
      this.take(rec, 'trainEvalLoss', p.extra.trainEvalLoss, ANY);
    }
    return rec;
  }

  private take(rec: StepRecord, field: RecordField, value: number | undefined, valid: (v: number) => boolean): void {
    if (value === undefined) return;
    if (!Number.isFinite(value)) this.s.nonFinite[field]++;
    else if (!valid(value)) this.s.invalid[field]++;
    else {
      rec[field] = value;
      this.s.seen[field]++;
    }
  }
}

const ANY = (): boolean => true;
const NON_NEGATIVE = (v: number): boolean => v >= 0;
const POSITIVE_INT = (v: number): boolean => Number.isInteger(v) && v > 0;

function commitSlack(window: number): number {
  return Math.floor(window / 4);
}

function insertSorted(pending: StepRecord[], rec: StepRecord): void {
  let i = pending.length;
  while (i > 0 && pending[i - 1].step > rec.step) i--;
  const prev = pending[i - 1];
  if (prev && prev.step === rec.step) {
    for (const key of Object.keys(rec) as (keyof StepRecord)[]) {
      const v = rec[key];
      if (v !== undefined) prev[key] = v;
    }
  } else pending.splice(i, 0, rec);
}

/** ||Δw|| from the client (own fields first, then carried ones), or null. */
function clientNorm(rec: StepRecord, carry: Carry): { value: number; lrGrad: boolean } | null {
  const lr = rec.lr ?? carry.lr;
  if (rec.updateNorm !== undefined) return { value: rec.updateNorm, lrGrad: false };
  if (rec.gradNorm !== undefined && lr !== null) return { value: Math.abs(lr) * rec.gradNorm, lrGrad: true };
  if (carry.updateNorm !== null) return { value: carry.updateNorm, lrGrad: false };
  if (carry.gradNorm !== null && lr !== null) return { value: Math.abs(lr) * carry.gradNorm, lrGrad: true };
  return null;
}

/**
 * The per-step norm of the checkpoint interval holding `step` (the first checkpoint at or after it);
 * provisional (the latest known norm, or null) when no checkpoint at or after the step is known yet.
 */
function checkpointNorm(
  list: AccumulatorState['checkpoints'],
  step: number,
): { value: number | null; provisional: boolean } {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].step < step) lo = mid + 1;
    else hi = mid;
  }
  if (lo < list.length) return { value: list[lo].perStep, provisional: false };
  return { value: list.length > 0 ? list[list.length - 1].perStep : null, provisional: true };
}

interface FoldState {
  carry: Carry;
  totals: Totals;
  counters: Counters;
  recent: EvalPoint[];
  recentLimit: number;
}

/** Folds one record (steps strictly increasing); returns its observed gap when it is an evaluation point. */
function foldRecord(f: FoldState, rec: StepRecord, checkpointPerStep: number | null): number | null {
  const { carry, totals: t, counters: c } = f;
  const span = rec.step - (carry.step ?? 0);
  t.steps += span;
  c.records++;
  const lr = rec.lr ?? carry.lr;
  const v = rec.gradVariance ?? carry.gradVariance;
  const m = rec.batchSize ?? carry.batchSize;
  if (rec.lr !== undefined) {
    if (rec.lr <= 0) c.nonPositiveLr++;
    else {
      c.minLr = c.minLr === null ? rec.lr : Math.min(c.minLr, rec.lr);
      c.maxLr = c.maxLr === null ? rec.lr : Math.max(c.maxLr, rec.lr);
    }
  }
  if (rec.batchSize !== undefined) {
    c.minBatchSize = c.minBatchSize === null ? rec.batchSize : Math.min(c.minBatchSize, rec.batchSize);
    c.maxBatchSize = c.maxBatchSize === null ? rec.batchSize : Math.max(c.maxBatchSize, rec.batchSize);
  }

  const client = clientNorm(rec, carry);
  const norm = client ? client.value : checkpointPerStep;
  if (client) client.lrGrad ? c.normLrGrad++ : c.normClient++;
  else if (norm !== null) c.normCheckpoint++;
  if (norm !== null && v !== null) {
    t.bSteps += span;
    t.bSum += span * norm * Math.sqrt(v);
  }
  if (lr !== null && v !== null) {
    t.eSteps += span;
    t.eSum += span * lr * v;
  }
  if (norm !== null) {
    t.soSteps += span;
    t.soSum += span * norm * norm;
  }

  if (rec.gapIncrementFresh !== undefined || rec.gapIncrement !== undefined) {
    const w = rec.step - (carry.lastGapStep ?? 0);
    t.gSteps += w;
    if (rec.gapIncrementFresh !== undefined) {
      t.gDirect += w * rec.gapIncrementFresh;
      c.gapFresh++;
    } else if (rec.gapIncrement !== undefined && lr !== null && v !== null && m !== null) {
      // E[<∇F_val − ḡ, −η ḡ>] carries +η·Var(ḡ) = η·tr Σ·(1/m − 1/n) (batch drawn without replacement
      // from n rows, tr Σ the Bessel-corrected per-sample estimate): the self-fit term, subtracted at read.
      t.gRaw += w * rec.gapIncrement;
      t.gSelfFitM += (w * lr * v) / m;
      t.gSelfFitOne += w * lr * v;
      c.gapCorrected++;
    } else if (rec.gapIncrement !== undefined) {
      t.gDirect += w * rec.gapIncrement;
      c.gapUncorrectable++;
    }
    if (rec.gapIncrement !== undefined) t.gUncorrected += w * rec.gapIncrement;
    carry.lastGapStep = rec.step;
  }

  let observed: number | null = null;
  if (rec.valLoss !== undefined) {
    const train = rec.trainEvalLoss ?? rec.trainLoss ?? carry.trainLoss;
    if (train === null) c.evalWithoutTrainLoss++;
    else {
      rec.trainEvalLoss !== undefined ? c.evalFromTrainEval++ : c.evalFromBatch++;
      observed = rec.valLoss - train;
      c.evaluationPoints++;
      const x = t.bSteps > 0 ? t.bSum : null;
      if (x !== null && x > 0) {
        if (carry.calPrevX !== null && carry.calPrevY !== null) {
          t.calXXLag += x * carry.calPrevX;
          t.calXYLag += x * carry.calPrevY + observed * carry.calPrevX;
          t.calYYLag += observed * carry.calPrevY;
        }
        carry.calPrevX = x;
        carry.calPrevY = observed;
        t.calK++;
        t.calXY += x * observed;
        t.calXX += x * x;
        t.calYY += observed * observed;
      }
      f.recent.push({ step: rec.step, gap: observed, valLoss: rec.valLoss, x });
      if (f.recent.length > f.recentLimit) f.recent.shift();
    }
  }

  carry.step = rec.step;
  carry.lr = lr;
  carry.gradVariance = v;
  carry.batchSize = m;
  if (rec.updateNorm !== undefined) carry.updateNorm = rec.updateNorm;
  if (rec.gradNorm !== undefined) carry.gradNorm = rec.gradNorm;
  if (rec.trainLoss !== undefined) carry.trainLoss = rec.trainLoss;
  return observed;
}

/**
 * A snapshot at every evaluation point and whenever `spacing` steps passed since the last one. Past
 * `max` snapshots, every other grid snapshot is dropped (evaluation points kept, so calibration cut-offs
 * stay exact) and the spacing doubles; when evaluation points alone fill most of the budget, every other
 * snapshot of any kind goes.
 */
function snapshotRule(
  snapshots: Snapshot[],
  rule: { spacing: number; last: number | null },
  max: number,
  step: number,
  totals: Totals,
  observedGap: number | null,
): void {
  if (observedGap === null && rule.last !== null && step - rule.last < rule.spacing) return;
  snapshots.push({ step, totals: packTotals(totals), observedGap });
  rule.last = step;
  if (snapshots.length > max) {
    const last = snapshots.length - 1;
    let grid = 0;
    let kept = snapshots.filter((snap, i) => snap.observedGap !== null || i === last || grid++ % 2 === 0);
    if (kept.length > 0.75 * max) kept = kept.filter((_, i) => i % 2 === 0 || i === kept.length - 1);
    snapshots.splice(0, snapshots.length, ...kept);
    rule.spacing *= 2;
  }
}
