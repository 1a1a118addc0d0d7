import { mulberry32 as rng } from './mnist-data.js';
import { trainMnist } from './mnist-train.js';
import type { RetentionCandidate } from '../../src/retention/engine.js';
import type { CheckpointSummary } from '../../src/model/summary.js';
import { CheckpointAccumulator } from '../../src/trajectory/accumulator.js';
import { computeIndicators } from '../../src/trajectory/run-indicators.js';

/**
 * Recorded trajectories for the retention evaluation (scripts/eval-retention.ts): the raw weights of every
 * checkpoint (for exact weight-space distances), the losses, and the checkpoints of the injected events.
 */
export interface RecordedRun {
  name: string;
  steps: number[];
  weights: Float32Array[];
  trainLoss: (number | null)[];
  valLoss: (number | null)[];
  /** Checkpoint indices of the injected events. */
  events: number[];
  bytes: number;
}

/**
 * SGD-like synthetic trajectory: a drift towards a moving target plus noise, step size decaying with a
 * cosine schedule that restarts at 60%; a loss spike at 35% (a large random kick, partly undone after);
 * a plateau (tiny steps) from 80% to 90%.
 */
export function syntheticRun(seed: number, count = 60, dim = 4000): RecordedRun {
  const random = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(random() + 1e-12)) * Math.cos(2 * Math.PI * random());
  const w = Float32Array.from({ length: dim }, () => gauss() * 0.1);
  const target = Float32Array.from({ length: dim }, () => gauss() * 0.1);
  const [spike, restart, plateauFrom, plateauTo] = [
    Math.round(count * 0.35),
    Math.round(count * 0.6),
    Math.round(count * 0.8),
    Math.round(count * 0.9),
  ];
  const weights: Float32Array[] = [w.slice()];
  const trainLoss: (number | null)[] = [2];
  let kick: Float32Array | null = null;
  for (let i = 1; i < count; i++) {
    const phase = i < restart ? i / restart : (i - restart) / (count - restart);
    let lr = 0.5 * (1 + Math.cos(Math.PI * phase)) * 0.3 + 0.01;
    if (i >= plateauFrom && i < plateauTo) lr *= 0.05;
    for (let j = 0; j < dim; j++) w[j] += lr * (target[j] - w[j]) * 0.5 + lr * 0.01 * gauss();
    if (i === spike) {
      kick = Float32Array.from({ length: dim }, () => gauss() * 0.05);
      for (let j = 0; j < dim; j++) w[j] += kick[j];
    } else if (i === spike + 1 && kick) for (let j = 0; j < dim; j++) w[j] -= kick[j] * 0.7;
    weights.push(w.slice());
    let distance = 0;
    for (let j = 0; j < dim; j++) distance += (w[j] - target[j]) ** 2;
    trainLoss.push(0.1 + Math.sqrt(distance) + (i === spike ? 1.5 : 0));
  }
  return {
    name: `synthetic-${seed}`,
    steps: weights.map((_, i) => i * 20),
    weights,
    trainLoss,
    valLoss: trainLoss.map((l) => (l === null ? null : l * 1.1)),
    // The plateau's end multiplies the learning rate by 20: a restart like the one at 60%, by the detector's
    // definition (scripts/eval-anomalies.ts) and by what it does to the weights, so it is an event too.
    events: [spike, restart, plateauTo],
    bytes: dim * 4,
  };
}

/**
 * A real tfjs MNIST run (784-64-10, SGD, cosine schedule restarting at 60%, 5 steps of random labels at 5×
 * the learning rate at 35%), a checkpoint every steps/60 steps.
 */
export async function mnistRun(seed: number, steps: number): Promise<RecordedRun> {
  const every = Math.round(steps / 60);
  const weights: Float32Array[] = [];
  const checkpointSteps: number[] = [];
  const losses: { step: number; loss: number }[] = [];
  const valByStep = new Map<number, number>();
  await trainMnist(
    {
      hidden: [64],
      schedule: 'cosine-restart',
      restartAt: 0.6,
      baseLr: 0.1,
      batchSize: 32,
      steps,
      trainSize: 2000,
      heldOutSize: 1000,
      labelNoise: 0,
      seed,
      checkpointEvery: every,
      evalEvery: every,
      gapEvery: 0,
      events: [{ kind: 'loss-spike', atFraction: 0.35, steps: 5, lrMultiplier: 5 }],
    },
    {
      onCheckpoint: (step, tensors) => {
        const total = tensors.reduce((n, t) => n + t.data.byteLength / 4, 0);
        const flat = new Float32Array(total);
        let offset = 0;
        for (const t of tensors) {
          flat.set(new Float32Array(t.data.slice().buffer), offset);
          offset += t.data.byteLength / 4;
        }
        weights.push(flat);
        checkpointSteps.push(step);
      },
      onMetrics: (p) => {
        losses.push({ step: p.step, loss: p.trainLoss });
        if (p.valLoss !== undefined) valByStep.set(p.step, p.valLoss);
      },
    },
  );
  const eventAt = (step: number) => checkpointSteps.findIndex((s) => s >= step);
  const trainLoss = checkpointSteps.map((s, i) => {
    const window = losses.filter((l) => l.step <= s && (i === 0 || l.step > checkpointSteps[i - 1]));
    return window.length ? window.reduce((a, l) => a + l.loss, 0) / window.length : null;
  });
  return {
    name: `mnist-${seed}`,
    steps: checkpointSteps,
    weights,
    trainLoss,
    valLoss: checkpointSteps.map((s) => valByStep.get(s) ?? null),
    events: [eventAt(Math.round(0.35 * steps) + 5), eventAt(Math.round(0.6 * steps))],
    bytes: weights[0].length * 4,
  };
}

