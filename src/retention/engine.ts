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
 * 3. `phase`: each phase gets up to perPhase representatives (one under a budget), phases with no kept
 *    checkpoint first; each is the checkpoint of that phase whose keeping lowers the run's coverage error
 *    most (greedy k-median on the path-length line, see path-coverage.ts).
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
  const positions = coveragePositions(checkpoints);
  const pathLength = n ? positions[n - 1] : 0;
  const state = new Selection(checkpoints, policy, new PathCoverage(positions));

  admitNamedClasses(state, checkpoints, policy, scores);
  if (!keepOptimalCover(state, phases)) {
    pickPhaseRepresentatives(state, phases, checkpoints, policy);
    if (state.budgetIsFinite()) fillByCoverage(state, 'budget');
    refineCoverage(state, phases.phaseOf);
  }

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

/**
 * Positions on the path-length line for coverage, with each update clipped to 3× the median of its
 * neighbours' (±4 checkpoints): an isolated jump (a loss spike that training then undoes) would otherwise
 * stretch the line as if the checkpoints either side were far apart. Such jumps are kept by the `change`
 * class instead.
 */
function coveragePositions(checkpoints: readonly RetentionCandidate[]): number[] {
  const updates = checkpoints.map((c) => c.indicators.updateNorm ?? 0);
  const positions: number[] = [];
  let s = 0;
  updates.forEach((u, i) => {
    const around = updates.slice(Math.max(1, i - 4), i + 5).sort((a, b) => a - b);
    const median = around.length ? around[around.length >> 1] : u;
    s += Math.min(u, 3 * median);
    positions.push(s);
  });
  return positions;
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

  /** Kept bytes when the kept checkpoint `from` is replaced by `to`. */
  moveBytes(from: number, to: number): void {
    this.bytesKept += this.checkpoints[to].bytes - this.checkpoints[from].bytes;
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
  // Under a budget, phases are guaranteed one representative and the rest of the room goes to coverage
  // (a converged phase spans little trajectory and needs fewer); without one, each gets perPhase.
  const rounds = state.budgetIsFinite() ? Math.min(1, policy.phase.perPhase) : policy.phase.perPhase;
  for (let round = 0; round < rounds; round++) {
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

/** Above this many DP transitions (budget × allowed²) the greedy path is used instead. */
const MAX_DP_WORK = 4_000_000;

/**
 * Under a count budget on a run small enough, the exact optimum: the kept set of the budget's size that
 * contains every checkpoint already kept by a named class and minimises total coverage cost on the
 * path-length line (1-D k-median with fixed centres, by dynamic programming over the ordered
 * checkpoints). Used only if it represents every phase; returns false when it does not apply.
 */
function keepOptimalCover(state: Selection, phases: PhaseAssignment): boolean {
  const { coverage, checkpoints, policy } = state;
  const budget = policy.budget.maxCheckpoints;
  if (budget === null || policy.budget.maxBytes !== null) return false;
  const allowed = checkpoints.map((c, i) => i).filter((i) => coverage.isKept(i) || checkpoints[i].available);
  const forced = allowed.filter((i) => coverage.isKept(i));
  const k = Math.min(budget, allowed.length);
  if (forced.length > k || k * allowed.length * allowed.length > MAX_DP_WORK || allowed.length === 0) return false;
  const m = allowed.length;
  // forcedBefore[a]: number of forced centres among allowed[0..a).
  const forcedBefore = new Int32Array(m + 1);
  allowed.forEach((c, a) => (forcedBefore[a + 1] = forcedBefore[a] + (coverage.isKept(c) ? 1 : 0)));
  // best[j][b]: least cost of the points up to allowed[b] with j centres, the last at allowed[b].
  const best = Array.from({ length: k + 1 }, () => new Float64Array(m).fill(Infinity));
  const from = Array.from({ length: k + 1 }, () => new Int32Array(m).fill(-1));
  for (let b = 0; b < m; b++) if (forcedBefore[b] === 0) best[1][b] = coverage.gapCost(-1, allowed[b]);
  for (let j = 2; j <= k; j++) {
    for (let b = j - 1; b < m; b++) {
      for (let a = b - 1; a >= j - 2; a--) {
        if (best[j - 1][a] === Infinity) continue;
        const cost = best[j - 1][a] + coverage.gapCost(allowed[a], allowed[b]);
        if (cost < best[j][b]) {
          best[j][b] = cost;
          from[j][b] = a;
        }
        if (coverage.isKept(allowed[a])) break; // no centre may skip over a forced one
      }
    }
  }
  let end = -1;
  let total = Infinity;
  for (let b = 0; b < m; b++) {
    if (forcedBefore[m] - forcedBefore[b + 1] > 0) continue; // the last centre may not precede a forced one
    const cost = best[k][b] + coverage.gapCost(allowed[b], coverage.size);
    if (cost < total) {
      total = cost;
      end = b;
    }
  }
  if (end < 0) return false;
  const chosen: number[] = [];
  for (let j = k, b = end; j >= 1 && b >= 0; b = from[j][b], j--) chosen.push(allowed[b]);
  const represented = new Set(chosen.map((i) => phases.phaseOf[i]));
  const phasesWithCandidates = new Set(allowed.map((i) => phases.phaseOf[i]));
  if (represented.size < phasesWithCandidates.size) return false;
  for (const i of chosen.reverse()) {
    if (coverage.isKept(i)) continue;
    state.add(i, 'phase', `represents the ${phases.names[phases.phaseOf[i]]} phase: one of the checkpoints that together cover the trajectory best within the budget`, true);
  }
  const gains = coverage.gains();
  const path = totalPath(state);
  checkpoints.forEach((c, i) => {
    if (coverage.isKept(i) || !c.available) return;
    state.evictions[i] ??= `evicted under the budget of ${state.budgetText()}: keeping it would lower the mean coverage error by only ${formatFraction(gains[i] / checkpoints.length / path)} of path length, less than any checkpoint kept`;
  });
  return true;
}

/**
 * Lloyd iterations for 1-D k-median: each checkpoint kept only for coverage moves to the median of the
 * checkpoints it serves, when that is an available checkpoint of the same phase. Greedy picks are then a
 * local optimum; the kept count and every class other than `phase` are unchanged.
 */
function refineCoverage(state: Selection, phaseOf: readonly number[]): void {
  const { coverage } = state;
  const movable = (i: number) => state.classes[i].size === 1 && state.classes[i].has('phase');
  for (let iteration = 0; iteration < 20; iteration++) {
    let moved = false;
    const kept = coverage.keptIndices();
    kept.forEach((c, k) => {
      if (!movable(c)) return;
      const left = k > 0 ? kept[k - 1] : -1;
      const right = k < kept.length - 1 ? kept[k + 1] : coverage.size;
      const [a, b] = coverage.servedRange(c, left, right);
      const target = coverage.medianOf(a, b);
      if (target === c || coverage.isKept(target) || !state.checkpoints[target].available || phaseOf[target] !== phaseOf[c]) return;
      const before = coverage.gapCost(left, c) + coverage.gapCost(c, right);
      const after = coverage.gapCost(left, target) + coverage.gapCost(target, right);
      if (after >= before - 1e-12) return;
      coverage.unkeep(c);
      coverage.keep(target);
      state.moveBytes(c, target);
      state.classes[target] = state.classes[c];
      state.reasons[target] = state.reasons[c];
      state.classes[c] = new Set();
      state.reasons[c] = [];
      kept[k] = target;
      moved = true;
    });
    if (!moved) return;
  }
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
