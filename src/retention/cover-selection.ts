import { DEFAULT_HOLD } from '../model/policy.js';
import type { PhaseAssignment } from '../trajectory/phase-segmentation.js';
import type { CoverageModel } from './coverage-model.js';
import { PathCoverage } from './path-coverage.js';
import type { ClassRequest, Selection } from './selection.js';
import { budgetText, percent } from './wording.js';

/**
 * Choosing the `phase` checkpoints: the ones that, with those the named classes keep, cover the trajectory
 * best (least total distance from every checkpoint to the kept one serving it), each phase represented —
 * under a count budget on a small run together with the named classes' requests (keepOptimalCover) — and
 * the discarded checkpoints to hold back (chooseHeld). Phase checkpoints are recorded with a null reason;
 * engine.ts words it from the final set.
 */

/** Above this many DP transitions (≈ budget · candidates² / 2) the greedy path is used instead. */
const MAX_DP_TRANSITIONS = 1_500_000;
/** Above this many candidates the greedy path is used instead (the gap tables hold candidates² entries). */
const MAX_DP_CANDIDATES = 512;
/** The optimum may have a max coverage error up to this factor above the least achievable (see keepOptimalCover). */
const MAX_SLACK = 1.5;
/** The cap may raise the least total cost (the mean coverage error) by at most this fraction (see maxCap). */
const MEAN_SLACK = 0.01;
/** Bisection steps for the least achievable max coverage error (relative precision 2^-8). */
const BISECTION_STEPS = 8;
/**
 * Under a count budget, the checkpoints the named classes ask for by name (a `change` checkpoint itself
 * rather than one next to it, `best`, `every`) may together raise the cover's total cost by at most this
 * fraction over the best cover that keeps every change event.
 */
export const NAMED_ALLOWANCE = 0.02;
/**
 * Under crowding, a change event at most this many checkpoints after a stronger one is its aftermath (the
 * run recovering from it): one kept checkpoint stands for both. The change score's trailing window.
 */
const AFTERMATH = 8;
/** The named classes crowd a count budget when the checkpoints they ask for take more than this share of it. */
export const NAMED_SHARE = 1 / 4;

/**
 * The coverage of every gap between two candidates, tabulated once per decision (m = candidates):
 * cost[a·m + b] and max[a·m + b] for a < b; the gap before the first kept candidate and after the last in
 * start* and end*.
 */
interface CoverTable {
  /** Checkpoints that may be kept (kept already, or bytes present), ascending. */
  allowed: number[];
  cost: Float64Array;
  max: Float64Array;
  startCost: Float64Array;
  startMax: Float64Array;
  endCost: Float64Array;
  endMax: Float64Array;
}

/** At least one candidate of [lo, hi] (candidate indices, inclusive) must be kept. */
type Window = readonly [lo: number, hi: number];

/** A change event the kept set must hold, and the stronger event it is the aftermath of, if any. */
interface Event {
  request: ClassRequest;
  window: Window;
  after?: Event;
}

/**
 * Windows as the DP uses them: a transition a → b (consecutive kept candidates) may skip no window, so a ≥
 * first[b], the largest `lo` of the windows that end before b; the first kept candidate may follow no
 * window, the last may precede none.
 */
interface Constraints {
  first: Int32Array;
  startOk: Uint8Array;
  endOk: Uint8Array;
}

interface Cover {
  /** Kept candidates, ascending. */
  chosen: number[];
  cost: number;
}

/** Whether keepOptimalCover applies: a count budget and no byte budget, on a run small enough for the DP. */
export function optimalCoverApplies(state: Selection): boolean {
  const { coverage, policy } = state;
  const budget = policy.budget.maxCheckpoints;
  if (budget === null || policy.budget.maxBytes !== null) return false;
  let m = 0;
  for (let i = 0; i < coverage.size; i++) if (coverage.isKept(i) || state.available(i)) m++;
  const k = Math.min(budget, m);
  return m > 0 && m <= MAX_DP_CANDIDATES && (k * m * m) / 2 <= MAX_DP_TRANSITIONS;
}

