import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CheckpointAccumulator, summariseTensors } from '../src/trajectory/accumulator.js';
import {
  BF16_TABLE,
  F16_TABLE,
  F8_E4M3_TABLE,
  F8_E5M2_TABLE,
  F8_E8M0_TABLE,
  decodeBF16,
  decodeF16,
} from '../src/trajectory/float-decode.js';
import { DIRECT_MAX } from '../src/trajectory/kernels.js';
import { fold, sketchValues, tensorDistances } from '../src/trajectory/sketch-distance.js';
import { elementHash, nameHash } from '../src/trajectory/sketch-hash.js';
import { TENSOR_SKETCH_BUDGET, planTensorSketches } from '../src/trajectory/tensor-sketch-plan.js';
import { DTYPE_SIZES, type Dtype } from '@trajgate/sdk/wire/dtypes';
import {
  type TestTensor,
  bruteSketch,
  relClose,
  rng,
  summariseChunked,
  tensor,
  toF16Bits,
} from './helpers/trajectory-fixtures.js';

const K = 8192;

describe('half-precision decoding', () => {
  it('F16 matches reference values bit for bit', () => {
    const cases: [number, number][] = [
      [0x3c00, 1],
      [0xc000, -2],
      [0x7bff, 65504],
      [0x0001, 2 ** -24],
      [0x03ff, 6.097555160522461e-5],
      [0x0400, 6.103515625e-5],
      [0x3555, 0.333251953125],
      [0x8000, -0],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
    ];
    for (const [bits, value] of cases) assert.ok(Object.is(decodeF16(bits), value), `0x${bits.toString(16)}`);
    assert.ok(Number.isNaN(decodeF16(0x7e00)));
    assert.ok(Number.isNaN(decodeF16(0xfc01)));
  });

  it('BF16 matches reference values bit for bit', () => {
    const cases: [number, number][] = [
      [0x3f80, 1],
      [0x4049, 3.140625],
      [0xc000, -2],
      [0x7f7f, 3.3895313892515355e38],
      [0x0001, 9.183549615799121e-41],
      [0x7f80, Infinity],
      [0xff80, -Infinity],
      [0x8000, -0],
    ];
    for (const [bits, value] of cases) assert.ok(Object.is(decodeBF16(bits), value), `0x${bits.toString(16)}`);
    assert.ok(Number.isNaN(decodeBF16(0x7fc0)));
  });

  it('every one of the 65536 patterns agrees with an independent decoder', () => {
    const view = new DataView(new ArrayBuffer(4));
    for (let bits = 0; bits < 65536; bits++) {
      const sign = bits & 0x8000 ? -1 : 1;
      const e = (bits >>> 10) & 0x1f;
      const m = bits & 0x3ff;
      const f16 =
        e === 0 ? sign * m * 2 ** -24 : e === 31 ? (m ? NaN : sign * Infinity) : sign * (1024 + m) * 2 ** (e - 25);
      view.setUint32(0, bits << 16);
      const bf16 = view.getFloat32(0);
      assert.ok(
        Object.is(F16_TABLE[bits], f16) || (Number.isNaN(f16) && Number.isNaN(F16_TABLE[bits])),
        `F16 0x${bits.toString(16)}`,
      );
      assert.ok(
        Object.is(BF16_TABLE[bits], bf16) || (Number.isNaN(bf16) && Number.isNaN(BF16_TABLE[bits])),
        `BF16 0x${bits.toString(16)}`,
      );
    }
    assert.equal(toF16Bits(1), 0x3c00);
    assert.equal(toF16Bits(2 ** -24), 0x0001);
  });
});

