import type { Totals } from './state.js';

/**
 * The indicators the estimate computes, and the one it serves (calibrates, pools across sibling runs and
 * reports as `served`). Each is an n-free running sum S divided by n^p; calibration fits the gap on S, so
 * a run's own calibration does not need n, while pooling across runs uses the n-normalised value.
 */
export type IndicatorName = 'indicator' | 'expectedIncrement' | 'effectiveIncrement' | 'noiseCorrectedIndicator';

interface IndicatorDef {
  /** The n-free sum, or null when its inputs cover no step. */
  sum(t: Totals): number | null;
  /** p in value = sum / n^p. */
  exponent: number;
}

export const INDICATORS: Record<IndicatorName, IndicatorDef> = {
  /** B_T = Σ ||Δw_t||·sqrt(tr Σ_t / n): the paper's two-factor shape. */
  indicator: { sum: (t) => (t.bSteps > 0 ? t.bSum : null), exponent: 0.5 },
  /** E_T = Σ η_t·tr Σ_t / n: the expected first-order increment of a plain SGD step. */
  expectedIncrement: { sum: (t) => (t.eSteps > 0 ? t.eSum : null), exponent: 1 },
  /** Σ (||Δw_t||/||ḡ_t||)·tr Σ_t / n: E_T at the step's effective learning rate (any optimizer). */
  effectiveIncrement: { sum: (t) => (t.fSteps > 0 ? t.fSum : null), exponent: 1 },
  /** B_T with the minibatch-noise share of ||Δw_t|| removed. */
  noiseCorrectedIndicator: { sum: (t) => (t.cSteps > 0 ? t.cSum : null), exponent: 0.5 },
};

/** The served indicator, chosen by Kendall τ with the true final gap on two run families (§7). */
export const SERVED: IndicatorName = 'effectiveIncrement';

export const servedSum = (t: Totals): number | null => INDICATORS[SERVED].sum(t);

/** The served indicator's value (null without n or without inputs). */
export function servedValue(t: Totals, n: number | null): number | null {
  const sum = servedSum(t);
  return sum !== null && n ? sum / n ** INDICATORS[SERVED].exponent : null;
}

/** Converts a fit on the n-free sum (gap = a·S) to a scale on the value (gap = scale·S/n^p). */
export const scaleOf = (a: number, n: number): number => a * n ** INDICATORS[SERVED].exponent;
