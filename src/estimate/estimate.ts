import type { MetricPoint } from '../catalog/records.js';
import {
  EstimateAccumulator,
  TOTAL_KEYS,
  packTotals,
  unpackTotals,
  type AccumulatorView,
  type CheckpointUpdate,
  type EvalPoint,
  type Snapshot,
  type Totals,
} from './accumulator.js';

/**
 * The generalization estimate of a run: a trajectory-based indicator after Fu et al. 2023 ("Learning
 * Trajectories are Generalization Indicators"), not the paper's theorem verbatim. All quantities are
 * loss gaps (held-out loss − training loss) or sums whose scale is fitted to such gaps.
 */

/** A training phase: the steps (fromStep, toStep]. */
export interface PhaseSpan {
  name: string;
  fromStep: number;
  toStep: number;
}

export interface Thresholds {
  /** secondOrder ÷ indicator above which the first-order view is flagged (unit curvature, see below). */
  secondOrderRatio: number;
  maxLr: number;
  minLr: number;
  minBatchSize: number;
  /** batchSize above this fraction of trainSize is near full-batch. */
  maxBatchFraction: number;
  /** Fraction of steps the indicator must cover before it is reported without a warning. */
  minCoverage: number;
  /** Evaluation points needed for a calibrated estimate (two for the scale, one more for residuals). */
  minCalibrationPoints: number;
}

export const DEFAULT_THRESHOLDS: Thresholds = {
  secondOrderRatio: 4,
  maxLr: 1,
  minLr: 1e-7,
  minBatchSize: 8,
  maxBatchFraction: 0.5,
  minCoverage: 0.9,
  minCalibrationPoints: 3,
};

export interface EstimateOptions {
  /** n, the run's number of training examples; null when the run has not declared it. */
  trainSize: number | null;
  phases?: readonly PhaseSpan[];
  /** Calibrate only on evaluation points at or before this step (a forecast from the past). */
  calibrateUntilStep?: number;
  thresholds?: Partial<Thresholds>;
}

export interface GapInterval {
  estimate: number;
  low: number;
  high: number;
}

export interface Calibration {
  method: 'least-squares-through-origin';
  /** Fitted gap per unit of indicator (null without trainSize; the calibrated gap does not need it). */
  scale: number | null;
  points: number;
  /** Residual standard deviation of the fit, in loss units. */
  residualStd: number;
  /** Last step whose evaluation points the fit used. */
  untilStep: number;
}

export interface PhaseContribution {
  fromStep: number;
  toStep: number;
  indicator: number | null;
  expectedIncrement: number | null;
  measuredGap: number | null;
  secondOrder: number | null;
  /** This phase's share of the run's indicator. */
  indicatorShare: number | null;
  /** Calibrated gap added in the phase (scale × indicator). */
  gap: number | null;
}

export interface Trend {
  /** 'observedGap' when there are enough evaluation points, else 'indicator', else null. */
  basis: 'observedGap' | 'indicator' | null;
  direction: 'widening' | 'flat' | 'narrowing' | 'unknown';
  /** Least-squares slope over the recent evaluation points, per step. */
  observedGapPerStep: number | null;
  valLossPerStep: number | null;
  /** Indicator growth per step over the trailing tenth of the run. */
  indicatorPerStep: number | null;
  /** First step of the window the slopes use. */
  fromStep: number | null;
}

export interface ObservedGap {
  step: number;
  /** valLoss − training loss at the latest evaluation point. */
  gap: number;
  valLoss: number;
}

export interface EstimateWarning {
  code:
    | 'missing_inputs'
    | 'partial_coverage'
    | 'large_second_order'
    | 'extreme_learning_rate'
    | 'extreme_batch_size'
    | 'non_finite'
    | 'invalid_values'
    | 'late_points'
    | 'few_evaluation_points'
    | 'observed_gap_from_batch_loss'
    | 'measured_gap_uncorrected'
    | 'indicator_from_checkpoint_norms';
  message: string;
}

