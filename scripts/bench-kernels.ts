/**
 * Trajectory kernel throughput on one core: per-tensor statistics plus the whole-vector and per-tensor
 * sketches (k = 8192, tensorK = 64) over F32, BF16 and F16 checkpoints, fed the way the ingest decoders
 * feed them (64 KiB slices starting at an odd byte address, as socket buffers come), against bare
 * float64 sum-of-squares loops over the same bytes read as F32:
 *   - in place: one loop over an aligned Float32Array of the whole data (no decoding, no copies);
 *   - sliced: the same 64 KiB odd-aligned slices, each copied to an aligned scratch, then summed.
 * The ratio is taken against the faster of the two. Each case is warmed up first; best of --repeat.
 *
 *   npx tsx scripts/bench-kernels.ts [--mb 256] [--repeat 5]
 */
import { parseArgs } from 'node:util';
import { CheckpointAccumulator } from '../src/trajectory/accumulator.js';

const { values } = parseArgs({
  options: { mb: { type: 'string', default: '256' }, repeat: { type: 'string', default: '5' } },
});
const totalBytes = Number(values.mb) * 1024 * 1024;
const repeat = Number(values.repeat);
const SLICE = 64 * 1024;
const TENSOR_BYTES = 64 * 1024 * 1024;
const GB = 1e9;

type Case = 'F32' | 'BF16' | 'F16';

/** Weights ~ U(−0.1, 0.1), encoded as `dtype`, in a buffer that starts one byte past an aligned address. */
function makeData(dtype: Case): Uint8Array {
  const data = new Uint8Array(totalBytes + 1).subarray(1);
  const elements = dtype === 'F32' ? totalBytes / 4 : totalBytes / 2;
  const f32 = new Float32Array(elements);
  let seed = 1;
  for (let i = 0; i < f32.length; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    f32[i] = (seed / 2 ** 32 - 0.5) * 0.2;
  }
  if (dtype === 'F32') data.set(new Uint8Array(f32.buffer));
  else {
    const words = new Uint32Array(f32.buffer);
    const half = new Uint16Array(elements);
    if (dtype === 'BF16') for (let i = 0; i < elements; i++) half[i] = words[i] >>> 16;
    else for (let i = 0; i < elements; i++) half[i] = f16Bits(f32[i]);
    data.set(new Uint8Array(half.buffer));
  }
  return data;
}

/** Truncating F16 encoding of a small normal-range value (bench data only). */
function f16Bits(v: number): number {
  const a = Math.abs(v);
  if (a < 2 ** -14) return v < 0 ? 0x8000 : 0;
  const e = Math.floor(Math.log2(a));
  return (v < 0 ? 0x8000 : 0) | ((e + 15) << 10) | Math.floor((a / 2 ** e - 1) * 1024);
}

/** Seconds to summarise `data` as 64 MiB tensors of `dtype`, fed in 64 KiB slices. */
function runKernels(dtype: Case, data: Uint8Array): number {
  const size = dtype === 'F32' ? 4 : 2;
  const shapes = [];
  for (let offset = 0, i = 0; offset < data.byteLength; offset += TENSOR_BYTES, i++) {
    shapes.push({
      name: `layers.${i}.weight`,
      dtype,
      shape: [Math.min(TENSOR_BYTES, data.byteLength - offset) / size],
    });
  }
  const started = performance.now();
  const acc = new CheckpointAccumulator();
  acc.begin(shapes);
  for (let t = 0; t < shapes.length; t++) {
    const base = t * TENSOR_BYTES;
    const length = shapes[t].shape[0] * size;
    for (let off = 0; off < length; off += SLICE)
      acc.update(t, off, data.subarray(base + off, base + Math.min(length, off + SLICE)));
  }
  const summary = acc.finish(0);
  const seconds = (performance.now() - started) / 1000;
  if (!Number.isFinite(summary.weightNorm)) throw new Error('unreachable');
  return seconds;
}

function sumOfSquaresInPlace(aligned: Float32Array): number {
  const started = performance.now();
  let s0 = 0;
  let s1 = 0;
  for (let i = 0; i < aligned.length; i += 2) {
    const a = aligned[i];
    const b = aligned[i + 1];
    s0 += a * a;
    s1 += b * b;
  }
  const seconds = (performance.now() - started) / 1000;
  if (!Number.isFinite(s0 + s1)) throw new Error('unreachable');
  return seconds;
}

const scratch = new Float32Array(SLICE / 4);
const scratchBytes = new Uint8Array(scratch.buffer);

function sumSlice(x: Float32Array, n: number): number {
  let s0 = 0;
  let s1 = 0;
  for (let i = 0; i < n; i += 2) {
    const a = x[i];
    const b = x[i + 1];
    s0 += a * a;
    s1 += b * b;
  }
  return s0 + s1;
}

function sumOfSquaresSliced(data: Uint8Array): number {
  const started = performance.now();
  let total = 0;
  for (let off = 0; off < data.byteLength; off += SLICE) {
    const slice = data.subarray(off, off + SLICE);
    scratchBytes.set(slice);
    total += sumSlice(scratch, slice.byteLength / 4);
  }
  const seconds = (performance.now() - started) / 1000;
  if (!Number.isFinite(total)) throw new Error('unreachable');
  return seconds;
}

function best(fn: () => number): number {
  fn();
  let seconds = Infinity;
  for (let i = 0; i < repeat; i++) seconds = Math.min(seconds, fn());
  return seconds;
}

console.log(
  `bench-kernels: ${values.mb} MiB per case, ${SLICE / 1024} KiB slices at odd alignment, best of ${repeat} after a warm-up, k = 8192, tensorK = 64, Node ${process.version}`,
);
const gbs = (seconds: number) => totalBytes / GB / seconds;
let floorGBs = 0;
{
  const data = makeData('F32');
  const aligned = new Float32Array(totalBytes / 4);
  new Uint8Array(aligned.buffer).set(data);
  const inPlace = gbs(best(() => sumOfSquaresInPlace(aligned)));
  const sliced = gbs(best(() => sumOfSquaresSliced(data)));
  floorGBs = Math.max(inPlace, sliced);
  console.log(`bare sum of squares, in place (aligned F32): ${inPlace.toFixed(2)} GB/s`);
  console.log(`bare sum of squares, sliced (64 KiB odd-aligned slices copied to scratch): ${sliced.toFixed(2)} GB/s`);
  const kernel = gbs(best(() => runKernels('F32', data)));
  console.log(
    `F32 stats+sketch: ${kernel.toFixed(2)} GB/s per core (${(kernel / 4).toFixed(2)} G elements/s), ratio to the faster bare loop ${(kernel / floorGBs).toFixed(2)}`,
  );
}
for (const dtype of ['BF16', 'F16'] as const) {
  const data = makeData(dtype);
  const kernel = gbs(best(() => runKernels(dtype, data)));
  console.log(
    `${dtype} stats+sketch: ${kernel.toFixed(2)} GB/s per core (${(kernel / 2).toFixed(2)} G elements/s), ratio to the faster bare loop ${(kernel / floorGBs).toFixed(2)}`,
  );
}
