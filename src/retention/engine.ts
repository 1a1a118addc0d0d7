import { changeScores, type ChangeScore } from '../trajectory/change-detection.js';
import { segmentRun, type PhaseAssignment } from '../trajectory/phase-segmentation.js';
import type { CoverageModel } from './coverage-model.js';
import {
  chooseHeld,
  fillByCoverage,
  keepOptimalCover,
  optimalCoverApplies,
  pickPhaseRepresentatives,
  refineCoverage,
} from './cover-selection.js';
import { admitNamedClasses } from './named-classes.js';
import { DEFAULT_HOLD } from '../model/policy.js';
import { clippedPathPositions, PathCoverage } from './path-coverage.js';
import { Selection, type ClassRequest } from './selection.js';
import { SKETCH_COVERAGE_MAX_CHECKPOINTS, SketchCoverage } from './sketch-coverage.js';
import type { CheckpointDecision, RetentionDecision, RetentionInput } from './types.js';
import { budgetText, percent, stepRange } from './wording.js';

export type {
  CheckpointDecision,
  RetentionCandidate,
  RetentionClass,
  RetentionDecision,
  RetentionInput,
} from './types.js';
export { SKETCH_COVERAGE_MAX_CHECKPOINTS } from './sketch-coverage.js';

/**
 * The retention engine (docs/architecture.md §6): a pure, deterministic function from a run's checkpoints and a policy
 * to the kept set, each checkpoint's classes and reasons, and totals. It serves commits, replays and
 * `simulate` alike; no clock, no randomness, ties go to the earlier step.
 *
 * 1. Phases (phase-segmentation.ts) and change scores (change-detection.ts) from the stored indicators.
 * 2. Named classes (named-classes.ts): `latest` and `pinned` always, then `change`, `best`, `every` while
 *    they fit the budget — or, where the DP below applies, as requests it decides with coverage.
 * 3. `phase`: the checkpoints that, with those, cover the trajectory best, every phase represented
 *    (cover-selection.ts): under a count budget the exact optimum by DP when the run is small enough
 *    (weighing the named classes' requests when they crowd the budget), otherwise per-phase greedy picks,
 *    a greedy fill of the remaining budget and local refinement. So under budget pressure what goes is what
 *    raises coverage error least.
 * 4. Under a budget, the discarded checkpoints to hold back while the run goes on (decideRetentionWithHolds).
 *
 * Coverage is measured with sketch distances on runs of up to SKETCH_COVERAGE_MAX_CHECKPOINTS
 * checkpoints that pass their summaries, else along the (spike-clipped) path length: no sketch is touched
 * and a decision at 10,000 checkpoints costs O(n log n) (scripts/bench-retention.ts).
 */
export function decideRetention(input: RetentionInput): RetentionDecision {
  return decideRetentionWithHolds(input).decision;
}

/**
 * `decideRetention`, also naming the steps of the discarded checkpoints whose bytes are held back while
 * the run goes on (policy.hold; cover-selection.ts chooseHeld): none once the run has reached its
 * plannedSteps. Their reasons say so.
 */
export function decideRetentionWithHolds(input: RetentionInput): { decision: RetentionDecision; held: number[] } {
  const { checkpoints, policy } = input;
  const n = checkpoints.length;
  const updateNormPerStep = checkpoints.map((c) => c.indicators.updateNormPerStep);
  const trainLoss = checkpoints.map((c) => c.trainLoss);
  const phases =
    input.phases ??
    segmentRun(
      { steps: checkpoints.map((c) => c.step), updateNormPerStep, trainLoss, plannedSteps: input.plannedSteps ?? null },
      policy.phase,
    );
  const scores = changeScores({
    updateNormPerStep,
    cosinePrev: checkpoints.map((c) => c.indicators.cosinePrev),
    trainLoss,
  });
  const coverage: CoverageModel =
    (n <= SKETCH_COVERAGE_MAX_CHECKPOINTS ? SketchCoverage.fromSummaries(checkpoints.map((c) => c.summary)) : null) ??
    new PathCoverage(clippedPathPositions(checkpoints.map((c) => c.indicators.updateNorm)));
  const state = new Selection(checkpoints, policy, coverage);

  // Where the DP decides, it weighs the named classes' requests against coverage (cover-selection.ts).
  state.deferRequests = optimalCoverApplies(state);
  admitNamedClasses(state, scores);
  const changeScore = (i: number) => scores[i].changeScore;
  if (!keepOptimalCover(state, phases, changeScore, state.deferRequests ? orphanedEvents(state, scores) : [])) {
    pickPhaseRepresentatives(state, phases);
    if (state.budgetIsFinite()) fillByCoverage(state);
    refineCoverage(state, phases.phaseOf);
  }

  const finished = n > 0 && input.plannedSteps != null && checkpoints[n - 1].step >= input.plannedSteps;
  const held = finished ? [] : chooseHeld(state);
  const pathLength = n ? Math.max(checkpoints[n - 1].indicators.pathLength, 0) : 0;
  const explain = new Explainer(state, phases, pathLength, held);
  const decisions = checkpoints.map(
    (c, i): CheckpointDecision => ({
      step: c.step,
      keep: coverage.isKept(i),
      classes: coverage.isKept(i) ? [...state.classes[i]!] : [],
      reasons: explain.reasons(i),
      phase: phases.names[phases.phaseOf[i]],
      changeScore: scores[i]?.changeScore ?? 0,
    }),
  );
  let sum = 0;
  let max = 0;
  for (const d of explain.distances) {
    if (!Number.isFinite(d)) continue;
    sum += d;
    max = Math.max(max, d);
  }
  let bytesUploaded = 0;
  for (const c of checkpoints) bytesUploaded += c.bytes;
  const decision: RetentionDecision = {
    checkpoints: decisions,
    totals: {
      checkpoints: n,
      kept: state.count,
      bytesKept: state.bytesKept,
      bytesUploaded,
      budget: { ...policy.budget },
      coverage: { mean: pathLength > 0 && n ? sum / n / pathLength : 0, max: pathLength > 0 ? max / pathLength : 0 },
    },
  };
  return { decision, held: held.map((i) => checkpoints[i].step) };
}

