import type { RecordedRun } from './retention-runs.js';

/** The best coverage any rule can reach under the evaluation's constraints, found by exhaustive search. */
export interface CoverageBound {
  /** Smallest mean coverage over all admissible kept sets (fraction of the path length). */
  meanCoverage: number;
  /** Smallest max coverage over all admissible kept sets (its own minimiser, usually another set). */
  maxCoverage: number;
  /** Smallest mean coverage among the sets whose max coverage is ≤ `maxCap`; null when none is. */
  meanCoverageUnderMaxCap: number | null;
  /** Kept sets examined. */
  sets: number;
}

/** Above this many admissible sets the search is not attempted (budget 6 of 60 is ≈ 5·10⁶). */
export const BOUND_MAX_SETS = 2e7;

function binomial(n: number, k: number): number {
  let out = 1;
  for (let i = 1; i <= k; i++) out = (out * (n - k + i)) / i;
  return out;
}

/**
 * Lower bound for eval-retention's targets: every kept set of exactly `budget` checkpoints that keeps the
 * latest (what resuming needs, and what every rule in the evaluation keeps) and catches every event (a kept
 * checkpoint within one checkpoint of it, the evaluation's recall), scored with the same exact distances.
 * No rule meeting recall 1.0 can do better than these two numbers, so a target below them is infeasible
 * on that run. Depth-first over increasing indices with the nearest-kept distances carried per depth;
 * branches where an event already passed uncaught are cut. Null when there are more than `maxSets` sets.
 * `maxCap` (a fraction of the path length, like the coverages) asks what the mean can be when the max
 * must stay within it: the two targets can be met one at a time but not together.
 */
export function coverageBound(
  run: RecordedRun,
  distances: Float64Array,
  budget: number,
  maxCap = Number.POSITIVE_INFINITY,
  maxSets = BOUND_MAX_SETS,
): CoverageBound | null {
  const n = run.weights.length;
  if (budget >= n || binomial(n - 1, budget - 1) > maxSets) return null;
  let path = 0;
  for (let i = 1; i < n; i++) path += distances[i * n + i - 1];
  const last = n - 1;
  const events = [...run.events].sort((a, b) => a - b);
  // nearest[d] = distance from each checkpoint to its nearest kept one after d choices (the latest is choice 0).
  const nearest = Array.from({ length: budget }, () => new Float64Array(n));
  for (let i = 0; i < n; i++) nearest[0][i] = distances[i * n + last];
  const caughtByLatest = (e: number) => last - e <= 1;
  let bestSum = Number.POSITIVE_INFINITY;
  let bestMax = Number.POSITIVE_INFINITY;
  let bestSumUnderCap = Number.POSITIVE_INFINITY;
  const cap = maxCap * path;
  let sets = 0;
  // `pending` = index into `events` of the first event not yet caught by a chosen index below `from`.
  const visit = (depth: number, from: number, pending: number) => {
    if (depth === budget) {
      sets++;
      let sum = 0;
      let max = 0;
      for (const d of nearest[depth - 1]) {
        sum += d;
        if (d > max) max = d;
      }
      if (sum < bestSum) bestSum = sum;
      if (max < bestMax) bestMax = max;
      if (max <= cap && sum < bestSumUnderCap) bestSumUnderCap = sum;
      return;
    }
    // The remaining choices are the indices from..last-1; leave room for the ones still to come.
    for (let k = from; k <= last - 1 - (budget - 1 - depth); k++) {
      let next = pending;
      while (next < events.length && (caughtByLatest(events[next]) || Math.abs(events[next] - k) <= 1)) next++;
      // An event more than one checkpoint below k can no longer be caught: every later choice is larger.
      if (next < events.length && events[next] < k - 1 && !caughtByLatest(events[next])) break;
      if (depth === budget - 1 && next < events.length) continue;
      const previous = nearest[depth - 1];
      const current = nearest[depth];
      for (let i = 0; i < n; i++) {
        const d = distances[i * n + k];
        current[i] = Math.min(d, previous[i]);
      }
      visit(depth + 1, k + 1, next);
    }
  };
  let first = 0;
  while (first < events.length && caughtByLatest(events[first])) first++;
  if (budget === 1) {
    if (first < events.length) return null;
    const row = nearest[0];
    const max = Math.max(...row) / path;
    const mean = row.reduce((a, b) => a + b, 0) / n / path;
    return { meanCoverage: mean, maxCoverage: max, meanCoverageUnderMaxCap: max <= maxCap ? mean : null, sets: 1 };
  }
  visit(1, 0, first);
  if (sets === 0) return null;
  return {
    meanCoverage: bestSum / n / path,
    maxCoverage: bestMax / path,
    meanCoverageUnderMaxCap: Number.isFinite(bestSumUnderCap) ? bestSumUnderCap / n / path : null,
    sets,
  };
}
