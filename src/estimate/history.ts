import type { MetricPoint } from '../model/records.js';
import { EstimateAccumulator } from './accumulator.js';
import { addPair, calibrate, emptySums, observedPoint, pairsOf } from './calibration.js';
import { derive, trainSizeOf } from './derive.js';
import { servedSum, servedValue } from './served.js';
import { totalsAt } from './snapshots.js';
import { packTotals, type EvalPoint } from './state.js';
import { resolveThresholds } from './thresholds.js';
import type { HistoryEntry, HistoryOptions } from './types.js';

/**
 * The estimate over steps, for plots: one entry per snapshot (a thinning grid of steps, docs/architecture.md
 * §7), per evaluation point and at the latest step, each as it stood at that step: the sums there and the
 * calibration on the evaluation points up to it (each paired with the sums at its own step, so the history
 * is the same whenever the evaluations arrived). From a maintained state it costs O((snapshots +
 * evaluations) · log snapshots + reorder buffer); from raw points it folds them first.
 */
export function estimateHistory(
  source: EstimateAccumulator | readonly MetricPoint[],
  options: HistoryOptions,
): HistoryEntry[] {
  const th = resolveThresholds(options.thresholds);
  const n = trainSizeOf(options.trainSize);
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
    snapshots.push({ step: lastStep, totals: packTotals(view.totals) });
  }
  const points = view.evals.map(observedPoint).filter((p): p is EvalPoint => p !== null);
  const pairs = pairsOf(points, snapshots, servedSum);
  const gapAt = new Map(points.map((p) => [p.step, p.gap]));
  const steps = [...new Set([...snapshots.map((s) => s.step), ...points.map((p) => p.step)])].sort((a, b) => a - b);
  const sums = emptySums();
  let next = 0;
  return steps.map((step) => {
    while (next < pairs.length && pairs[next].step <= step) {
      addPair(sums, pairs[next], pairs[next - 1]);
      next++;
    }
    const t = totalsAt(snapshots, step);
    const x = servedSum(t);
    const fit = x !== null ? calibrate(sums, x, th.minCalibrationPoints) : null;
    return {
      step,
      ...derive(t, n),
      served: servedValue(t, n),
      observedGap: gapAt.get(step) ?? null,
      gap: fit ? fit.interval : null,
    };
  });
}