/**
 * Under a count budget (and no byte budget) on a run small enough, the optimum under the two-neighbour
 * model, by dynamic programming over the ordered checkpoints, deciding the named classes' requests
 * (Selection.deferRequests) together with coverage. The requests crowd the budget when they, with latest
 * and pinned, take more than NAMED_SHARE of it; uncrowded, every request is kept by name.
 *
 * 1. Hard constraints (windows: at least one keepable checkpoint of a span kept): every checkpoint already
 *    kept (latest, pinned); every change event, strongest first — its flagged checkpoint, or when crowded
 *    also the one before it (whichever covers better), and when crowded an event within AFTERMATH
 *    checkpoints after a stronger one shares that one's window; an event whose bytes are deleted (an
 *    orphan) by the checkpoint before it. Events the budget cannot hold are dropped, weakest first. Then
 *    every phase that has a keepable checkpoint (dropped when the budget cannot).
 * 2. The kept set of exactly min(budget, candidates) checkpoints meeting them with the least total
 *    coverage cost (mean coverage error) subject to a cap on the largest distance (maxCap), which trades
 *    little mean for a much better max (k-center's concern).
 * 3. Requests by name, in the named classes' priority order (a change checkpoint itself, `best`,
 *    `every`): when crowded, each is kept when the optimum that keeps it too costs at most NAMED_ALLOWANCE
 *    more than the optimum of step 2, else refused with its price — a `best` next to the latest adds
 *    almost nothing to coverage and yields its slot; uncrowded, each is kept.
 *
 * Returns false when it does not apply (optimalCoverApplies).
 */
