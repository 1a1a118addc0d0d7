import type { FloatDtype } from '@trajgate/sdk/wire/dtypes';
import { F16_TABLE, F8_E4M3_TABLE, F8_E5M2_TABLE, F8_E8M0_TABLE } from './float-decode.js';
import { BLOCK_SIZE, LOW, blockKey, blockTwist, elementHash } from './sketch-hash.js';

/**
 * The single-pass kernels: per-tensor statistics and sketches over a slice of one float tensor's
 * little-endian bytes, at any alignment. `acc` is the tensor's running state:
 * [sumSq, sum, maxAbs, nanCount, infCount]. F16, BF16 and the FP8 types are decoded (exactly) to F32 and
 * take the F32 loop. Integer tensors take `feedInteger` (int-stats.ts: exact statistics, no sketch).
 *
 * A large tensor's sketch contributions are summed in one k-bucket buffer (TENSOR_WORK) and flushed when
 * another tensor is fed or its accumulator finishes: added to the whole-vector sketch and folded into the
 * tensor's own sketch (bucket h & (tensorK − 1), see sketch-hash.ts), so the hot loop scatters once per
 * element. Tensors of at most DIRECT_MAX elements, where a flush would cost more than the tensor, add into
 * both sketches directly. Any feeding order is correct; feeding tensors one after another (as decoders do)
 * flushes once per tensor, while interleaved uploads pay a flush (~8k adds) per switch.
 *
 * Non-finite elements are counted and excluded from the statistics. A checkpoint holding any is rejected by
 * the gateway, so the fast F32/F16/BF16 path does not keep them out of the sketches: a large tensor holding
 * one leaves NaN/±Inf in its sketch and the whole-vector sketch (its nanCount/infCount say so). The fast
 * path spots them after the fact (their bit patterns are the largest absolute values) and recomputes only
 * the statistics of that piece carefully. The F64 and small-tensor paths skip them everywhere.
 *
 * Speed notes (V8 11 / Node 20, measured with scripts/bench-kernels.ts and throwaway variants; the
 * machine is noisy, differences under ~10% were not trusted):
 * - Every slice is copied (a native memcpy) into scratch, aligned or not, and the loop reads the scratch:
 *   faster than reading the caller's buffer in place even when aligned (the scratch sits in L1/L2), and
 *   1.6x faster than DataView reads of unaligned input.
 * - The hot loop gets the scratch arrays as arguments and writes a module-level constant array; reading
 *   module-level scratch directly, or destructuring arrays from an object, ran 1.3-1.5x slower.
 * - max |x| is tracked on the IEEE bit pattern (for floats, |x| orders like its bits with the sign
 *   cleared), and the sign is applied arithmetically; a float compare or a `h < 0 ? -v : v` select made
 *   V8 emit branches and cost 2-3x. Unrolling with two accumulator sets was slower, not faster.
 * - Scattering into a second (per-tensor) sketch in the hot loop cost ~15%: hence TENSOR_WORK.
 */
export const ACC_SUM_SQ = 0;
export const ACC_SUM = 1;
export const ACC_MAX_ABS = 2;
export const ACC_NAN = 3;
export const ACC_INF = 4;
export const ACC_SIZE = 5;

export const MAX_K = 8192;
/** Tensors up to this many elements take the direct path. */
export const DIRECT_MAX = 4096;

/** Where one float tensor's contributions go. */
export interface SketchTarget {
  /** The checkpoint's whole-vector sketch, k buckets. */
  sketch: Float64Array;
  /** k − 1, k a power of two ≤ MAX_K. */
  mask: number;
  /** The tensor's own sketch, tensorK buckets (a throwaway when the tensor keeps none or is kept exactly). */
  tensorSketch: Float64Array;
  /** tensorK − 1, tensorK a power of two ≤ k. */
  tensorMask: number;
  tensorHash: number;
  /** Element count of the tensor: DIRECT_MAX or fewer take the direct path. */
  count: number;
}

const BLOCK_MASK = BLOCK_SIZE - 1;
const F32_EXPONENT_ALL_ONES = 0x7f800000;
/** Elements per kernel call: the scratch buffers stay in L1/L2. */
const PIECE = 16384;
/** Same-module constants: V8 does not treat imported bindings as constants. */
const LOW_TABLE: Int32Array = LOW;
const HALF_TABLE: Float32Array = F16_TABLE;
const E4M3_TABLE: Float32Array = F8_E4M3_TABLE;
const E5M2_TABLE: Float32Array = F8_E5M2_TABLE;
const E8M0_TABLE: Float32Array = F8_E8M0_TABLE;
const SCRATCH_F32 = new Float32Array(PIECE);
const SCRATCH_BITS = new Int32Array(SCRATCH_F32.buffer);
const SCRATCH_BYTES = new Uint8Array(SCRATCH_F32.buffer);
const SCRATCH_F64 = new Float64Array(PIECE);
const SCRATCH_F64_BYTES = new Uint8Array(SCRATCH_F64.buffer);
/** Raw 16-bit words of F16/BF16 input, decoded from here into SCRATCH_F32. */
const SCRATCH_HALF = new Uint16Array(PIECE);
const SCRATCH_HALF_BYTES = new Uint8Array(SCRATCH_HALF.buffer);
/**
 * The scratch the integer path (int-stats.ts) shares, neither path running inside the other. Handed over as
 * one object so that the bindings above stay unexported: V8 folds same-module constants, not exported
 * bindings (exporting them cost the F32 and BF16 paths 25-30%).
 */