describe('per-tensor statistics', () => {
  for (const dtype of ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'U8'] as const) {
    it(`match brute force to 1e-9 for ${dtype} at any chunking and alignment`, () => {
      const random = rng(DTYPE_SIZES[dtype] * 7 + dtype.length);
      const integer = dtype === 'I64' || dtype === 'I32' || dtype === 'U8';
      for (const n of [1, 37, DIRECT_MAX, 20_000 + Math.floor(random() * 5000)]) {
        const t = tensor(
          'w',
          dtype,
          Array.from({ length: n }, () => (random() - 0.3) * (integer ? 200 : 0.5)),
        );
        const [stats] = summariseChunked(0, [t], random).tensors;
        const held = Array.from(t.held);
        const sumSq = held.reduce((s, v) => s + v * v, 0);
        assert.equal(stats.count, n);
        assert.ok(relClose(stats.norm, Math.sqrt(sumSq), 1e-9), `norm ${stats.norm} vs ${Math.sqrt(sumSq)}`);
        assert.ok(relClose(stats.mean, held.reduce((s, v) => s + v, 0) / n, 1e-9), 'mean');
        assert.equal(stats.maxAbs, Math.max(...held.map(Math.abs)));
        assert.deepEqual([stats.nanCount, stats.infCount], [0, 0]);
      }
    });
  }

  it('count NaN and Inf and leave them out of norm, mean and maxAbs (small and large tensors)', () => {
    for (const dtype of ['F32', 'F64', 'F16', 'BF16'] as const) {
      for (const size of [7, 3 * DIRECT_MAX]) {
        const values = Array.from({ length: size }, (_, i) =>
          i < 7 ? [1, Number.NaN, -3, Infinity, 2, -Infinity, Number.NaN][i] : 0,
        );
        const t = tensor('w', dtype, values);
        if (dtype === 'F16') {
          // toF16Bits covers finite values only.
          const bits = new Uint16Array(t.bytes.buffer);
          values.forEach((v, i) => {
            bits[i] = Number.isNaN(v) ? 0x7e00 : v === Infinity ? 0x7c00 : v === -Infinity ? 0xfc00 : toF16Bits(v);
          });
        }
        const [stats] = summariseChunked(0, [t], rng(1)).tensors;
        assert.deepEqual([stats.nanCount, stats.infCount, stats.maxAbs], [2, 2, 3], `${dtype} × ${size}`);
        assert.ok(stats.mean === 0 && relClose(stats.norm, Math.sqrt(14), 1e-12), `${dtype} × ${size}`);
      }
    }
  });

  it('rejects slices that are not whole elements of their tensor', () => {
    const acc = new CheckpointAccumulator();
    acc.begin([{ name: 'w', dtype: 'F32', shape: [4] }]);
    assert.throws(() => acc.update(0, 2, new Uint8Array(4)), RangeError);
    assert.throws(() => acc.update(0, 0, new Uint8Array(6)), RangeError);
    assert.throws(() => acc.update(0, 8, new Uint8Array(12)), RangeError);
    assert.throws(() => acc.update(1, 0, new Uint8Array(4)), RangeError);
  });
});

