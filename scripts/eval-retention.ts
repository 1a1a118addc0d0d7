/**
 * Retention quality: trajgate's default policy against the rules users have today, at the same budget
 * (number of kept checkpoints), on recorded trajectories: synthetic ones with injected events (a learning-
 * rate restart, a loss spike, a plateau) and real tfjs MNIST runs (cosine schedule with a warm restart and
 * a burst of random labels). Coverage uses exact weight-space distances from the raw weights:
 * for every uploaded checkpoint, the distance to its nearest kept one, as a fraction of the run's path
 * length (sum of distances between successive checkpoints); mean and max. Event recall: an event counts
 * as caught when a kept checkpoint is within one checkpoint of it. Phases: how many of trajgate's three
 * phases (its own assignment, the same for every rule) have a kept checkpoint.
 *
 * trajgate gets what the gateway has: indicators, train loss, val loss and the checkpoints' sketches (used
 * for coverage on runs of up to SKETCH_COVERAGE_MAX_CHECKPOINTS); the "(path-only model)" row is the same
 * policy without sketches, i.e. what longer runs get. "every N steps" uses the finest grid (a multiple of
 * the checkpoint interval) that fits the budget; the other rules keep exactly the budget.
 *
 *   npx tsx scripts/eval-retention.ts [--quick] [--budget 10]
 */
import { parseArgs } from 'node:util';
import { mulberry32 as rng } from './lib/mnist-data.js';
import { trainMnist } from './lib/mnist-train.js';
import { decideRetention, type RetentionCandidate } from '../src/retention/engine.js';
import { resolvePolicy } from '../src/model/policy.js';
import { CheckpointAccumulator } from '../src/trajectory/accumulator.js';
import { assignPhases } from '../src/trajectory/phase-segmentation.js';
import { computeIndicators } from '../src/trajectory/run-indicators.js';

const { values } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, budget: { type: 'string', default: '10' } },
});
const BUDGET = Number(values.budget);

interface RecordedRun {
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
function syntheticRun(seed: number, count = 60, dim = 4000): RecordedRun {
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
    events: [spike, restart],
    bytes: dim * 4,
  };
}

async function mnistRun(seed: number, steps: number): Promise<RecordedRun> {
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

function exactDistance(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s);
}

interface Score {
  meanCoverage: number;
  maxCoverage: number;
  recall: number;
  phases: number;
  kept: number;
  bytes: number;
}

function score(run: RecordedRun, kept: number[], phaseOf: number[]): Score {
  let path = 0;
  for (let i = 1; i < run.weights.length; i++) path += exactDistance(run.weights[i], run.weights[i - 1]);
  const nearest = run.weights.map((w) => Math.min(...kept.map((k) => exactDistance(w, run.weights[k]))));
  const caught = run.events.filter((e) => kept.some((k) => Math.abs(k - e) <= 1)).length;
  return {
    meanCoverage: nearest.reduce((a, b) => a + b, 0) / nearest.length / path,
    maxCoverage: Math.max(...nearest) / path,
    recall: caught / run.events.length,
    phases: new Set(kept.map((k) => phaseOf[k])).size,
    kept: kept.length,
    bytes: kept.length * run.bytes,
  };
}

