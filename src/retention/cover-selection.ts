import type { PhaseAssignment } from '../trajectory/phase-segmentation.js';
import { PathCoverage } from './path-coverage.js';
import type { Selection } from './selection.js';

/**
 * Choosing the `phase` checkpoints: the ones that, with those the named classes already keep, cover the
 * trajectory best (least total distance from every checkpoint to the kept one serving it), each phase
 * represented. Phase checkpoints are recorded with a null reason; engine.ts words it from the final set.
 */

/** Above this many DP transitions (≈ budget · candidates² / 2) the greedy path is used instead. */
const MAX_DP_TRANSITIONS = 1_500_000;
/** Above this many candidates the greedy path is used instead (the gap tables hold candidates² entries). */
const MAX_DP_CANDIDATES = 512;
/** The optimum may have a max coverage error up to this factor above the least achievable (see keepOptimalCover). */
const MAX_SLACK = 1.5;
/** Bisection steps for the least achievable max coverage error (relative precision 2^-8). */
const BISECTION_STEPS = 8;

/**
 * What every kept set of the DP must respect, and the coverage of every gap between two candidates,
 * tabulated once per decision (m = candidates): cost[a·m + b] and max[a·m + b] for a < b; the gap before
 * the first kept candidate and after the last in start* and end*.
 */
interface CoverProblem {
  /** Checkpoints that may be kept (kept already, or bytes present), ascending. */
  allowed: number[];
  forced: Uint8Array;
  /** forcedBefore[a]: forced among allowed[0..a). */
  forcedBefore: Int32Array;
  /** Per allowed index: rank of its phase among phases with a candidate; null: no phase constraint. */
  rank: Int32Array | null;
  lastRank: number;
  cost: Float64Array;
  max: Float64Array;
  startCost: Float64Array;
  startMax: Float64Array;
  endCost: Float64Array;
  endMax: Float64Array;
}

/**
 * Under a count budget (and no byte budget) on a run small enough, the optimum under the two-neighbour
 * model, by dynamic programming over the ordered checkpoints: the kept set of the budget's size that
 * contains every checkpoint already kept, represents every phase that has a keepable checkpoint (dropped
 * when the budget cannot), and minimises the total coverage cost (mean coverage error) subject to a cap
 * on the largest one: MAX_SLACK × the least max achievable with this budget (found by bisection on a
 * min-count DP). The cap trades little mean for a much better max (k-center's concern); on the eval runs
 * mean moved < 1% and max fell 11–18%. Each transition a → b adds the cost of the gap between them and may
 * skip neither a checkpoint already kept nor a whole phase. Returns false when it does not apply.
 */
export function keepOptimalCover(state: Selection, phases: PhaseAssignment): boolean {
  const { coverage, policy } = state;
  const budget = policy.budget.maxCheckpoints;
  if (budget === null || policy.budget.maxBytes !== null) return false;
  const allowed: number[] = [];
  for (let i = 0; i < coverage.size && allowed.length <= MAX_DP_CANDIDATES; i++)
    if (coverage.isKept(i) || state.available(i)) allowed.push(i);
  const m = allowed.length;
  if (m > MAX_DP_CANDIDATES) return false;
  const forced = Uint8Array.from(allowed, (i) => (coverage.isKept(i) ? 1 : 0));
  const forcedBefore = new Int32Array(m + 1);
  for (let a = 0; a < m; a++) forcedBefore[a + 1] = forcedBefore[a] + forced[a];
  const k = Math.min(budget, m);
  if (m === 0 || forcedBefore[m] > k || m > MAX_DP_CANDIDATES || (k * m * m) / 2 > MAX_DP_TRANSITIONS) return false;

  const phaseIds = [...new Set(allowed.map((i) => phases.phaseOf[i]))].sort((a, b) => a - b);
  const problem = tabulate(state, allowed, forced, forcedBefore);
  const withPhases: CoverProblem = {
    ...problem,
    rank: Int32Array.from(allowed, (i) => phaseIds.indexOf(phases.phaseOf[i])),
    lastRank: phaseIds.length - 1,
  };
  const p = phaseIds.length <= k && leastCount(withPhases, Infinity) <= k ? withPhases : problem;

  let chosen = coverDp(p, k, Infinity);
  if (!chosen) return false;
  const uncappedMax = maxOf(p, chosen);
  let lo = 0;
  let hi = uncappedMax;
  for (let step = 0; step < BISECTION_STEPS && hi > 0; step++) {
    const mid = (lo + hi) / 2;
    if (leastCount(p, mid) <= k) hi = mid;
    else lo = mid;
  }
  if (MAX_SLACK * hi < uncappedMax) chosen = coverDp(p, k, MAX_SLACK * hi) ?? chosen;
  for (const a of chosen) if (!coverage.isKept(allowed[a])) state.add(allowed[a], 'phase', null, true);
  return true;
}

