import assert from 'node:assert/strict';
import { prng as rng } from './helpers/checkpoints.js';
import { describe, it } from 'node:test';
import { CheckpointAccumulator, type TensorShape } from '../src/trajectory/accumulator.js';
import { decodeBF16, decodeF16 } from '../src/trajectory/float-decode.js';
import { elementHash, nameHash } from '../src/trajectory/sketch-hash.js';
import type { CheckpointSummary } from '../src/trajectory/types.js';
import { DTYPE_SIZES, type Dtype } from '../src/wire/dtypes.js';

/** Encodes float64 values as little-endian `dtype` bytes, returning the bytes and the values they really hold. */
function encode(dtype: Dtype, values: number[]): { bytes: Uint8Array; held: number[] } {
  const n = values.length;
  switch (dtype) {
    case 'F64':
      return { bytes: new Uint8Array(new Float64Array(values).buffer), held: values };
    case 'F32': {
      const a = new Float32Array(values);
      return { bytes: new Uint8Array(a.buffer), held: Array.from(a) };
    }
    case 'BF16': {
      const words = new Uint32Array(new Float32Array(values).buffer);
      const half = new Uint16Array(n);
      for (let i = 0; i < n; i++) half[i] = words[i] >>> 16;
      return { bytes: new Uint8Array(half.buffer), held: Array.from(half, decodeBF16) };
    }
    case 'F16': {
      const half = new Uint16Array(n);
      for (let i = 0; i < n; i++) half[i] = toF16Bits(values[i]);
      return { bytes: new Uint8Array(half.buffer), held: Array.from(half, decodeF16) };
    }
    case 'I32': {
      const a = Int32Array.from(values, Math.round);
      return { bytes: new Uint8Array(a.buffer), held: Array.from(a) };
    }
    case 'U8': {
      const a = Uint8Array.from(values, (v) => Math.abs(Math.round(v)) % 256);
      return { bytes: a, held: Array.from(a) };
    }
    default:
      throw new Error(`not used here: ${dtype}`);
  }
}

/** Round-to-nearest F16 bits for values in the normal range (enough for test data). */
function toF16Bits(v: number): number {
  if (v === 0) return 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.max(-14, Math.floor(Math.log2(a)));
  const m = Math.round((a / 2 ** e - (e === -14 && a < 2 ** -14 ? 0 : 1)) * 1024);
  return sign | ((e === -14 && a < 2 ** -14 ? 0 : e + 15) << 10) | m;
}

/** Feeds `bytes` as tensor `index` in slices of random size, each copied to a random alignment. */
function feed(acc: CheckpointAccumulator, index: number, dtype: Dtype, bytes: Uint8Array, random: () => number): void {
  const size = DTYPE_SIZES[dtype];
  let offset = 0;
  while (offset < bytes.byteLength) {
    const elements = 1 + Math.floor(random() * 3000);
    const end = Math.min(bytes.byteLength, offset + elements * size);
    const pad = Math.floor(random() * 8);
    const copy = new Uint8Array(end - offset + pad);
    copy.set(bytes.subarray(offset, end), pad);
    acc.update(index, offset, copy.subarray(pad));
    offset = end;
  }
}

function summarise(tensors: { shape: TensorShape; bytes: Uint8Array }[], seed: number): CheckpointSummary {
  const acc = new CheckpointAccumulator();
  acc.begin(tensors.map((t) => t.shape));
  const random = rng(seed);
  tensors.forEach((t, i) => feed(acc, i, t.shape.dtype, t.bytes, random));
  return acc.finish(0);
}

function bruteSketch(tensors: { name: string; values: number[] }[], k: number): Float64Array {
  const sketch = new Float64Array(k);
  for (const { name, values } of tensors) {
    const th = nameHash(name);
    values.forEach((v, i) => {
      const h = elementHash(th, i);
      sketch[h & (k - 1)] += h < 0 ? -v : v;
    });
  }
  return sketch;
}

const relClose = (a: number, b: number, tol: number) => Math.abs(a - b) <= tol * Math.max(Math.abs(a), Math.abs(b), 1e-300);