describe('CountSketch', () => {
  it('equals the documented hash applied element by element, for every float dtype, chunking and feeding order', () => {
    const random = rng(11);
    const dtypes: Dtype[] = ['F32', 'BF16', 'F16', 'F64'];
    const sizes = [3, 64, 65, DIRECT_MAX, DIRECT_MAX + 1, 9000, 70_000];
    const tensors = sizes.map((n, i) =>
      tensor(
        `layers.${i}.weight`,
        dtypes[i % dtypes.length],
        Array.from({ length: n }, () => random() - 0.5),
      ),
    );
    tensors.push(tensor('step', 'I64', [1234]));
    const expected = bruteSketch(
      tensors.filter((t) => t.dtype !== 'I64'),
      K,
    );
    for (const interleave of [false, true]) {
      const summary = summariseChunked(0, tensors, random, { interleave, maxElements: 20_000 });
      for (let b = 0; b < K; b++) assert.ok(Math.abs(summary.sketch[b] - expected[b]) < 1e-9, `bucket ${b}`);
      tensors.forEach((t, i) => {
        const stored = summary.tensorSketches[i];
        if (t.dtype === 'I64') {
          assert.equal(stored.length, 0);
          return;
        }
        if (t.held.length <= 64) {
          assert.deepEqual(Array.from(stored), Array.from(t.held), `${t.name} kept exactly`);
          return;
        }
        const own = bruteSketch([t], 64);
        assert.equal(stored.length, 64);
        for (let b = 0; b < 64; b++) assert.ok(Math.abs(stored[b] - own[b]) < 1e-9, `${t.name} bucket ${b}`);
        assert.deepEqual(
          Array.from(sketchValues(t.name, t.held, 64)).map((v) => v.toFixed(9)),
          Array.from(own).map((v) => v.toFixed(9)),
        );
      });
    }
  });

  it('gives the same summary when two checkpoints are fed interleaved (concurrent uploads)', () => {
    const random = rng(14);
    const make = (seed: number) =>
      [30_000, 100, 5000].map((n, i) =>
        tensor(
          `t${i}`,
          'F32',
          Array.from({ length: n }, () => rng(seed + i)() - 0.5),
        ),
      );
    const [x, y] = [make(1), make(2)];
    const [ax, ay] = [new CheckpointAccumulator(), new CheckpointAccumulator()];
    ax.begin(x);
    ay.begin(y);
    for (let t = 0; t < 3; t++) {
      for (let off = 0; off < x[t].bytes.byteLength; off += 4096) {
        ax.update(t, off, x[t].bytes.subarray(off, off + 4096));
        ay.update(t, off, y[t].bytes.subarray(off, off + 4096));
      }
    }
    const [sx, sy] = [ax.finish(0), ay.finish(0)];
    for (const [interleaved, alone] of [
      [sx, summariseChunked(0, x, random)],
      [sy, summariseChunked(0, y, random)],
    ] as const) {
      for (let b = 0; b < K; b++) assert.ok(Math.abs(interleaved.sketch[b] - alone.sketch[b]) < 1e-12);
      interleaved.tensorSketches.forEach((s, i) => {
        assert.deepEqual(
          Array.from(s).map((v) => v.toFixed(12)),
          Array.from(alone.tensorSketches[i]).map((v) => v.toFixed(12)),
        );
      });
    }
  });

  it('is linear: sketch(a) − sketch(b) = sketch(a − b) to rounding', () => {
    const random = rng(12);
    const n = 50_000;
    const a = Array.from({ length: n }, () => random() - 0.5);
    const b = Array.from({ length: n }, () => random() - 0.5);
    const sk = (values: number[]) => summariseTensors(0, [tensor('w', 'F64', values)]);
    const [sa, sb, sd] = [sk(a), sk(b), sk(a.map((v, i) => v - b[i]))];
    for (let i = 0; i < K; i++) assert.ok(Math.abs(sa.sketch[i] - sb.sketch[i] - sd.sketch[i]) < 1e-12, `bucket ${i}`);
    for (let i = 0; i < 64; i++)
      assert.ok(Math.abs(sa.tensorSketches[0][i] - sb.tensorSketches[0][i] - sd.tensorSketches[0][i]) < 1e-12);
  });

  it('keeps small tensors exactly, sketches integer tensors not at all, and counts only floats in weightNorm', () => {
    const values = [0.5, -1.25, 3];
    const summary = summariseTensors(0, [tensor('bias', 'F32', values), tensor('counter', 'I32', [7, 9])]);
    assert.deepEqual(Array.from(summary.tensorSketches[0]), values);
    assert.equal(summary.tensorSketches[1].length, 0);
    assert.ok(relClose(summary.weightNorm, Math.sqrt(0.25 + 1.5625 + 9), 1e-12));
    assert.deepEqual(Array.from(summary.sketch), Array.from(bruteSketch([{ name: 'bias', held: values }], K)));
  });
});

