import { elementHash, nameHash } from './sketch-hash.js';
import type { CheckpointSummary, SketchSpec, TensorStats } from '../model/summary.js';

/**
 * Geometry from sketches. CountSketch S is linear and preserves inner products in expectation, so
 * ||w_a − w_b||² ≈ ||S(a) − S(b)||² and <w_a − w_b, w_c − w_d> ≈ <S(a) − S(b), S(c) − S(d)>, with relative
 * error about sqrt(2/k) on squared norms (half that on norms). Differences are taken bucket by bucket in
 * float64, so an update of 1e-6 of the weights' norm keeps ~10 significant digits before the sketch's own
 * error. Only sketches of the same spec are comparable: anything else throws.
 */
export function assertComparable(a: SketchSpec, b: SketchSpec): void {
  if (a.version !== b.version || a.k !== b.k || a.tensorK !== b.tensorK) {
    throw new Error(
      `sketches are not comparable: v${a.version}/k=${a.k}/${a.tensorK} vs v${b.version}/k=${b.k}/${b.tensorK}`,
    );
  }
}

/** ||x − y|| for two equal-length vectors. */
export function diffNorm(x: Float64Array, y: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    const d = x[i] - y[i];
    sum += d * d;
  }
  return Math.sqrt(sum);
}

/** <a − b, c − d>. */
export function diffDot(a: Float64Array, b: Float64Array, c: Float64Array, d: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i] - b[i]) * (c[i] - d[i]);
  return sum;
}

/** Estimated ||w_a − w_b|| over the whole weight vector. */
export function distance(a: CheckpointSummary, b: CheckpointSummary): number {
  assertComparable(a.spec, b.spec);
  return diffNorm(a.sketch, b.sketch);
}

export interface TensorDistance {
  name: string;
  /** Estimated ||T_next − T_prev|| (exact when both checkpoints keep the tensor's raw values). */
  updateNorm: number;
  /** Exact ||T_prev|| from its statistics. */
  prevNorm: number;
}

/**
 * Estimated per-tensor update norms between two checkpoints, for float tensors present in both that keep
 * per-tensor values in both (tensor-sketch-plan.ts); in `next`'s tensor order.
 */
export function tensorDistances(next: CheckpointSummary, prev: CheckpointSummary): TensorDistance[] {
  assertComparable(next.spec, prev.spec);
  const prevByName = new Map(prev.tensors.map((t, i) => [t.name, i]));
  const out: TensorDistance[] = [];
  next.tensors.forEach((t, i) => {
    const j = prevByName.get(t.name);
    if (j === undefined) return;
    const updateNorm = tensorDistance(t, next.tensorSketches[i], prev.tensors[j], prev.tensorSketches[j]);
    if (updateNorm !== null) out.push({ name: t.name, updateNorm, prevNorm: prev.tensors[j].norm });
  });
  return out;
}

/**
 * A tensor's stored values are raw (exact) when there are as many as it has elements, else a CountSketch
 * with a power-of-two bucket count. Raw values of equal-size tensors compare directly; otherwise both are
 * brought to the smaller bucket count (folding a sketch, or sketching raw values with the same hash).
 */
function tensorDistance(a: TensorStats, va: Float64Array, b: TensorStats, vb: Float64Array): number | null {
  if (va.length === 0 || vb.length === 0) return null;
  const exactA = va.length === a.count;
  const exactB = vb.length === b.count;
  if (exactA && exactB && a.count === b.count) return diffNorm(va, vb);
  const buckets = Math.min(exactA ? Infinity : va.length, exactB ? Infinity : vb.length);
  if (!Number.isFinite(buckets)) return diffNorm(sketchValues(a.name, va, 64), sketchValues(b.name, vb, 64));
  const sa = exactA ? sketchValues(a.name, va, buckets) : fold(va, buckets);
  const sb = exactB ? sketchValues(b.name, vb, buckets) : fold(vb, buckets);
  return diffNorm(sa, sb);
}

/** A CountSketch with `buckets` buckets of a sketch with more (bucket h & (buckets − 1) of bucket h). */
export function fold(sketch: Float64Array, buckets: number): Float64Array {
  if (sketch.length === buckets) return sketch;
  const out = new Float64Array(buckets);
  for (let b = 0; b < sketch.length; b++) out[b & (buckets - 1)] += sketch[b];
  return out;
}

/** The per-tensor CountSketch of raw values, as the kernels would compute it. */
export function sketchValues(name: string, values: ArrayLike<number>, buckets: number): Float64Array {
  const tensorHash = nameHash(name);
  const out = new Float64Array(buckets);
  for (let i = 0; i < values.length; i++) {
    const h = elementHash(tensorHash, i);
    out[h & (buckets - 1)] += h < 0 ? -values[i] : values[i];
  }
  return out;
}
