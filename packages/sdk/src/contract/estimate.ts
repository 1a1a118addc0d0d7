/**
 * The generalization estimate as the API serves it (GET /v1/runs/{run}/estimate and /estimate/history): a
 * trajectory-based indicator after Fu et al. 2023 ("Learning Trajectories are Generalization Indicators"),
 * not the paper's theorem verbatim. All quantities are loss gaps (held-out loss − training loss) or sums
 * whose scale is fitted to such gaps. The gateway builds exactly these types (src/estimate/).
 */

export interface GapInterval {
  estimate: number;
  low: number;
  high: number;
}

/** The indicators an estimate computes; `served` names the one it calibrates. */
export type IndicatorName = 'indicator' | 'expectedIncrement' | 'effectiveIncrement' | 'noiseCorrectedIndicator';

export interface Calibration {
  /**
   * Fitted on the run's own evaluation points: 'least-squares-through-origin' (3–4 points) or
   * 'least-squares-affine' (5 or more: gap = scale·indicator + offset). 'sibling-pool': the run has fewer
   * than 3 paired evaluation points and takes the pooled scale of its calibration group's runs.
   */
  method: 'least-squares-through-origin' | 'least-squares-affine' | 'sibling-pool';
  source: 'own' | 'siblings';
  /** The indicator the scale applies to (the served one). */
  indicator: IndicatorName;
  /**
   * Gap per unit of the served indicator (own: null without trainSize, which the calibrated gap does not
   * need; siblings: exp of the mean log scale).
   */
  scale: number | null;
  /** The fitted gap at indicator 0 (affine fits; 0 otherwise), in loss units. */
  offset: number;
  /** The run's own evaluation points paired with the indicator (used by an own fit). */
  points: number;
  /** Own: residual standard deviation of the fit, in loss units. Siblings: std of log(scale) across them. */
  residualStd: number;
  /** Last step whose evaluation points the fit used. */
  untilStep: number;
  /** The run's calibration group (calibrationGroup, else its `family` tag), or null. */
  group: string | null;
  /** Siblings: how many runs of the group the pooled scale comes from; own: null. */
  siblingRuns: number | null;
}

export interface PhaseContribution {
  fromStep: number;
  toStep: number;
  indicator: number | null;
  expectedIncrement: number | null;
  effectiveIncrement: number | null;
  noiseCorrectedIndicator: number | null;
  measuredGap: number | null;
  secondOrder: number | null;
  /** This phase's share of the run's indicator. */
  indicatorShare: number | null;
  /** Calibrated gap added in the phase (scale × served indicator; own calibration only). */
  gap: number | null;
}

export interface Trend {
  /** 'observedGap' when there are enough evaluation points, else 'indicator', else null. */
  basis: 'observedGap' | 'indicator' | null;
  direction: 'widening' | 'flat' | 'narrowing' | 'unknown';
  /** Least-squares slope over the recent evaluation points, per step. */
  observedGapPerStep: number | null;
  valLossPerStep: number | null;
  /** Indicator growth per step over the trailing tenth of the run. */
  indicatorPerStep: number | null;
  /** First step of the window the slopes use. */
  fromStep: number | null;
}

export interface ObservedGap {
  step: number;
  /** valLoss − training loss at the latest evaluation point (by step). */
  gap: number;
  /** Null only for evaluation points kept from a version-1 state, which stored the gap alone. */
  valLoss: number | null;
}

export interface EstimateWarning {
  code:
    | 'missing_inputs'
    | 'partial_coverage'
    | 'large_second_order'
    | 'extreme_learning_rate'
    | 'extreme_batch_size'
    | 'non_finite'
    | 'invalid_values'
    | 'late_points'
    | 'few_evaluation_points'
    | 'evaluation_without_train_loss'
    | 'calibrated_from_siblings'
    | 'observed_gap_from_batch_loss'
    | 'measured_gap_uncorrected'
    | 'indicator_from_checkpoint_norms';
  message: string;
}

/** The inputs a missing estimate needs (names of MetricPoint fields, or `trainSize` of the run). */
export type MissingInput = 'trainSize' | 'gradVariance' | 'updateNorm' | 'lr' | 'valLoss';

export interface Estimate {
  /** Highest step seen. */
  step: number | null;
  trainSize: number | null;
  /** B_T = Σ_t ||Δw_t||·sqrt(tr Σ_t / n); null when an input is missing (see `missing`). */
  indicator: number | null;
  /** E_T = Σ_t η_t·tr Σ_t / n. */
  expectedIncrement: number | null;
  /** Σ_t (||Δw_t|| / ||ḡ_t||)·tr Σ_t / n: E_T at each step's effective learning rate (any optimizer). */
  effectiveIncrement: number | null;
  /** B_T with the minibatch-noise share of ||Δw_t|| removed: Σ ||Δw_t||·sqrt(1 − tr Σ_t/(m||ḡ_t||²))·sqrt(tr Σ_t/n). */
  noiseCorrectedIndicator: number | null;
  /** The indicator the estimate calibrates and pools across sibling runs, by name, and its value. */
  served: { name: IndicatorName; value: number | null };
  /** Σ_t gapIncrement_t, span-weighted, self-fit corrected (see measuredGapParts); null when not logged. */
  measuredGap: number | null;
  /** Σ_t gapIncrement_t exactly as the client logged it, span-weighted. */
  measuredGapUncorrected: number | null;
  /** Σ_t ||Δw_t||². */
  secondOrder: number | null;
  /** secondOrder ÷ indicator: the bound's second-order remainder relative to the first-order sum at unit curvature. */
  secondOrderRatio: number | null;
  observedGap: ObservedGap | null;
  calibrated: boolean;
  gap: GapInterval | null;
  calibration: Calibration | null;
  phases: Record<string, PhaseContribution>;
  trend: Trend;
  /** Fraction of the run's steps each sum covers. */
  coverage: {
    steps: number;
    indicator: number;
    expectedIncrement: number;
    effectiveIncrement: number;
    secondOrder: number;
    measuredGap: number;
  };
  sources: {
    updateNorm: { client: number; lrTimesGradNorm: number; checkpoints: number };
    measuredGap: { fresh: number; selfFitCorrected: number; uncorrected: number };
    observedGap: { trainEvalLoss: number; batchTrainLoss: number };
  };
  counts: { points: number; steps: number; evaluationPoints: number; latePoints: number };
  warnings: EstimateWarning[];
  missing: MissingInput[];
}

export interface HistoryEntry {
  step: number;
  indicator: number | null;
  expectedIncrement: number | null;
  effectiveIncrement: number | null;
  noiseCorrectedIndicator: number | null;
  /** The served indicator's value at this step. */
  served: number | null;
  measuredGap: number | null;
  secondOrder: number | null;
  /** Set at evaluation points. */
  observedGap: number | null;
  /** The calibrated estimate as it stood at this step (evaluation points up to it). */
  gap: GapInterval | null;
}