describe('FP8', () => {
  /** Independent decoders, from the format definitions (NaN as NaN). */
  const reference: Record<'F8_E4M3' | 'F8_E5M2' | 'F8_E8M0', (b: number) => number> = {
    F8_E4M3: (b) => {
      const sign = b & 0x80 ? -1 : 1;
      const [e, m] = [(b >> 3) & 15, b & 7];
      if (e === 15 && m === 7) return Number.NaN;
      return e === 0 ? (sign * m) / 512 : sign * (1 + m / 8) * 2 ** (e - 7);
    },
    F8_E5M2: (b) => {
      const sign = b & 0x80 ? -1 : 1;
      const [e, m] = [(b >> 2) & 31, b & 3];
      if (e === 31) return m ? Number.NaN : sign * Number.POSITIVE_INFINITY;
      return e === 0 ? (sign * m) / 65536 : sign * (1 + m / 4) * 2 ** (e - 15);
    },
    F8_E8M0: (b) => (b === 255 ? Number.NaN : 2 ** (b - 127)),
  };
  const tables = { F8_E4M3: F8_E4M3_TABLE, F8_E5M2: F8_E5M2_TABLE, F8_E8M0: F8_E8M0_TABLE };
  type Fp8 = keyof typeof tables;
  const FP8: Fp8[] = ['F8_E4M3', 'F8_E5M2', 'F8_E8M0'];

  /** A tensor of `n` FP8 elements drawn from the finite patterns (plus the given specials, at the front). */
  function fp8Tensor(name: string, dtype: Fp8, n: number, random: () => number, specials: number[] = []): TestTensor {
    const finite = Array.from({ length: 256 }, (_, b) => b).filter((b) => Number.isFinite(reference[dtype](b)));
    const bytes = Uint8Array.from({ length: n }, (_, i) =>
      i < specials.length ? specials[i] : finite[Math.floor(random() * finite.length)],
    );
    return { name, dtype, shape: [n], bytes, held: Float64Array.from(bytes, reference[dtype]) };
  }

  it('decodes all 256 patterns of each type bit for bit', () => {
    for (const dtype of FP8) {
      for (let b = 0; b < 256; b++) {
        const want = reference[dtype](b);
        const got = tables[dtype][b];
        assert.ok(Object.is(got, want) || (Number.isNaN(got) && Number.isNaN(want)), `${dtype} 0x${b.toString(16)}`);
      }
    }
    assert.deepEqual(
      [F8_E4M3_TABLE[0x7e], F8_E4M3_TABLE[0xfe], F8_E4M3_TABLE[0x01], F8_E4M3_TABLE[0x38]],
      [448, -448, 2 ** -9, 1],
    );
    assert.ok(Number.isNaN(F8_E4M3_TABLE[0x7f]) && Number.isNaN(F8_E4M3_TABLE[0xff]));
    assert.equal(F8_E4M3_TABLE.filter((v) => !Number.isFinite(v)).length, 2, 'E4M3fn has no infinities');
    assert.deepEqual(
      [F8_E5M2_TABLE[0x7b], F8_E5M2_TABLE[0x7c], F8_E5M2_TABLE[0xfc], F8_E5M2_TABLE[0x01]],
      [57344, Infinity, -Infinity, 2 ** -16],
    );
    assert.deepEqual([F8_E8M0_TABLE[0], F8_E8M0_TABLE[127], F8_E8M0_TABLE[254]], [2 ** -127, 1, 2 ** 127]);
  });

  /** Per bucket, the sum of |terms|: float64 sums in another order may differ by a few ulps of it. */
  function bucketScale(tensors: readonly TestTensor[], k: number): Float64Array {
    const scale = new Float64Array(k);
    for (const t of tensors) {
      const th = nameHash(t.name);
      t.held.forEach((v, i) => {
        scale[elementHash(th, i) & (k - 1)] += Math.abs(v);
      });
    }
    return scale;
  }

  it('statistics, sketch and per-tensor values match brute force at any size, chunking and alignment', () => {
    const random = rng(88);
    for (const dtype of FP8) {
      const tensors = [3, 64, DIRECT_MAX, DIRECT_MAX + 1, 40_000].map((n, i) =>
        fp8Tensor(`l${i}.${dtype}`, dtype, n, random),
      );
      const expected = bruteSketch(tensors, K);
      const scale = bucketScale(tensors, K);
      const summary = summariseChunked(0, tensors, random, { maxElements: 9000 });
      for (let b = 0; b < K; b++) {
        assert.ok(Math.abs(summary.sketch[b] - expected[b]) <= 1e-13 * scale[b], `${dtype} bucket ${b}`);
      }
      summary.tensors.forEach((stats, i) => {
        const t = tensors[i];
        const held = Array.from(t.held);
        const sumSq = held.reduce((acc, v) => acc + v * v, 0);
        const sumAbs = held.reduce((acc, v) => acc + Math.abs(v), 0);
        assert.ok(relClose(stats.norm, Math.sqrt(sumSq), 1e-12), `${stats.name} norm`);
        const mean = held.reduce((acc, v) => acc + v, 0) / held.length;
        assert.ok(Math.abs(stats.mean - mean) <= (1e-13 * sumAbs) / held.length, `${stats.name} mean`);
        assert.equal(stats.maxAbs, Math.max(...held.map(Math.abs)));
        const own = summary.tensorSketches[i];
        if (held.length <= 64) assert.deepEqual(Array.from(own), held);
        else {
          const [brute, ownScale] = [bruteSketch([t], 64), bucketScale([t], 64)];
          for (let b = 0; b < 64; b++) assert.ok(Math.abs(own[b] - brute[b]) <= 1e-13 * ownScale[b], `${t.name} ${b}`);
        }
      });
    }
  });

  it('count NaN and Inf and leave them out of the statistics, in small and large tensors', () => {
    const cases: [Fp8, number[], number, number][] = [
      ['F8_E4M3', [0x7f, 0xff, 0x38, 0x7f], 3, 0],
      ['F8_E5M2', [0x7c, 0xfc, 0x7d, 0x3c, 0xff], 2, 2],
      ['F8_E8M0', [0xff, 0x7f], 1, 0],
    ];
    for (const [dtype, specials, nans, infs] of cases) {
      for (const n of [7, 3 * DIRECT_MAX]) {
        const t = fp8Tensor('w', dtype, n, rng(n), specials);
        const [stats] = summariseChunked(0, [t], rng(2)).tensors;
        const finite = Array.from(t.held).filter(Number.isFinite);
        assert.deepEqual([stats.nanCount, stats.infCount], [nans, infs], `${dtype} × ${n}`);
        assert.ok(relClose(stats.norm, Math.sqrt(finite.reduce((a, v) => a + v * v, 0)), 1e-12), `${dtype} × ${n}`);
        assert.equal(stats.maxAbs, Math.max(...finite.map(Math.abs)));
      }
    }
  });
});

