import type { AccumulatorView, EstimateAccumulator } from './accumulator.js';
import { calibrate, observedPoint, pairsOf, sumsOf, t95, type CalibrationFit } from './calibration.js';
import { derive, trainSizeOf, type Derived } from './derive.js';
import { SERVED, scaleOf, servedSum, servedValue } from './served.js';
import { diff, totalsAt } from './snapshots.js';
import type { EvalPoint } from './state.js';
import { resolveThresholds } from './thresholds.js';
import { trendOf } from './trend.js';
import type {
  Calibration,
  Estimate,
  EstimateOptions,
  GapInterval,
  PhaseContribution,
  PhaseSpan,
  SiblingPool,
} from './types.js';
import { missingInputs, warningsFor } from './warnings.js';

const fraction = (part: number, whole: number): number => (whole > 0 ? part / whole : 0);

/** The run's current estimate from its maintained state; reads fold only the reorder buffer. */
export function currentEstimate(acc: EstimateAccumulator, options: EstimateOptions): Estimate {
  const th = resolveThresholds(options.thresholds);
  const n = trainSizeOf(options.trainSize);
  const view = acc.view('every');
  const t = view.totals;
  const c = view.counters;
  const d = derive(t, n);

  const points = view.evals.map(observedPoint).filter((p): p is EvalPoint => p !== null);
  const pairs = pairsOf(points, view.snapshots, servedSum);
  const lastStep = view.carry.step ?? 0;
  const until = options.calibrateUntilStep === undefined ? lastStep : Math.min(options.calibrateUntilStep, lastStep);
  const xNow = servedSum(t);
  const fit = xNow !== null ? calibrate(sumsOf(pairs, until), xNow, th.minCalibrationPoints) : null;
  const ownPoints = pairs.filter((p) => p.step <= until).length;
  const value = servedValue(t, n);
  const pooled = fit === null && value !== null ? siblingGap(options.siblings ?? null, value) : null;
  let calibration: Calibration | null = null;
  if (fit) {
    calibration = {
      method: fit.method,
      source: 'own',
      indicator: SERVED,
      scale: n ? scaleOf(fit.a, n) : null,
      offset: fit.c,
      points: fit.k,
      residualStd: fit.s,
      untilStep: until,
      group: options.group ?? null,
      siblingRuns: null,
    };
  } else if (pooled && options.siblings) {
    calibration = {
      method: 'sibling-pool',
      source: 'siblings',
      indicator: SERVED,
      scale: Math.exp(options.siblings.logScaleMean),
      offset: 0,
      points: ownPoints,
      residualStd: options.siblings.logScaleStd,
      untilStep: until,
      group: options.group ?? null,
      siblingRuns: options.siblings.runs,
    };
  }
  const gap = fit ? fit.interval : pooled;

  const last = points[points.length - 1];
  const estimate: Estimate = {
    step: view.maxStep,
    trainSize: n,
    ...d,
    served: { name: SERVED, value },
    measuredGapUncorrected: view.seen.gapIncrement > 0 ? t.gUncorrected : null,
    secondOrderRatio: d.secondOrder !== null && d.indicator ? d.secondOrder / d.indicator : null,
    observedGap: last ? { step: last.step, gap: last.gap, valLoss: last.valLoss } : null,
    calibrated: gap !== null,
    gap,
    calibration,
    phases: phaseContributions(view, options.phases ?? [], n, d, fit),
    trend: trendOf(view, points.slice(-Math.max(2, view.recentEvals)), n),
    coverage: {
      steps: t.steps,
      indicator: fraction(t.bSteps, t.steps),
      expectedIncrement: fraction(t.eSteps, t.steps),
      effectiveIncrement: fraction(t.fSteps, t.steps),
      secondOrder: fraction(t.soSteps, t.steps),
      measuredGap: fraction(t.gSteps, t.steps),
    },
    sources: {
      updateNorm: { client: c.normClient, lrTimesGradNorm: c.normLrGrad, checkpoints: c.normCheckpoint },
      measuredGap: { fresh: c.gapFresh, selfFitCorrected: c.gapCorrected, uncorrected: c.gapUncorrectable },
      observedGap: {
        trainEvalLoss: points.filter((p) => !p.fromBatch).length,
        batchTrainLoss: points.filter((p) => p.fromBatch).length,
      },
    },
    counts: { points: view.points, steps: t.steps, evaluationPoints: points.length, latePoints: view.latePoints },
    warnings: [],
    missing: missingInputs(view, n, points.length),
  };
  estimate.warnings = warningsFor(estimate, view, th, {
    evaluations: points.length,
    paired: ownPoints,
    withoutTrainLoss: view.evals.length - points.length,
  });
  return estimate;
}

/** Each phase's sums: the totals at its end minus those at its start, interpolated between snapshots. */
function phaseContributions(
  view: AccumulatorView,
  spans: readonly PhaseSpan[],
  n: number | null,
  run: Derived,
  fit: CalibrationFit | null,
): Record<string, PhaseContribution> {
  const phases: Record<string, PhaseContribution> = {};
  for (const p of spans) {
    const part = diff(totalsAt(view.snapshots, p.toStep), totalsAt(view.snapshots, p.fromStep));
    const pd = derive(part, n);
    phases[p.name] = {
      fromStep: p.fromStep,
      toStep: p.toStep,
      ...pd,
      indicatorShare: pd.indicator !== null && run.indicator ? pd.indicator / run.indicator : null,
      gap: fit ? gapOfPart(fit, part) : null,
    };
  }
  return phases;
}

function gapOfPart(fit: CalibrationFit, part: Parameters<typeof servedSum>[0]): number | null {
  const x = servedSum(part);
  return x === null ? null : fit.a * x;
}

/** Sibling runs' positive scales pooled in log space (mean, sample sd); null with fewer than two. */
export function poolScales(scales: readonly number[]): SiblingPool | null {
  const logs = scales.filter((s) => s > 0 && Number.isFinite(s)).map(Math.log);
  if (logs.length < 2) return null;
  const mean = logs.reduce((a, b) => a + b, 0) / logs.length;
  const sd = Math.sqrt(logs.reduce((a, b) => a + (b - mean) ** 2, 0) / (logs.length - 1));
  return { runs: logs.length, logScaleMean: mean, logScaleStd: sd };
}

/**
 * The gap from sibling runs' calibrations: the served value times their pooled scale, pooled as the mean
 * and spread of log scales (scales are positive and vary by factors, not offsets); the interval is the
 * 95% prediction interval for one more run's scale, exp(mean ± t·sd·sqrt(1 + 1/N)) × value.
 */
export function siblingGap(pool: SiblingPool | null, value: number): GapInterval | null {
  if (!pool || pool.runs < 2 || !(value > 0)) return null;
  const half = t95(pool.runs - 1) * pool.logScaleStd * Math.sqrt(1 + 1 / pool.runs);
  return {
    estimate: value * Math.exp(pool.logScaleMean),
    low: value * Math.exp(pool.logScaleMean - half),
    high: value * Math.exp(pool.logScaleMean + half),
  };
}
