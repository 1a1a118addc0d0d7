import { changeScores, type ChangeScore } from '../trajectory/change-detection.js';
import { assignPhases, type PhaseAssignment } from '../trajectory/phase-segmentation.js';
import type { CheckpointIndicators } from '../trajectory/run-indicators.js';
import { PathCoverage } from './path-coverage.js';
import type { Policy } from './policy.js';

/**
 * The retention engine (DESIGN §6): a pure, deterministic function from a run's checkpoints and a policy
 * to the kept set, with each checkpoint's classes and reasons.
 *
 * 1. Classes that name their checkpoints: `latest` (newest N), `pinned`, `change` (change score ≥ the
 *    threshold, best first, up to max), `best` (by a logged metric), `every` (steps on a grid).
 * 2. Under a budget, those are admitted in priority order latest, pinned (both never evicted), change, best,
 *    every; what does not fit is evicted with the reason.
 * 3. `phase`: each phase gets up to perPhase representatives, phases with no kept checkpoint first; each
 *    is the checkpoint of that phase whose keeping lowers the run's coverage error most (greedy k-median
 *    on the path-length line, see path-coverage.ts).
 * 4. With a budget, remaining room goes to the checkpoints that lower coverage error most, so eviction
 *    under pressure removes the checkpoints whose removal raises coverage error least.
 * Ties go to the earlier step. Checkpoints whose bytes are already deleted can be covered but not kept.
 */
export type RetentionClass = 'latest' | 'pinned' | 'change' | 'best' | 'every' | 'phase';

export interface RetentionCandidate {
  step: number;
  bytes: number;
  pinned: boolean;
  /** False once the bytes are deleted: such a checkpoint can no longer be kept. */
  available: boolean;
  indicators: CheckpointIndicators;
  /** Mean training loss since the previous checkpoint, or null. */
  trainLoss: number | null;
  /** Values of the policy's `best` metric logged for this checkpoint. */
  metric: Record<string, number>;
}

export interface RetentionInput {
  /** Sorted by step. */
  checkpoints: readonly RetentionCandidate[];
  policy: Policy;
  plannedSteps?: number | null;
}

export interface CheckpointDecision {
  step: number;
  keep: boolean;
  classes: RetentionClass[];
  reasons: string[];
  phase: string;
  changeScore: number;
}

export interface RetentionDecision {
  checkpoints: CheckpointDecision[];
  totals: {
    checkpoints: number;
    kept: number;
    bytesKept: number;
    bytesUploaded: number;
    budget: { maxCheckpoints: number | null; maxBytes: number | null };
    /** Distance from each checkpoint to its nearest kept one, as a fraction of the run's path length. */
    coverage: { mean: number; max: number };
  };
}

export function decideRetention(input: RetentionInput): RetentionDecision {
  const { checkpoints, policy } = input;
  const n = checkpoints.length;
  const phases = assignPhases({
    steps: checkpoints.map((c) => c.step),
    updateNormPerStep: checkpoints.map((c) => c.indicators.updateNormPerStep),
    trainLoss: checkpoints.map((c) => c.trainLoss),
    plannedSteps: input.plannedSteps,
    count: policy.phase.count,
    by: policy.phase.by === 'fraction' && !input.plannedSteps ? 'dynamics' : policy.phase.by,
  });
  const scores = changeScores({
    updateNormPerStep: checkpoints.map((c) => c.indicators.updateNormPerStep),
    cosinePrev: checkpoints.map((c) => c.indicators.cosinePrev),
    trainLoss: checkpoints.map((c) => c.trainLoss),
  });
  const positions = checkpoints.map((c) => c.indicators.pathLength);
  const pathLength = n ? positions[n - 1] : 0;
  const state = new Selection(checkpoints, policy, new PathCoverage(positions));

  admitNamedClasses(state, checkpoints, policy, scores);
  pickPhaseRepresentatives(state, phases, checkpoints, policy);
  if (state.budgetIsFinite()) fillByCoverage(state, 'budget');

  const distances = state.coverage.distances();
  const decisions = checkpoints.map((c, i): CheckpointDecision => {
    const keep = state.coverage.isKept(i);
    const reasons = keep ? state.reasons[i] : [state.evictions[i] ?? notNeededReason(distances[i], pathLength)];
    return { step: c.step, keep, classes: keep ? [...state.classes[i]] : [], reasons, phase: phases.names[phases.phaseOf[i]], changeScore: scores[i]?.changeScore ?? 0 };
  });
  const kept = decisions.filter((d) => d.keep);
  const finite = distances.filter(Number.isFinite);
  return {
    checkpoints: decisions,
    totals: {
      checkpoints: n,
      kept: kept.length,
      bytesKept: state.bytesKept,
      bytesUploaded: checkpoints.reduce((sum, c) => sum + c.bytes, 0),
      budget: { ...policy.budget },
      coverage: {
        mean: pathLength > 0 && finite.length ? finite.reduce((a, b) => a + b, 0) / n / pathLength : 0,
        max: pathLength > 0 && finite.length ? Math.max(...finite) / pathLength : 0,
      },
    },
  };
}

