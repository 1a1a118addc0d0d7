import type { FloatDtype, IntegerDtype } from '@trajgate/sdk/wire/dtypes';
import { F16_TABLE, F8_E4M3_TABLE, F8_E5M2_TABLE, F8_E8M0_TABLE } from './float-decode.js';
import { BLOCK_SIZE, LOW, blockKey, blockTwist, elementHash } from './sketch-hash.js';

/**
 * The single-pass kernels: per-tensor statistics and sketches over a slice of one float tensor's
 * little-endian bytes, at any alignment. `acc` is the tensor's running state:
 * [sumSq, sum, maxAbs, nanCount, infCount]. F16, BF16 and the FP8 types are decoded (exactly) to F32 and
 * take the F32 loop. Integer tensors take `feedInteger` (exact statistics, no sketch).
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

/*
 * Exact integer statistics. Sums of integers (and of their squares, up to 2^128 each for 64-bit values) are
 * kept exactly: each element's magnitude is split into 16-bit limbs, so that every product is below 2^32
 * and the float64 partial sums of up to PIECE elements stay below 2^46, exact. Every PIECE elements (and
 * when the tensor is read) the partial sums are folded into BigInt totals: a few BigInt operations per
 * 16384 elements, none per element. finish converts the totals to the nearest float64 once.
 *
 *   64-bit:  |v| = a3·2^48 + a2·2^32 + a1·2^16 + a0
 *            v² = Σ_i ai²·2^(32i) + 2 Σ_{i<j} ai·aj·2^(16(i+j))
 *   ≤ 32-bit: the same with a2 = a3 = 0.
 */
const P_SUM_LO = 0; // Σ v (≤ 32-bit), Σ low words (64-bit)
const P_SUM_HI = 1; // Σ high words, signed for I64 (64-bit)
const P_MAX_LO = 2; // max |v| (≤ 32-bit), its low word (64-bit)
const P_MAX_HI = 3; // high word of max |v| (64-bit)
const P_D0 = 4; // Σ a0², Σ a1², Σ a2², Σ a3²
const P_D1 = 5;
const P_D2 = 6;
const P_D3 = 7;
const P_01 = 8; // Σ a0·a1, Σ a0·a2, …
const P_02 = 9;
const P_03 = 10;
const P_12 = 11;
const P_13 = 12;
const P_23 = 13;
const P_SIZE = 14;
const TWO_32 = 4294967296;

const SCRATCH_I16 = new Int16Array(SCRATCH_F32.buffer);
const SCRATCH_U16 = new Uint16Array(SCRATCH_F32.buffer);
const SCRATCH_U32 = new Uint32Array(SCRATCH_F32.buffer);
/** 64-bit input as little-endian 32-bit words: element j is words 2j (low) and 2j + 1 (high). */
const SCRATCH_WORDS = new Uint32Array(SCRATCH_F64.buffer);
/** ≤ 32-bit integers, widened for the one loop over them. */
const SCRATCH_INT = new Float64Array(PIECE);

/** One integer tensor's running statistics: exact totals and the partial sums not yet folded into them. */
export class ExactIntegerStats {
  sum = 0n;
  sumSq = 0n;
  maxAbs = 0n;
  /** Elements in `partial` since the last fold; at most PIECE. */
  pending = 0;
  readonly partial = new Float64Array(P_SIZE);

  /** The totals as float64 into `acc` (each the nearest float64 to the exact integer). */
  finish(acc: Float64Array): void {
    foldInteger(this);
    acc[ACC_SUM] = Number(this.sum);
    acc[ACC_SUM_SQ] = Number(this.sumSq);
    acc[ACC_MAX_ABS] = Number(this.maxAbs);
  }
}

/** Feeds whole little-endian elements of an integer or boolean dtype to `stats`; any length, any alignment. */
export function feedInteger(dtype: IntegerDtype, bytes: Uint8Array, stats: ExactIntegerStats): void {
  const size =
    dtype === 'I64' || dtype === 'U64'
      ? 8
      : dtype === 'I32' || dtype === 'U32'
        ? 4
        : dtype === 'I16' || dtype === 'U16'
          ? 2
          : 1;
  const total = bytes.byteLength / size;
  for (let done = 0; done < total; ) {
    const n = Math.min(PIECE - stats.pending, total - done);
    const piece = bytes.subarray(done * size, (done + n) * size);
    switch (dtype) {
      case 'U8':
      case 'BOOL':
        SCRATCH_INT.set(piece);
        break;
      case 'I8':
        SCRATCH_INT.set(new Int8Array(piece.buffer, piece.byteOffset, n));
        break;
      case 'I16':
      case 'U16':
        SCRATCH_BYTES.set(piece);
        SCRATCH_INT.set((dtype === 'I16' ? SCRATCH_I16 : SCRATCH_U16).subarray(0, n));
        break;
      case 'I32':
      case 'U32':
        SCRATCH_BYTES.set(piece);
        SCRATCH_INT.set((dtype === 'I32' ? SCRATCH_BITS : SCRATCH_U32).subarray(0, n));
        break;
      case 'I64':
      case 'U64':
        SCRATCH_F64_BYTES.set(piece);
        break;
    }
    if (size === 8) accumulateInt64(SCRATCH_WORDS, n, dtype === 'I64', stats.partial);
    else accumulateInt32(SCRATCH_INT, n, stats.partial);
    done += n;
    stats.pending += n;
    if (stats.pending === PIECE) foldInteger(stats);
  }
}

