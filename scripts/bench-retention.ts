/**
 * Retention decision time: the engine alone (what every commit pays under the run's lock, and what
 * `simulate` pays), median and p99 over repeated decisions.
 *
 * - 10,000 checkpoints, a synthetic decaying trajectory with an injected jump, for a few budgets. Every
 *   checkpoint carries a summary with a k = 8192 sketch, as the gateway's would; past
 *   SKETCH_COVERAGE_MAX_CHECKPOINTS the engine never reads a sketch (coverage along the path), so the
 *   summaries here share one sketch buffer to keep the bench's memory at 64 KiB instead of 640 MB.
 * - Phase segmentation alone over 10,000 checkpoints with three planted levels (the trajectory tests'
 *   large case, whose speed they do not assert).
 * - SKETCH_COVERAGE_MAX_CHECKPOINTS checkpoints with distinct k = 8192 sketches: the largest run whose
 *   coverage uses sketch distances (pairwise distances of folded sketches), the sketch model's worst case.
 *
 *   npx tsx scripts/bench-retention.ts [--checkpoints 10000] [--repeat 100]
 */
import { parseArgs } from 'node:util';
import { decideRetention, SKETCH_COVERAGE_MAX_CHECKPOINTS, type RetentionCandidate } from '../src/retention/engine.js';
import { resolvePolicy, type PolicyInput } from '../src/model/policy.js';
import { DEFAULT_SKETCH_SPEC } from '../src/trajectory/accumulator.js';
import { changeScores } from '../src/trajectory/change-detection.js';
import { assignPhases } from '../src/trajectory/phase-segmentation.js';
import type { CheckpointSummary } from '../src/model/summary.js';
import { mulberry32 } from './lib/mnist-data.js';

const { values } = parseArgs({
  options: { checkpoints: { type: 'string', default: '10000' }, repeat: { type: 'string', default: '100' } },
});
const n = Number(values.checkpoints);
const repeat = Number(values.repeat);

function summary(step: number, sketch: Float64Array): CheckpointSummary {
  return { step, spec: DEFAULT_SKETCH_SPEC, sketch, tensors: [], tensorSketches: [], weightNorm: 1 };
}

/** A decaying trajectory with a jump at 60%; `sketches`: one distinct random-walk sketch per checkpoint, else one shared buffer. */
function syntheticRun(count: number, sketches: 'distinct' | 'shared'): RetentionCandidate[] {
  const random = mulberry32(7);
  const shared = new Float64Array(DEFAULT_SKETCH_SPEC.k);
  const walk = new Float64Array(DEFAULT_SKETCH_SPEC.k);
  let path = 0;
  return Array.from({ length: count }, (_, i) => {
    const update =
      i === 0 ? null : (1 / Math.sqrt(i)) * (1 + 0.2 * Math.sin(i * 1.7)) * (i === Math.floor(count * 0.6) ? 8 : 1);
    path += update ?? 0;
    let sketch = shared;
    if (sketches === 'distinct') {
      const scale = (update ?? 0) / Math.sqrt(walk.length);
      for (let b = 0; b < walk.length; b++) walk[b] += (random() - 0.5) * 2 * Math.sqrt(3) * scale;
      sketch = walk.slice();
    }
    return {
      step: i * 10,
      bytes: 50_000_000,
      pinned: i % 997 === 0,
      summary: summary(i * 10, sketch),
      trainLoss: (2 / (1 + i / 100)) * (1 + 0.05 * Math.cos(i)),
      metric: { valLoss: 1 + Math.cos(i / 50) / 3 },
      indicators: {
        updateNorm: update,
        updateNormPerStep: update === null ? null : update / 10,
        relativeChange: null,
        distanceFromStart: path,
        pathLength: path,
        cosinePrev: Math.sin(i) * 0.5,
        topTensors: [],
      },
    };
  });
}

function time(label: string, f: () => unknown): void {
  for (let i = 0; i < 5; i++) f();
  const times: number[] = [];
  for (let r = 0; r < repeat; r++) {
    const started = performance.now();
    f();
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  const pct = (p: number) => times[Math.min(times.length - 1, Math.ceil(p * times.length) - 1)].toFixed(1);
  console.log(`${label.padEnd(58)} median ${pct(0.5).padStart(6)} ms   p99 ${pct(0.99).padStart(6)} ms`);
}

const budgets: PolicyInput['budget'][] = [
  { maxCheckpoints: 12 },
  { maxCheckpoints: 100 },
  { maxBytes: 50_000_000 * 40 },
  {},
];
console.log(`bench-retention: ${repeat} decisions each (${process.version}, ${process.arch})`);
const long = syntheticRun(n, 'shared');
for (const budget of budgets) {
  const policy = resolvePolicy({ budget });
  const kept = decideRetention({ checkpoints: long, policy }).totals.kept;
  time(`${n} checkpoints, budget ${JSON.stringify(budget)}, kept ${kept}`, () =>
    decideRetention({ checkpoints: long, policy }),
  );
}
time(`  of which phases + change scores (trajectory modules)`, () => {
  const updateNormPerStep = long.map((c) => c.indicators.updateNormPerStep);
  const trainLoss = long.map((c) => c.trainLoss);
  assignPhases({ steps: long.map((c) => c.step), updateNormPerStep, trainLoss, count: 3, by: 'auto' });
  changeScores({ updateNormPerStep, cosinePrev: long.map((c) => c.indicators.cosinePrev), trainLoss });
});
{
  // The case test/trajectory-analysis.test.ts checks for correctness: three planted levels, default settings.
  const random = mulberry32(11);
  const level = (i: number) => (i < 0.2 * n ? 1 : i < 0.7 * n ? 0.3 : 0.05);
  const series = Array.from({ length: n }, (_, i) => level(i) * Math.exp(0.2 * (random() - 0.5)));
  const trainLoss = series.map((_, i) => 2 * Math.exp(-i / (0.3 * n)) + 0.1 * random());
  const steps = series.map((_, i) => i * 5);
  time(`${n} checkpoints, phases alone (3 planted levels)`, () =>
    assignPhases({ steps, updateNormPerStep: series, trainLoss }),
  );
}
const small = syntheticRun(SKETCH_COVERAGE_MAX_CHECKPOINTS, 'distinct');
for (const budget of [{ maxCheckpoints: 12 }, {}]) {
  const policy = resolvePolicy({ budget });
  time(`${small.length} checkpoints with k=8192 sketches, budget ${JSON.stringify(budget)}`, () =>
    decideRetention({ checkpoints: small, policy }),
  );
}
