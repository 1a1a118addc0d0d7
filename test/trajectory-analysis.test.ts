import assert from 'node:assert/strict';
import { prng as rng } from './helpers/checkpoints.js';
import { describe, it } from 'node:test';
import { CheckpointAccumulator } from '../src/trajectory/accumulator.js';
import { changeScores } from '../src/trajectory/change-detection.js';
import { assignPhases } from '../src/trajectory/phase-segmentation.js';
import { analyseRun } from '../src/trajectory/run-analysis.js';
import { computeIndicators, indicatorsFor } from '../src/trajectory/run-indicators.js';
import type { CheckpointSummary } from '../src/model/summary.js';

const SIZES = { 'l1.weight': 60_000, 'l1.bias': 40, 'l2.weight': 20_000 };
type Weights = Record<keyof typeof SIZES, Float64Array>;

function summarise(step: number, w: Weights): CheckpointSummary {
  const acc = new CheckpointAccumulator();
  const names = Object.keys(SIZES) as (keyof typeof SIZES)[];
  acc.begin(names.map((name) => ({ name, dtype: 'F64', shape: [SIZES[name]] })));
  names.forEach((name, i) => {
    acc.update(i, 0, new Uint8Array(w[name].buffer));
  });
  return acc.finish(step);
}

const norm = (w: Weights, v: Weights) =>
  Math.sqrt(
    (Object.keys(SIZES) as (keyof typeof SIZES)[]).reduce(
      (s, k) => s + w[k].reduce((t, x, i) => t + (x - v[k][i]) ** 2, 0),
      0,
    ),
  );

/** A random walk whose steps shrink, with one tensor moving most. */
function trajectory(seed: number, checkpoints: number, relative: number): { steps: number[]; weights: Weights[] } {
  const random = rng(seed);
  const start = Object.fromEntries(
    Object.entries(SIZES).map(([k, n]) => [k, Float64Array.from({ length: n }, () => random() - 0.5)]),
  ) as Weights;
  const weights = [start];
  for (let c = 1; c < checkpoints; c++) {
    const prev = weights[c - 1];
    const scale = relative / c;
    weights.push(
      Object.fromEntries(
        Object.entries(prev).map(([k, v]) => [
          k,
          v.map((x) => x + (random() - 0.5) * scale * (k === 'l2.weight' ? 3 : 1)),
        ]),
      ) as Weights,
    );
  }
  return { steps: weights.map((_, i) => i * 10), weights };
}

describe('indicators from sketches', () => {
  it('match exact geometry within 5% (99th percentile), down to ||Δw|| = 1e-6 ||w||', () => {
    const errors: number[] = [];
    for (const [seed, relative] of [
      [1, 0.05],
      [2, 1e-6],
    ] as const) {
      const { steps, weights } = trajectory(seed, 12, relative);
      const summaries = weights.map((w, i) => summarise(steps[i], w));
      const indicators = computeIndicators(summaries);
      let path = 0;
      for (let i = 1; i < weights.length; i++) {
        const exact = norm(weights[i], weights[i - 1]);
        path += exact;
        errors.push(Math.abs(indicators[i].updateNorm! / exact - 1));
        errors.push(Math.abs(indicators[i].distanceFromStart / norm(weights[i], weights[0]) - 1));
        assert.ok(Math.abs(indicators[i].pathLength / path - 1) < 0.05);
        assert.equal(indicators[i].topTensors[0].name, 'l2.weight', 'the tensor moved 3x more ranks first');
        assert.ok(Math.abs(indicators[i].updateNormPerStep! - indicators[i].updateNorm! / 10) < 1e-15);
      }
      assert.deepEqual(
        {
          u: indicators[0].updateNorm,
          d: indicators[0].distanceFromStart,
          p: indicators[0].pathLength,
          c: indicators[0].cosinePrev,
        },
        { u: null, d: 0, p: 0, c: null },
      );
    }
    errors.sort((a, b) => a - b);
    assert.ok(errors[Math.floor(errors.length * 0.99)] < 0.05, `p99 ${errors[Math.floor(errors.length * 0.99)]}`);
  });

  it('cosinePrev sees a reversal, and exact per-tensor norms for small tensors', () => {
    const { weights } = trajectory(3, 2, 0.1);
    const [w0, w1] = weights;
    const back = Object.fromEntries(
      Object.entries(w1).map(([k, v]) => [k, v.map((x, i) => x - 0.5 * (x - w0[k as keyof Weights][i]))]),
    ) as Weights;
    const s = [summarise(0, w0), summarise(10, w1), summarise(20, back)];
    const ind = computeIndicators(s);
    assert.ok(ind[2].cosinePrev! < -0.95, `cosine ${ind[2].cosinePrev}`);
    const bias = ind[1].topTensors.find((t) => t.name === 'l1.bias')!;
    const exact = Math.sqrt(w1['l1.bias'].reduce((t, x, i) => t + (x - w0['l1.bias'][i]) ** 2, 0));
    assert.ok(Math.abs(bias.updateNorm - exact) < 1e-12, 'tensors of <= 64 elements are exact');
  });

  it('incremental append equals whole-run recomputation', () => {
    const { steps, weights } = trajectory(4, 8, 0.02);
    const summaries = weights.map((w, i) => summarise(steps[i], w));
    const whole = computeIndicators(summaries);
    let pathLength = 0;
    summaries.forEach((s, i) => {
      const one = indicatorsFor(s, {
        first: summaries[0],
        prev: summaries[i - 1] ?? null,
        prevPrev: summaries[i - 2] ?? null,
        prevPathLength: pathLength,
      });
      pathLength = one.pathLength;
      assert.deepEqual(one, whole[i]);
    });
  });
});

