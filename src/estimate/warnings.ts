import type { AccumulatorView } from './accumulator.js';
import type { Thresholds } from './thresholds.js';
import type { Estimate, EstimateWarning, MissingInput } from './types.js';

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

/** The warnings for an assembled estimate (its `warnings` not yet set), from the view it came from. */
/** Evaluation counts: with an observed gap, paired with a known indicator, without any training loss. */
export interface EvalCounts {
  evaluations: number;
  paired: number;
  withoutTrainLoss: number;
}

export function warningsFor(e: Estimate, view: AccumulatorView, th: Thresholds, ev: EvalCounts): EstimateWarning[] {
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
      message: `${view.latePoints} points carried training fields for steps already folded (older than the reorder window); those fields were left out (evaluation fields are accepted whenever they arrive)`,
    });
  }
  if (ev.evaluations > 0 && e.calibration?.source !== 'own') {
    out.push({
      code: 'few_evaluation_points',
      message: `${ev.paired} evaluation points with a computable indicator; ${th.minCalibrationPoints} are needed to calibrate on the run's own evaluations`,
    });
  }
  if (ev.withoutTrainLoss > 0) {
    out.push({
      code: 'evaluation_without_train_loss',
      message: `${ev.withoutTrainLoss} evaluation points have neither extra.trainEvalLoss nor a trainLoss at their step, so they have no observed gap`,
    });
  }
  if (e.sources.observedGap.batchTrainLoss > 0) {
    out.push({
      code: 'observed_gap_from_batch_loss',
      message: `${e.sources.observedGap.batchTrainLoss} evaluation points have no extra.trainEvalLoss; their gap uses the batch training loss, which is noisy and measured before the step`,
    });
  }
  if (e.calibration?.source === 'siblings') {
    out.push({
      code: 'calibrated_from_siblings',
      message: `calibrated from ${e.calibration.siblingRuns} sibling runs of group ${JSON.stringify(e.calibration.group)}; the run's own evaluation points take over once ${th.minCalibrationPoints} are paired`,
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

/** The inputs the estimate lacks, in the order MissingInput lists them. */
export function missingInputs(view: AccumulatorView, n: number | null, evaluations: number): MissingInput[] {
  const missing: MissingInput[] = [];
  if (!n) missing.push('trainSize');
  if (view.seen.gradVariance === 0) missing.push('gradVariance');
  if (view.totals.soSteps === 0) missing.push('updateNorm');
  if (view.seen.lr === 0) missing.push('lr');
  if (evaluations === 0) missing.push('valLoss');
  return missing;
}
