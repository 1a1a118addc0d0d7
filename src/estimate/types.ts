import type { CheckpointUpdate } from './accumulator.js';
import type { Thresholds } from './thresholds.js';

/**
 * The generalization estimate of a run: a trajectory-based indicator after Fu et al. 2023 ("Learning
 * Trajectories are Generalization Indicators"), not the paper's theorem verbatim. All quantities are
 * loss gaps (held-out loss − training loss) or sums whose scale is fitted to such gaps.
 */

/** A training phase: the steps (fromStep, toStep]. */
export interface PhaseSpan {
  name: string;
  fromStep: number;
  toStep: number;
}

export interface EstimateOptions {
  /** n, the run's number of training examples; null when the run has not declared it. */
  trainSize: number | null;
  phases?: readonly PhaseSpan[];
  /** Calibrate only on evaluation points at or before this step (a forecast from the past). */
  calibrateUntilStep?: number;
  thresholds?: Partial<Thresholds>;
  /** The run's calibration group (calibrationGroup, else its `family` tag), reported with the calibration. */
  group?: string | null;
  /** Sibling runs' pooled calibration, used while the run has too few evaluation points of its own. */
  siblings?: SiblingPool | null;
}

/** What sibling runs' own calibrations learned: the mean and spread of log(scale) over `runs` runs. */
export interface SiblingPool {
  runs: number;
  logScaleMean: number;
  logScaleStd: number;
}

export interface HistoryOptions {
  trainSize: number | null;
  thresholds?: Partial<Thresholds>;
  /** With points as the source: the gateway's checkpoint update norms. */
  checkpointUpdates?: readonly CheckpointUpdate[];
}

export type {
  GapInterval,
  Calibration,
  PhaseContribution,
  Trend,
  ObservedGap,
  EstimateWarning,
  MissingInput,
  Estimate,
  HistoryEntry,
} from '@trajgate/sdk/contract';
