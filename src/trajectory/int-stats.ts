import type { IntegerDtype } from '@trajgate/sdk/wire/dtypes';
import { ACC_MAX_ABS, ACC_SUM, ACC_SUM_SQ, SHARED_SCRATCH } from './kernels.js';

/** The float path's scratch and piece size, as same-module constants. */
const {
  piece: PIECE,
  f32: SCRATCH_F32,
  bits: SCRATCH_BITS,
  bytes: SCRATCH_BYTES,
  f64: SCRATCH_F64,
  f64Bytes: SCRATCH_F64_BYTES,
} = SHARED_SCRATCH;

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
