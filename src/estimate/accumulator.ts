import type { MetricPoint } from '../model/records.js';
import {
  checkpointNorm,
  clientNorm,
  commitSlack,
  foldRecord,
  insertSorted,
  snapshotRule,
  type FoldState,
} from './fold.js';
import { migrateState, STATE_MIGRATIONS, type StateMigration } from './migration.js';
import {
  AccumulatorState,
  initialState,
  packTotals,
  type AccumulatorOptions,
  type Carry,
  type Counters,
  type EvalEntry,
  type FieldCounts,
  type RecordField,
  type Snapshot,
  type StepRecord,
  type Totals,
} from './state.js';

/**
 * The running state of a run's generalization estimate (docs/architecture.md §7), fed metric points in arrival order and
 * maintained incrementally: reading it folds at most the small reorder buffer, never the run.
 *
 * Contract (what the sums mean, whatever the batching):
 * - Points logged at the same step merge into one step record; a later arrival overrides a field an
 *   earlier one set (extras merge key by key).
 * - Records are folded in step order. A record stands for the steps since the previous record
 *   (span = step − previous step; the first record counts from step 0). Its per-step values are its own,
 *   or, for a field it lacks, the latest earlier record's (carried forward).
 * - A point's evaluation fields (valLoss, extra.trainEvalLoss) and its training fields go separate ways.
 *   Evaluation points are kept by step whenever they arrive and paired with the indicator at their own
 *   step when the estimate is read, so live, late and reordered evaluations give the same estimate. A
 *   point with evaluation fields only makes no training record.
 * - Out-of-order arrival of training fields: the newest `reorderWindow` step records (up to a quarter
 *   more between folds) wait in a buffer sorted by step; older ones are folded for good. Training fields
 *   whose step is at or below the last folded step arrive too late: they are dropped and the point is
 *   counted (`latePoints`). Within the window the result equals a fold over all points sorted by step.
 * - ||Δw_t||: the record's updateNorm, else lr·gradNorm (the plain-SGD update), else a carried client
 *   value, else the gateway's checkpoint update norm per step for the checkpoint interval holding t. A
 *   record that needs a checkpoint norm stays buffered until a checkpoint at or after its step arrives
 *   (at most `holdLimit` records; past that it folds with the latest checkpoint's norm).
 * - gapIncrement is a sampled measurement: a record carrying one stands for the steps since the previous
 *   record carrying one. Its value: extra.gapIncrementFresh when present (∇F_train from a training
 *   batch independent of the step's: unbiased for <∇F_μ − ∇F_S, Δw_t>); else gapIncrement minus its
 *   self-fit term η·tr Σ·(1/m − 1/n) (the specified value takes ∇F_train from the step's own batch, and
 *   <ḡ, ḡ> carries Var(ḡ): on MNIST that term is ~100× the gap); else gapIncrement as logged (warned).
 * - Observed gap at an evaluation point (valLoss at a step): valLoss − extra.trainEvalLoss (loss on the
 *   training set at the evaluated weights) when present, else − the batch trainLoss logged at that step
 *   (one batch, measured before the step: noisy; warned), taken from a point at the step that arrives
 *   while the evaluation is known or from the step's still-buffered training record.
 * Sums are kept free of n (trainSize), which the read supplies: B_T = bSum/√n, E_T = eSum/n.
 */

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
  /** Evaluation points by step. */
  evals: EvalEntry[];
  /** Evaluation points the trend uses. */
  recentEvals: number;
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

export class EstimateAccumulator {
  private constructor(private readonly s: AccumulatorState) {}

  static create(options: AccumulatorOptions = {}): EstimateAccumulator {
    return new EstimateAccumulator(initialState(options));
  }

  /** Restores a state written by toJSON (validated; throws a ZodError on a foreign shape or version). */
  static fromJSON(json: unknown): EstimateAccumulator {
    return new EstimateAccumulator(AccumulatorState.parse(json));
  }

  /**
   * Restores a stored state of this or an older version (migrated, see migrateState); null when it cannot
   * be used, and the caller rebuilds it from the run's data.
   */
  static restore(json: unknown, migrations: readonly StateMigration[] = STATE_MIGRATIONS): EstimateAccumulator | null {
    const state = migrateState(json, migrations);
    return state ? new EstimateAccumulator(state) : null;
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
      const { valLoss, trainEvalLoss, ...training } = rec;
      if (valLoss !== undefined || trainEvalLoss !== undefined) this.addEval(rec);
      else if (training.trainLoss !== undefined) {
        const entry = this.evalAt(rec.step);
        if (entry) entry.trainLoss = training.trainLoss;
      }
      if (Object.keys(training).length === 1) continue;
      if (this.s.carry.step !== null && rec.step <= this.s.carry.step) {
        this.s.latePoints++;
        continue;
      }
      insertSorted(this.s.pending, training);
      this.commitReady();
    }
    return this;
  }

  /** Merges an evaluation into the entry at its step (a later value wins); thins past maxEvals. */
  private addEval(rec: StepRecord): void {
    const evals = this.s.evals;
    let entry = this.evalAt(rec.step);
    if (!entry) {
      entry = { step: rec.step };
      let i = evals.length;
      while (i > 0 && evals[i - 1].step > rec.step) i--;
      evals.splice(i, 0, entry);
    }
    if (rec.valLoss !== undefined) {
      entry.valLoss = rec.valLoss;
      delete entry.gap;
    }
    if (rec.trainEvalLoss !== undefined) entry.trainEvalLoss = rec.trainEvalLoss;
    const trainLoss = rec.trainLoss ?? this.s.pending.find((r) => r.step === rec.step)?.trainLoss;
    if (trainLoss !== undefined) entry.trainLoss = trainLoss;
    if (evals.length > this.s.options.maxEvals) {
      const last = evals.length - 1;
      const kept = evals.filter((_, i) => i % 2 === 0 || i === last);
      evals.splice(0, evals.length, ...kept);
    }
  }

  private evalAt(step: number): EvalEntry | undefined {
    const evals = this.s.evals;
    let lo = 0;
    let hi = evals.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (evals[mid].step < step) lo = mid + 1;
      else hi = mid;
    }
    return evals[lo]?.step === step ? evals[lo] : undefined;
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
    };
    const snapshots = withSnapshots === 'none' ? [] : s.snapshots.slice();
    const rule = { spacing: s.snapshotSpacing, last: s.lastSnapshotStep };
    let provisionalNorms = 0;
    for (const rec of s.pending) {
      const norm = checkpointNorm(s.checkpoints, rec.step);
      if (norm.provisional && clientNorm(rec, fold.carry) === null) provisionalNorms++;
      foldRecord(fold, rec, norm.value);
      if (withSnapshots === 'every') snapshots.push({ step: rec.step, totals: packTotals(fold.totals) });
      else if (withSnapshots === 'rule') snapshotRule(snapshots, rule, s.options.maxSnapshots, rec.step, fold.totals);
    }
    return {
      totals: fold.totals,
      counters: fold.counters,
      carry: fold.carry,
      evals: s.evals.map((e) => ({ ...e })),
      recentEvals: s.options.recentEvals,
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
      foldRecord(fold, rec, needsCheckpoint ? norm.value : null);
      snapshotRule(s.snapshots, rule, s.options.maxSnapshots, rec.step, s.totals);
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
      this.take(rec, 'preconditionedVariance', p.extra.preconditionedVariance, NON_NEGATIVE);
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