/** The kept set being built, with budget accounting. */
class Selection {
  readonly classes: Set<RetentionClass>[];
  readonly reasons: string[][];
  readonly evictions: (string | undefined)[];
  bytesKept = 0;
  count = 0;

  constructor(
    readonly checkpoints: readonly RetentionCandidate[],
    readonly policy: Policy,
    readonly coverage: PathCoverage,
  ) {
    this.classes = checkpoints.map(() => new Set());
    this.reasons = checkpoints.map(() => []);
    this.evictions = checkpoints.map(() => undefined);
  }

  budgetIsFinite(): boolean {
    return this.policy.budget.maxCheckpoints !== null || this.policy.budget.maxBytes !== null;
  }

  /** Whether checkpoint i still fits the budget. */
  fits(i: number): boolean {
    const { maxCheckpoints, maxBytes } = this.policy.budget;
    if (maxCheckpoints !== null && this.count + 1 > maxCheckpoints) return false;
    return maxBytes === null || this.bytesKept + this.checkpoints[i].bytes <= maxBytes;
  }

  /** Records a class and reason; keeps i if it is not kept yet (`force` ignores the budget). */
  add(i: number, cls: RetentionClass, reason: string, force = false): boolean {
    if (!this.coverage.isKept(i)) {
      if (!force && !this.fits(i)) return false;
      this.coverage.keep(i);
      this.count++;
      this.bytesKept += this.checkpoints[i].bytes;
    }
    this.classes[i].add(cls);
    this.reasons[i].push(reason);
    return true;
  }

  budgetText(): string {
    const { maxCheckpoints, maxBytes } = this.policy.budget;
    return [maxCheckpoints !== null ? `${maxCheckpoints} checkpoints` : '', maxBytes !== null ? `${maxBytes} bytes` : ''].filter(Boolean).join(' and ');
  }
}

function admitNamedClasses(state: Selection, checkpoints: readonly RetentionCandidate[], policy: Policy, scores: ChangeScore[]): void {
  const available = checkpoints.map((c, i) => (c.available ? i : -1)).filter((i) => i >= 0);
  const newest = available.slice(-policy.latest).reverse();
  newest.forEach((i, rank) =>
    state.add(i, 'latest', rank === 0 ? 'newest checkpoint, kept for resuming' : `one of the ${policy.latest} newest checkpoints, kept for resuming`, true),
  );
  for (const i of available) if (checkpoints[i].pinned) state.add(i, 'pinned', 'pinned by a client or an operator', true);

  const evictFor = (i: number, what: string) => {
    state.evictions[i] ??= `${what}, but the budget of ${state.budgetText()} was already taken by checkpoints of higher priority`;
  };
  const changed = available
    .filter((i) => scores[i].changeScore >= policy.change.zThreshold)
    .sort((a, b) => scores[b].changeScore - scores[a].changeScore || a - b)
    .slice(0, policy.change.max);
  for (const i of changed) {
    const why = `high-change score ${scores[i].changeScore.toFixed(1)} ≥ ${policy.change.zThreshold}: ${describeChange(scores[i], checkpoints[i])}`;
    if (!state.add(i, 'change', why)) evictFor(i, why);
  }

  const best = policy.best;
  if (best && best.count > 0) {
    const ranked = available
      .filter((i) => Number.isFinite(checkpoints[i].metric[best.metric]))
      .sort((a, b) => {
        const [x, y] = [checkpoints[a].metric[best.metric], checkpoints[b].metric[best.metric]];
        return (best.mode === 'min' ? x - y : y - x) || a - b;
      })
      .slice(0, best.count);
    ranked.forEach((i, rank) => {
      const value = checkpoints[i].metric[best.metric];
      const why = `${rank === 0 ? '' : `#${rank + 1} `}${best.mode === 'min' ? 'lowest' : 'highest'} ${best.metric} (${value.toPrecision(4)})`;
      if (!state.add(i, 'best', why)) evictFor(i, why);
    });
  }

  if (policy.every !== null) {
    const every = policy.every;
    for (const i of [...available].reverse()) {
      if (checkpoints[i].step % every !== 0) continue;
      const why = `on the every-${every}-steps grid`;
      if (!state.add(i, 'every', why)) evictFor(i, why);
    }
  }
}