function baselines(run: RecordedRun, budget: number): Record<string, number[]> {
  const n = run.weights.length;
  const indices = run.steps.map((_, i) => i);
  // The finest grid (a multiple of the checkpoint interval) that keeps at most `budget` checkpoints.
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

function valLossMetric(value: number | null): Record<string, number> {
  return value === null ? {} : { valLoss: value };
}

/** trajgate's default policy under a count budget; `sketches`: pass the summaries (what the gateway does for runs of up to SKETCH_COVERAGE_MAX_CHECKPOINTS), else coverage is judged along the path only (longer runs). */
function trajgate(run: RecordedRun, budget: number, sketches: boolean): { kept: number[]; phaseOf: number[] } {
  const summaries = run.weights.map((w, i) => {
    const acc = new CheckpointAccumulator();
    acc.begin([{ name: 'weights', dtype: 'F32', shape: [w.length] }]);
    acc.update(0, 0, new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
    return acc.finish(run.steps[i]);
  });
  const indicators = computeIndicators(summaries);
  const checkpoints: RetentionCandidate[] = run.steps.map((step, i) => ({
    step,
    bytes: run.bytes,
    pinned: false,
    available: true,
    indicators: indicators[i],
    summary: sketches ? summaries[i] : undefined,
    trainLoss: run.trainLoss[i],
    metric: valLossMetric(run.valLoss[i]),
  }));
  const decision = decideRetention({ checkpoints, policy: resolvePolicy({ budget: { maxCheckpoints: budget } }) });
  const phaseOf = assignPhases({
    steps: run.steps,
    updateNormPerStep: indicators.map((x) => x.updateNormPerStep),
    trainLoss: run.trainLoss,
  }).phaseOf;
  return { kept: decision.checkpoints.flatMap((d, i) => (d.keep ? [i] : [])), phaseOf };
}

function printTable(title: string, rows: Map<string, Score[]>): void {
  console.log(`\n${title} (budget ${BUDGET} checkpoints; mean over runs)`);
  console.log('rule                 mean coverage  max coverage  event recall  phases (of 3)  kept  MB kept');
  for (const [rule, scores] of rows) {
    const avg = (f: (s: Score) => number) => scores.reduce((a, s) => a + f(s), 0) / scores.length;
    console.log(
      `${rule.padEnd(20)} ${avg((s) => s.meanCoverage)
        .toFixed(4)
        .padStart(13)} ${avg((s) => s.maxCoverage)
        .toFixed(4)
        .padStart(13)} ${avg((s) => s.recall)
        .toFixed(2)
        .padStart(13)} ${avg((s) => s.phases)
        .toFixed(1)
        .padStart(14)} ${avg((s) => s.kept)
        .toFixed(1)
        .padStart(5)} ${(avg((s) => s.bytes) / 1e6).toFixed(2).padStart(8)}`,
    );
  }
}

async function evaluate(runs: RecordedRun[], title: string): Promise<void> {
  const rows = new Map<string, Score[]>();
  const verdicts: string[] = [];
  const notes = new Set<string>();
  for (const run of runs) {
    const ours = trajgate(run, BUDGET, true);
    const pathOnly = trajgate(run, BUDGET, false);
    const entries: [string, number[]][] = [
      ['trajgate default', ours.kept],
      ['  (path-only model)', pathOnly.kept],
      ...Object.entries(baselines(run, BUDGET)),
    ];
    const scores = new Map<string, Score>();
    for (const [rule, kept] of entries) {
      if (rule === 'every N steps' && kept.length < BUDGET)
        notes.add(`every N steps: the finest grid within the budget keeps ${kept.length} on ${run.name}`);
      const s = score(run, kept, ours.phaseOf);
      scores.set(rule, s);
      rows.set(rule, [...(rows.get(rule) ?? []), s]);
    }
    const mine = scores.get('trajgate default')!;
    const beaten = [...scores].filter(([rule]) => !rule.startsWith('trajgate') && !rule.startsWith(' '));
    const meanWins = beaten.every(([, s]) => mine.meanCoverage < s.meanCoverage);
    const recallWins = beaten.every(([, s]) => mine.recall >= s.recall);
    verdicts.push(
      `${run.name}: kept ${mine.kept} ≤ ${BUDGET} ${mine.kept <= BUDGET ? 'yes' : 'NO'}; lowest mean coverage ${meanWins ? 'yes' : 'NO'}; recall ≥ every baseline ${recallWins ? 'yes' : 'NO'} (${mine.recall.toFixed(2)}); phases ${mine.phases}/3`,
    );
  }
  printTable(title, rows);
  for (const v of verdicts) console.log(`  ${v}`);
  for (const note of notes) console.log(`  note: ${note}`);
}

async function main(): Promise<void> {
  const seeds = values.quick ? [1, 2] : [1, 2, 3];
  const started = performance.now();
  await evaluate(
    seeds.map((s) => syntheticRun(s)),
    `synthetic trajectories (${seeds.length} seeds, 60 checkpoints, restart + loss spike + plateau)`,
  );
  const real: RecordedRun[] = [];
  for (const seed of seeds) real.push(await mnistRun(seed, values.quick ? 600 : 1200));
  await evaluate(
    real,
    `real tfjs MNIST runs (${seeds.length} seeds, 784-64-10, ${values.quick ? 600 : 1200} steps, cosine restart at 60%, random-label burst at 35%)`,
  );
  console.log(`\nwall time ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
