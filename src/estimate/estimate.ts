import type { AccumulatorView, EstimateAccumulator } from './accumulator.js';
import { calibrate, type CalibrationFit } from './calibration.js';
import { derive, trainSizeOf, type Derived } from './derive.js';
import { diff, totalsAt, totalsAtOrBefore } from './snapshots.js';
import type { EvalPoint } from './state.js';
import { resolveThresholds } from './thresholds.js';
import { trendOf } from './trend.js';
import type { Calibration, Estimate, EstimateOptions, PhaseContribution, PhaseSpan } from './types.js';
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
    phases: phaseContributions(view, options.phases ?? [], n, d, fit),
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
    missing: missingInputs(view, n),
  };
  estimate.warnings = warningsFor(estimate, view, th);
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
      gap: fit && part.bSteps > 0 ? fit.a * part.bSum : null,
    };
  }
  return phases;
}

function recentLast(recent: readonly EvalPoint[]): EvalPoint | undefined {
  return recent[recent.length - 1];
}
