/**
 * Coverage of a run's checkpoints by a kept subset, on the trajectory's arc length: checkpoint i sits at
 * s_i = its path length (the sum of update norms since the first checkpoint), and the distance between two
 * checkpoints is |s_i − s_j|, an upper bound of their weight-space distance that is exact along a straight
 * stretch and needs no sketch comparisons. Each checkpoint is served by its nearest kept checkpoint; the
 * coverage error is the total of those distances.
 *
 * Kept positions split the run into gaps; adding a checkpoint only changes the cost of the gap it falls
 * in, and with prefix sums of s the cost of any gap is O(log n) (a binary search for the midpoint between
 * its two ends). Greedy selection therefore costs O(n log n) per gap that changes.
 */
export class PathCoverage {
  private readonly prefix: Float64Array;
  private readonly kept: boolean[];

  /** `positions` non-decreasing. */
  constructor(private readonly positions: readonly number[]) {
    this.prefix = new Float64Array(positions.length + 1);
    positions.forEach((s, i) => (this.prefix[i + 1] = this.prefix[i] + s));
    this.kept = positions.map(() => false);
  }

  get size(): number {
    return this.positions.length;
  }

  isKept(i: number): boolean {
    return this.kept[i];
  }

  keep(i: number): void {
    this.kept[i] = true;
  }

  unkeep(i: number): void {
    this.kept[i] = false;
  }

  /**
   * The index in [a, b) minimising the summed distance to the points of [a, b): the median point, since
   * positions are sorted.
   */
  medianOf(a: number, b: number): number {
    return (a + b - 1) >> 1;
  }

  /** The points [a, b) that kept index `c` serves, given its kept neighbours `left` and `right`. */
  servedRange(c: number, left: number, right: number): [number, number] {
    const a = left < 0 ? 0 : this.upperBound((this.positions[left] + this.positions[c]) / 2, left + 1, c);
    const b = right >= this.size ? this.size : this.upperBound((this.positions[c] + this.positions[right]) / 2, c, right);
    return [a, b];
  }

  /**
   * The candidate (ascending indices, not kept) whose keeping lowers the cost most, with that gain;
   * earliest on ties. One pass: O(n log n).
   */
  bestOf(candidates: readonly number[], eligible: (i: number) => boolean): { index: number; gain: number } | null {
    const nextKept = new Int32Array(this.size + 1);
    nextKept[this.size] = this.size;
    for (let i = this.size - 1; i >= 0; i--) nextKept[i] = this.kept[i] ? i : nextKept[i + 1];
    let best: { index: number; gain: number } | null = null;
    let left = -1;
    let scanned = 0;
    for (const c of candidates) {
      for (; scanned < c; scanned++) if (this.kept[scanned]) left = scanned;
      if (this.kept[c] || !eligible(c)) continue;
      const gain = this.gain(c, left, nextKept[c]);
      if (!best || gain > best.gain) best = { index: c, gain };
    }
    return best;
  }

  /** The best eligible candidate strictly between kept indices `left` and `right`. */
  bestInGap(left: number, right: number, eligible: (i: number) => boolean): { index: number; gain: number } | null {
    let best: { index: number; gain: number } | null = null;
    for (let c = left + 1; c < right; c++) {
      if (!eligible(c)) continue;
      const gain = this.gain(c, left, right);
      if (!best || gain > best.gain) best = { index: c, gain };
    }
    return best;
  }

  /** Kept indices in ascending order. */
  keptIndices(): number[] {
    const out: number[] = [];
    this.kept.forEach((k, i) => k && out.push(i));
    return out;
  }

  /** For every checkpoint not kept, how much keeping it would lower the cost; 0 for kept ones. */
  gains(): number[] {
    const out = new Array<number>(this.size).fill(0);
    const kept = this.keptIndices();
    for (let g = 0; g <= kept.length; g++) {
      const left = g === 0 ? -1 : kept[g - 1];
      const right = g === kept.length ? this.size : kept[g];
      for (let c = left + 1; c < right; c++) out[c] = this.gain(c, left, right);
    }
    return out;
  }

  /** Cost of the points strictly between kept indices `left` and `right` (either may be absent: −1 / size). */
  gapCost(left: number, right: number): number {
    const a = left + 1;
    const b = right;
    if (b <= a) return 0;
    if (left < 0 && right >= this.size) return Infinity;
    if (left < 0) return this.sumDistance(a, b, this.positions[right]);
    if (right >= this.size) return this.sumDistance(a, b, this.positions[left]);
    const mid = (this.positions[left] + this.positions[right]) / 2;
    const split = this.upperBound(mid, a, b);
    return this.sumDistance(a, split, this.positions[left]) + this.sumDistance(split, b, this.positions[right]);
  }

  /** How much keeping `c` (inside the gap between kept `left` and `right`) lowers the total cost. */
  gain(c: number, left: number, right: number): number {
    const before = this.gapCost(left, right);
    const after = this.gapCost(left, c) + this.gapCost(c, right);
    return before === Infinity ? Number.MAX_VALUE - after : before - after;
  }

  /** Distance from each checkpoint to its nearest kept one (Infinity when none is kept). */
  distances(): number[] {
    const out = new Array<number>(this.size).fill(Infinity);
    let last = -1;
    for (let i = 0; i < this.size; i++) {
      if (this.kept[i]) last = i;
      if (last >= 0) out[i] = this.positions[i] - this.positions[last];
    }
    last = -1;
    for (let i = this.size - 1; i >= 0; i--) {
      if (this.kept[i]) last = i;
      if (last >= 0) out[i] = Math.min(out[i], this.positions[last] - this.positions[i]);
    }
    return out;
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
