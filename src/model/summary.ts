import type { Dtype } from '@trajgate/sdk/wire/dtypes';

/** Exact statistics of one tensor. NaN and ±Inf elements are counted and left out of norm, mean and maxAbs. */
export interface TensorStats {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Number of elements. */
  count: number;
  /** L2 norm of the finite elements. */
  norm: number;
  /** Mean of the finite elements (0 when there are none). */
  mean: number;
  maxAbs: number;
  nanCount: number;
  infCount: number;
}

/** Identifies the hash and bucket count of a sketch; only sketches with equal specs are comparable. */
export interface SketchSpec {
  version: number;
  k: number;
  /** Most buckets of a per-tensor sketch (fewer for models with many tensors: tensor-sketch-plan.ts). */
  tensorK: number;
}

/**
 * What the gateway keeps of a checkpoint's weights, computed in the upload's single pass: enough to
 * estimate the distance between any two checkpoints of a run without their bytes. Stored size:
 * 8·k bytes of sketch (64 KiB at k = 8192), at most 256 KiB of per-tensor values, and the statistics.
 */
export interface CheckpointSummary {
  step: number;
  spec: SketchSpec;
  /** CountSketch of the whole flattened float weight vector, `spec.k` buckets. */
  sketch: Float64Array;
  /** In the checkpoint's tensor order. */
  tensors: TensorStats[];
  /**
   * Per tensor (same order), as planned by tensor-sketch-plan.ts: the raw values when there are as many
   * as the tensor has elements (exact), else its own CountSketch (a power-of-two bucket count ≤
   * spec.tensorK); empty for integer/boolean tensors and for tensors past the per-checkpoint budget.
   */
  tensorSketches: Float64Array[];
  /** Exact L2 norm of all finite float weights. */
  weightNorm: number;
}
