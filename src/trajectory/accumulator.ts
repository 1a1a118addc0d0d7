import {
  DTYPE_SIZES,
  elementCount,
  isFloatDtype,
  type Dtype,
  type FloatDtype,
  type IntegerDtype,
} from '@trajgate/sdk/wire/dtypes';
import {
  ACC_INF,
  ACC_MAX_ABS,
  ACC_NAN,
  ACC_SIZE,
  ACC_SUM,
  ACC_SUM_SQ,
  MAX_K,
  feedFloat,
  releaseWork,
  type SketchTarget,
} from './kernels.js';
import { ExactIntegerStats, feedInteger } from './int-stats.js';
import { SKETCH_VERSION, nameHash } from './sketch-hash.js';
import { planTensorSketches, type TensorSketchPlan } from './tensor-sketch-plan.js';
import type { CheckpointSummary, SketchSpec, TensorStats } from '../model/summary.js';

export const DEFAULT_SKETCH_SPEC: SketchSpec = Object.freeze({ version: SKETCH_VERSION, k: 8192, tensorK: 64 });

export interface TensorShape {
  name: string;
  dtype: Dtype;
  shape: number[];
}

interface TensorState {
  meta: TensorShape;
  count: number;
  byteLength: number;
  acc: Float64Array;
  /** Float tensors: the dtype and where their sketch contributions go; null for integer and boolean ones. */
  float: FloatDtype | null;
  target: SketchTarget | null;
  /** Integer and boolean tensors: exact statistics (folded into `acc` by finish); null for float ones. */
  integer: ExactIntegerStats | null;
  plan: TensorSketchPlan;
  /** Raw values of a tensor kept exactly (plan.kind 'exact'). */
  exact: Float64Array | null;
}

/**
 * Builds a CheckpointSummary from the bytes of a checkpoint as they stream past, in one pass and in
 * bounded memory (the sketches, at most 256 KiB of per-tensor values and a few fixed scratch buffers).
 *
 * Wiring (the decoder's TensorVisitor): `begin(layout.tensors)` once, `update(index, byteOffset, bytes)`
 * for every slice the decoder reports (whole elements, any alignment, any order; the bytes are read during
 * the call only), then `finish(step)`. Throws RangeError on a slice that is not whole elements or runs
 * past its tensor. Several accumulators may be fed interleaved (concurrent uploads); each gives the
 * same summary as when fed alone.
 *
 * Float tensors (F64, F32, F16, BF16 and the FP8 types, decoded bit-exactly to float64 arithmetic) feed
 * statistics, the whole-vector sketch and their per-tensor values (tensor-sketch-plan.ts). Integer and
 * boolean tensors (step counters, masks) are not weights: statistics only (exact, whatever their size: see
 * kernels.ts), no sketch, not in weightNorm.
 */
export class CheckpointAccumulator {
  readonly spec: SketchSpec;
  private readonly sketch: Float64Array;
  private tensors: TensorState[] = [];

  constructor(spec: SketchSpec = DEFAULT_SKETCH_SPEC) {
    for (const k of [spec.k, spec.tensorK]) {
      if (!Number.isInteger(Math.log2(k)) || k < 2 || k > MAX_K)
        throw new RangeError(`sketch sizes must be powers of two in [2, ${MAX_K}], got ${k}`);
    }
    if (spec.tensorK > spec.k) throw new RangeError(`tensorK (${spec.tensorK}) must not exceed k (${spec.k})`);
    if (spec.version !== SKETCH_VERSION)
      throw new RangeError(`this build computes sketch version ${SKETCH_VERSION}, not ${spec.version}`);
    this.spec = spec;
    this.sketch = new Float64Array(spec.k);
  }