function tabulate(state: Selection, allowed: number[], forced: Uint8Array, forcedBefore: Int32Array): CoverProblem {
  const { coverage } = state;
  const m = allowed.length;
  const n = coverage.size;
  const cost = new Float64Array(m * m);
  const max = new Float64Array(m * m);
  for (let a = 0; a < m; a++) {
    for (let b = a + 1; b < m; b++) {
      cost[a * m + b] = coverage.gapCost(allowed[a], allowed[b]);
      max[a * m + b] = coverage.gapMax(allowed[a], allowed[b]);
    }
  }
  return {
    allowed,
    forced,
    forcedBefore,
    rank: null,
    lastRank: 0,
    cost,
    max,
    startCost: Float64Array.from(allowed, (i) => coverage.gapCost(-1, i)),
    startMax: Float64Array.from(allowed, (i) => coverage.gapMax(-1, i)),
    endCost: Float64Array.from(allowed, (i) => coverage.gapCost(i, n)),
    endMax: Float64Array.from(allowed, (i) => coverage.gapMax(i, n)),
  };
}

/** Largest coverage distance of a kept set (ascending candidate indices) under the two-neighbour model. */
function maxOf(p: CoverProblem, chosen: readonly number[]): number {
  const m = p.allowed.length;
  let max = Math.max(p.startMax[chosen[0]], p.endMax[chosen[chosen.length - 1]]);
  for (let j = 1; j < chosen.length; j++) max = Math.max(max, p.max[chosen[j - 1] * m + chosen[j]]);
  return max;
}

/** Whether the DP may go from candidate a to b (a < b): skipping no forced checkpoint nor a phase. */
function mayFollow(p: CoverProblem, a: number, b: number): boolean {
  return p.forcedBefore[b] === p.forcedBefore[a + 1] && (!p.rank || p.rank[b] - p.rank[a] <= 1);
}

function mayStart(p: CoverProblem, b: number): boolean {
  return p.forcedBefore[b] === 0 && (!p.rank || p.rank[b] === 0);
}

function mayEnd(p: CoverProblem, b: number): boolean {
  return p.forcedBefore[p.allowed.length] === p.forcedBefore[b + 1] && (!p.rank || p.rank[b] === p.lastRank);
}

/** The least number of kept checkpoints meeting the constraints with every coverage distance ≤ cap (Infinity: none). */
function leastCount(p: CoverProblem, cap: number): number {
  const m = p.allowed.length;
  const need = new Float64Array(m).fill(Infinity);
  let best = Infinity;
  for (let b = 0; b < m; b++) {
    if (mayStart(p, b) && p.startMax[b] <= cap) need[b] = 1;
    for (let a = b - 1; a >= 0; a--) {
      if (!mayFollow(p, a, b)) break; // earlier a would skip the same forced checkpoint or phase
      if (need[a] + 1 < need[b] && p.max[a * m + b] <= cap) need[b] = need[a] + 1;
    }
    if (need[b] < best && mayEnd(p, b) && p.endMax[b] <= cap) best = need[b];
  }
  return best;
}

/** Exactly k kept candidates meeting the constraints with least total cost and every distance ≤ cap; null when none. */
function coverDp(p: CoverProblem, k: number, cap: number): number[] | null {
  const m = p.allowed.length;
  const { cost, max } = p;
  // best[j][b]: least cost of the checkpoints up to candidate b with j kept, the last at b.
  const best = Array.from({ length: k + 1 }, () => new Float64Array(m).fill(Infinity));
  const from = Array.from({ length: k + 1 }, () => new Int32Array(m).fill(-1));
  for (let b = 0; b < m; b++) if (mayStart(p, b) && p.startMax[b] <= cap) best[1][b] = p.startCost[b];
  // first[b]: the earliest a the DP may come from into b.
  const first = new Int32Array(m);
  for (let b = 0; b < m; b++) {
    let a = b - 1;
    while (a >= 0 && mayFollow(p, a, b)) a--;
    first[b] = a + 1;
  }
  for (let j = 2; j <= k; j++) {
    const prev = best[j - 1];
    const cur = best[j];
    const back = from[j];
    for (let b = j - 1; b < m; b++) {
      let bestCost = Infinity;
      let bestFrom = -1;
      for (let a = Math.max(first[b], j - 2); a < b; a++) {
        const before = prev[a];
        if (before === Infinity) continue;
        const at = a * m + b;
        if (max[at] > cap) continue;
        const c = before + cost[at];
        if (c <= bestCost) {
          // Ties go to the later predecessor: the same choice the descending scan made.
          bestCost = c;
          bestFrom = a;
        }
      }
      cur[b] = bestCost;
      back[b] = bestFrom;
    }
  }
  let end = -1;
  let total = Infinity;
  for (let b = 0; b < m; b++) {
    if (!mayEnd(p, b) || best[k][b] === Infinity || p.endMax[b] > cap) continue;
    const c = best[k][b] + p.endCost[b];
    if (c < total) {
      total = c;
      end = b;
    }
  }
  if (end < 0) return null;
  const chosen: number[] = [];
  for (let j = k, b = end; j >= 1 && b >= 0; b = from[j][b], j--) chosen.push(b);
  return chosen.reverse();
}

