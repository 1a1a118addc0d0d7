import type { AccumulatorView } from './accumulator.js';
import { totalsAt } from './snapshots.js';
import type { EvalPoint } from './state.js';
import type { Trend } from './types.js';

function slope(points: readonly EvalPoint[], y: (p: EvalPoint) => number | null): number | null {
  points = points.filter((p) => y(p) !== null);
  if (points.length < 2) return null;
  const mx = points.reduce((acc, p) => acc + p.step, 0) / points.length;
  const my = points.reduce((acc, p) => acc + (y(p) ?? 0), 0) / points.length;
  let sxy = 0;
  let sxx = 0;
  for (const p of points) {
    sxy += (p.step - mx) * ((y(p) ?? 0) - my);
    sxx += (p.step - mx) ** 2;
  }
  return sxx > 0 ? sxy / sxx : null;
}

/**
 * Where the gap is heading: the slope of the observed gap over the recent evaluation points when there
 * are three or more (direction from its change over the window relative to the latest gap, ±2%), else the
 * indicator's growth over the trailing tenth of the run.
 */
export function trendOf(view: AccumulatorView, recent: readonly EvalPoint[], n: number | null): Trend {
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