/** The summaries the gateway would compute at upload, one per checkpoint. */
export function summarize(run: RecordedRun): CheckpointSummary[] {
  return run.weights.map((w, i) => {
    const acc = new CheckpointAccumulator();
    acc.begin([{ name: 'weights', dtype: 'F32', shape: [w.length] }]);
    acc.update(0, 0, new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
    return acc.finish(run.steps[i]);
  });
}

/**
 * What the engine sees of the first `count` checkpoints (the whole run by default): indicators, train loss,
 * val loss as the `best` metric and, with `sketches`, the summaries (what the gateway passes for runs of up to
 * SKETCH_COVERAGE_MAX_CHECKPOINTS; without them coverage is judged along the path, as for longer runs).
 * Indicators only look back, so a prefix's are the whole run's.
 */
export function candidates(
  run: RecordedRun,
  summaries: readonly CheckpointSummary[],
  sketches: boolean,
  count = run.steps.length,
): RetentionCandidate[] {
  const indicators = computeIndicators(summaries.slice(0, count));
  return indicators.map(
    (x, i): RetentionCandidate => ({
      step: run.steps[i],
      bytes: run.bytes,
      pinned: false,
      available: true,
      indicators: x,
      summary: sketches ? summaries[i] : undefined,
      trainLoss: run.trainLoss[i],
      metric: run.valLoss[i] === null ? {} : { valLoss: run.valLoss[i]! },
    }),
  );
}

/** Exact weight-space distances between every pair of checkpoints. */
export function distanceMatrix(run: RecordedRun): Float64Array {
  const n = run.weights.length;
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const a = run.weights[i];
      const b = run.weights[j];
      let s = 0;
      for (let e = 0; e < a.length; e++) s += (a[e] - b[e]) ** 2;
      out[i * n + j] = out[j * n + i] = Math.sqrt(s);
    }
  }
  return out;
}

export interface Score {
  meanCoverage: number;
  maxCoverage: number;
  recall: number;
  phases: number;
  kept: number;
  bytes: number;
}

/**
 * Coverage of a kept set with exact weight-space distances: for every checkpoint the distance to its
 * nearest kept one, as a fraction of the run's path length (Σ of distances between successive checkpoints),
 * mean and max. Event recall: an event is caught when a kept checkpoint is within one checkpoint of it.
 * Phases: how many of the phases of `phaseOf` have a kept checkpoint.
 */
export function score(run: RecordedRun, distances: Float64Array, kept: readonly number[], phaseOf: number[]): Score {
  const n = run.weights.length;
  let path = 0;
  for (let i = 1; i < n; i++) path += distances[i * n + i - 1];
  const nearest = run.weights.map((_, i) => Math.min(...kept.map((k) => distances[i * n + k])));
  const caught = run.events.filter((e) => kept.some((k) => Math.abs(k - e) <= 1)).length;
  return {
    meanCoverage: nearest.reduce((a, b) => a + b, 0) / n / path,
    maxCoverage: Math.max(...nearest) / path,
    recall: caught / run.events.length,
    phases: new Set(kept.map((k) => phaseOf[k])).size,
    kept: kept.length,
    bytes: kept.length * run.bytes,
  };
}

/**
 * The rules users have today, at the same budget, applied to the whole run: keep-last-k, top-k by val
 * loss, every N steps (the finest grid, a multiple of the checkpoint interval, that keeps at most `budget`),
 * uniform thinning (`budget` checkpoints evenly spread over the run's indices, first and last included).
 */
export function baselines(run: RecordedRun, budget: number): Record<string, number[]> {
  const n = run.weights.length;
  const indices = run.steps.map((_, i) => i);
  const interval = run.steps[1] - run.steps[0];
  let everyN = interval;
  while (run.steps.filter((s) => s % everyN === 0).length > budget) everyN += interval;
  return {
    'keep last k': indices.slice(-budget),
    'top-k by val loss': indices
      .filter((i) => run.valLoss[i] !== null)
      .sort((a, b) => run.valLoss[a]! - run.valLoss[b]! || a - b)
      .slice(0, budget)
      .sort((a, b) => a - b),
    'every N steps': indices.filter((i) => run.steps[i] % everyN === 0),
    'uniform thinning': [
      ...new Set(Array.from({ length: budget }, (_, j) => Math.round((j * (n - 1)) / (budget - 1)))),
    ],
  };
}
