import type { CheckpointSummary, SketchSpec } from './types.js';

/**
 * Geometry from sketches. CountSketch S is linear and preserves inner products in expectation, so
 * ||w_a − w_b||² ≈ ||S(a) − S(b)||² and <w_a − w_b, w_c − w_d> ≈ <S(a) − S(b), S(c) − S(d)>, with relative
 * error about sqrt(2/k) on squared norms' roots. Only sketches of the same spec are comparable.
 */
export function assertComparable(a: SketchSpec, b: SketchSpec): void {
  if (a.version !== b.version || a.k !== b.k || a.tensorK !== b.tensorK) {
    throw new Error(`sketches are not comparable: v${a.version}/k=${a.k}/${a.tensorK} vs v${b.version}/k=${b.k}/${b.tensorK}`);
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

/**
 * Estimated per-tensor update norms between two checkpoints, for tensors present in both with sketches of
 * equal length (exact for tensors stored whole).
 */
export function tensorDistances(next: CheckpointSummary, prev: CheckpointSummary): { name: string; updateNorm: number; prevNorm: number }[] {
  assertComparable(next.spec, prev.spec);
  const prevByName = new Map(prev.tensors.map((t, i) => [t.name, i]));
  const out: { name: string; updateNorm: number; prevNorm: number }[] = [];
  next.tensors.forEach((t, i) => {
    const j = prevByName.get(t.name);
    if (j === undefined) return;
    const [a, b] = [next.tensorSketches[i], prev.tensorSketches[j]];
    if (a.length === 0 || a.length !== b.length) return;
    out.push({ name: t.name, updateNorm: diffNorm(a, b), prevNorm: prev.tensors[j].norm });
  });
  return out;
}
