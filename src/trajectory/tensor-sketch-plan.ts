import { FLOAT_DTYPES, elementCount, type Dtype } from '@trajgate/sdk/wire/dtypes';

/**
 * What each tensor keeps for per-tensor update norms, within a bounded size per checkpoint.
 *
 * Every float tensor gets `length` float64 values: its raw values when it has at most `length` elements
 * (`exact`: per-tensor distances are then exact), else a CountSketch with `length` buckets (bucket
 * h & (length − 1), the sign of the whole-vector sketch). `length` is spec.tensorK (64) while the run has
 * at most TENSOR_SKETCH_BUDGET / tensorK (512) float tensors; with more, it halves (a power of two, at
 * least MIN_TENSOR_K = 8) so the total stays within the budget; past BUDGET / 8 = 4096 float tensors only
 * the 4096 largest (by element count, then name) keep anything, and the others get `none` (no per-tensor
 * estimate, so they never appear in topTensors). Integer and boolean tensors get `none`.
 *
 * Per checkpoint: at most TENSOR_SKETCH_BUDGET × 8 bytes = 256 KiB of per-tensor values, next to the
 * whole-vector sketch (k × 8 = 64 KiB at k = 8192). The plan depends only on the tensor table, so
 * checkpoints of a run with the same table get the same plan; sketches of one tensor with different
 * power-of-two lengths are still comparable after folding the longer one (see sketch-distance.ts).
 */
export const TENSOR_SKETCH_BUDGET = 32768;
export const MIN_TENSOR_K = 8;

export type TensorSketchKind = 'exact' | 'sketch' | 'none';

export interface TensorSketchPlan {
  kind: TensorSketchKind;
  /** Values stored: the element count when exact, the bucket count when sketched, 0 for none. */
  length: number;
  /** Buckets of the per-tensor CountSketch the kernels feed (≥ 1; unused unless kind is 'sketch'). */
  buckets: number;
}

export function planTensorSketches(
  tensors: readonly { name: string; dtype: Dtype; shape: readonly number[] }[],
  tensorK: number,
  budget = TENSOR_SKETCH_BUDGET,
): TensorSketchPlan[] {
  const floats = tensors
    .map((t, i) => ({ i, name: t.name, count: elementCount(t.shape) }))
    .filter((t) => FLOAT_DTYPES.has(tensors[t.i].dtype));
  let buckets = tensorK;
  while (buckets > MIN_TENSOR_K && floats.length * buckets > budget) buckets /= 2;
  const room = Math.floor(budget / buckets);
  const kept = new Set(
    floats.length <= room
      ? floats.map((t) => t.i)
      : [...floats]
          .sort((a, b) => b.count - a.count || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
          .slice(0, room)
          .map((t) => t.i),
  );
  return tensors.map((t, i) => {
    if (!kept.has(i)) return { kind: 'none', length: 0, buckets: 1 };
    const count = elementCount(t.shape);
    return count <= buckets ? { kind: 'exact', length: count, buckets } : { kind: 'sketch', length: buckets, buckets };
  });
}
