import type { Totals } from './state.js';

/** The reported sums at some step, from the running totals there (each null when an input is missing). */
export interface Derived {
  indicator: number | null;
  expectedIncrement: number | null;
  effectiveIncrement: number | null;
  noiseCorrectedIndicator: number | null;
  measuredGap: number | null;
  secondOrder: number | null;
}

/** n as the estimate uses it: the run's trainSize when positive, else null (unknown). */
export function trainSizeOf(trainSize: number | null): number | null {
  return trainSize && trainSize > 0 ? trainSize : null;
}

/**
 * The measured decomposition from its running parts: fresh or uncorrectable increments as logged, plus the
 * client's batch-gradient increments minus their self-fit term η·tr Σ·(1/m − 1/n). Null when no
 * increment was logged, or when the correction needs n and it is unknown.
 */
export function measuredGapParts(t: Totals, n: number | null): number | null {
  if (t.gSteps === 0) return null;
  if (t.gSelfFitOne !== 0 && n === null) return null;
  return t.gDirect + t.gRaw - t.gSelfFitM + (n ? t.gSelfFitOne / n : 0);
}

/** B_T = bSum/√n, E_T = eSum/n (the totals are kept free of n), the measured gap and Σ||Δw||². */
export function derive(t: Totals, n: number | null): Derived {
  return {
    indicator: t.bSteps > 0 && n ? t.bSum / Math.sqrt(n) : null,
    expectedIncrement: t.eSteps > 0 && n ? t.eSum / n : null,
    effectiveIncrement: t.fSteps > 0 && n ? t.fSum / n : null,
    noiseCorrectedIndicator: t.cSteps > 0 && n ? t.cSum / Math.sqrt(n) : null,
    measuredGap: measuredGapParts(t, n),
    secondOrder: t.soSteps > 0 ? t.soSum : null,
  };
}