/** The inputs a missing estimate needs (names of MetricPoint fields, or `trainSize` of the run). */
export type MissingInput = 'trainSize' | 'gradVariance' | 'updateNorm' | 'lr' | 'valLoss';

export interface Estimate {
  /** Highest step seen. */
  step: number | null;
  trainSize: number | null;
  /** B_T = Σ_t ||Δw_t||·sqrt(tr Σ_t / n); null when an input is missing (see `missing`). */
  indicator: number | null;
  /** E_T = Σ_t η_t·tr Σ_t / n. */
  expectedIncrement: number | null;
  /** Σ_t gapIncrement_t, span-weighted, self-fit corrected (see measuredGapParts); null when not logged. */
  measuredGap: number | null;
  /** Σ_t gapIncrement_t exactly as the client logged it, span-weighted. */
  measuredGapUncorrected: number | null;
  /** Σ_t ||Δw_t||². */
  secondOrder: number | null;
  /** secondOrder ÷ indicator: the bound's second-order remainder relative to the first-order sum at unit curvature. */
  secondOrderRatio: number | null;
  observedGap: ObservedGap | null;
  calibrated: boolean;
  gap: GapInterval | null;
  calibration: Calibration | null;
  phases: Record<string, PhaseContribution>;
  trend: Trend;
  /** Fraction of the run's steps each sum covers. */
  coverage: { steps: number; indicator: number; expectedIncrement: number; secondOrder: number; measuredGap: number };
  sources: {
    updateNorm: { client: number; lrTimesGradNorm: number; checkpoints: number };
    measuredGap: { fresh: number; selfFitCorrected: number; uncorrected: number };
    observedGap: { trainEvalLoss: number; batchTrainLoss: number };
  };
  counts: { points: number; steps: number; evaluationPoints: number; latePoints: number };
  warnings: EstimateWarning[];
  missing: MissingInput[];
}

export interface HistoryEntry {
  step: number;
  indicator: number | null;
  expectedIncrement: number | null;
  measuredGap: number | null;
  secondOrder: number | null;
  /** Set at evaluation points. */
  observedGap: number | null;
  /** The calibrated estimate as it stood at this step (evaluation points up to it). */
  gap: GapInterval | null;
}

interface Derived {
  indicator: number | null;
  expectedIncrement: number | null;
  measuredGap: number | null;
  secondOrder: number | null;
}

/**
 * The measured decomposition from its running parts: fresh or uncorrectable increments as logged, plus the
 * client's batch-gradient increments minus their self-fit term η·tr Σ·(1/m − 1/n). Null when no
 * increment was logged, or when the correction needs n and it is unknown.
 */
function measuredGapParts(t: Totals, n: number | null): number | null {
  if (t.gSteps === 0) return null;
  if (t.gSelfFitOne !== 0 && n === null) return null;
  return t.gDirect + t.gRaw - t.gSelfFitM + (n ? t.gSelfFitOne / n : 0);
}

function derive(t: Totals, n: number | null): Derived {
  return {
    indicator: t.bSteps > 0 && n ? t.bSum / Math.sqrt(n) : null,
    expectedIncrement: t.eSteps > 0 && n ? t.eSum / n : null,
    measuredGap: measuredGapParts(t, n),
    secondOrder: t.soSteps > 0 ? t.soSum : null,
  };
}

/** Two-sided 95% Student-t quantiles by degrees of freedom (df above the table: normal). */
const T95: [number, number][] = [
  [1, 12.706],
  [2, 4.303],
  [3, 3.182],
  [4, 2.776],
  [5, 2.571],
  [6, 2.447],
  [7, 2.365],
  [8, 2.306],
  [9, 2.262],
  [10, 2.228],
  [12, 2.179],
  [15, 2.131],
  [20, 2.086],
  [30, 2.042],
  [60, 2.0],
  [120, 1.98],
];

function t95(df: number): number {
  if (df > 120) return 1.96;
  let q = T95[0][1];
  for (const [d, v] of T95) if (df >= d) q = v;
  return q;
}

