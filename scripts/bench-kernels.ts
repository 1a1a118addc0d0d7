/**
 * Trajectory kernel throughput, one core: per-tensor statistics plus both sketches over F32 and BF16 data
 * fed the way the ingest decoders feed it (64 KiB slices at an odd byte alignment, as socket buffers come),
 * against a bare float64 sum-of-squares loop over the same bytes (the memory-bandwidth floor).
 *
 *   npx tsx scripts/bench-kernels.ts [--mb 256] [--repeat 3]
 */
import { parseArgs } from 'node:util';
import { CheckpointAccumulator } from '../src/trajectory/accumulator.js';
import type { Dtype } from '../src/wire/dtypes.js';

const { values } = parseArgs({ options: { mb: { type: 'string', default: '256' }, repeat: { type: 'string', default: '3' } } });
const totalBytes = Number(values.mb) * 1024 * 1024;
const repeat = Number(values.repeat);
const SLICE = 64 * 1024;

function makeData(dtype: 'F32' | 'BF16'): Uint8Array {
  // One spare byte so every slice can start at an odd offset.
  const buffer = new Uint8Array(totalBytes + 1);
  const data = buffer.subarray(1);
  const f32 = new Float32Array(dtype === 'F32' ? totalBytes / 4 : totalBytes / 2);
  let seed = 1;
  for (let i = 0; i < f32.length; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    f32[i] = (seed / 2 ** 32 - 0.5) * 0.2;
  }
  if (dtype === 'F32') data.set(new Uint8Array(f32.buffer));
  else {
    const words = new Uint16Array(new Uint32Array(f32.buffer).map((w) => w >>> 16));
    data.set(new Uint8Array(words.buffer, 0, totalBytes));
  }
  return data;
}

function runKernels(dtype: Dtype, data: Uint8Array): number {
  const size = dtype === 'F32' ? 4 : 2;
  const tensorElements = 16 * 1024 * 1024;
  const tensorBytes = tensorElements * size;
  const shapes = [];
  for (let offset = 0, i = 0; offset < data.byteLength; offset += tensorBytes, i++) {
    shapes.push({ name: `layer.${i}.weight`, dtype, shape: [Math.min(tensorBytes, data.byteLength - offset) / size] });
  }
  const started = performance.now();
  const acc = new CheckpointAccumulator();
  acc.begin(shapes);
  for (let t = 0; t < shapes.length; t++) {
    const base = t * tensorBytes;
    const length = shapes[t].shape[0] * size;
    for (let off = 0; off < length; off += SLICE) acc.update(t, off, data.subarray(base + off, base + Math.min(length, off + SLICE)));
  }
  acc.finish(0);
  return (performance.now() - started) / 1000;
}

function sumOfSquares(data: Uint8Array): number {
  const aligned = new Float32Array(data.byteLength / 4);
  new Uint8Array(aligned.buffer).set(data);
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

const GB = 1e9;
console.log(`bench-kernels: ${values.mb} MiB per case, ${SLICE / 1024} KiB slices at odd alignment, best of ${repeat}, k = 8192`);
for (const dtype of ['F32', 'BF16'] as const) {
  const data = makeData(dtype);
  runKernels(dtype, data.subarray(0, 8 * 1024 * 1024));
  sumOfSquares(data.subarray(0, 8 * 1024 * 1024));
  let kernel = Infinity;
  let floor = Infinity;
  for (let i = 0; i < repeat; i++) {
    kernel = Math.min(kernel, runKernels(dtype, data));
    floor = Math.min(floor, sumOfSquares(data));
  }
  const kernelGBs = data.byteLength / GB / kernel;
  const floorGBs = data.byteLength / GB / floor;
  console.log(
    `${dtype}: stats+sketch ${kernelGBs.toFixed(2)} GB/s per core, bare sum of squares ${floorGBs.toFixed(2)} GB/s, ratio ${(kernelGBs / floorGBs).toFixed(2)}`,
  );
}
