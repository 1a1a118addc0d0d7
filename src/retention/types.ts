import type { CheckpointIndicators } from '../trajectory/run-indicators.js';
import type { CheckpointSummary } from '../model/summary.js';
import type { PhaseAssignment } from '../trajectory/phase-segmentation.js';
import type { Policy } from '../model/policy.js';

export interface RetentionCandidate {
  step: number;
  bytes: number;
  pinned: boolean;
  /** False once the bytes are deleted: such a checkpoint is still covered, but can no longer be kept. Default true. */
  available?: boolean;
  indicators: CheckpointIndicators;
  /**
   * The checkpoint's sketch. When every checkpoint has one and the run is small enough
   * (SKETCH_COVERAGE_MAX_CHECKPOINTS), coverage is measured with sketch distances between checkpoints;
   * otherwise along the path (see path-coverage.ts). Never needed, never read for longer runs.
   */
  summary?: CheckpointSummary;
  /** Mean training loss since the previous checkpoint, or null. */
  trainLoss: number | null;
  /** Values of the policy's `best` metric logged at (or just before) this checkpoint. */
  metric: Record<string, number>;
}

export interface RetentionInput {
  /** Sorted by step, steps distinct. */
  checkpoints: readonly RetentionCandidate[];
  policy: Policy;
  plannedSteps?: number | null;
  /** The run's phase segmentation (segmentRun with the policy's phase settings); computed when absent. */
  phases?: PhaseAssignment;
}

export type { CheckpointDecision, RetentionClass, RetentionDecision } from '@trajgate/sdk/contract';
