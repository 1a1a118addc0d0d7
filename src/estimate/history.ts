import type { MetricPoint } from '../model/records.js';
import { EstimateAccumulator } from './accumulator.js';
import { calibrate } from './calibration.js';
import { derive, trainSizeOf } from './derive.js';
import { packTotals, unpackTotals } from './state.js';
import { resolveThresholds } from './thresholds.js';
import type { HistoryEntry, HistoryOptions } from './types.js';

/**
 * The estimate over steps, for plots: one entry per snapshot (every evaluation point and a thinning grid
 * of steps, docs/architecture.md §7, and the latest step), each as it stood at that step. From a maintained state it
 * costs O(snapshots + reorder buffer); from raw points it folds them first.
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
    snapshots.push({ step: lastStep, totals: packTotals(view.totals), observedGap: null });
  }
  return snapshots.map((snap) => {
    const t = unpackTotals(snap.totals);
    const fit = t.bSteps > 0 ? calibrate(t, t.bSum, th.minCalibrationPoints) : null;
    return { step: snap.step, ...derive(t, n), observedGap: snap.observedGap, gap: fit ? fit.interval : null };
  });
}
