import type { Catalog } from '../catalog/catalog.js';
import type { PhaseSpan } from '../estimate/types.js';
import type { CheckpointListItem, RunRecord } from '../model/records.js';
import type { Policy } from '../model/policy.js';
import { phaseBoundaries, segmentRun, type PhaseAssignment } from '../trajectory/phase-segmentation.js';

/** A checkpoint whose trajectory indicators are computed (every committed one, once its commit finished). */
export type AnalysedCheckpoint = CheckpointListItem & { indicators: NonNullable<CheckpointListItem['indicators']> };

/**
 * What the trajectory, retention and the estimate read of a run, loaded once: its analysed checkpoints by
 * step, the mean training loss logged up to each, and the run's one phase segmentation under `policy`
 * (docs/architecture.md §5) — so every endpoint shows the same early/mid/late spans.
 */
export interface RunSnapshot {
  run: RunRecord;
  policy: Policy;
  checkpoints: AnalysedCheckpoint[];
  /** Per checkpoint (same order): mean trainLoss logged since the previous checkpoint, or null. */
  trainLoss: (number | null)[];
  phases: PhaseAssignment;
}

export async function loadRunSnapshot(catalog: Catalog, run: RunRecord, policy: Policy): Promise<RunSnapshot> {
  const [records, losses] = await Promise.all([
    catalog.listCheckpoints(run.id),
    catalog.metricAtCheckpoints(run.id, 'trainLoss', 'mean'),
  ]);
  const checkpoints = records.filter((c): c is AnalysedCheckpoint => c.indicators !== null);
  const lossByStep = new Map(losses.map((l) => [l.step, l.value]));
  const trainLoss = checkpoints.map((c) => lossByStep.get(c.step) ?? null);
  const phases = segmentRun(
    {
      steps: checkpoints.map((c) => c.step),
      updateNormPerStep: checkpoints.map((c) => c.indicators.updateNormPerStep),
      trainLoss,
      plannedSteps: run.plannedSteps,
    },
    policy.phase,
  );
  return { run, policy, checkpoints, trainLoss, phases };
}

/**
 * The run's phases as step spans covering every step: the first from −1, each up to its last checkpoint,
 * the last also holding the steps logged after the newest checkpoint.
 */
export function estimateSpans(snapshot: RunSnapshot): PhaseSpan[] {
  const boundaries = phaseBoundaries(
    snapshot.checkpoints.map((c) => c.step),
    snapshot.phases,
  );
  return boundaries.map((b, i) => ({
    name: b.phase,
    fromStep: i === 0 ? -1 : boundaries[i - 1].toStep,
    toStep: i === boundaries.length - 1 ? Number.MAX_SAFE_INTEGER : b.toStep,
  }));
}
