/**
 * Splitting a run's checkpoints into training phases (docs/architecture.md §5).
 *
 * - `fraction`: phase p holds the checkpoints with step / plannedSteps in [p/count, (p+1)/count).
 * - `dynamics`: the optimal segmentation of the checkpoint series into `count` contiguous segments
 *   minimising the total within-segment sum of squared deviations of the features, by dynamic programming
 *   over prefix sums (O(count · n²)). The features are the log per-step update norm and, when known at
 *   every checkpoint, the log training loss, each cleared of isolated outliers (hampelFilter: a stall or a
 *   spike cannot place a boundary) and standardised to unit variance so neither dominates.
 *   Every segment holds at least `minSegment` checkpoints (default ⌊n / (4 · count)⌋, at least 1), so a
 *   short burst (the newest checkpoints) cannot make a phase of its own and boundaries stay put as
 *   checkpoints arrive. Above MAX_POINTS (500) checkpoints, consecutive checkpoints are pooled into equal
 *   groups first and boundaries fall between groups: the cost stays O(count · 500²) ≈ 1 ms however long
 *   the run (n = 10,000 pools groups of 20). Ties go to the earliest boundary, so the result is
 *   deterministic.
 *
 * With fewer checkpoints than phases, checkpoint i gets phase i: the run has not reached the later
 * phases yet. Boundaries move as checkpoints arrive; decisions that depend on them are provisional.
 */
export type PhaseMethod = 'fraction' | 'dynamics';

export interface PhaseInput {
  steps: readonly number[];
  /** Per checkpoint; null where unknown (the first checkpoint). */
  updateNormPerStep: readonly (number | null)[];
  /** Per checkpoint; null where unknown. Used only when known everywhere. */
  trainLoss?: readonly (number | null)[];
  plannedSteps?: number | null;
  count?: number;
  /** `auto`: fraction when plannedSteps is known, else dynamics. */
  by?: PhaseMethod | 'auto';
  /** Least checkpoints per phase by dynamics; default ⌊n / (4 · count)⌋ (at least 1). */
  minSegment?: number;
}

export interface PhaseAssignment {
  method: PhaseMethod;
  names: string[];
  /** Phase index of each checkpoint, non-decreasing in step order. */
  phaseOf: number[];
}

const MAX_POINTS = 500;
/** Half-width of the dynamics features' outlier filter: outliers up to this many checkpoints long vanish. */
const FILTER_RADIUS = 3;
const HAMPEL_Z = 3;

/** How a run is split into phases: from its retention policy's `phase` settings. */
export interface PhaseSettings {
  count: number;
  by: PhaseMethod | 'auto';
}

/** A run's checkpoints as the segmentation reads them (sorted by step). */
export interface PhaseSeries {
  steps: readonly number[];
  updateNormPerStep: readonly (number | null)[];
  trainLoss: readonly (number | null)[];
  plannedSteps: number | null;
}

/**
 * The run's one phase segmentation, used by the trajectory, retention's reasons and the estimate alike:
 * `fraction` without plannedSteps falls back to `dynamics` rather than failing.
 */
export function segmentRun(series: PhaseSeries, settings: PhaseSettings): PhaseAssignment {
  return assignPhases({
    steps: series.steps,
    updateNormPerStep: series.updateNormPerStep,
    trainLoss: series.trainLoss,
    plannedSteps: series.plannedSteps,
    count: settings.count,
    by: settings.by === 'fraction' && !series.plannedSteps ? 'dynamics' : settings.by,
  });
}

/** Contiguous runs of one phase as step ranges, in step order. */
export function phaseBoundaries(
  steps: readonly number[],
  phases: PhaseAssignment,
): { phase: string; fromStep: number; toStep: number }[] {
  const boundaries: { phase: string; fromStep: number; toStep: number }[] = [];
  steps.forEach((step, i) => {
    const phase = phases.names[phases.phaseOf[i]];
    const last = boundaries[boundaries.length - 1];
    if (last && last.phase === phase) last.toStep = step;
    else boundaries.push({ phase, fromStep: step, toStep: step });
  });
  return boundaries;
}