/**
 * Least squares through the origin of the observed gap y on x = Σ||Δw||·sqrt(tr Σ) at the evaluation
 * points, applied at the current x. Through the origin because both vanish at initialisation (w_0 is
 * independent of the training set, so E gen(w_0) = 0, and the sum is empty); one parameter, so it is
 * usable from a few points, and the reference runs showed one scale fitting a run's whole trajectory.
 * Interval: the 95% prediction interval s·t·sqrt(1 + c·x²/Σx²), where successive evaluation points'
 * residuals are correlated (the gap and the indicator move smoothly), so the scale's variance is
 * inflated by the AR(1) factor c = (1 + ρ)/(1 − ρ), ρ the lag-1 autocorrelation of the residuals
 * (clamped to [0, 0.95]); still nominal, not a coverage guarantee.
 */
function calibrate(
  cal: Totals,
  x0: number,
  minPoints: number,
): { interval: GapInterval; a: number; s: number; k: number } | null {
  const k = cal.calK;
  if (k < minPoints || cal.calXX <= 0) return null;
  const a = cal.calXY / cal.calXX;
  const sse = Math.max(0, cal.calYY - (cal.calXY * cal.calXY) / cal.calXX);
  const s = Math.sqrt(sse / (k - 1));
  const lagged = cal.calYYLag - a * cal.calXYLag + a * a * cal.calXXLag;
  const rho = sse > 0 ? Math.min(0.95, Math.max(0, lagged / sse)) : 0;
  const inflation = (1 + rho) / (1 - rho);
  const estimate = a * x0;
  const half = t95(k - 1) * s * Math.sqrt(1 + (inflation * x0 * x0) / cal.calXX);
  return { interval: { estimate, low: estimate - half, high: estimate + half }, a, s, k };
}