describe('phases', () => {
  it('by fraction of plannedSteps', () => {
    const { phaseOf, names, method } = assignPhases({
      steps: [0, 100, 333, 334, 700, 999],
      updateNormPerStep: [null, 1, 1, 1, 1, 1],
      plannedSteps: 1000,
    });
    assert.equal(method, 'fraction');
    assert.deepEqual(
      phaseOf.map((p) => names[p]),
      ['early', 'early', 'early', 'mid', 'late', 'late'],
    );
  });

  it('by dynamics finds planted level changes, ordered, and stays put with one more checkpoint', () => {
    const level = (i: number) => (i < 10 ? 1 : i < 25 ? 0.1 : 0.01);
    const random = rng(5);
    const series = Array.from({ length: 40 }, (_, i) => level(i) * (1 + 0.1 * (random() - 0.5)));
    const steps = series.map((_, i) => i * 10);
    const a = assignPhases({ steps, updateNormPerStep: series });
    assert.equal(a.method, 'dynamics');
    assert.equal(a.phaseOf.indexOf(1), 10);
    assert.equal(a.phaseOf.indexOf(2), 25);
    for (let i = 1; i < a.phaseOf.length; i++) assert.ok(a.phaseOf[i] >= a.phaseOf[i - 1]);
    const b = assignPhases({ steps: [...steps, 400], updateNormPerStep: [...series, 0.0101] });
    assert.deepEqual(b.phaseOf.slice(0, 40), a.phaseOf);
  });

  it('keeps every dynamic phase at least minSegment long, and a last-checkpoint spike is no phase of its own', () => {
    const random = rng(9);
    const level = (i: number) => (i < 12 ? 1 : i < 24 ? 0.3 : 0.1);
    const series = Array.from({ length: 36 }, (_, i) => level(i) * (1 + 0.1 * (random() - 0.5)));
    series.push(50);
    const steps = series.map((_, i) => i * 10);
    const loose = assignPhases({ steps, updateNormPerStep: series, minSegment: 1 });
    assert.deepEqual(
      [loose.phaseOf.indexOf(1), loose.phaseOf.indexOf(2)],
      [12, 24],
      'even with single-checkpoint phases allowed, the median filter removes the spike',
    );
    const { phaseOf } = assignPhases({ steps, updateNormPerStep: series });
    const sizes = [0, 1, 2].map((p) => phaseOf.filter((x) => x === p).length);
    assert.ok(
      sizes.every((n) => n >= 3),
      `sizes ${sizes}`,
    );
    assert.equal(phaseOf[36], phaseOf[35]);
  });

  it('boundaries found by dynamics stay put as checkpoints arrive', () => {
    const random = rng(10);
    const level = (i: number) => (i < 15 ? 1 : i < 35 ? 0.2 : 0.04);
    const series = Array.from({ length: 70 }, (_, i) => level(i) * Math.exp(0.15 * (random() - 0.5)));
    const boundaries = (n: number) => {
      const { phaseOf } = assignPhases({
        steps: series.slice(0, n).map((_, i) => i),
        updateNormPerStep: series.slice(0, n),
      });
      return [phaseOf.indexOf(1), phaseOf.indexOf(2)];
    };
    for (let n = 45; n <= 70; n++) assert.deepEqual(boundaries(n), [15, 35], `after ${n} checkpoints`);
  });

  it('segments 10,000 checkpoints, ordered, with boundaries near the planted ones', () => {
    // Its speed is measured by scripts/bench-retention.ts ("phases alone").
    const random = rng(11);
    const n = 10_000;
    const level = (i: number) => (i < 2000 ? 1 : i < 7000 ? 0.3 : 0.05);
    const series = Array.from({ length: n }, (_, i) => level(i) * Math.exp(0.2 * (random() - 0.5)));
    const loss = series.map((_, i) => 2 * Math.exp(-i / 3000) + 0.1 * random());
    const { phaseOf } = assignPhases({
      steps: series.map((_, i) => i * 5),
      updateNormPerStep: series,
      trainLoss: loss,
    });
    assert.equal(phaseOf.length, n);
    for (let i = 1; i < n; i++) assert.ok(phaseOf[i] >= phaseOf[i - 1]);
    assert.ok(
      Math.abs(phaseOf.indexOf(1) - 2000) <= 20 && Math.abs(phaseOf.indexOf(2) - 7000) <= 20,
      `${phaseOf.indexOf(1)}, ${phaseOf.indexOf(2)}`,
    );
  });

  it('names phases phase-1..phase-k when count is not 3', () => {
    const { names, phaseOf } = assignPhases({
      steps: [0, 10, 20, 30, 40, 50, 60, 70],
      updateNormPerStep: [null, 1, 1, 0.5, 0.5, 0.1, 0.1, 0.1],
      count: 4,
    });
    assert.deepEqual(names, ['phase-1', 'phase-2', 'phase-3', 'phase-4']);
    assert.deepEqual([...new Set(phaseOf)], [0, 1, 2, 3]);
  });

  it('gives early checkpoints the first phases when there are fewer checkpoints than phases', () => {
    assert.deepEqual(assignPhases({ steps: [0, 10], updateNormPerStep: [null, 1] }).phaseOf, [0, 1]);
  });
});