export function phaseNames(count: number): string[] {
  return count === 3 ? ['early', 'mid', 'late'] : Array.from({ length: count }, (_, i) => `phase-${i + 1}`);
}

export function assignPhases(input: PhaseInput): PhaseAssignment {
  const count = input.count ?? 3;
  const n = input.steps.length;
  const names = phaseNames(count);
  const method: PhaseMethod =
    input.by === 'fraction' || (input.by !== 'dynamics' && input.plannedSteps) ? 'fraction' : 'dynamics';
  if (method === 'fraction') {
    if (!input.plannedSteps) throw new RangeError('phases by fraction need plannedSteps');
    const planned = input.plannedSteps;
    return { method, names, phaseOf: input.steps.map((s) => Math.min(count - 1, Math.floor((s / planned) * count))) };
  }
  if (n <= count) return { method, names, phaseOf: input.steps.map((_, i) => i) };
  const minSegment = Math.max(1, Math.min(Math.floor(n / count), input.minSegment ?? Math.floor(n / (4 * count))));
  return { method, names, phaseOf: segmentByDynamics(features(input), count, minSegment) };
}

/** One row per checkpoint, standardised columns, each cleared of isolated outliers first. */
function features(input: PhaseInput): number[][] {
  const n = input.steps.length;
  const columns: number[][] = [];
  columns.push(hampelFilter(input.updateNormPerStep.map((u) => (u !== null && u > 0 ? Math.log(u) : null))));
  const loss = input.trainLoss;
  if (loss && loss.length === n && loss.every((l) => l !== null && l > 0))
    columns.push(hampelFilter(loss.map((l) => Math.log(l as number))));
  const standardised = columns.map(standardise);
  return Array.from({ length: n }, (_, i) => standardised.map((c) => c[i]));
}

/**
 * A Hampel filter: a value more than HAMPEL_Z robust deviations (1.4826 · MAD) from the median of the known
 * values within ±FILTER_RADIUS checkpoints is replaced by that median, and so is an unknown one (a zero
 * update); every other value is kept as it is. So a run of up to FILTER_RADIUS outliers — a stall, a
 * duplicate upload, a spike — cannot place a boundary, while ordinary values, and steps that last, are
 * segmented exactly as they are.
 */
function hampelFilter(column: readonly (number | null)[]): number[] {
  const n = column.length;
  const out = new Array<number>(n);
  const near = new Float64Array(2 * FILTER_RADIUS + 1);
  let last = column.find((v) => v !== null) ?? 0;
  for (let i = 0; i < n; i++) {
    let m = 0;
    for (let j = Math.max(0, i - FILTER_RADIUS); j <= Math.min(n - 1, i + FILTER_RADIUS); j++) {
      const v = column[j];
      if (v !== null) near[m++] = v;
    }
    const v = column[i];
    if (m === 0) {
      out[i] = last;
      continue;
    }
    const median = medianOf(near, m);
    last = v !== null && !isOutlier(near, m, median, v) ? v : median;
    out[i] = last;
  }
  return out;
}

/**
 * |v − median| > HAMPEL_Z · 1.4826 · MAD over values[0, m). For odd m the MAD is the (m >> 1)-th smallest
 * deviation, so it is below a bound exactly when more than half the deviations are: a count, no sort.
 */
function isOutlier(values: Float64Array, m: number, median: number, v: number): boolean {
  const bound = Math.abs(v - median) / (HAMPEL_Z * 1.4826);
  if (m % 2 === 0) {
    for (let j = 0; j < m; j++) values[j] = Math.abs(values[j] - median);
    return medianOf(values, m) < bound;
  }
  let below = 0;
  for (let j = 0; j < m; j++) if (Math.abs(values[j] - median) < bound) below++;
  return below > m >> 1;
}

