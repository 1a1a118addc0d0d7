import { CoverageModel } from './coverage-model.js';

/**
 * Coverage on the trajectory's arc length: checkpoint i sits at s_i, its (clipped) path length since the
 * first checkpoint, and the distance between two checkpoints is |s_i − s_j|. That is an upper bound of
 * their weight-space distance, exact along a straight stretch, and needs no sketch: the engine's cost for
 * long runs stays O(n log n) whatever the sketch size. It overstates distances where training wanders
 * (noise-dominated updates), so small runs with sketches use sketch-coverage.ts instead.
 *
 * With prefix sums of s, the cost of any gap is O(log n): a binary search for the midpoint between its
 * two ends splits the points between them.
 */
export class PathCoverage extends CoverageModel {
  private readonly prefix: Float64Array;

  /** `positions` non-decreasing. */
  constructor(private readonly positions: Float64Array) {
    super(positions.length);
    this.prefix = new Float64Array(positions.length + 1);
    for (let i = 0; i < positions.length; i++) this.prefix[i + 1] = this.prefix[i] + positions[i];
  }

  distance(i: number, j: number): number {
    return Math.abs(this.positions[i] - this.positions[j]);
  }

  /** The index in [a, b) minimising the summed distance to the points of [a, b): their median. */
  medianOf(a: number, b: number): number {
    return (a + b - 1) >> 1;
  }

  /** The points [a, b) that kept index `c` serves, given its kept neighbours `left` and `right` (−1 / size for none). */
  servedRange(c: number, left: number, right: number): [number, number] {
    const a = left < 0 ? 0 : this.upperBound((this.positions[left] + this.positions[c]) / 2, left + 1, c);
    const b =
      right >= this.size ? this.size : this.upperBound((this.positions[c] + this.positions[right]) / 2, c, right);
    return [a, b];
  }

  gapCost(left: number, right: number): number {
    const a = left + 1;
    const b = right;
    if (b <= a) return 0;
    if (left < 0 && right >= this.size) return Infinity;
    if (left < 0) return this.sumDistance(a, b, this.positions[right]);
    if (right >= this.size) return this.sumDistance(a, b, this.positions[left]);
    const split = this.upperBound((this.positions[left] + this.positions[right]) / 2, a, b);
    return this.sumDistance(a, split, this.positions[left]) + this.sumDistance(split, b, this.positions[right]);
  }

  gapMax(left: number, right: number): number {
    const a = left + 1;
    const b = right;
    if (b <= a) return 0;
    if (left < 0 && right >= this.size) return Infinity;
    if (left < 0) return this.positions[right] - this.positions[a];
    if (right >= this.size) return this.positions[b - 1] - this.positions[left];
    const split = this.upperBound((this.positions[left] + this.positions[right]) / 2, a, b);
    const toLeft = split > a ? this.positions[split - 1] - this.positions[left] : 0;
    const toRight = split < b ? this.positions[right] - this.positions[split] : 0;
    return Math.max(toLeft, toRight);
  }

  /** Σ |s_i − p| over i in [a, b), where all s_i lie on one side of p. */
  private sumDistance(a: number, b: number, p: number): number {
    if (b <= a) return 0;
    return Math.abs(this.prefix[b] - this.prefix[a] - p * (b - a));
  }

  /** First index in [a, b) with s > x, or b. */
  private upperBound(x: number, a: number, b: number): number {
    let lo = a;
    let hi = b;
    while (lo < hi) {
      const m = (lo + hi) >> 1;
      if (this.positions[m] <= x) lo = m + 1;
      else hi = m;
    }
    return lo;
  }
}

/**
 * Positions on the path-length line, with each update clipped to 3× the median of the updates around it
 * (±4 checkpoints): an isolated jump (a loss spike that training then undoes) would otherwise stretch the
 * line as if the checkpoints on either side were far apart. Such jumps are kept by the `change` class.
 */
export function clippedPathPositions(updateNorms: readonly (number | null)[]): Float64Array {
  const n = updateNorms.length;
  const updates = Float64Array.from(updateNorms, (u) => u ?? 0);
  const window = new Float64Array(9);
  const positions = new Float64Array(n);
  let s = 0;
  for (let i = 0; i < n; i++) {
    const from = Math.max(1, i - 4);
    const to = Math.min(n, i + 5);
    let m = 0;
    for (let j = from; j < to; j++) {
      // Insertion into the sorted window.
      const v = updates[j];
      let k = m++;
      for (; k > 0 && window[k - 1] > v; k--) window[k] = window[k - 1];
      window[k] = v;
    }
    const median = m ? window[m >> 1] : updates[i];
    s += Math.min(updates[i], 3 * median);
    positions[i] = s;
  }
  return positions;
}
