/**
 * How well a kept subset of a run's checkpoints covers the whole run: every checkpoint is served by a
 * kept one, and the coverage cost is the total distance from each checkpoint to the kept checkpoint
 * serving it. Checkpoints are ordered by step and the trajectory is treated as a path: a checkpoint is
 * served by the nearer of the kept checkpoints just before and just after it (the "two-neighbour"
 * model). Keeping a checkpoint then changes only the cost of the gap between kept checkpoints it falls
 * in, which is what makes greedy selection incremental and the optimum a dynamic programme over the
 * ordered checkpoints (cover-selection.ts).
 *
 * Subclasses say what a distance is: along the path (path-coverage.ts, O(log n) per gap, no sketches) or
 * between sketches (sketch-coverage.ts, small runs).
 */
export abstract class CoverageModel {
  private readonly keptFlags: Uint8Array;

  constructor(readonly size: number) {
    this.keptFlags = new Uint8Array(size);
  }

  /** Distance between checkpoints i and j. */
  abstract distance(i: number, j: number): number;

  /**
   * Cost of the checkpoints strictly between kept indices `left` and `right` (−1 / size when there is no
   * kept checkpoint on that side), each served by the nearer of the two; Infinity when neither exists.
   */
  abstract gapCost(left: number, right: number): number;

  /** Largest distance from a checkpoint strictly between kept `left` and `right` to the nearer of them (0 for an empty gap). */
  abstract gapMax(left: number, right: number): number;

  isKept(i: number): boolean {
    return this.keptFlags[i] === 1;
  }

  keep(i: number): void {
    this.keptFlags[i] = 1;
  }

  unkeep(i: number): void {
    this.keptFlags[i] = 0;
  }

  /** Kept indices in ascending order. */
  keptIndices(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.size; i++) if (this.keptFlags[i]) out.push(i);
    return out;
  }

  /** How much keeping `c` (inside the gap between kept `left` and `right`) lowers the total cost. */
  gain(c: number, left: number, right: number): number {
    const before = this.gapCost(left, right);
    const after = this.gapCost(left, c) + this.gapCost(c, right);
    return before === Infinity ? Number.MAX_VALUE - after : before - after;
  }

  /** The eligible candidate (ascending indices, not kept) whose keeping lowers the cost most; earliest on ties. */
  bestOf(candidates: readonly number[], eligible: (i: number) => boolean): { index: number; gain: number } | null {
    const nextKept = this.nextKept();
    let best: { index: number; gain: number } | null = null;
    let left = -1;
    let scanned = 0;
    for (const c of candidates) {
      for (; scanned < c; scanned++) if (this.keptFlags[scanned]) left = scanned;
      if (this.keptFlags[c] || !eligible(c)) continue;
      const gain = this.gain(c, left, nextKept[c]);
      if (!best || gain > best.gain) best = { index: c, gain };
    }
    return best;
  }

  /** The best eligible candidate strictly between kept indices `left` and `right`; earliest on ties. */
  bestInGap(left: number, right: number, eligible: (i: number) => boolean): { index: number; gain: number } | null {
    const before = this.gapCost(left, right);
    let index = -1;
    let most = Number.NEGATIVE_INFINITY;
    for (let c = left + 1; c < right; c++) {
      if (!eligible(c)) continue;
      const after = this.gapCost(left, c) + this.gapCost(c, right);
      const gain = before === Infinity ? Number.MAX_VALUE - after : before - after;
      if (index < 0 || gain > most) {
        index = c;
        most = gain;
      }
    }
    return index < 0 ? null : { index, gain: most };
  }

  /** For every checkpoint not kept, how much keeping it too would lower the cost; 0 for kept ones. */
  gains(): Float64Array {
    const out = new Float64Array(this.size);
    let left = -1;
    for (let right = 0; right <= this.size; right++) {
      if (right < this.size && !this.keptFlags[right]) continue;
      const before = this.gapCost(left, right);
      for (let c = left + 1; c < right; c++) {
        const after = this.gapCost(left, c) + this.gapCost(c, right);
        out[c] = before === Infinity ? Infinity : before - after;
      }
      left = right;
    }
    return out;
  }

  /**
   * The kept checkpoint serving each checkpoint under the two-neighbour model (itself when kept; the
   * earlier one on ties); −1 when nothing is kept.
   */
  servers(): Int32Array {
    const out = new Int32Array(this.size).fill(-1);
    const next = this.nextKept();
    let prev = -1;
    for (let i = 0; i < this.size; i++) {
      if (this.keptFlags[i]) prev = i;
      const after = next[i];
      if (prev < 0) out[i] = after < this.size ? after : -1;
      else if (after >= this.size || prev === i) out[i] = prev;
      else out[i] = this.distance(i, after) < this.distance(i, prev) ? after : prev;
    }
    return out;
  }

  /** Distance from each checkpoint to the kept checkpoint nearest to it (Infinity when none is kept). */
  distances(servers: Int32Array = this.servers()): Float64Array {
    const out = new Float64Array(this.size);
    for (let i = 0; i < this.size; i++) out[i] = servers[i] < 0 ? Infinity : this.distance(i, servers[i]);
    return out;
  }

  /** next[i]: the first kept index ≥ i, or size. */
  protected nextKept(): Int32Array {
    const next = new Int32Array(this.size + 1);
    next[this.size] = this.size;
    for (let i = this.size - 1; i >= 0; i--) next[i] = this.keptFlags[i] ? i : next[i + 1];
    return next;
  }
}