/**
 * The change events the named classes would ask for if every checkpoint's bytes were present, whose own
 * bytes are gone: a neighbour kept in an event's place (cover-selection.ts) goes on standing for it.
 */
function orphanedEvents(state: Selection, scores: readonly ChangeScore[]): ClassRequest[] {
  const { checkpoints, policy } = state;
  if (checkpoints.every((c) => c.available !== false)) return [];
  const shadow = new Selection(
    checkpoints.map((c) => ({ ...c, available: true })),
    policy,
    new PathCoverage(new Float64Array(checkpoints.length)),
  );
  shadow.deferRequests = true;
  admitNamedClasses(shadow, scores);
  return shadow.requests.filter((r) => r.cls === 'change' && !state.available(r.index));
}

/** Words the reasons of the final decision, citing the coverage it gives. */
class Explainer {
  readonly distances: Float64Array;
  private readonly servers: Int32Array;
  /** Per kept checkpoint: the first and last checkpoint it serves, and the largest distance among them. */
  private readonly servedFrom: Int32Array;
  private readonly servedTo: Int32Array;
  private readonly servedMax: Float64Array;
  private gains: Float64Array | null = null;
  private budget: string | null = null;

  private readonly held: Set<number>;

  constructor(
    private readonly state: Selection,
    private readonly phases: PhaseAssignment,
    private readonly pathLength: number,
    held: readonly number[],
  ) {
    this.held = new Set(held);
    const { coverage } = state;
    const n = coverage.size;
    this.servers = coverage.servers();
    this.distances = coverage.distances(this.servers);
    this.servedFrom = new Int32Array(n).fill(-1);
    this.servedTo = new Int32Array(n).fill(-1);
    this.servedMax = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const s = this.servers[i];
      if (s < 0) continue;
      if (this.servedFrom[s] < 0) this.servedFrom[s] = i;
      this.servedTo[s] = i;
      this.servedMax[s] = Math.max(this.servedMax[s], coverage.distance(i, s));
    }
  }

  reasons(i: number): string[] {
    const { state } = this;
    if (state.coverage.isKept(i)) return state.reasons[i]!.map((r) => r ?? this.phaseReason(i));
    if (!this.held.has(i)) return [this.notKeptReason(i)];
    const hold = state.policy.hold ?? DEFAULT_HOLD;
    return [
      this.notKeptReason(i),
      `held back while the run goes on: its bytes stay for ${hold.seconds} s after the last decision that holds it, as one of the ${this.held.size} discarded checkpoints a later decision is most likely to keep`,
    ];
  }

  private fraction(distance: number): number {
    return this.pathLength > 0 ? distance / this.pathLength : 0;
  }

  private phaseReason(i: number): string {
    const { checkpoints } = this.state;
    const p = this.phases.phaseOf[i];
    let first = i;
    let last = i;
    while (first > 0 && this.phases.phaseOf[first - 1] === p) first--;
    while (last < checkpoints.length - 1 && this.phases.phaseOf[last + 1] === p) last++;
    const from = this.servedFrom[i] < 0 ? i : this.servedFrom[i];
    const to = this.servedTo[i] < 0 ? i : this.servedTo[i];
    const phase = `represents the ${this.phases.names[p]} phase (${stepRange(checkpoints[first].step, checkpoints[last].step)})`;
    if (from === to) return `${phase}: no other checkpoint lies nearer to it than to another kept one`;
    return `${phase}: covers ${stepRange(checkpoints[from].step, checkpoints[to].step)} of the trajectory, each within ${percent(this.fraction(this.servedMax[i]))} of the run's path length`;
  }

  private notKeptReason(i: number): string {
    const { state } = this;
    const server = this.servers[i];
    const near =
      server < 0
        ? 'nothing else is kept'
        : `the kept checkpoint at step ${state.checkpoints[server].step} lies within ${percent(this.fraction(state.coverage.distance(i, server)))} of the run's path length`;
    if (!state.available(i)) return `not kept: its bytes are already deleted; ${near}`;
    const refusal = state.refusals[i];
    if (refusal) return `evicted: ${refusal}; ${near}`;
    if (state.budgetIsFinite()) {
      this.gains ??= state.coverage.gains();
      this.budget ??= budgetText(state.policy.budget);
      const gain = this.gains[i] / state.checkpoints.length;
      return `evicted under the budget of ${this.budget}: keeping it as well would lower the mean coverage error by only ${percent(this.fraction(gain))} of the run's path length; ${near}`;
    }
    return `not needed: no retention class holds it; ${near}`;
  }
}
