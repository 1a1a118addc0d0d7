import type { Dtype } from '../wire/dtypes.js';

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
  /** Buckets of each per-tensor sketch (tensors with at most this many elements are stored exactly). */
  tensorK: number;
}

/**
 * What the gateway keeps of a checkpoint's weights, computed in the upload's single pass: enough to
 * estimate the distance between any two checkpoints of a run without their bytes.
 */
export interface CheckpointSummary {
  step: number;
  spec: SketchSpec;
  /** CountSketch of the whole flattened float weight vector, `spec.k` buckets. */
  sketch: Float64Array;
  /** In the checkpoint's tensor order. */
  tensors: TensorStats[];
  /**
   * Per tensor (same order): its own small sketch, `spec.tensorK` buckets; for tensors with at most
   * `spec.tensorK` elements the raw values instead (exact). Empty for non-float tensors.
   */
  tensorSketches: Float64Array[];
  /** Exact L2 norm of all finite float weights. */
  weightNorm: number;
}