describe('half-precision decoding', () => {
  it('F16 matches reference values bit for bit', () => {
    const cases: [number, number][] = [
      [0x3c00, 1],
      [0xc000, -2],
      [0x7bff, 65504],
      [0x0001, 5.960464477539063e-8],
      [0x03ff, 6.097555160522461e-5],
      [0x0400, 6.103515625e-5],
      [0x3555, 0.333251953125],
      [0x8000, -0],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
    ];
    for (const [bits, value] of cases) assert.ok(Object.is(decodeF16(bits), value), `0x${bits.toString(16)}`);
    assert.ok(Number.isNaN(decodeF16(0x7e00)));
  });

  it('BF16 matches reference values bit for bit', () => {
    const cases: [number, number][] = [
      [0x3f80, 1],
      [0x4049, 3.140625],
      [0xc000, -2],
      [0x7f7f, 3.3895313892515355e38],
      [0x0001, 9.183549615799121e-41],
      [0x7f80, Infinity],
      [0x8000, -0],
    ];
    for (const [bits, value] of cases) assert.ok(Object.is(decodeBF16(bits), value), `0x${bits.toString(16)}`);
    assert.ok(Number.isNaN(decodeBF16(0x7fc0)));
  });
});

describe('per-tensor statistics', () => {
  for (const dtype of ['F64', 'F32', 'F16', 'BF16', 'I32', 'U8'] as const) {
    it(`match brute force to 1e-9 for ${dtype} at any chunking and alignment`, () => {
      const random = rng(DTYPE_SIZES[dtype] * 7 + dtype.length);
      const n = 20_000 + Math.floor(random() * 5000);
      const scale = dtype === 'I32' || dtype === 'U8' ? 200 : 0.5;
      const { bytes, held } = encode(dtype, Array.from({ length: n }, () => (random() - 0.3) * scale));
      const summary = summarise([{ shape: { name: 'w', dtype, shape: [n] }, bytes }], 3);
      const [stats] = summary.tensors;
      const sumSq = held.reduce((s, v) => s + v * v, 0);
      assert.equal(stats.count, n);
      assert.ok(relClose(stats.norm, Math.sqrt(sumSq), 1e-9), `norm ${stats.norm} vs ${Math.sqrt(sumSq)}`);
      assert.ok(relClose(stats.mean, held.reduce((s, v) => s + v, 0) / n, 1e-9), 'mean');
      assert.equal(stats.maxAbs, Math.max(...held.map(Math.abs)));
      assert.equal(stats.nanCount, 0);
      assert.equal(stats.infCount, 0);
    });
  }

  it('count NaN and Inf and leave them out of norm, mean and maxAbs', () => {
    const values = [1, Number.NaN, -3, Infinity, 2, -Infinity, Number.NaN];
    for (const dtype of ['F32', 'F64'] as const) {
      const { bytes } = encode(dtype, values);
      const [stats] = summarise([{ shape: { name: 'w', dtype, shape: [values.length] }, bytes }], 1).tensors;
      assert.deepEqual([stats.nanCount, stats.infCount, stats.maxAbs, stats.mean], [2, 2, 3, 0]);
      assert.ok(relClose(stats.norm, Math.sqrt(14), 1e-12));
    }
  });
});

