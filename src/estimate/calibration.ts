import type { Totals } from './state.js';
import type { GapInterval } from './types.js';

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

/** The tabulated quantile at the largest tabulated df not above `df` (conservative between entries). */
export function t95(df: number): number {
  if (df > 120) return 1.96;
  let q = T95[0][1];
  for (const [d, v] of T95) if (df >= d) q = v;
  return q;
}

/** A fitted calibration: the interval at the current x, the slope a, the residual std s, k points. */
export interface CalibrationFit {
  interval: GapInterval;
  a: number;
  s: number;
  k: number;
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
export function calibrate(cal: Totals, x0: number, minPoints: number): CalibrationFit | null {
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