export function keepOptimalCover(
  state: Selection,
  phases: PhaseAssignment,
  changeScore: (i: number) => number,
  orphans: readonly ClassRequest[] = [],
): boolean {
  if (!state.deferRequests || !optimalCoverApplies(state)) return false;
  const { coverage, checkpoints } = state;
  const allowed: number[] = [];
  for (let i = 0; i < coverage.size; i++) if (coverage.isKept(i) || state.available(i)) allowed.push(i);
  const m = allowed.length;
  const k = Math.min(state.policy.budget.maxCheckpoints!, m);
  const position = new Int32Array(coverage.size).fill(-1);
  allowed.forEach((i, a) => {
    position[i] = a;
  });
  const budget = budgetText(state.policy.budget);
  const refuse = (r: ClassRequest, why: string) => {
    state.refusals[r.index] ??= `${r.reason}, but ${why}`;
  };

  const hard: Window[] = [];
  for (let a = 0; a < m; a++) if (coverage.isKept(allowed[a])) hard.push([a, a]);
  if (hard.length > k) {
    for (const r of state.requests)
      refuse(r, `the latest and pinned checkpoints alone take more than the budget of ${budget}`);
    return true;
  }
  const table = tabulate(coverage, allowed);
  const feasible = (windows: readonly Window[]) => leastCount(table, constrain(m, windows), Infinity) <= k;
  const named = new Set([...coverage.keptIndices(), ...[...state.requests, ...orphans].map((r) => r.index)]).size;
  const crowded = named > NAMED_SHARE * state.policy.budget.maxCheckpoints!;

  // Change events, strongest first: the flagged checkpoint, or under crowding also the one before it (orphans,
  // whose bytes are gone, only by that one); under crowding, an event within AFTERMATH checkpoints after a
  // stronger one is its aftermath, held by any checkpoint from the stronger event's window up to it.
  const events: Event[] = [];
  const changes = [...state.requests, ...orphans]
    .filter((r, j, all) => r.cls === 'change' && all.findIndex((o) => o.cls === 'change' && o.index === r.index) === j)
    .sort((a, b) => changeScore(b.index) - changeScore(a.index) || a.index - b.index);
  for (const request of changes) {
    const reach = crowded || !state.available(request.index) ? 1 : 0;
    const near = [request.index - reach, request.index].filter((i) => i >= 0 && position[i] >= 0);
    if (near.length === 0) continue;
    const last = position[near[near.length - 1]];
    const after = crowded
      ? events.find((e) => e.request.index < request.index && request.index <= e.request.index + AFTERMATH)
      : undefined;
    events.push({ request, window: after ? [after.window[0], last] : [position[near[0]], last], after });
  }
  while (events.length > 0 && !feasible([...hard, ...events.map((e) => e.window)])) {
    refuse(
      events.pop()!.request,
      `the budget of ${budget} was taken by checkpoints of higher priority (latest, pinned, higher change scores)`,
    );
  }
  let windows: Window[] = [...hard, ...events.map((e) => e.window)];
  const phaseWindows = phaseSpans(allowed, phases.phaseOf);
  if (phaseWindows.length <= k && feasible([...windows, ...phaseWindows])) windows = [...windows, ...phaseWindows];

  const cap = maxCap(table, constrain(m, windows), k);
  let cover = solve(table, windows, k, cap)!;
  const base = cover.cost;
  const limit = crowded ? base * (1 + NAMED_ALLOWANCE) : Number.POSITIVE_INFINITY;
  const accepted: ClassRequest[] = [];
  const dropped = new Set(
    state.requests.filter((r) => r.cls === 'change' && !events.some((e) => e.request.index === r.index)),
  );
  for (const request of state.requests) {
    if (dropped.has(request)) continue;
    const a = position[request.index];
    const alone: Window = [a, a];
    if (cover.chosen.includes(a)) {
      windows.push(alone);
      accepted.push(request);
      continue;
    }
    const trial = solve(table, [...windows, alone], k, cap);
    if (trial && trial.cost <= limit) {
      windows.push(alone);
      cover = trial;
      accepted.push(request);
      continue;
    }
    const event = request.cls === 'change' ? events.find((e) => e.request === request) : undefined;
    if (event) continue; // kept by a neighbour: worded below
    refuse(
      request,
      trial
        ? `under the budget of ${budget} keeping it as well would raise the mean coverage error by ${percent(trial.cost / base - 1)} (the named classes may add at most ${percent(NAMED_ALLOWANCE)} to the best cover that keeps every change event)`
        : `under the budget of ${budget} no kept set holds it together with every change event and phase`,
    );
  }

  const kept = new Set(cover.chosen.map((a) => allowed[a]));
  for (const r of accepted) state.add(r.index, r.cls, r.reason, true);
  for (const { request, window, after } of events) {
    if (accepted.includes(request)) continue;
    let stand = -1;
    for (let a = window[0]; a <= window[1]; a++) {
      const i = allowed[a];
      if (kept.has(i) && (stand < 0 || Math.abs(i - request.index) < Math.abs(stand - request.index))) stand = i;
    }
    const step = checkpoints[request.index].step;
    const at = checkpoints[stand].step;
    const stronger = after ? checkpoints[after.request.index].step : null;
    const why = !state.available(request.index)
      ? `the bytes of step ${step} are deleted`
      : stronger !== null
        ? `it follows the stronger event at step ${stronger} within ${AFTERMATH} checkpoints, and under the budget of ${budget} one checkpoint stands for both`
        : `under the budget of ${budget} it covers the trajectory better than step ${step} itself`;
    state.add(stand, 'change', `stands for the event at step ${step} (${request.reason}): ${why}`, true);
    state.refusals[request.index] ??=
      stronger !== null
        ? `${request.reason}, but it follows the stronger event at step ${stronger} within ${AFTERMATH} checkpoints, and under the budget of ${budget} step ${at} stands for both`
        : `${request.reason}, but under the budget of ${budget} step ${at} next to it stands for the event, covering the trajectory better`;
  }
  for (const i of kept) if (!coverage.isKept(i)) state.add(i, 'phase', null, true);
  return true;
}

/** The span of candidates of each phase that has one, as windows. */
function phaseSpans(allowed: readonly number[], phaseOf: readonly number[]): Window[] {
  const spans: Window[] = [];
  for (let a = 0; a < allowed.length; a++) {
    const last = spans[spans.length - 1];
    if (last && phaseOf[allowed[last[1]]] === phaseOf[allowed[a]]) spans[spans.length - 1] = [last[0], a];
    else spans.push([a, a]);
  }
  return spans;
}

function constrain(m: number, windows: readonly Window[]): Constraints {
  // loByHi[h]: the largest lo of the windows ending at h; first[b] = max over h < b.
  const loByHi = new Int32Array(m).fill(-1);
  let minHi = m;
  let maxLo = -1;
  for (const [lo, hi] of windows) {
    loByHi[hi] = Math.max(loByHi[hi], lo);
    minHi = Math.min(minHi, hi);
    maxLo = Math.max(maxLo, lo);
  }
  const first = new Int32Array(m);
  let bound = 0;
  for (let b = 0; b < m; b++) {
    first[b] = bound;
    if (loByHi[b] > bound) bound = loByHi[b];
  }
  return {
    first,
    startOk: Uint8Array.from({ length: m }, (_, b) => (b <= minHi ? 1 : 0)),
    endOk: Uint8Array.from({ length: m }, (_, b) => (b >= maxLo ? 1 : 0)),
  };
}

