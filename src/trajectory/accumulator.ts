import { DTYPE_SIZES, FLOAT_DTYPES, elementCount, type Dtype } from '../wire/dtypes.js';
import { F16_TABLE, Scratch } from './float-decode.js';
import {
  ACC_INF,
  ACC_MAX_ABS,
  ACC_NAN,
  ACC_SIZE,
  ACC_SUM,
  ACC_SUM_SQ,
  accumulateF32,
  accumulateF64,
  accumulateStatsOnly,
  releaseWork,
  type SketchTarget,
} from './kernels.js';
import { SKETCH_VERSION, nameHash } from './sketch-hash.js';
import type { CheckpointSummary, SketchSpec, TensorStats } from './types.js';

export const DEFAULT_SKETCH_SPEC: SketchSpec = Object.freeze({ version: SKETCH_VERSION, k: 8192, tensorK: 64 });

export interface TensorShape {
  name: string;
  dtype: Dtype;
  shape: number[];
}

/** Elements decoded per kernel call: keeps scratch buffers in cache. */
const MAX_ELEMENTS_PER_CALL = 16384;

interface TensorState {
  meta: TensorShape;
  count: number;
  acc: Float64Array;
  target: SketchTarget | null;
  /** Raw values of a tensor small enough to keep exactly. */
  exact: Float64Array | null;
}

/**
 * Builds a CheckpointSummary from the bytes of a checkpoint as they stream past, in one pass and in
 * bounded memory (the two sketches and a few scratch buffers). Feed it the decoder's callbacks:
 * `begin` with the tensor table, `update` with each element-aligned slice of tensor data in order, then
 * `finish`. Float tensors feed the whole-vector sketch and their own small sketch; integer and boolean
 * tensors get statistics only.
 */
export class CheckpointAccumulator {
  readonly spec: SketchSpec;
  private readonly sketch: Float64Array;
  private tensors: TensorState[] = [];
  private readonly scratch = new Scratch();
  private halfScratch = new Float32Array(MAX_ELEMENTS_PER_CALL);
  private halfScratchBits = new Int32Array(this.halfScratch.buffer);
  private intScratch = new Float64Array(MAX_ELEMENTS_PER_CALL);
  private readonly discard: Float64Array;

  constructor(spec: SketchSpec = DEFAULT_SKETCH_SPEC) {
    for (const k of [spec.k, spec.tensorK]) {
      if (!Number.isInteger(Math.log2(k)) || k < 2 || k > 8192) throw new RangeError(`sketch sizes must be powers of two in [2, 8192], got ${k}`);
    }
    this.spec = spec;
    this.sketch = new Float64Array(spec.k);
    this.discard = new Float64Array(spec.tensorK);
  }

  begin(tensors: readonly TensorShape[]): void {
    this.tensors = tensors.map((meta) => {
      const count = elementCount(meta.shape);
      const isFloat = FLOAT_DTYPES.has(meta.dtype);
      const small = count <= this.spec.tensorK;
      const exact = isFloat && small ? new Float64Array(count) : null;
      const target: SketchTarget | null = isFloat
        ? {
            sketch: this.sketch,
            mask: this.spec.k - 1,
            tensorSketch: small ? this.discard : new Float64Array(this.spec.tensorK),
            tensorMask: this.spec.tensorK - 1,
            tensorHash: nameHash(meta.name),
          }
        : null;
      return { meta, count, acc: new Float64Array(ACC_SIZE), target, exact };
    });
  }

  /** `bytes` holds whole elements of tensor `index`, starting at byte `byteOffset` of that tensor. */
  update(index: number, byteOffset: number, bytes: Uint8Array): void {
    const state = this.tensors[index];
    const size = DTYPE_SIZES[state.meta.dtype];
    const elementsPerCall = MAX_ELEMENTS_PER_CALL;
    for (let offset = 0; offset < bytes.byteLength; offset += elementsPerCall * size) {
      const slice = bytes.subarray(offset, Math.min(bytes.byteLength, offset + elementsPerCall * size));
      this.accumulate(state, (byteOffset + offset) / size, slice);
    }
  }

  finish(step: number): CheckpointSummary {
    releaseWork(this.sketch, ...this.tensors.flatMap((t) => (t.target ? [t.target.tensorSketch] : [])));
    let weightSumSq = 0;
    const tensors: TensorStats[] = [];
    const tensorSketches: Float64Array[] = [];
    for (const { meta, count, acc, target, exact } of this.tensors) {
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
      tensorSketches.push(exact ?? (target && target.tensorSketch !== this.discard ? target.tensorSketch : new Float64Array(0)));
    }
    return { step, spec: this.spec, sketch: this.sketch, tensors, tensorSketches, weightNorm: Math.sqrt(weightSumSq) };
  }

  private accumulate(state: TensorState, firstIndex: number, bytes: Uint8Array): void {
    const { target, acc } = state;
    switch (state.meta.dtype) {
      case 'F32': {
        const x = this.scratch.view(Float32Array, bytes);
        accumulateF32(x, new Int32Array(x.buffer, x.byteOffset, x.length), firstIndex, target!, acc);
        if (state.exact) copyFinite(x, state.exact, firstIndex);
        return;
      }
      case 'F64': {
        const x = this.scratch.view(Float64Array, bytes);
        accumulateF64(x, firstIndex, target!, acc);
        if (state.exact) copyFinite(x, state.exact, firstIndex);
        return;
      }
      case 'F16': {
        const bits = this.scratch.view(Uint16Array, bytes);
        const x = this.halfScratch.subarray(0, bits.length);
        for (let i = 0; i < bits.length; i++) x[i] = F16_TABLE[bits[i]];
        accumulateF32(x, this.halfScratchBits.subarray(0, bits.length), firstIndex, target!, acc);
        if (state.exact) copyFinite(x, state.exact, firstIndex);
        return;
      }
      case 'BF16': {
        // A BF16 value is the upper half of the F32 with the same bits.
        const bits = this.scratch.view(Uint16Array, bytes);
        const words = this.halfScratchBits.subarray(0, bits.length);
        for (let i = 0; i < bits.length; i++) words[i] = bits[i] << 16;
        const x = this.halfScratch.subarray(0, bits.length);
        accumulateF32(x, words, firstIndex, target!, acc);
        if (state.exact) copyFinite(x, state.exact, firstIndex);
        return;
      }
      default:
        accumulateStatsOnly(this.decodeInteger(state.meta.dtype, bytes), acc);
    }
  }

  private decodeInteger(dtype: Dtype, bytes: Uint8Array): ArrayLike<number> {
    switch (dtype) {
      case 'U8':
      case 'BOOL':
        return bytes;
      case 'I8':
        return new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      case 'I16':
        return this.scratch.view(Int16Array, bytes);
      case 'I32':
        return this.scratch.view(Int32Array, bytes);
      case 'I64': {
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const out = this.intScratch.subarray(0, bytes.byteLength / 8);
        for (let i = 0; i < out.length; i++) out[i] = Number(view.getBigInt64(i * 8, true));
        return out;
      }
      default:
        throw new Error(`not an integer dtype: ${dtype}`);
    }
  }
}

function copyFinite(x: ArrayLike<number>, exact: Float64Array, firstIndex: number): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    exact[firstIndex + i] = v - v === 0 ? v : 0;
  }
}