  begin(tensors: readonly TensorShape[]): void {
    const plans = planTensorSketches(tensors, this.spec.tensorK);
    this.tensors = tensors.map((meta, i) => {
      const plan = plans[i];
      const count = elementCount(meta.shape);
      const float = isFloatDtype(meta.dtype) ? meta.dtype : null;
      const target: SketchTarget | null = float
        ? {
            sketch: this.sketch,
            mask: this.spec.k - 1,
            // A throwaway unless the plan keeps a sketch of this tensor.
            tensorSketch: new Float64Array(plan.kind === 'sketch' ? plan.length : plan.buckets),
            tensorMask: plan.buckets - 1,
            tensorHash: nameHash(meta.name),
            count,
          }
        : null;
      const exact = plan.kind === 'exact' ? new Float64Array(count) : null;
      return {
        meta,
        count,
        byteLength: count * DTYPE_SIZES[meta.dtype],
        acc: new Float64Array(ACC_SIZE),
        float,
        target,
        integer: float ? null : new ExactIntegerStats(),
        plan,
        exact,
      };
    });
  }

  /** `bytes` holds whole elements of tensor `index`, starting at byte `byteOffset` of that tensor. */
  update(index: number, byteOffset: number, bytes: Uint8Array): void {
    const state = this.tensors[index];
    if (!state) throw new RangeError(`no tensor ${index}`);
    const size = DTYPE_SIZES[state.meta.dtype];
    if (
      byteOffset % size !== 0 ||
      bytes.byteLength % size !== 0 ||
      byteOffset < 0 ||
      byteOffset + bytes.byteLength > state.byteLength
    ) {
      throw new RangeError(
        `bytes [${byteOffset}, ${byteOffset + bytes.byteLength}) are not whole ${state.meta.dtype} elements of '${state.meta.name}' (${state.byteLength} bytes)`,
      );
    }
    const firstIndex = byteOffset / size;
    const { float, target, acc, exact, integer } = state;
    if (float && target) {
      feedFloat(
        float,
        bytes,
        firstIndex,
        target,
        acc,
        exact ? (values, first) => copyFinite(values, exact, first) : null,
      );
    } else if (integer) {
      feedInteger(state.meta.dtype as IntegerDtype, bytes, integer);
    }
  }

  finish(step: number): CheckpointSummary {
    releaseWork(this.tensors.flatMap((t) => (t.target ? [t.target] : [])));
    let weightSumSq = 0;
    const tensors: TensorStats[] = [];
    const tensorSketches: Float64Array[] = [];
    for (const { meta, count, acc, target, plan, exact, integer } of this.tensors) {
      integer?.finish(acc);
      const finite = count - acc[ACC_NAN] - acc[ACC_INF];
      tensors.push({
        name: meta.name,
        dtype: meta.dtype,
        shape: meta.shape,
        count,
        norm: Math.sqrt(acc[ACC_SUM_SQ]),
        mean: finite > 0 ? acc[ACC_SUM] / finite : 0,
        maxAbs: acc[ACC_MAX_ABS],
        nanCount: acc[ACC_NAN],
        infCount: acc[ACC_INF],
      });
      if (target) weightSumSq += acc[ACC_SUM_SQ];
      tensorSketches.push(exact ?? (target && plan.kind === 'sketch' ? target.tensorSketch : new Float64Array(0)));
    }
    return { step, spec: this.spec, sketch: this.sketch, tensors, tensorSketches, weightNorm: Math.sqrt(weightSumSq) };
  }
}

/** Summary of tensors held whole in memory (tests, offline tools): one update per tensor. */
export function summariseTensors(
  step: number,
  tensors: readonly (TensorShape & { bytes: Uint8Array })[],
  spec: SketchSpec = DEFAULT_SKETCH_SPEC,
): CheckpointSummary {
  const accumulator = new CheckpointAccumulator(spec);
  accumulator.begin(tensors);
  tensors.forEach((t, i) => {
    accumulator.update(i, 0, t.bytes);
  });
  return accumulator.finish(step);
}

function copyFinite(x: ArrayLike<number>, exact: Float64Array, firstIndex: number): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    exact[firstIndex + i] = v - v === 0 ? v : 0;
  }
}