/** Median of values[0, m), a handful; sorts them in place (insertion sort). */
function medianOf(values: Float64Array, m: number): number {
  for (let i = 1; i < m; i++) {
    const v = values[i];
    let j = i - 1;
    for (; j >= 0 && values[j] > v; j--) values[j + 1] = values[j];
    values[j + 1] = v;
  }
  const h = m >> 1;
  return m % 2 ? values[h] : (values[h - 1] + values[h]) / 2;
}

function standardise(column: number[]): number[] {
  const mean = column.reduce((a, b) => a + b, 0) / column.length;
  const sd = Math.sqrt(column.reduce((a, v) => a + (v - mean) ** 2, 0) / column.length);
  return column.map((v) => (sd > 0 ? (v - mean) / sd : 0));
}

function segmentByDynamics(rows: number[][], count: number, minSegment: number): number[] {
  const n = rows.length;
  const groupSize = Math.ceil(n / MAX_POINTS);
  const minGroups = Math.max(
    1,
    Math.min(Math.floor(Math.ceil(n / groupSize) / count), Math.ceil(minSegment / groupSize)),
  );
  const groups: { rows: number[][]; members: number }[] = [];
  for (let i = 0; i < n; i += groupSize)
    groups.push({ rows: rows.slice(i, i + groupSize), members: Math.min(groupSize, n - i) });
  const groupPhase = optimalSegments(
    groups.map((g) => g.rows),
    count,
    minGroups,
  );
  const phaseOf: number[] = [];
  groups.forEach((g, gi) => {
    for (let m = 0; m < g.members; m++) phaseOf.push(groupPhase[gi]);
  });
  return phaseOf;
}

/** Least-squares segmentation of groups of rows into `count` contiguous segments of ≥ minGroups groups. */
function optimalSegments(groups: number[][][], count: number, minGroups: number): number[] {
  const g = groups.length;
  const dims = groups[0][0].length;
  // Prefix sums over groups of count, Σx and Σx² per dimension.
  const cnt = new Float64Array(g + 1);
  const sum = Array.from({ length: dims }, () => new Float64Array(g + 1));
  const sq = Array.from({ length: dims }, () => new Float64Array(g + 1));
  groups.forEach((rows, i) => {
    cnt[i + 1] = cnt[i] + rows.length;
    for (let d = 0; d < dims; d++) {
      let s = 0;
      let q = 0;
      for (const r of rows) {
        s += r[d];
        q += r[d] * r[d];
      }
      sum[d][i + 1] = sum[d][i] + s;
      sq[d][i + 1] = sq[d][i] + q;
    }
  });
  const cost = (a: number, b: number): number => {
    const c = cnt[b] - cnt[a];
    let total = 0;
    for (let d = 0; d < dims; d++) {
      const s = sum[d][b] - sum[d][a];
      total += sq[d][b] - sq[d][a] - (s * s) / c;
    }
    return total;
  };
  const segments = Math.min(count, g);
  // best[k][j]: least cost of splitting groups [0, j) into k segments; from[k][j]: where the last starts.
  const best = Array.from({ length: segments + 1 }, () => new Float64Array(g + 1).fill(Infinity));
  const from = Array.from({ length: segments + 1 }, () => new Int32Array(g + 1));
  best[0][0] = 0;
  for (let k = 1; k <= segments; k++) {
    for (let j = k * minGroups; j <= g - (segments - k) * minGroups; j++) {
      for (let i = (k - 1) * minGroups; i <= j - minGroups; i++) {
        if (best[k - 1][i] === Infinity) continue;
        const c = best[k - 1][i] + cost(i, j);
        if (c < best[k][j] - 1e-12) {
          best[k][j] = c;
          from[k][j] = i;
        }
      }
    }
  }
  const phase = new Array<number>(g).fill(0);
  let end = g;
  for (let k = segments; k >= 1; k--) {
    const start = from[k][end];
    for (let i = start; i < end; i++) phase[i] = k - 1;
    end = start;
  }
  return phase;
}