describe('change scores', () => {
  const decay = (n: number) =>
    Array.from({ length: n }, (_, i) => (i === 0 ? null : (1 / Math.sqrt(i)) * (1 + 0.05 * Math.sin(i * 7))));

  it('a smooth decaying run scores low everywhere', () => {
    const u = decay(60);
    const scores = changeScores({ updateNormPerStep: u, cosinePrev: u.map(() => 0.3) });
    assert.ok(
      Math.max(...scores.map((s) => s.changeScore)) < 2,
      JSON.stringify(scores.map((s) => s.changeScore.toFixed(2))),
    );
  });

  it('catches a learning-rate restart that a global z-score misses, and a loss spike', () => {
    const u = decay(60);
    for (let i = 36; i < 60; i++) u[i] = 5 * (1 / Math.sqrt(i - 35)) * u[35]!;
    const loss = u.map((_, i) => 2 / (1 + i));
    loss[20] = loss[19]! * 3;
    const scores = changeScores({ updateNormPerStep: u, cosinePrev: u.map(() => 0.3), trainLoss: loss });
    assert.ok(scores[36].changeScore > 3, `restart scores ${scores[36].changeScore}`);
    assert.ok(scores[20].changeScore > 3, `loss spike scores ${scores[20].changeScore}`);
    assert.equal(scores[36].kind, 'restart');
    assert.equal(scores[20].kind, 'spike');
    assert.deepEqual(
      scores.flatMap((s, i) => (s.kind === null ? [] : [i])),
      [20, 36],
      'the restart is one event: the checkpoints after it, at its new level, are none',
    );
    const logs = u.slice(1).map((v) => Math.log(v!));
    const mean = logs.reduce((a, b) => a + b) / logs.length;
    const sd = Math.sqrt(logs.reduce((a, b) => a + (b - mean) ** 2, 0) / logs.length);
    const globalZ = (Math.log(u[36]!) - mean) / sd;
    assert.ok(globalZ < 3, `a global z-score (${globalZ.toFixed(2)}) does not flag the restart at the usual threshold`);
  });
});

describe('run analysis', () => {
  it('totals the run', () => {
    const { steps, weights } = trajectory(6, 5, 0.05);
    const indicators = computeIndicators(weights.map((w, i) => summarise(steps[i], w)));
    const run = analyseRun({ checkpoints: indicators.map((ind, i) => ({ step: steps[i], indicators: ind })) });
    assert.equal(run.totals.checkpoints, 5);
    assert.deepEqual(
      run.items.map((i) => i.changeKind),
      [null, null, null, null, null],
    );
    assert.equal(run.totals.pathLength, indicators[4].pathLength);
    assert.deepEqual(
      run.phases.boundaries.map((b) => b.phase),
      ['early', 'mid', 'late'],
    );
  });
});