export const SHARED_SCRATCH = {
  piece: PIECE,
  f32: SCRATCH_F32,
  bits: SCRATCH_BITS,
  bytes: SCRATCH_BYTES,
  f64: SCRATCH_F64,
  f64Bytes: SCRATCH_F64_BYTES,
} as const;
const bitsToFloat = new Float32Array(1);
const floatBits = new Int32Array(bitsToFloat.buffer);

/** The open large tensor's contributions, bucket h & (k − 1); zero whenever `openTarget` is null. */
const TENSOR_WORK = new Float64Array(MAX_K);
let openTarget: SketchTarget | null = null;

function open(target: SketchTarget): void {
  if (openTarget === target) return;
  if (openTarget) flushWork();
  openTarget = target;
}

function flushWork(): void {
  const { sketch, tensorSketch, tensorMask } = openTarget!;
  for (let b = 0; b < sketch.length; b++) {
    const v = TENSOR_WORK[b];
    if (v !== 0) {
      sketch[b] += v;
      tensorSketch[b & tensorMask] += v;
      TENSOR_WORK[b] = 0;
    }
  }
  openTarget = null;
}

/** Flushes the open tensor if it is one of `targets`; call before reading their sketches. */
export function releaseWork(targets: readonly SketchTarget[]): void {
  if (openTarget && targets.includes(openTarget)) flushWork();
}

/** Sees each decoded piece (float values, first element index): keeps small tensors' raw values. */
export type PieceSink = (values: Float32Array | Float64Array, firstIndex: number) => void;

/**
 * Feeds `bytes` (whole little-endian elements of `dtype`, starting at element `firstIndex` of the tensor)
 * to the tensor's statistics and sketches. `sink`, when given, sees each decoded piece.
 */
export function feedFloat(
  dtype: FloatDtype,
  bytes: Uint8Array,
  firstIndex: number,
  target: SketchTarget,
  acc: Float64Array,
  sink: PieceSink | null,
): void {
  const direct = target.count <= DIRECT_MAX;
  if (!direct) open(target);
  const size = dtype === 'F64' ? 8 : dtype === 'F32' ? 4 : dtype === 'F16' || dtype === 'BF16' ? 2 : 1;
  const total = bytes.byteLength / size;
  for (let done = 0; done < total; done += PIECE) {
    const n = Math.min(PIECE, total - done);
    const piece = bytes.subarray(done * size, (done + n) * size);
    const index = firstIndex + done;
    let values: Float32Array | Float64Array = SCRATCH_F32;
    switch (dtype) {
      case 'F32':
        SCRATCH_BYTES.set(piece);
        break;
      case 'F16':
        SCRATCH_HALF_BYTES.set(piece);
        decodeF16(SCRATCH_HALF, SCRATCH_F32, n, HALF_TABLE);
        break;
      case 'BF16':
        // A BF16 value is the upper half of the F32 with the same bits.
        SCRATCH_HALF_BYTES.set(piece);
        widenBF16(SCRATCH_HALF, SCRATCH_BITS, n);
        break;
      case 'F64':
        SCRATCH_F64_BYTES.set(piece);
        values = SCRATCH_F64;
        break;
      case 'F8_E4M3':
        decodeByte(piece, SCRATCH_F32, n, E4M3_TABLE);
        break;
      case 'F8_E5M2':
        decodeByte(piece, SCRATCH_F32, n, E5M2_TABLE);
        break;
      case 'F8_E8M0':
        decodeByte(piece, SCRATCH_F32, n, E8M0_TABLE);
        break;
    }
    if (direct) sketchDirect(values, n, index, target, acc);
    else if (dtype === 'F64') sketchF64(SCRATCH_F64, n, index, target.mask, target.tensorHash, acc);
    else sketchF32(SCRATCH_F32, SCRATCH_BITS, n, index, target.mask, target.tensorHash, acc);
    if (sink) sink(values.subarray(0, n), index);
  }
}

function decodeF16(src: Uint16Array, dst: Float32Array, n: number, table: Float32Array): void {
  for (let i = 0; i < n; i++) dst[i] = table[src[i]];
}

function decodeByte(src: Uint8Array, dst: Float32Array, n: number, table: Float32Array): void {
  for (let i = 0; i < n; i++) dst[i] = table[src[i]];
}