/**
 * Phase representatives without the DP: each phase gets up to perPhase (one under a budget: the rest of
 * the room goes to coverage, and a converged phase spans little trajectory), phases with no kept
 * checkpoint first; each pick is the phase's checkpoint whose keeping lowers the coverage cost most.
 */
export function pickPhaseRepresentatives(state: Selection, phases: PhaseAssignment): void {
  const { checkpoints, coverage, policy } = state;
  const members = phases.names.map((): number[] => []);
  for (let i = 0; i < checkpoints.length; i++) members[phases.phaseOf[i]].push(i);
  const picked = phases.names.map(() => 0);
  const represented = (p: number) => members[p].some((i) => coverage.isKept(i));
  const order = phases.names.map((_, p) => p).filter((p) => members[p].length > 0);
  const rounds = state.budgetIsFinite() ? Math.min(1, policy.phase.perPhase) : policy.phase.perPhase;
  const eligible = (i: number) => state.available(i);
  for (let round = 0; round < rounds; round++) {
    const queue = round === 0 ? [...order.filter((p) => !represented(p)), ...order.filter(represented)] : order;
    for (const p of queue) {
      if (picked[p] > round) continue;
      const choice = coverage.bestOf(members[p], eligible);
      if (choice && state.add(choice.index, 'phase', null)) picked[p]++;
    }
  }
}

/**
 * Greedy fill of the remaining budget: each pick is the checkpoint whose keeping lowers the coverage cost
 * most among those that fit. A pick changes only the gap it falls in, so each gap's best candidate is
 * cached and only the two halves of a split gap are searched again.
 */
export function fillByCoverage(state: Selection): void {
  const { coverage } = state;
  const eligible = (i: number) => state.available(i) && state.fits(i);
  const gaps = new Map<number, { left: number; right: number; best: { index: number; gain: number } | null }>();
  const addGap = (left: number, right: number) =>
    gaps.set(left, { left, right, best: coverage.bestInGap(left, right, eligible) });
  const kept = coverage.keptIndices();
  for (let g = 0; g <= kept.length; g++)
    addGap(g === 0 ? -1 : kept[g - 1], g === kept.length ? coverage.size : kept[g]);
  for (;;) {
    let top: { left: number; right: number; best: { index: number; gain: number } } | null = null;
    for (const gap of gaps.values()) {
      const b = gap.best;
      if (
        b &&
        b.gain > 0 &&
        (!top || b.gain > top.best.gain || (b.gain === top.best.gain && b.index < top.best.index))
      ) {
        top = { left: gap.left, right: gap.right, best: b };
      }
    }
    if (!top) return;
    if (!state.fits(top.best.index)) {
      // The budget shrank since this gap was searched: search it again among what still fits.
      addGap(top.left, top.right);
      continue;
    }
    state.add(top.best.index, 'phase', null);
    addGap(top.left, top.best.index);
    addGap(top.best.index, top.right);
  }
}

/**
 * Local refinement of checkpoints kept for coverage only: each moves to the checkpoint of its own phase
 * that serves the stretch between its kept neighbours best, until nothing moves (at most 20 rounds). On
 * the path this is Lloyd's iteration for 1-D k-median (the median of the points served, O(log n) per
 * move); with sketch distances, every candidate of the gap is tried (small runs only). The kept count,
 * the bytes bound and every class other than `phase` are unchanged.
 */
export function refineCoverage(state: Selection, phaseOf: readonly number[]): void {
  const { coverage, checkpoints, policy } = state;
  const maxBytes = policy.budget.maxBytes;
  const canMove = (from: number, to: number) =>
    !coverage.isKept(to) &&
    state.available(to) &&
    phaseOf[to] === phaseOf[from] &&
    (maxBytes === null || state.bytesKept - checkpoints[from].bytes + checkpoints[to].bytes <= maxBytes);
  for (let round = 0; round < 20; round++) {
    let moved = false;
    const kept = coverage.keptIndices();
    for (let k = 0; k < kept.length; k++) {
      const c = kept[k];
      if (!state.keptForCoverageOnly(c)) continue;
      const left = k > 0 ? kept[k - 1] : -1;
      const right = k < kept.length - 1 ? kept[k + 1] : coverage.size;
      const current = coverage.gapCost(left, c) + coverage.gapCost(c, right);
      let target = -1;
      let targetCost = current - 1e-12 * Math.max(1, current);
      const consider = (t: number) => {
        if (t === c || !canMove(c, t)) return;
        const cost = coverage.gapCost(left, t) + coverage.gapCost(t, right);
        if (cost < targetCost) {
          targetCost = cost;
          target = t;
        }
      };
      if (coverage instanceof PathCoverage) {
        const [a, b] = coverage.servedRange(c, left, right);
        consider(coverage.medianOf(a, b));
      } else {
        for (let t = left + 1; t < right; t++) consider(t);
      }
      if (target < 0) continue;
      state.move(c, target);
      kept[k] = target;
      moved = true;
    }
    if (!moved) return;
  }
}