/** How many snapshots (sorted by step) are at or before `step`. */
function countAtOrBefore(snapshots: readonly Snapshot[], step: number): number {
  let lo = 0;
  let hi = snapshots.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (snapshots[mid].step <= step) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Totals at `step` by linear interpolation between snapshots (zero at step 0, flat past the last). */
function totalsAt(snapshots: readonly Snapshot[], step: number): Totals {
  const lo = countAtOrBefore(snapshots, step);
  const before = snapshots[lo - 1];
  const after = snapshots[lo];
  if (!after) return before ? unpackTotals(before.totals) : unpackTotals([]);
  const b0 = before ? before.totals : [];
  const s0 = before ? before.step : 0;
  const f = after.step === s0 ? 1 : (step - s0) / (after.step - s0);
  return unpackTotals(after.totals.map((v, i) => (b0[i] ?? 0) + f * (v - (b0[i] ?? 0))));
}

function diff(a: Totals, b: Totals): Totals {
  const out = { ...a };
  for (const k of TOTAL_KEYS) out[k] = a[k] - b[k];
  return out;
}

function slope(points: readonly EvalPoint[], y: (p: EvalPoint) => number): number | null {
  if (points.length < 2) return null;
  const mx = points.reduce((acc, p) => acc + p.step, 0) / points.length;
  const my = points.reduce((acc, p) => acc + y(p), 0) / points.length;
  let sxy = 0;
  let sxx = 0;
  for (const p of points) {
    sxy += (p.step - mx) * (y(p) - my);
    sxx += (p.step - mx) ** 2;
  }
  return sxx > 0 ? sxy / sxx : null;
}

function trendOf(view: AccumulatorView, n: number | null): Trend {
  const recent = view.recent;
  const last = view.carry.step;
  const indicatorNow = view.totals.bSteps > 0 && n ? view.totals.bSum / Math.sqrt(n) : null;
  let indicatorPerStep: number | null = null;
  let windowFrom: number | null = null;
  if (indicatorNow !== null && last !== null && last > 0) {
    windowFrom = Math.max(0, Math.floor(last * 0.9));
    const then = totalsAt(view.snapshots, windowFrom).bSum / Math.sqrt(n as number);
    indicatorPerStep = last > windowFrom ? (indicatorNow - then) / (last - windowFrom) : null;
  }
  const observedGapPerStep = recent.length >= 3 ? slope(recent, (p) => p.gap) : null;
  const valLossPerStep = recent.length >= 2 ? slope(recent, (p) => p.valLoss) : null;
  if (observedGapPerStep !== null) {
    const span = recent[recent.length - 1].step - recent[0].step;
    const rel = (observedGapPerStep * span) / Math.max(Math.abs(recent[recent.length - 1].gap), 0.01);
    const direction = rel > 0.02 ? 'widening' : rel < -0.02 ? 'narrowing' : 'flat';
    return {
      basis: 'observedGap',
      direction,
      observedGapPerStep,
      valLossPerStep,
      indicatorPerStep,
      fromStep: recent[0].step,
    };
  }
  if (indicatorPerStep !== null && indicatorNow !== null && last !== null && windowFrom !== null) {
    const rel = indicatorNow > 0 ? (indicatorPerStep * (last - windowFrom)) / indicatorNow : 0;
    return {
      basis: 'indicator',
      direction: rel > 0.02 ? 'widening' : 'flat',
      observedGapPerStep,
      valLossPerStep,
      indicatorPerStep,
      fromStep: windowFrom,
    };
  }
  return { basis: null, direction: 'unknown', observedGapPerStep, valLossPerStep, indicatorPerStep, fromStep: null };
}

const fraction = (part: number, whole: number): number => (whole > 0 ? part / whole : 0);

/** The run's current estimate from its maintained state; reads fold only the reorder buffer. */
export function currentEstimate(acc: EstimateAccumulator, options: EstimateOptions): Estimate {
  const th = { ...DEFAULT_THRESHOLDS, ...options.thresholds };
  const n = options.trainSize && options.trainSize > 0 ? options.trainSize : null;
  const view = acc.view('every');
  const t = view.totals;
  const c = view.counters;
  const d = derive(t, n);

  const calTotals =
    options.calibrateUntilStep === undefined ? t : totalsAtOrBefore(view.snapshots, options.calibrateUntilStep);
  const fit = t.bSteps > 0 ? calibrate(calTotals, t.bSum, th.minCalibrationPoints) : null;
  const calibration: Calibration | null = fit
    ? {
        method: 'least-squares-through-origin',
        scale: n ? fit.a * Math.sqrt(n) : null,
        points: fit.k,
        residualStd: fit.s,
        untilStep:
          options.calibrateUntilStep === undefined
            ? (view.carry.step ?? 0)
            : Math.min(options.calibrateUntilStep, view.carry.step ?? 0),
      }
    : null;

  const phases: Record<string, PhaseContribution> = {};
  for (const p of options.phases ?? []) {
    const part = diff(totalsAt(view.snapshots, p.toStep), totalsAt(view.snapshots, p.fromStep));
    const pd = derive(part, n);
    phases[p.name] = {
      fromStep: p.fromStep,
      toStep: p.toStep,
      ...pd,
      indicatorShare: pd.indicator !== null && d.indicator ? pd.indicator / d.indicator : null,
      gap: fit && part.bSteps > 0 ? fit.a * part.bSum : null,
    };
  }

  const missing: MissingInput[] = [];
  if (!n) missing.push('trainSize');
  if (view.seen.gradVariance === 0) missing.push('gradVariance');
  if (t.soSteps === 0) missing.push('updateNorm');
  if (view.seen.lr === 0) missing.push('lr');
  if (c.evaluationPoints === 0) missing.push('valLoss');

  const last = recentLast(view.recent);
  const estimate: Estimate = {
    step: view.maxStep,
    trainSize: n,
    ...d,
    measuredGapUncorrected: view.seen.gapIncrement > 0 ? t.gUncorrected : null,
    secondOrderRatio: d.secondOrder !== null && d.indicator ? d.secondOrder / d.indicator : null,
    observedGap: last ? { step: last.step, gap: last.gap, valLoss: last.valLoss } : null,
    calibrated: fit !== null,
    gap: fit ? fit.interval : null,
    calibration,
    phases,
    trend: trendOf(view, n),
    coverage: {
      steps: t.steps,
      indicator: fraction(t.bSteps, t.steps),
      expectedIncrement: fraction(t.eSteps, t.steps),
      secondOrder: fraction(t.soSteps, t.steps),
      measuredGap: fraction(t.gSteps, t.steps),
    },
    sources: {
      updateNorm: { client: c.normClient, lrTimesGradNorm: c.normLrGrad, checkpoints: c.normCheckpoint },
      measuredGap: { fresh: c.gapFresh, selfFitCorrected: c.gapCorrected, uncorrected: c.gapUncorrectable },
      observedGap: { trainEvalLoss: c.evalFromTrainEval, batchTrainLoss: c.evalFromBatch },
    },
    counts: { points: view.points, steps: t.steps, evaluationPoints: c.evaluationPoints, latePoints: view.latePoints },
    warnings: [],
    missing,
  };
  estimate.warnings = warningsFor(estimate, view, th);
  return estimate;
}

function recentLast(recent: readonly EvalPoint[]): EvalPoint | undefined {
  return recent[recent.length - 1];
}

/** Totals at the last snapshot at or before `step` (the calibration sums as they stood then). */
function totalsAtOrBefore(snapshots: readonly Snapshot[], step: number): Totals {
  const lo = countAtOrBefore(snapshots, step);
  return unpackTotals(snapshots[lo - 1]?.totals ?? []);
}

const MISSING_EFFECT: Record<MissingInput, string> = {
  trainSize:
    'the run has no trainSize, so the indicator and the expected increment (both scale with 1/n) cannot be computed',
  gradVariance:
    'no point logs gradVariance (tr Σ), so neither the indicator nor the expected increment can be computed',
  updateNorm:
    'no point logs updateNorm or lr with gradNorm and no checkpoint update norms are known, so ||Δw_t|| is unknown',
  lr: 'no point logs lr, so the expected increment cannot be computed',
  valLoss: 'no evaluation points (valLoss), so the estimate is not calibrated to observed gaps',
};

function warningsFor(e: Estimate, view: AccumulatorView, th: Thresholds): EstimateWarning[] {
  const out: EstimateWarning[] = [];
  const c = view.counters;
  if (e.missing.length > 0) {
    out.push({ code: 'missing_inputs', message: e.missing.map((m) => MISSING_EFFECT[m]).join('; ') });
  }
  if (e.coverage.indicator > 0 && e.coverage.indicator < th.minCoverage) {
    out.push({
      code: 'partial_coverage',
      message: `the indicator covers ${(100 * e.coverage.indicator).toFixed(1)}% of the steps (the others lack gradVariance or an update norm); it understates the full sum`,
    });
  }
  if (e.secondOrderRatio !== null && e.secondOrderRatio > th.secondOrderRatio) {
    out.push({
      code: 'large_second_order',
      message: `Σ||Δw_t||² is ${e.secondOrderRatio.toFixed(1)}× the first-order sum (threshold ${th.secondOrderRatio}); at this learning rate the first-order view can fail and the indicator overstate the gap`,
    });
  }
  const lrIssues: string[] = [];
  if (c.maxLr !== null && c.maxLr >= th.maxLr) lrIssues.push(`a learning rate of ${c.maxLr} (≥ ${th.maxLr})`);
  if (c.minLr !== null && c.minLr < th.minLr) lrIssues.push(`a learning rate of ${c.minLr} (< ${th.minLr})`);
  if (c.nonPositiveLr > 0) lrIssues.push(`${c.nonPositiveLr} steps with lr ≤ 0`);
  if (lrIssues.length > 0)
    out.push({ code: 'extreme_learning_rate', message: `the run logs ${lrIssues.join(' and ')}` });
  const batchIssues: string[] = [];
  if (c.minBatchSize !== null && c.minBatchSize < th.minBatchSize) {
    batchIssues.push(`batch size ${c.minBatchSize} (< ${th.minBatchSize}: tr Σ from so few samples is noisy)`);
  }
  if (c.maxBatchSize !== null && e.trainSize && c.maxBatchSize > th.maxBatchFraction * e.trainSize) {
    batchIssues.push(`batch size ${c.maxBatchSize} of n = ${e.trainSize} (near full-batch)`);
  }
  if (batchIssues.length > 0)
    out.push({ code: 'extreme_batch_size', message: `the run logs ${batchIssues.join(' and ')}` });
  const nonFinite = Object.entries(view.nonFinite).filter(([, k]) => k > 0);
  if (nonFinite.length > 0 || view.checkpointNonFinite > 0) {
    const parts = nonFinite.map(([f, k]) => `${k} ${f}`);
    if (view.checkpointNonFinite > 0) parts.push(`${view.checkpointNonFinite} weights in checkpoints`);
    out.push({ code: 'non_finite', message: `NaN/Inf values ignored: ${parts.join(', ')}` });
  }
  const invalid = Object.entries(view.invalid).filter(([, k]) => k > 0);
  if (invalid.length > 0) {
    out.push({
      code: 'invalid_values',
      message: `out-of-range values ignored: ${invalid.map(([f, k]) => `${k} ${f}`).join(', ')}`,
    });
  }
  if (view.latePoints > 0) {
    out.push({
      code: 'late_points',
      message: `${view.latePoints} points arrived after later steps were folded and were left out`,
    });
  }
  if (c.evaluationPoints > 0 && !e.calibrated) {
    out.push({
      code: 'few_evaluation_points',
      message: `${c.evaluationPoints} evaluation points with a computable indicator; ${th.minCalibrationPoints} are needed to calibrate`,
    });
  }
  if (c.evalFromBatch > 0) {
    out.push({
      code: 'observed_gap_from_batch_loss',
      message: `${c.evalFromBatch} evaluation points have no extra.trainEvalLoss; their gap uses the batch training loss, which is noisy and measured before the step`,
    });
  }
  if (c.gapUncorrectable > 0) {
    out.push({
      code: 'measured_gap_uncorrected',
      message: `${c.gapUncorrectable} gapIncrement values lack lr, gradVariance or batchSize, so their self-fit term η·tr Σ·(1/m − 1/n) is not removed; measuredGap overstates the gap`,
    });
  }
  if (c.normCheckpoint > 0) {
    out.push({
      code: 'indicator_from_checkpoint_norms',
      message: `${c.normCheckpoint} steps take ||Δw_t|| from checkpoint differences (net displacement per step), which understates the per-step path length under SGD noise; compare the indicator only within this run`,
    });
  }
  return out;
}

export interface HistoryOptions {
  trainSize: number | null;
  thresholds?: Partial<Thresholds>;
  /** With points as the source: the gateway's checkpoint update norms. */
  checkpointUpdates?: readonly CheckpointUpdate[];
}

/**
 * The estimate over steps, for plots: one entry per snapshot (every evaluation point and a thinning grid
 * of steps, DESIGN §7, and the latest step), each as it stood at that step. From a maintained state it costs O(snapshots +
 * reorder buffer); from raw points it folds them first.
 */
export function estimateHistory(
  source: EstimateAccumulator | readonly MetricPoint[],
  options: HistoryOptions,
): HistoryEntry[] {
  const th = { ...DEFAULT_THRESHOLDS, ...options.thresholds };
  const n = options.trainSize && options.trainSize > 0 ? options.trainSize : null;
  const acc =
    source instanceof EstimateAccumulator
      ? source
      : EstimateAccumulator.create()
          .addCheckpoints(options.checkpointUpdates ?? [])
          .add(source);
  const view = acc.view('rule');
  const snapshots = view.snapshots.slice();
  const lastStep = view.carry.step;
  if (lastStep !== null && snapshots[snapshots.length - 1]?.step !== lastStep) {
    snapshots.push({ step: lastStep, totals: packTotals(view.totals), observedGap: null });
  }
  return snapshots.map((snap) => {
    const t = unpackTotals(snap.totals);
    const fit = t.bSteps > 0 ? calibrate(t, t.bSum, th.minCalibrationPoints) : null;
    return { step: snap.step, ...derive(t, n), observedGap: snap.observedGap, gap: fit ? fit.interval : null };
  });
}
