import { CheckpointAccumulator, type TensorShape } from '../../src/trajectory/accumulator.js';
import { decodeBF16, decodeF16 } from '../../src/trajectory/float-decode.js';
import { elementHash, nameHash } from '../../src/trajectory/sketch-hash.js';
import type { CheckpointSummary } from '../../src/model/summary.js';
import { DTYPE_SIZES, type Dtype } from '@trajgate/sdk/wire/dtypes';

/** mulberry32 → uniform [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Standard normal (Box–Muller). */
export function gaussian(random: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

/** Round-to-nearest-even F16 bits of a finite value in the F16 range (enough for test data). */
export function toF16Bits(v: number): number {
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === 0) return sign;
  const e = Math.max(-14, Math.floor(Math.log2(a)));
  const scaled = a / 2 ** (e - 10); // 1024 ≤ scaled < 2048 for normals, < 1024 for subnormals
  let m = Math.round(scaled);
  if (Math.abs(scaled - Math.trunc(scaled) - 0.5) < 1e-12 && m % 2 === 1) m -= 1;
  if (m >= 2048) return sign | ((e + 16) << 10);
  return m < 1024 ? sign | m : sign | ((e + 15) << 10) | (m - 1024);
}

/** Little-endian `dtype` bytes of `values`, and the float64 values those bytes really hold. */
export function encode(dtype: Dtype, values: ArrayLike<number>): { bytes: Uint8Array; held: Float64Array } {
  const n = values.length;
  switch (dtype) {
    case 'F64': {
      const a = Float64Array.from(values);
      return { bytes: new Uint8Array(a.buffer), held: a };
    }
    case 'F32': {
      const a = Float32Array.from(values);
      return { bytes: new Uint8Array(a.buffer), held: Float64Array.from(a) };
    }
    case 'BF16': {
      const words = new Uint32Array(Float32Array.from(values).buffer);
      const half = new Uint16Array(n);
      for (let i = 0; i < n; i++) half[i] = words[i] >>> 16;
      return { bytes: new Uint8Array(half.buffer), held: Float64Array.from(half, decodeBF16) };
    }
    case 'F16': {
      const half = Uint16Array.from(values, toF16Bits);
      return { bytes: new Uint8Array(half.buffer), held: Float64Array.from(half, decodeF16) };
    }
    case 'I32': {
      const a = Int32Array.from(values, Math.round);
      return { bytes: new Uint8Array(a.buffer), held: Float64Array.from(a) };
    }
    case 'I64': {
      const a = BigInt64Array.from(Array.from(values, (v) => BigInt(Math.round(v))));
      return { bytes: new Uint8Array(a.buffer), held: Float64Array.from(a, Number) };
    }
    case 'U8': {
      const a = Uint8Array.from(values, (v) => Math.abs(Math.round(v)) % 256);
      return { bytes: a, held: Float64Array.from(a) };
    }
    default:
      throw new Error(`not used here: ${dtype}`);
  }
}

export interface TestTensor extends TensorShape {
  bytes: Uint8Array;
  held: Float64Array;
}

export function tensor(
  name: string,
  dtype: Dtype,
  values: ArrayLike<number>,
  shape: number[] = [values.length],
): TestTensor {
  return { name, dtype, shape, ...encode(dtype, values) };
}

/**
 * Feeds every tensor in slices of random size (up to maxElements), each copied to a random byte
 * alignment, tensors one after another as decoders do, or with slices of different tensors interleaved.
 */
export function summariseChunked(
  step: number,
  tensors: readonly TestTensor[],
  random: () => number,
  options: { maxElements?: number; interleave?: boolean } = {},
): CheckpointSummary {
  const acc = new CheckpointAccumulator();
  acc.begin(tensors);
  const slices = tensors.map((t, index) => {
    const size = DTYPE_SIZES[t.dtype];
    const out: { index: number; offset: number; end: number }[] = [];
    for (let offset = 0; offset < t.bytes.byteLength; ) {
      const end = Math.min(
        t.bytes.byteLength,
        offset + size * (1 + Math.floor(random() * (options.maxElements ?? 3000))),
      );
      out.push({ index, offset, end });
      offset = end;
    }
    return out;
  });
  const order = options.interleave ? interleave(slices, random) : slices.flat();
  for (const { index, offset, end } of order) {
    const pad = Math.floor(random() * 8);
    const copy = new Uint8Array(end - offset + pad);
    copy.set(tensors[index].bytes.subarray(offset, end), pad);
    acc.update(index, offset, copy.subarray(pad));
  }
  return acc.finish(step);
}

/** Merges per-tensor slice lists in random order, keeping each tensor's slices in order. */
function interleave<T>(lists: T[][], random: () => number): T[] {
  const cursors = lists.map(() => 0);
  const out: T[] = [];
  for (;;) {
    const open = lists.map((_l, i) => i).filter((i) => cursors[i] < lists[i].length);
    if (open.length === 0) return out;
    const i = open[Math.floor(random() * open.length)];
    out.push(lists[i][cursors[i]++]);
  }
}

/** The CountSketch straight from its definition (sketch-hash.ts), over exact float64 values. */
export function bruteSketch(tensors: readonly { name: string; held: ArrayLike<number> }[], k: number): Float64Array {
  const sketch = new Float64Array(k);
  for (const { name, held } of tensors) {
    const th = nameHash(name);
    for (let i = 0; i < held.length; i++) {
      const v = held[i];
      if (v - v !== 0) continue;
      const h = elementHash(th, i);
      sketch[h & (k - 1)] += h < 0 ? -v : v;
    }
  }
  return sketch;
}

export function exactDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s);
}

export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
}

export const relClose = (a: number, b: number, tol: number): boolean =>
  Math.abs(a - b) <= tol * Math.max(Math.abs(a), Math.abs(b), 1e-300);