describe('exact integer statistics', () => {
  const INTEGERS = ['I64', 'U64', 'I32', 'U32', 'I16', 'U16', 'I8', 'U8', 'BOOL'] as const;
  type IntDtype = (typeof INTEGERS)[number];
  const ranges: Record<IntDtype, [bigint, bigint]> = {
    I64: [-(2n ** 63n), 2n ** 63n - 1n],
    U64: [0n, 2n ** 64n - 1n],
    I32: [-(2n ** 31n), 2n ** 31n - 1n],
    U32: [0n, 2n ** 32n - 1n],
    I16: [-32768n, 32767n],
    U16: [0n, 65535n],
    I8: [-128n, 127n],
    U8: [0n, 255n],
    BOOL: [0n, 1n],
  };

  /** Little-endian bytes of `values`, which must fit `dtype`. */
  function encodeInts(dtype: IntDtype, values: bigint[]): Uint8Array {
    const size = DTYPE_SIZES[dtype];
    const bytes = new Uint8Array(values.length * size);
    values.forEach((v, i) => {
      let u = v < 0n ? v + (1n << BigInt(8 * size)) : v;
      for (let k = 0; k < size; k++, u >>= 8n) bytes[i * size + k] = Number(u & 0xffn);
    });
    return bytes;
  }

  it('are the exact sums rounded once, for every integer dtype, past the fold interval, at any chunking', () => {
    const random = rng(64);
    for (const dtype of INTEGERS) {
      const [lo, hi] = ranges[dtype];
      const span = hi - lo + 1n;
      const draw = () =>
        lo + (((BigInt(Math.floor(random() * 2 ** 32)) << 32n) | BigInt(Math.floor(random() * 2 ** 32))) % span);
      for (const n of [1, 5, 16_384, 40_000]) {
        // The extremes first, then pairs that cancel (large ± small) and random values.
        const values = [lo, hi, ...Array.from({ length: n }, (_, i) => (i % 3 === 2 ? -draw() : draw()))]
          .slice(0, n)
          .map((v) => (v < lo ? lo : v > hi ? hi : v));
        const bytes = encodeInts(dtype, values);
        const t = { name: 'ints', dtype, shape: [n], bytes, held: new Float64Array(0) };
        const [stats] = summariseChunked(0, [t], random, { maxElements: 7000 }).tensors;
        const sum = values.reduce((a, v) => a + v, 0n);
        const sumSq = values.reduce((a, v) => a + v * v, 0n);
        let maxAbs = 0n;
        for (const v of values) if ((v < 0n ? -v : v) > maxAbs) maxAbs = v < 0n ? -v : v;
        assert.equal(stats.mean, Number(sum) / n, `${dtype} × ${n} mean`);
        assert.equal(stats.norm, Math.sqrt(Number(sumSq)), `${dtype} × ${n} norm`);
        assert.equal(stats.maxAbs, Number(maxAbs), `${dtype} × ${n} maxAbs`);
      }
    }
  });

  it('keep cancellation that float64 sums lose (I64 beyond 2^53)', () => {
    const values = [2n ** 62n + 1n, -(2n ** 62n), 2n ** 62n + 3n, -(2n ** 62n), -(2n ** 63n), 2n ** 63n - 1n];
    const [stats] = summariseTensors(0, [
      { name: 'c', dtype: 'I64', shape: [6], bytes: encodeInts('I64', values) },
    ]).tensors;
    assert.equal(stats.mean, 3 / 6);
    assert.equal(stats.maxAbs, 2 ** 63);
  });
});