/** x[0..n): integers of magnitude below 2^32. */
function accumulateInt32(x: Float64Array, n: number, p: Float64Array): void {
  let sum = 0;
  let max = p[P_MAX_LO];
  let d0 = 0;
  let d1 = 0;
  let p01 = 0;
  for (let j = 0; j < n; j++) {
    const v = x[j];
    sum += v;
    const a = Math.abs(v);
    if (a > max) max = a;
    const a0 = a & 0xffff; // ToInt32 keeps the low 32 bits, exactly, of a < 2^32
    const a1 = a >>> 16;
    d0 += a0 * a0;
    d1 += a1 * a1;
    p01 += a0 * a1;
  }
  p[P_SUM_LO] += sum;
  p[P_MAX_LO] = max;
  p[P_D0] += d0;
  p[P_D1] += d1;
  p[P_01] += p01;
}

/** words[0..2n): n 64-bit integers as (low, high) word pairs; `signed` for I64 (two's complement). */
function accumulateInt64(words: Uint32Array, n: number, signed: boolean, p: Float64Array): void {
  let sumLo = 0;
  let sumHi = 0;
  let maxLo = p[P_MAX_LO];
  let maxHi = p[P_MAX_HI];
  let d0 = 0;
  let d1 = 0;
  let d2 = 0;
  let d3 = 0;
  let p01 = 0;
  let p02 = 0;
  let p03 = 0;
  let p12 = 0;
  let p13 = 0;
  let p23 = 0;
  for (let j = 0; j < n; j++) {
    const lo = words[2 * j];
    const hi = words[2 * j + 1];
    let mLo = lo;
    let mHi = hi;
    if (signed && hi >= 0x80000000) {
      // v = (hi − 2^32)·2^32 + lo < 0; |v| = −v, negated over the two words.
      sumHi += hi - TWO_32;
      if (lo === 0) {
        mHi = TWO_32 - hi;
      } else {
        mLo = TWO_32 - lo;
        mHi = 0xffffffff - hi;
      }
    } else {
      sumHi += hi;
    }
    sumLo += lo;
    if (mHi > maxHi || (mHi === maxHi && mLo > maxLo)) {
      maxHi = mHi;
      maxLo = mLo;
    }
    const a0 = mLo & 0xffff;
    const a1 = mLo >>> 16;
    const a2 = mHi & 0xffff;
    const a3 = mHi >>> 16;
    d0 += a0 * a0;
    d1 += a1 * a1;
    d2 += a2 * a2;
    d3 += a3 * a3;
    p01 += a0 * a1;
    p02 += a0 * a2;
    p03 += a0 * a3;
    p12 += a1 * a2;
    p13 += a1 * a3;
    p23 += a2 * a3;
  }
  p[P_SUM_LO] += sumLo;
  p[P_SUM_HI] += sumHi;
  p[P_MAX_LO] = maxLo;
  p[P_MAX_HI] = maxHi;
  p[P_D0] += d0;
  p[P_D1] += d1;
  p[P_D2] += d2;
  p[P_D3] += d3;
  p[P_01] += p01;
  p[P_02] += p02;
  p[P_03] += p03;
  p[P_12] += p12;
  p[P_13] += p13;
  p[P_23] += p23;
}

function foldInteger(stats: ExactIntegerStats): void {
  const p = stats.partial;
  const b = (i: number) => BigInt(p[i]);
  stats.sum += b(P_SUM_LO) + (b(P_SUM_HI) << 32n);
  const squares = b(P_D0) + (b(P_D1) << 32n) + (b(P_D2) << 64n) + (b(P_D3) << 96n);
  const cross =
    (b(P_01) << 16n) + (b(P_02) << 32n) + ((b(P_03) + b(P_12)) << 48n) + (b(P_13) << 64n) + (b(P_23) << 80n);
  stats.sumSq += squares + 2n * cross;
  const max = (b(P_MAX_HI) << 32n) + b(P_MAX_LO);
  if (max > stats.maxAbs) stats.maxAbs = max;
  p.fill(0);
  stats.pending = 0;
}