describe('CountSketch', () => {
  const k = 8192;
  it('equals the documented hash applied element by element, whatever the chunking', () => {
    const random = rng(11);
    const tensors = ['a.weight', 'b.bias', 'c.weight'].map((name, t) => ({
      name,
      values: Array.from(new Float32Array(Array.from({ length: 3000 + t * 9000 }, () => random() - 0.5))),
    }));
    const summary = summarise(
      tensors.map((t) => ({ shape: { name: t.name, dtype: 'F32', shape: [t.values.length] }, bytes: encode('F32', t.values).bytes })),
      5,
    );
    const expected = bruteSketch(tensors, k);
    for (let b = 0; b < k; b++) assert.ok(Math.abs(summary.sketch[b] - expected[b]) < 1e-9, `bucket ${b}`);
  });

  it('is linear: sketch(a) − sketch(b) = sketch(a − b) to rounding', () => {
    const random = rng(12);
    const n = 50_000;
    const a = Array.from({ length: n }, () => random() - 0.5);
    const b = Array.from({ length: n }, () => random() - 0.5);
    const sk = (values: number[]) =>
      summarise([{ shape: { name: 'w', dtype: 'F64', shape: [n] }, bytes: encode('F64', values).bytes }], 2).sketch.slice();
    const [sa, sb, sd] = [sk(a), sk(b), sk(a.map((v, i) => v - b[i]))];
    for (let i = 0; i < k; i++) assert.ok(Math.abs(sa[i] - sb[i] - sd[i]) < 1e-12, `bucket ${i}`);
  });

  it('estimates distances within 5% at the 99th percentile, down to ||Δw|| = 1e-6 ||w||', () => {
    const random = rng(13);
    const n = 200_000;
    const base = Array.from({ length: n }, () => random() - 0.5);
    const errors: number[] = [];
    for (const relative of [1e-1, 1e-3, 1e-6]) {
      for (let trial = 0; trial < 40; trial++) {
        const delta = Array.from({ length: n }, () => random() - 0.5);
        const deltaNorm = Math.sqrt(delta.reduce((s, v) => s + v * v, 0));
        const baseNorm = Math.sqrt(base.reduce((s, v) => s + v * v, 0));
        const scale = (relative * baseNorm) / deltaNorm;
        const moved = base.map((v, i) => v + delta[i] * scale);
        const sketchOf = (values: number[]) => bruteSketch([{ name: `t${trial}`, values }], k);
        const [s0, s1] = [sketchOf(base), sketchOf(moved)];
        let estimate = 0;
        for (let i = 0; i < k; i++) estimate += (s1[i] - s0[i]) ** 2;
        const exact = Math.sqrt(moved.reduce((s, v, i) => s + (v - base[i]) ** 2, 0));
        errors.push(Math.abs(Math.sqrt(estimate) / exact - 1));
      }
    }
    errors.sort((x, y) => x - y);
    const p99 = errors[Math.floor(errors.length * 0.99)];
    assert.ok(p99 < 0.05, `99th percentile relative error ${p99}`);
  });

  it('keeps small tensors exactly and sketches integer tensors not at all', () => {
    const values = [0.5, -1.25, 3];
    const summary = summarise(
      [
        { shape: { name: 'bias', dtype: 'F32', shape: [3] }, bytes: encode('F32', values).bytes },
        { shape: { name: 'counter', dtype: 'I32', shape: [2] }, bytes: encode('I32', [7, 9]).bytes },
      ],
      1,
    );
    assert.deepEqual(Array.from(summary.tensorSketches[0]), values);
    assert.equal(summary.tensorSketches[1].length, 0);
    assert.ok(relClose(summary.weightNorm, Math.sqrt(0.25 + 1.5625 + 9), 1e-12), 'weight norm counts float tensors only');
    const expected = bruteSketch([{ name: 'bias', values }], k);
    assert.deepEqual(Array.from(summary.sketch), Array.from(expected));
  });

  it('gives the same result when two checkpoints are fed interleaved', () => {
    const random = rng(14);
    const make = () => Array.from({ length: 30_000 }, () => random() - 0.5);
    const [x, y] = [make(), make()];
    const alone = (values: number[]) =>
      summarise([{ shape: { name: 'w', dtype: 'F32', shape: [values.length] }, bytes: encode('F32', values).bytes }], 1).sketch.slice();
    const [ax, ay] = [new CheckpointAccumulator(), new CheckpointAccumulator()];
    for (const acc of [ax, ay]) acc.begin([{ name: 'w', dtype: 'F32', shape: [30_000] }]);
    const [bx, by] = [encode('F32', x).bytes, encode('F32', y).bytes];
    for (let off = 0; off < bx.length; off += 4096) {
      ax.update(0, off, bx.subarray(off, off + 4096));
      ay.update(0, off, by.subarray(off, off + 4096));
    }
    assert.deepEqual(Array.from(ax.finish(0).sketch), Array.from(alone(x)));
    assert.deepEqual(Array.from(ay.finish(0).sketch), Array.from(alone(y)));
  });
});