function pickPhaseRepresentatives(state: Selection, phases: PhaseAssignment, checkpoints: readonly RetentionCandidate[], policy: Policy): void {
  const members = phases.names.map((_, p) => checkpoints.map((_c, i) => i).filter((i) => phases.phaseOf[i] === p));
  const picked = phases.names.map(() => 0);
  const represented = (p: number) => members[p].some((i) => state.coverage.isKept(i));
  const order = phases.names.map((_, p) => p).filter((p) => members[p].length > 0);
  for (let round = 0; round < policy.phase.perPhase; round++) {
    // Phases without any kept checkpoint go first, so a tight budget still represents every phase.
    const queue = round === 0 ? [...order.filter((p) => !represented(p)), ...order.filter(represented)] : order;
    for (const p of queue) {
      if (picked[p] > round) continue;
      const choice = bestGain(state, members[p]);
      if (!choice) continue;
      const first = checkpoints[members[p][0]].step;
      const last = checkpoints[members[p][members[p].length - 1]].step;
      if (state.add(choice.index, 'phase', `represents the ${phases.names[p]} phase (steps ${first}–${last}): the checkpoint of that phase that covers most of its stretch of trajectory`)) {
        picked[p]++;
      }
    }
  }
}

/**
 * Greedy fill: each pick is the checkpoint whose keeping lowers coverage error most. Picks only change the
 * gap they fall in, so each gap's best candidate is cached and only the two halves of a split gap are
 * searched again.
 */
function fillByCoverage(state: Selection, why: 'budget'): void {
  const { coverage } = state;
  const eligible = (i: number) => state.checkpoints[i].available;
  const kept = coverage.keptIndices();
  const gaps = new Map<number, { left: number; right: number; best: { index: number; gain: number } | null }>();
  const addGap = (left: number, right: number) => gaps.set(left, { left, right, best: coverage.bestInGap(left, right, eligible) });
  for (let g = 0; g <= kept.length; g++) addGap(g === 0 ? -1 : kept[g - 1], g === kept.length ? coverage.size : kept[g]);
  for (;;) {
    let top: { left: number; right: number; best: { index: number; gain: number } } | null = null;
    for (const gap of gaps.values()) {
      if (gap.best && gap.best.gain > 0 && (!top || gap.best.gain > top.best.gain || (gap.best.gain === top.best.gain && gap.best.index < top.best.index))) {
        top = { left: gap.left, right: gap.right, best: gap.best };
      }
    }
    if (!top) return;
    if (!state.fits(top.best.index)) break;
    state.add(top.best.index, 'phase', 'covers its stretch of trajectory better than any other checkpoint left out, within the budget');
    addGap(top.left, top.best.index);
    addGap(top.best.index, top.right);
  }
  const gains = coverage.gains();
  const n = state.checkpoints.length;
  const path = totalPath(state);
  state.checkpoints.forEach((c, i) => {
    if (coverage.isKept(i) || !c.available || state.evictions[i]) return;
    state.evictions[i] = `evicted under the ${why} of ${state.budgetText()}: keeping it would lower the mean coverage error by only ${formatFraction(gains[i] / n / path)} of path length, less than any checkpoint kept`;
  });
}

function bestGain(state: Selection, candidates: readonly number[]): { index: number; gain: number } | null {
  return state.coverage.bestOf(candidates, (i) => state.checkpoints[i].available);
}

function totalPath(state: Selection): number {
  const last = state.checkpoints[state.checkpoints.length - 1];
  return last ? Math.max(last.indicators.pathLength, Number.MIN_VALUE) : 1;
}

function describeChange(score: ChangeScore, c: RetentionCandidate): string {
  const { update, loss, reversal } = score.components;
  const parts: string[] = [];
  if (update >= loss && update > 0) parts.push(`the per-step update norm jumped (robust z ${update.toFixed(1)} against the previous checkpoints)`);
  if (loss > update) parts.push(`the training loss jumped (robust z ${loss.toFixed(1)})${c.trainLoss !== null ? ` to ${c.trainLoss.toPrecision(3)}` : ''}`);
  if (reversal > 0) parts.push(`the update turned back on the previous one (cosine ${c.indicators.cosinePrev?.toFixed(2)})`);
  return parts.join('; ') || 'an unusual update';
}

function notNeededReason(distance: number, pathLength: number): string {
  if (!Number.isFinite(distance)) return 'not kept: no retention class holds it';
  return `not needed: a kept checkpoint lies within ${formatFraction(pathLength > 0 ? distance / pathLength : 0)} of the run's path length`;
}

function formatFraction(x: number): string {
  return `${(x * 100).toPrecision(2)}%`;
}
