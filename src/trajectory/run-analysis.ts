import type { Trajectory } from '@trajgate/sdk/contract';
import { changeScores } from './change-detection.js';
import { assignPhases, phaseBoundaries, type PhaseAssignment, type PhaseMethod } from './phase-segmentation.js';
import type { CheckpointIndicators } from './run-indicators.js';

/** The trajectory of a run as the API serves it (the wire contract's Trajectory). */
export type RunTrajectory = Trajectory;

export interface AnalysisInput {
  /** Sorted by step. */
  checkpoints: readonly { step: number; indicators: CheckpointIndicators }[];
  /** Per checkpoint, same order; null where unknown. */
  trainLoss?: readonly (number | null)[];
  plannedSteps?: number | null;
  /** The run's phase segmentation (segmentRun); computed from the settings below when absent. */
  phases?: PhaseAssignment;
  phaseCount?: number;
  phasesBy?: PhaseMethod | 'auto';
  changeWindow?: number;
}

/** Phases and change scores are recomputed from the stored per-checkpoint indicators on every call. */
export function analyseRun(input: AnalysisInput): RunTrajectory {
  const steps = input.checkpoints.map((c) => c.step);
  const updateNormPerStep = input.checkpoints.map((c) => c.indicators.updateNormPerStep);
  const trainLoss = input.trainLoss ?? steps.map(() => null);
  const phases =
    input.phases ??
    assignPhases({
      steps,
      updateNormPerStep,
      trainLoss,
      plannedSteps: input.plannedSteps,
      count: input.phaseCount,
      by: input.phasesBy,
    });
  const scores = changeScores({
    updateNormPerStep,
    cosinePrev: input.checkpoints.map((c) => c.indicators.cosinePrev),
    trainLoss,
    window: input.changeWindow,
  });
  const items = input.checkpoints.map((c, i) => ({
    step: c.step,
    ...c.indicators,
    phase: phases.names[phases.phaseOf[i]],
    changeScore: scores[i].changeScore,
    changeComponents: scores[i].components,
    changeKind: scores[i].kind,
    trainLoss: trainLoss[i],
  }));
  const boundaries = phaseBoundaries(steps, phases);
  const last = items[items.length - 1];
  return {
    items,
    phases: { method: phases.method, names: phases.names, boundaries },
    totals: {
      checkpoints: items.length,
      firstStep: items[0]?.step ?? null,
      lastStep: last?.step ?? null,
      pathLength: last?.pathLength ?? 0,
      distanceFromStart: last?.distanceFromStart ?? 0,
    },
  };
}
