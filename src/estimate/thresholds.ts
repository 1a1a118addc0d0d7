/** When the estimate warns or declines to calibrate. */
export interface Thresholds {
  /** secondOrder ÷ indicator above which the first-order view is flagged (Estimate.secondOrderRatio). */
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

export function resolveThresholds(overrides: Partial<Thresholds> | undefined): Thresholds {
  return { ...DEFAULT_THRESHOLDS, ...overrides };
}