function widenBF16(src: Uint16Array, dst: Int32Array, n: number): void {
  for (let i = 0; i < n; i++) dst[i] = src[i] << 16;
}

/** x[0..n) are elements firstIndex.. of the open tensor; `bits` is x's memory as Int32Array. */
function sketchF32(
  x: Float32Array,
  bits: Int32Array,
  n: number,
  firstIndex: number,
  mask: number,
  tensorHash: number,
  acc: Float64Array,
): void {
  let sumSq = 0;
  let sum = 0;
  let maxBits = 0;
  let pos = 0;
  while (pos < n) {
    const index = firstIndex + pos;
    const shift = (index - pos) & BLOCK_MASK;
    const end = Math.min(n, pos + (BLOCK_SIZE - (index & BLOCK_MASK)));
    const key = blockKey(tensorHash, index);
    const twist = blockTwist(key);
    for (let j = pos; j < end; j++) {
      const b = bits[j] & 0x7fffffff;
      if (b > maxBits) maxBits = b;
      const v = x[j];
      const h = LOW_TABLE[((j + shift) & BLOCK_MASK) ^ twist] ^ key;
      TENSOR_WORK[h & mask] += v * ((h >> 31) | 1);
      sumSq += v * v;
      sum += v;
    }
    pos = end;
  }
  if (maxBits >= F32_EXPONENT_ALL_ONES) {
    accumulateStatsOnly(x.subarray(0, n), acc);
    return;
  }
  floatBits[0] = maxBits;
  acc[ACC_SUM_SQ] += sumSq;
  acc[ACC_SUM] += sum;
  if (bitsToFloat[0] > acc[ACC_MAX_ABS]) acc[ACC_MAX_ABS] = bitsToFloat[0];
}

/** As sketchF32 for float64 input (rare in checkpoints, so the simpler careful loop). */
function sketchF64(
  x: Float64Array,
  n: number,
  firstIndex: number,
  mask: number,
  tensorHash: number,
  acc: Float64Array,
): void {
  let sumSq = 0;
  let sum = 0;
  let maxAbs = acc[ACC_MAX_ABS];
  let nonFinite = 0;
  let pos = 0;
  while (pos < n) {
    const index = firstIndex + pos;
    let low = index & BLOCK_MASK;
    const end = Math.min(n, pos + (BLOCK_SIZE - low));
    const key = blockKey(tensorHash, index);
    const twist = blockTwist(key);
    for (let j = pos; j < end; j++, low++) {
      const v = x[j];
      if (v - v !== 0) {
        nonFinite++;
        continue;
      }
      const h = LOW_TABLE[low ^ twist] ^ key;
      TENSOR_WORK[h & mask] += v * ((h >> 31) | 1);
      sumSq += v * v;
      sum += v;
      const a = Math.abs(v);
      if (a > maxAbs) maxAbs = a;
    }
    pos = end;
  }
  acc[ACC_SUM_SQ] += sumSq;
  acc[ACC_SUM] += sum;
  acc[ACC_MAX_ABS] = maxAbs;
  if (nonFinite > 0) countNonFinite(x.subarray(0, n), acc);
}

/** Small tensors: statistics and both sketches, added straight into the target, non-finite skipped. */
function sketchDirect(
  x: Float32Array | Float64Array,
  n: number,
  firstIndex: number,
  target: SketchTarget,
  acc: Float64Array,
): void {
  const { sketch, mask, tensorSketch, tensorMask, tensorHash } = target;
  for (let j = 0; j < n; j++) {
    const v = x[j];
    if (v - v !== 0) {
      // biome-ignore lint/suspicious/noSelfCompare: the fastest NaN test in this hot loop
      if (v !== v) acc[ACC_NAN]++;
      else acc[ACC_INF]++;
      continue;
    }
    const h = elementHash(tensorHash, firstIndex + j);
    const signed = v * ((h >> 31) | 1);
    sketch[h & mask] += signed;
    tensorSketch[h & tensorMask] += signed;
    acc[ACC_SUM_SQ] += v * v;
    acc[ACC_SUM] += v;
    const a = Math.abs(v);
    if (a > acc[ACC_MAX_ABS]) acc[ACC_MAX_ABS] = a;
  }
}

function countNonFinite(x: ArrayLike<number>, acc: Float64Array): void {
  for (let j = 0; j < x.length; j++) {
    const v = x[j];
    // biome-ignore lint/suspicious/noSelfCompare: the fastest NaN test in this hot loop
    if (v !== v) acc[ACC_NAN]++;
    else if (v - v !== 0) acc[ACC_INF]++;
  }
}

/** Statistics only, non-finite elements counted and skipped: the slow path of a piece holding NaN or ±Inf. */
export function accumulateStatsOnly(x: ArrayLike<number>, acc: Float64Array): void {
  for (let j = 0; j < x.length; j++) {
    const v = x[j];
    if (v - v !== 0) {
      // biome-ignore lint/suspicious/noSelfCompare: the fastest NaN test in this hot loop
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
