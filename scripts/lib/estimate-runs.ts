import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TensorData } from '@trajgate/sdk/wire/safetensors';
import { trainMnist, type MnistMetricPoint, type TrainMnistOptions } from './mnist-train.js';

/**
 * The run families scripts/eval-estimate.ts trains, and a cache of trained runs (their metric points and
 * measured truth) so an evaluation can be re-read through a new gateway build without training again.
 *
 * Family A: the original sweep, learning rate × label noise at batch 32, n = 1000, width 64, plain SGD.
 * Family B (held out from the indicator's design): batch size 16–128, training-set size 500–2000, width
 * 32–128, learning rate, label noise, and SGD or Adam, in a fixed 16-run design.
 */

export interface RunSpec {
  family: 'A' | 'B';
  lr: number;
  noise: number;
  seed: number;
  batchSize: number;
  trainSize: number;
  width: number;
  optimizer: 'sgd' | 'adam';
  steps: number;
}

export interface TrainedRun {
  spec: RunSpec;
  points: MnistMetricPoint[];
  trueGap: number;
  finalTrainLoss: number;
  /** ||w_T − w_0||. */
  distanceFromInit: number;
}

export const HELD_OUT = 3000;
/** Evaluation points per run (every steps/20 steps). */
export const EVALS_PER_RUN = 20;

export function familyA(quick: boolean): RunSpec[] {
  const c = quick
    ? { lrs: [0.01, 0.03, 0.1, 0.3], noises: [0, 0.2, 0.4], seeds: [1], steps: 1000 }
    : { lrs: [0.01, 0.03, 0.1, 0.3], noises: [0, 0.2, 0.4, 0.6], seeds: [1, 2], steps: 1200 };
  const out: RunSpec[] = [];
  for (const seed of c.seeds)
    for (const noise of c.noises)
      for (const lr of c.lrs)
        out.push({
          family: 'A',
          lr,
          noise,
          seed,
          batchSize: 32,
          trainSize: 1000,
          width: 64,
          optimizer: 'sgd',
          steps: c.steps,
        });
  return out;
}

/** [optimizer, lr, noise, batch, n, width]: each batch size 4×, each n and width 5–6×, Adam in 4 runs. */
const FAMILY_B: [RunSpec['optimizer'], number, number, number, number, number][] = [
  ['sgd', 0.1, 0.2, 16, 500, 64],
  ['sgd', 0.03, 0, 32, 2000, 128],
  ['adam', 0.001, 0.4, 64, 1000, 32],
  ['sgd', 0.3, 0.4, 128, 1000, 64],
  ['sgd', 0.01, 0.4, 16, 1000, 128],
  ['sgd', 0.1, 0, 32, 500, 32],
  ['sgd', 0.03, 0.2, 64, 2000, 64],
  ['adam', 0.003, 0.2, 128, 500, 128],
  ['adam', 0.0003, 0, 16, 2000, 32],
  ['sgd', 0.1, 0.4, 32, 2000, 64],
  ['sgd', 0.3, 0.2, 64, 500, 128],
  ['sgd', 0.03, 0.4, 128, 500, 32],
  ['sgd', 0.3, 0, 16, 1000, 32],
  ['adam', 0.001, 0.2, 32, 1000, 128],
  ['sgd', 0.01, 0.2, 64, 1000, 64],
  ['sgd', 0.1, 0.2, 128, 2000, 128],
];

export function familyB(quick: boolean): RunSpec[] {
  const rows = quick ? FAMILY_B.filter((_, i) => i % 2 === 0) : FAMILY_B;
  return rows.map(([optimizer, lr, noise, batchSize, trainSize, width]) => ({
    family: 'B',
    lr,
    noise,
    seed: 3,
    batchSize,
    trainSize,
    width,
    optimizer,
    steps: quick ? 800 : 1000,
  }));
}

export function specName(s: RunSpec): string {
  return `${s.family}-${s.optimizer}-lr${s.lr}-noise${s.noise}-b${s.batchSize}-n${s.trainSize}-w${s.width}-seed${s.seed}-t${s.steps}`;
}

function flatWeights(tensors: readonly TensorData[]): Float64Array {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : 1));
  const parts = sorted.map((t) => new Float32Array(t.data.slice().buffer));
  const out = new Float64Array(parts.reduce((acc, p) => acc + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Trains the run with the MNIST harness, or reads it from `cacheDir` when an earlier evaluation stored it. */
export async function trainOrLoad(spec: RunSpec, cacheDir: string | undefined): Promise<TrainedRun> {
  const file = cacheDir ? path.join(cacheDir, `${specName(spec)}.json`) : undefined;
  if (file) {
    try {
      return JSON.parse(await readFile(file, 'utf8')) as TrainedRun;
    } catch {
      // not cached yet
    }
  }
  const options: TrainMnistOptions = {
    hidden: [spec.width],
    schedule: 'constant',
    baseLr: spec.lr,
    batchSize: spec.batchSize,
    steps: spec.steps,
    trainSize: spec.trainSize,
    heldOutSize: HELD_OUT,
    labelNoise: spec.noise,
    seed: spec.seed,
    checkpointEvery: spec.steps,
    evalEvery: Math.round(spec.steps / EVALS_PER_RUN),
    gapEvery: 5,
    optimizer: spec.optimizer,
  };
  const points: MnistMetricPoint[] = [];
  let w0: Float64Array | null = null;
  let distance = Number.NaN;
  const result = await trainMnist(options, {
    onMetrics: (p) => {
      points.push(p);
    },
    onCheckpoint: (step, tensors) => {
      const w = flatWeights(tensors);
      if (step === 0) w0 = w;
      else if (w0) {
        let sq = 0;
        for (let i = 0; i < w.length; i++) sq += (w[i] - w0[i]) ** 2;
        distance = Math.sqrt(sq);
      }
    },
  });
  const run: TrainedRun = {
    spec,
    points,
    trueGap: result.trueGap,
    finalTrainLoss: result.finalTrainLoss,
    distanceFromInit: distance,
  };
  if (cacheDir && file) {
    await mkdir(cacheDir, { recursive: true });
    await writeFile(file, JSON.stringify(run));
  }
  return run;
}
