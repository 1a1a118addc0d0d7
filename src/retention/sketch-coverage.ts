import { diffNorm, fold } from '../trajectory/sketch-distance.js';
import type { CheckpointSummary } from '../model/summary.js';
import { CoverageModel } from './coverage-model.js';

/** Runs with more checkpoints than this are covered along the path (path-coverage.ts). */
export const SKETCH_COVERAGE_MAX_CHECKPOINTS = 200;
/** Most bucket-differences computed per decision for the distance matrix (pairs × buckets). */
const MAX_MATRIX_WORK = 8_000_000;
const MAX_BUCKETS = 2048;
const MIN_BUCKETS = 256;

/**
 * Coverage with sketch distances between checkpoints (docs/architecture.md §5: ||S(a) − S(b)|| estimates ||w_a − w_b||).
 * All pairwise distances are computed once per decision, from the sketches folded to at most 2048 buckets
 * (a CountSketch folded to fewer buckets is a CountSketch of those buckets; the relative error of a
 * distance grows to about sqrt(2/buckets)/2, 1.6% at 2048, 4.4% at 256), so the work stays under
 * MAX_MATRIX_WORK: a few milliseconds for 60 checkpoints, under 10 ms at the limit of 200.
 *
 * Gap costs use the two-neighbour model (coverage-model.ts) and are memoised: O(gap length) the first
 * time. `distances()` is exact nearest-kept in sketch space (any kept checkpoint, not only neighbours).
 */
export class SketchCoverage extends CoverageModel {
  private readonly matrix: Float64Array;
  private readonly gapMemo: Float64Array;
  private readonly gapMaxMemo: Float64Array;

  private constructor(size: number, matrix: Float64Array) {
    super(size);
    this.matrix = matrix;
    this.gapMemo = new Float64Array((size + 1) * (size + 1)).fill(NaN);
    this.gapMaxMemo = new Float64Array((size + 1) * (size + 1)).fill(NaN);
  }

  /** Null when the summaries cannot be used (missing, different specs, too many). */
  static fromSummaries(summaries: readonly (CheckpointSummary | undefined)[]): SketchCoverage | null {
    const n = summaries.length;
    if (n === 0 || n > SKETCH_COVERAGE_MAX_CHECKPOINTS) return null;
    const first = summaries[0];
    if (!first) return null;
    for (const s of summaries) {
      if (
        !s ||
        s.spec.version !== first.spec.version ||
        s.spec.k !== first.spec.k ||
        s.spec.tensorK !== first.spec.tensorK
      )
        return null;
      if (s.sketch.length !== first.sketch.length) return null;
    }
    const k = first.sketch.length;
    const pairs = Math.max(1, (n * (n - 1)) / 2);
    let buckets = k;
    if (isPowerOfTwo(k)) {
      buckets = Math.min(k, MAX_BUCKETS);
      while (buckets > MIN_BUCKETS && pairs * buckets > MAX_MATRIX_WORK) buckets >>= 1;
    }
    if (pairs * Math.min(buckets, k) > 4 * MAX_MATRIX_WORK) return null;
    const folded = summaries.map((s) => fold(s!.sketch, Math.min(buckets, k)));
    const matrix = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        const d = diffNorm(folded[i], folded[j]);
        matrix[i * n + j] = d;
        matrix[j * n + i] = d;
      }
    }
    return new SketchCoverage(n, matrix);
  }

  distance(i: number, j: number): number {
    return this.matrix[i * this.size + j];
  }

  gapCost(left: number, right: number): number {
    if (right - left <= 1) return 0;
    if (left < 0 && right >= this.size) return Infinity;
    const key = (left + 1) * (this.size + 1) + right;
    if (Number.isNaN(this.gapMemo[key])) this.measureGap(left, right, key);
    return this.gapMemo[key];
  }

  gapMax(left: number, right: number): number {
    if (right - left <= 1) return 0;
    if (left < 0 && right >= this.size) return Infinity;
    const key = (left + 1) * (this.size + 1) + right;
    if (Number.isNaN(this.gapMaxMemo[key])) this.measureGap(left, right, key);
    return this.gapMaxMemo[key];
  }

  private measureGap(left: number, right: number, key: number): void {
    let cost = 0;
    let max = 0;
    for (let i = left + 1; i < right; i++) {
      const toLeft = left < 0 ? Infinity : this.matrix[i * this.size + left];
      const toRight = right >= this.size ? Infinity : this.matrix[i * this.size + right];
      const d = Math.min(toLeft, toRight);
      cost += d;
      if (d > max) max = d;
    }
    this.gapMemo[key] = cost;
    this.gapMaxMemo[key] = max;
  }

  /** Nearest kept checkpoint of all, not only the neighbours serving it (`servers` unused). */
  override distances(_servers?: Int32Array): Float64Array {
    const kept = this.keptIndices();
    const out = new Float64Array(this.size).fill(Infinity);
    for (let i = 0; i < this.size; i++) for (const c of kept) out[i] = Math.min(out[i], this.matrix[i * this.size + c]);
    return out;
  }
}

function isPowerOfTwo(x: number): boolean {
  return x > 0 && (x & (x - 1)) === 0;
}