/** The least-cost cover of exactly k candidates meeting `windows` with every distance ≤ cap, else uncapped; null when none. */
function solve(table: CoverTable, windows: readonly Window[], k: number, cap: number): Cover | null {
  const c = constrain(table.allowed.length, windows);
  return coverDp(table, c, k, cap) ?? (cap < Infinity ? coverDp(table, c, k, Infinity) : null);
}

/**
 * The cap on the largest coverage distance: MAX_SLACK × the least achievable with k kept (bisection on
 * leastCount), relaxed (bisection up to the uncapped optimum's max) as far as needed for the least cost
 * under the cap to stay within MEAN_SLACK of the uncapped least cost; Infinity when no cap binds.
 */
function maxCap(table: CoverTable, c: Constraints, k: number): number {
  const uncapped = coverDp(table, c, k, Infinity);
  if (!uncapped) return Infinity;
  const uncappedMax = maxOf(table, uncapped.chosen);
  let lo = 0;
  let hi = uncappedMax;
  for (let step = 0; step < BISECTION_STEPS && hi > 0; step++) {
    const mid = (lo + hi) / 2;
    if (leastCount(table, c, mid) <= k) hi = mid;
    else lo = mid;
  }
  const affordable = (cap: number) => (coverDp(table, c, k, cap)?.cost ?? Infinity) <= uncapped.cost * (1 + MEAN_SLACK);
  let cap = MAX_SLACK * hi;
  if (cap >= uncappedMax) return Infinity;
  if (affordable(cap)) return cap;
  let top = uncappedMax;
  for (let step = 0; step < BISECTION_STEPS; step++) {
    const mid = (cap + top) / 2;
    if (affordable(mid)) top = mid;
    else cap = mid;
  }
  return top >= uncappedMax ? Infinity : top;
}

function tabulate(coverage: CoverageModel, allowed: number[]): CoverTable {
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
    cost,
    max,
    startCost: Float64Array.from(allowed, (i) => coverage.gapCost(-1, i)),
    startMax: Float64Array.from(allowed, (i) => coverage.gapMax(-1, i)),
    endCost: Float64Array.from(allowed, (i) => coverage.gapCost(i, n)),
    endMax: Float64Array.from(allowed, (i) => coverage.gapMax(i, n)),
  };
}

/** Largest coverage distance of a kept set (ascending candidate indices) under the two-neighbour model. */
function maxOf(p: CoverTable, chosen: readonly number[]): number {
  const m = p.allowed.length;
  let max = Math.max(p.startMax[chosen[0]], p.endMax[chosen[chosen.length - 1]]);
  for (let j = 1; j < chosen.length; j++) max = Math.max(max, p.max[chosen[j - 1] * m + chosen[j]]);
  return max;
}

/** The least number of kept checkpoints meeting the constraints with every coverage distance ≤ cap (Infinity: none). */
function leastCount(p: CoverTable, c: Constraints, cap: number): number {
  const m = p.allowed.length;
  const need = new Float64Array(m).fill(Infinity);
  let best = Infinity;
  for (let b = 0; b < m; b++) {
    if (c.startOk[b] && p.startMax[b] <= cap) need[b] = 1;
    for (let a = b - 1; a >= c.first[b]; a--) {
      if (need[a] + 1 < need[b] && p.max[a * m + b] <= cap) need[b] = need[a] + 1;
    }
    if (need[b] < best && c.endOk[b] && p.endMax[b] <= cap) best = need[b];
  }
  return best;
}

