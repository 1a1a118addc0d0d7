import { BLOCK_SIZE, LOW, blockKey } from './sketch-hash.js';

/**
 * The single-pass kernels: per-tensor statistics and both sketches over a run of elements of one tensor.
 * `acc` is the tensor's running state: [sumSq, sum, maxAbs, nanCount, infCount].
 *
 * Non-finite elements are counted and excluded from statistics. A checkpoint holding any is rejected by
 * the gateway, so the fast F32 path does not keep NaN out of the sketches: it spots non-finite values
 * after the fact (their bit patterns are the largest absolute values) and recomputes only the statistics
 * of that slice carefully.
 *
 * Speed notes (V8, measured with scripts/bench-kernels.ts): max |x| is tracked on the IEEE bit pattern
 * (for floats, |x| orders like its bits with the sign cleared), and the sign is applied arithmetically;
 * a float compare or a `h < 0 ? -v : v` select in this loop made V8 emit branches and cost 2-3x.
 */
export const ACC_SUM_SQ = 0;
export const ACC_SUM = 1;
export const ACC_MAX_ABS = 2;
export const ACC_NAN = 3;
export const ACC_INF = 4;
export const ACC_SIZE = 5;

const BLOCK_MASK = BLOCK_SIZE - 1;
const F32_EXPONENT_ALL_ONES = 0x7f800000;
const bitsToFloat = new Float32Array(1);
const floatBits = new Int32Array(bitsToFloat.buffer);

export interface SketchTarget {
  sketch: Float64Array;
  /** k − 1, k a power of two ≤ MAX_K. */
  mask: number;
  tensorSketch: Float64Array;
  /** tensorK − 1. */
  tensorMask: number;
  tensorHash: number;
}

export const MAX_K = 8192;

/*
 * The F32 kernel adds into these two module-level buffers rather than into the target's arrays: V8 only
 * keeps typed-array base and length in registers for arrays it knows are constant, and arrays passed as
 * arguments ran the loop 1.6x slower. Each target's sketches are checked out into the work buffers
 * while it is being fed and written back when another target needs them (with one upload at a time that
 * never happens), so results are the same as adding into the target directly. `releaseWork` must run
 * before a target's arrays are read.
 */
/** Same-module constant: V8 does not treat imported bindings as constants. */
const LOW_TABLE: Int32Array = LOW;
const WORK_SKETCH = new Float64Array(MAX_K);
const WORK_TENSOR = new Float64Array(MAX_K);
let sketchOwner: Float64Array | null = null;
let tensorOwner: Float64Array | null = null;

function checkOut(target: SketchTarget): void {
  if (sketchOwner !== target.sketch) {
    if (sketchOwner) sketchOwner.set(WORK_SKETCH.subarray(0, sketchOwner.length));
    WORK_SKETCH.set(target.sketch);
    sketchOwner = target.sketch;
  }
  if (tensorOwner !== target.tensorSketch) {
    if (tensorOwner) tensorOwner.set(WORK_TENSOR.subarray(0, tensorOwner.length));
    WORK_TENSOR.set(target.tensorSketch);
    tensorOwner = target.tensorSketch;
  }
}

/** Writes the work buffers back if they hold `arrays`; call before reading a target's sketches. */
export function releaseWork(...arrays: Float64Array[]): void {
  if (sketchOwner && arrays.includes(sketchOwner)) {
    sketchOwner.set(WORK_SKETCH.subarray(0, sketchOwner.length));
    sketchOwner = null;
  }
  if (tensorOwner && arrays.includes(tensorOwner)) {
    tensorOwner.set(WORK_TENSOR.subarray(0, tensorOwner.length));
    tensorOwner = null;
  }
}

/**
 * Elements x[0..n) are elements firstIndex.. of the tensor; `bits` is the same memory as Int32Array.
 */
export function accumulateF32(x: Float32Array, bits: Int32Array, firstIndex: number, target: SketchTarget, acc: Float64Array): void {
  checkOut(target);
  const mask = target.mask;
  const tensorMask = target.tensorMask;
  const tensorHash = target.tensorHash;
  let sumSq = 0;
  let sum = 0;
  let maxBits = 0;
  const n = x.length;
  let pos = 0;
  while (pos < n) {
    const index = firstIndex + pos;
    const shift = (index - pos) & BLOCK_MASK;
    const end = Math.min(n, pos + (BLOCK_SIZE - (index & BLOCK_MASK)));
    const key = blockKey(tensorHash, index);
    for (let j = pos; j < end; j++) {
      const b = bits[j] & 0x7fffffff;
      if (b > maxBits) maxBits = b;
      const v = x[j];
      const h = LOW_TABLE[(j + shift) & BLOCK_MASK] ^ key;
      const signed = v * ((h >> 31) | 1);
      WORK_SKETCH[h & mask] += signed;
      WORK_TENSOR[(h >>> 13) & tensorMask] += signed;
      sumSq += v * v;
      sum += v;
    }
    pos = end;
  }
  if (maxBits >= F32_EXPONENT_ALL_ONES) {
    accumulateStatsOnly(x, acc);
    return;
  }
  floatBits[0] = maxBits;
  acc[ACC_SUM_SQ] += sumSq;
  acc[ACC_SUM] += sum;
  if (bitsToFloat[0] > acc[ACC_MAX_ABS]) acc[ACC_MAX_ABS] = bitsToFloat[0];
}

/** As accumulateF32, for Float64Array input (rare in checkpoints, so the simpler careful loop). */
export function accumulateF64(x: Float64Array, firstIndex: number, target: SketchTarget, acc: Float64Array): void {
  checkOut(target);
  const { mask, tensorMask, tensorHash } = target;
  let sumSq = acc[ACC_SUM_SQ];
  let sum = acc[ACC_SUM];
  let maxAbs = acc[ACC_MAX_ABS];
  let nan = acc[ACC_NAN];
  let inf = acc[ACC_INF];
  const n = x.length;
  let pos = 0;
  while (pos < n) {
    const index = firstIndex + pos;
    let low = index & BLOCK_MASK;
    const end = Math.min(n, pos + (BLOCK_SIZE - low));
    const key = blockKey(tensorHash, index);
    for (let j = pos; j < end; j++, low++) {
      const v = x[j];
      if (v - v !== 0) {
        if (v !== v) nan++;
        else inf++;
        continue;
      }
      const h = LOW_TABLE[low] ^ key;
      const signed = v * ((h >> 31) | 1);
      WORK_SKETCH[h & mask] += signed;
      WORK_TENSOR[(h >>> 13) & tensorMask] += signed;
      sumSq += v * v;
      sum += v;
      const a = Math.abs(v);
      if (a > maxAbs) maxAbs = a;
    }
    pos = end;
  }
  acc[ACC_SUM_SQ] = sumSq;
  acc[ACC_SUM] = sum;
  acc[ACC_MAX_ABS] = maxAbs;
  acc[ACC_NAN] = nan;
  acc[ACC_INF] = inf;
}

/** Statistics only: integer and boolean tensors (not weights, so no sketch sees them) and slow paths. */
export function accumulateStatsOnly(x: ArrayLike<number>, acc: Float64Array): void {
  for (let j = 0; j < x.length; j++) {
    const v = x[j];
    if (v - v !== 0) {
      if (v !== v) acc[ACC_NAN]++;
      else acc[ACC_INF]++;
      continue;
    }
    acc[ACC_SUM_SQ] += v * v;
    acc[ACC_SUM] += v;
    const a = Math.abs(v);
    if (a > acc[ACC_MAX_ABS]) acc[ACC_MAX_ABS] = a;
  }
}