describe('per-tensor sketch budget', () => {
  const table = (n: number, size: number) =>
    Array.from({ length: n }, (_, i) => ({
      name: `t${String(i).padStart(5, '0')}`,
      dtype: 'F32' as const,
      shape: [size + (i % 3)],
    }));
  const total = (plans: { length: number }[]) => plans.reduce((s, p) => s + p.length, 0);

  it('keeps tensorK buckets per tensor while they fit, then fewer, then only the largest tensors', () => {
    assert.ok(planTensorSketches(table(500, 1000), 64).every((p) => p.kind === 'sketch' && p.length === 64));
    const halved = planTensorSketches(table(1500, 1000), 64);
    assert.ok(halved.every((p) => p.length === 16) && total(halved) <= TENSOR_SKETCH_BUDGET);
    const many = planTensorSketches([...table(6000, 1000), { name: 'huge', dtype: 'BF16', shape: [10, 10_000] }], 64);
    assert.equal(many.filter((p) => p.kind === 'sketch').length, TENSOR_SKETCH_BUDGET / 8);
    assert.equal(many[6000].kind, 'sketch', 'the largest tensor keeps its sketch');
    assert.ok(total(many) <= TENSOR_SKETCH_BUDGET);
    assert.deepEqual(
      planTensorSketches(
        [
          { name: 'n', dtype: 'I64', shape: [1] },
          { name: 'b', dtype: 'F16', shape: [3] },
        ],
        64,
      ).map((p) => p.kind),
      ['none', 'exact'],
    );
  });

  it('stays within the budget in a real summary, and folded sketches of different sizes compare', () => {
    const random = rng(3);
    const tensors = Array.from({ length: 1200 }, (_, i) =>
      tensor(
        `p${i}`,
        'F32',
        Array.from({ length: 40 + (i % 50) }, () => random() - 0.5),
      ),
    );
    const summary = summariseTensors(0, tensors);
    assert.ok(summary.tensorSketches.reduce((s, t) => s + t.length, 0) <= TENSOR_SKETCH_BUDGET);
    assert.ok(
      summary.tensorSketches.every((s) => s.length === 16),
      '1200 tensors get 16 buckets each',
    );
    const big = tensor(
      'w',
      'F32',
      Array.from({ length: 10_000 }, () => random()),
    );
    const moved = tensor(
      'w',
      'F32',
      Array.from(big.held, (v) => v + 0.01 * (random() - 0.5)),
    );
    const [a, b] = [summariseTensors(1, [moved]), summariseTensors(0, [big])];
    const wide = tensorDistances(a, b)[0].updateNorm;
    const narrowPrev = { ...b, tensorSketches: [fold(b.tensorSketches[0], 16)] };
    const narrow = tensorDistances(a, narrowPrev)[0].updateNorm;
    assert.ok(
      Math.abs(
        narrow -
          Math.sqrt(
            fold(a.tensorSketches[0], 16).reduce((s, v, i) => s + (v - narrowPrev.tensorSketches[0][i]) ** 2, 0),
          ),
      ) < 1e-12,
    );
    assert.ok(narrow > 0 && wide > 0);
  });
});
