import type { Indicators } from '@trajgate/sdk/contract';
import { diffDot, distance, tensorDistances } from './sketch-distance.js';
import type { CheckpointSummary } from '../model/summary.js';

/** Per-checkpoint indicators against the previous uploaded checkpoint of the run (docs/architecture.md §5). */
export type CheckpointIndicators = Indicators;

const TOP_TENSORS = 5;

/**
 * Indicators of `current` given the run's first checkpoint, the one before `current` (`prev`) and the
 * one before that (`prevPrev`), and the path length up to `prev`. The first checkpoint of a run has no
 * update: its updateNorm, updateNormPerStep, relativeChange and cosinePrev are null and its distance and
 * path length 0; cosinePrev needs two earlier checkpoints.
 */
export function indicatorsFor(
  current: CheckpointSummary,
  neighbours: {
    first: CheckpointSummary;
    prev: CheckpointSummary | null;
    prevPrev: CheckpointSummary | null;
    prevPathLength: number;
  },
): CheckpointIndicators {
  const { first, prev, prevPrev, prevPathLength } = neighbours;
  if (!prev) {
    return {
      updateNorm: null,
      updateNormPerStep: null,
      relativeChange: null,
      distanceFromStart: 0,
      pathLength: 0,
      cosinePrev: null,
      topTensors: [],
    };
  }
  const updateNorm = distance(current, prev);
  let cosinePrev: number | null = null;
  if (prevPrev) {
    const previousUpdate = distance(prev, prevPrev);
    const denominator = updateNorm * previousUpdate;
    cosinePrev =
      denominator > 0
        ? clamp(diffDot(current.sketch, prev.sketch, prev.sketch, prevPrev.sketch) / denominator, -1, 1)
        : null;
  }
  const topTensors = tensorDistances(current, prev)
    .sort((a, b) => b.updateNorm - a.updateNorm || (a.name < b.name ? -1 : 1))
    .slice(0, TOP_TENSORS)
    .map(({ name, updateNorm: norm, prevNorm }) => ({
      name,
      updateNorm: norm,
      relativeChange: prevNorm > 0 ? norm / prevNorm : null,
    }));
  return {
    updateNorm,
    updateNormPerStep: updateNorm / Math.max(1, current.step - prev.step),
    relativeChange: prev.weightNorm > 0 ? updateNorm / prev.weightNorm : null,
    distanceFromStart: current === first ? 0 : distance(current, first),
    pathLength: prevPathLength + updateNorm,
    cosinePrev,
    topTensors,
  };
}

/**
 * Indicators of every checkpoint of a run, from its summaries in increasing step order (throws
 * RangeError otherwise): what to run when a checkpoint arrives out of order or one is removed. Appending
 * a checkpoint after the last needs only `indicatorsFor` with the first, previous and one-before-previous
 * summaries and the previous path length. Cost: O(n · k) for n checkpoints.
 */
export function computeIndicators(summaries: readonly CheckpointSummary[]): CheckpointIndicators[] {
  for (let i = 1; i < summaries.length; i++) {
    if (!(summaries[i].step > summaries[i - 1].step))
      throw new RangeError(
        `summaries must be in increasing step order: ${summaries[i - 1].step} then ${summaries[i].step}`,
      );
  }
  const out: CheckpointIndicators[] = [];
  summaries.forEach((current, i) => {
    out.push(
      indicatorsFor(current, {
        first: summaries[0],
        prev: summaries[i - 1] ?? null,
        prevPrev: summaries[i - 2] ?? null,
        prevPathLength: out[i - 1]?.pathLength ?? 0,
      }),
    );
  });
  return out;
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
