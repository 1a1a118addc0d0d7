import type { CheckpointSummary, TensorStats } from '../model/summary.js';
import { fold, sketchValues } from './sketch-distance.js';
import { planTensorSketches } from './tensor-sketch-plan.js';

/**
 * The summary of a checkpoint stored as several files, from the files' own summaries, equal (up to
 * floating-point summation order) to the summary of the same tensors uploaded as one file.
 *
 * - The whole-vector sketch is linear in the weights and its hash keys on (tensor name, element index),
 *   not on a position in the file, so the step's sketch is the sum of the shards' sketches.
 * - weightNorm² is the sum of the shards' weightNorm²; per-tensor statistics are the shards' as they are.
 * - Per-tensor values follow the plan of the whole tensor table (tensor-sketch-plan.ts), which may keep
 *   fewer buckets than a shard's smaller table did: a shard's sketch is folded to the step's bucket count,
 *   raw values are sketched with the same hash, and tensors the step's plan drops get none. A tensor the
 *   step's plan keeps was kept by its shard's plan with at least as many buckets (a shard has at most as
 *   many float tensors as the step), so nothing needs values the shard did not keep.
 *
 * Tensors come in the order of `parts`, each part's in its own order. Tensor names must be distinct
 * (the caller checks, naming the duplicate) and every part must have the same sketch spec.
 */
export function mergeSummaries(step: number, parts: readonly CheckpointSummary[]): CheckpointSummary {
  if (parts.length === 0) throw new RangeError('a merged summary needs at least one part');
  const spec = parts[0].spec;
  for (const p of parts) {
    if (p.spec.version !== spec.version || p.spec.k !== spec.k || p.spec.tensorK !== spec.tensorK) {
      throw new RangeError('summaries with different sketch specs cannot be merged');
    }
  }
  const sketch = new Float64Array(spec.k);
  let sumSq = 0;
  const tensors: TensorStats[] = [];
  const values: Float64Array[] = [];
  for (const p of parts) {
    for (let b = 0; b < sketch.length; b++) sketch[b] += p.sketch[b];
    sumSq += p.weightNorm * p.weightNorm;
    tensors.push(...p.tensors);
    values.push(...p.tensorSketches);
  }
  const plans = planTensorSketches(tensors, spec.tensorK);
  const tensorSketches = tensors.map((t, i) => {
    const plan = plans[i];
    const own = values[i];
    if (plan.kind === 'none') return new Float64Array(0);
    if (plan.kind === 'exact') return own;
    // The step keeps a sketch of `plan.length` buckets; the shard kept raw values or a longer sketch.
    return own.length === t.count && own.length > plan.length
      ? sketchValues(t.name, own, plan.length)
      : fold(own, plan.length);
  });
  return { step, spec, sketch, tensors, tensorSketches, weightNorm: Math.sqrt(sumSq) };
}