/** Exactly k kept candidates meeting the constraints with least total cost and every distance ≤ cap; null when none. */
function coverDp(p: CoverTable, c: Constraints, k: number, cap: number): Cover | null {
  const m = p.allowed.length;
  const { cost, max } = p;
  // best[j][b]: least cost of the checkpoints up to candidate b with j kept, the last at b.
  const best = Array.from({ length: k + 1 }, () => new Float64Array(m).fill(Infinity));
  const from = Array.from({ length: k + 1 }, () => new Int32Array(m).fill(-1));
  for (let b = 0; b < m; b++) if (c.startOk[b] && p.startMax[b] <= cap) best[1][b] = p.startCost[b];
  for (let j = 2; j <= k; j++) {
    const prev = best[j - 1];
    const cur = best[j];
    const back = from[j];
    for (let b = j - 1; b < m; b++) {
      let bestCost = Infinity;
      let bestFrom = -1;
      for (let a = Math.max(c.first[b], j - 2); a < b; a++) {
        const before = prev[a];
        if (before === Infinity) continue;
        const at = a * m + b;
        if (max[at] > cap) continue;
        const total = before + cost[at];
        if (total <= bestCost) {
          // Ties go to the later predecessor.
          bestCost = total;
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
    if (!c.endOk[b] || best[k][b] === Infinity || p.endMax[b] > cap) continue;
    const t = best[k][b] + p.endCost[b];
    if (t < total) {
      total = t;
      end = b;
    }
  }
  if (end < 0) return null;
  const chosen: number[] = [];
  for (let j = k, b = end; j >= 1 && b >= 0; b = from[j][b], j--) chosen.push(b);
  return { chosen: chosen.reverse(), cost: total };
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

/** Greedy fill of the remaining budget: the checkpoints that lower the coverage cost most, while they fit. */
export function fillByCoverage(state: Selection): void {
  pickByGain(
    state.coverage,
    (i) => state.available(i),
    (i) => state.fits(i),
    (i) => state.add(i, 'phase', null),
  );
}

/**
 * The discarded checkpoints to hold back while the run goes on (docs/architecture.md §6, "Decisions while the
 * run goes on"): the runners-up of the coverage objective after the final kept set — in the greedy order,
 * each the checkpoint whose keeping as well would lower the cost most — until policy.hold.share of the
 * budget (of its count, rounded down, and of its bytes) is taken. None without a budget, and none when
 * the latest and pinned checkpoints take the whole budget (nothing else could ever be kept). The kept set
 * is left as it was.
 */
export function chooseHeld(state: Selection): number[] {
  const { coverage, policy, checkpoints } = state;
  const { maxCheckpoints, maxBytes } = policy.budget;
  const { share } = policy.hold ?? DEFAULT_HOLD;
  if (share <= 0 || !state.budgetIsFinite()) return [];
  const maxCount = maxCheckpoints === null ? Number.POSITIVE_INFINITY : Math.floor(share * maxCheckpoints);
  const maxHeldBytes = maxBytes === null ? Number.POSITIVE_INFINITY : share * maxBytes;
  let forcedCount = 0;
  let forcedBytes = 0;
  for (let i = 0; i < checkpoints.length; i++) {
    const classes = state.classes[i];
    if (!coverage.isKept(i) || !classes || !(classes.includes('latest') || classes.includes('pinned'))) continue;
    forcedCount++;
    forcedBytes += checkpoints[i].bytes;
  }
  if ((maxCheckpoints !== null && forcedCount >= maxCheckpoints) || (maxBytes !== null && forcedBytes >= maxBytes))
    return [];
  const held: number[] = [];
  let heldBytes = 0;
  pickByGain(
    coverage,
    (i) => state.available(i),
    (i) => held.length < maxCount && heldBytes + checkpoints[i].bytes <= maxHeldBytes,
    (i) => {
      coverage.keep(i);
      held.push(i);
      heldBytes += checkpoints[i].bytes;
    },
  );
  for (const i of held) coverage.unkeep(i);
  return held.sort((a, b) => a - b);
}

/**
 * Greedy picks by coverage gain: repeatedly the candidate, not kept, whose keeping lowers the cost most
 * among those that `fits` (earliest on ties), handed to `take` (which keeps it in the coverage model),
 * until none fits or helps. A pick changes only the gap it falls in, so each gap's best candidate is
 * cached and only the two halves of a split gap are searched again.
 */
function pickByGain(
  coverage: CoverageModel,
  candidate: (i: number) => boolean,
  fits: (i: number) => boolean,
  take: (i: number) => void,
): void {
  const eligible = (i: number) => candidate(i) && fits(i);
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
    if (!fits(top.best.index)) {
      // What fits shrank since this gap was searched: search it again among what still fits.
      addGap(top.left, top.right);
      continue;
    }
    take(top.best.index);
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
