import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MetricPoint } from '../src/model/records.js';
import { EstimateAccumulator } from '../src/estimate/accumulator.js';
import { AFFINE_MIN_POINTS, calibrate, sumsOf } from '../src/estimate/calibration.js';
import { currentEstimate } from '../src/estimate/estimate.js';
import { estimateHistory } from '../src/estimate/history.js';
import type { Estimate } from '../src/estimate/types.js';
import { prng as rng } from './helpers/checkpoints.js';

const N = 1000;

/** A synthetic run: every step logs lr, gradNorm, gradVariance (updateNorm on some), gap increments every
 *  5 steps, evaluation points every 50 logged as a separate point at the same step. */
function syntheticRun(steps: number, seed = 1, lr = 0.05): MetricPoint[] {
  const rand = rng(seed);
  const points: MetricPoint[] = [];
  let b = 0;
  for (let step = 1; step <= steps; step++) {
    const gradNorm = 1 + rand();
    const gradVariance = 20 + 10 * rand();
    const p: MetricPoint = {
      step,
      lr,
      batchSize: 32,
      gradNorm,
      gradVariance,
      trainLoss: 2 - step / steps + 0.1 * rand(),
    };
    if (step % 3 === 0) p.updateNorm = lr * gradNorm * 1.1;
    if (step % 5 === 0) {
      p.gapIncrement = 0.01 + 0.002 * rand();
      p.extra = { gapIncrementFresh: 0.001 * (rand() - 0.3) };
    }
    // The served indicator (effectiveIncrement): Σ (||Δw||/||ḡ||)·tr Σ / n.
    b += (((p.updateNorm ?? lr * gradNorm) / gradNorm) * gradVariance) / N;
    points.push(p);
    if (step % 50 === 0)
      points.push({ step, valLoss: 1.5, extra: { trainEvalLoss: 1.5 - 0.05 * b * (1 + 0.02 * (rand() - 0.5)) } });
  }
  return points;
}

/** Shuffles within consecutive blocks: out of order, but well inside the reorder window. */
function locallyShuffled(points: readonly MetricPoint[], block: number, seed: number): MetricPoint[] {
  const rand = rng(seed);
  const out: MetricPoint[] = [];
  for (let i = 0; i < points.length; i += block) {
    const chunk = points.slice(i, i + block);
    // Keep the two points of one step in their arrival order (the later one overrides fields).
    const groups = new Map<number, MetricPoint[]>();
    for (const p of chunk) groups.set(p.step, [...(groups.get(p.step) ?? []), p]);
    const keys = [...groups.keys()];
    for (let k = keys.length - 1; k > 0; k--) {
      const j = Math.floor(rand() * (k + 1));
      [keys[k], keys[j]] = [keys[j], keys[k]];
    }
    for (const key of keys) out.push(...(groups.get(key) ?? []));
  }
  return out;
}

function inBatches(points: readonly MetricPoint[], seed: number): EstimateAccumulator {
  const rand = rng(seed);
  const acc = EstimateAccumulator.create();
  for (let i = 0; i < points.length; ) {
    const size = 1 + Math.floor(rand() * 300);
    acc.add(points.slice(i, i + size));
    i += size;
  }
  return acc;
}

/** The definition, computed directly: merged step records in step order, spans, carried factors. */
function fromScratch(points: readonly MetricPoint[]): {
  b: number;
  e: number;
  so: number;
  measured: number;
  gap: number;
} {
  const byStep = new Map<number, MetricPoint>();
  for (const p of points) {
    const prev = byStep.get(p.step);
    byStep.set(p.step, prev ? { ...prev, ...p, extra: { ...prev.extra, ...p.extra } } : { ...p });
  }
  const steps = [...byStep.keys()].sort((x, y) => x - y);
  let b = 0;
  let e = 0;
  let so = 0;
  let measured = 0;
  let prevStep = 0;
  let prevGapStep = 0;
  let f = 0;
  let xy = 0;
  let xx = 0;
  for (const step of steps) {
    const p = byStep.get(step) as MetricPoint;
    const span = step - prevStep;
    prevStep = step;
    const norm = p.updateNorm ?? (p.lr as number) * (p.gradNorm as number);
    b += (span * norm * Math.sqrt(p.gradVariance as number)) / Math.sqrt(N);
    e += (span * (p.lr as number) * (p.gradVariance as number)) / N;
    so += span * norm * norm;
    f += (span * (norm / (p.gradNorm as number)) * (p.gradVariance as number)) / N;
    if (p.extra?.gapIncrementFresh !== undefined) {
      measured += (step - prevGapStep) * p.extra.gapIncrementFresh;
      prevGapStep = step;
    }
    if (p.valLoss !== undefined) {
      const gap = p.valLoss - (p.extra?.trainEvalLoss as number);
      xy += f * gap;
      xx += f * f;
    }
  }
  return { b, e, so, measured, gap: (xy / xx) * f };
}

const close = (actual: number | null | undefined, expected: number, rel = 1e-9): void => {
  assert.ok(actual !== null && actual !== undefined, `expected ${expected}, got ${actual}`);
  assert.ok(
    Math.abs(actual - expected) <= rel * Math.max(1, Math.abs(expected)),
    `expected ${expected}, got ${actual}`,
  );
};

const codes = (e: Estimate): string[] => e.warnings.map((w) => w.code);

describe('estimate accumulator', () => {
  const points = syntheticRun(3000);

  it('folds incrementally to the from-scratch definition, whatever the batching and local order', () => {
    const all = EstimateAccumulator.create().add(points);
    const batched = inBatches(points, 2);
    const shuffled = inBatches(locallyShuffled(points, 40, 3), 4);
    const opts = {
      trainSize: N,
      phases: [
        { name: 'early', fromStep: 0, toStep: 1000 },
        { name: 'late', fromStep: 1000, toStep: 3000 },
      ],
    };
    const reference = currentEstimate(all, opts);
    assert.deepEqual(batched.toJSON(), all.toJSON());
    assert.deepEqual(currentEstimate(batched, opts), reference);
    assert.deepEqual(currentEstimate(shuffled, opts), reference);

    const direct = fromScratch(points);
    close(reference.indicator, direct.b);
    close(reference.expectedIncrement, direct.e);
    close(reference.secondOrder, direct.so);
    close(reference.measuredGap, direct.measured);
    // Evaluation points pair with the sums interpolated between snapshots (every 2–4 steps past 1024).
    close(reference.gap?.estimate, direct.gap, 1e-4);
    assert.equal(reference.step, 3000);
    assert.equal(reference.counts.latePoints, 0);
    assert.deepEqual(reference.missing, []);
    assert.deepEqual(codes(reference), []);
    close((reference.phases.early.indicator ?? 0) + (reference.phases.late.indicator ?? 0), direct.b, 1e-6);
  });

  it('round-trips through JSON and keeps folding identically', () => {
    const a = EstimateAccumulator.create().add(points.slice(0, 2000));
    const b = EstimateAccumulator.fromJSON(JSON.parse(JSON.stringify(a.toJSON())));
    assert.deepEqual(b.toJSON(), a.toJSON());
    a.add(points.slice(2000));
    b.add(points.slice(2000));
    assert.deepEqual(currentEstimate(b, { trainSize: N }), currentEstimate(a, { trainSize: N }));
    assert.throws(() => EstimateAccumulator.fromJSON({ version: 2 }));
  });

  it('reports the estimate over steps, ending at the current one', () => {
    const acc = EstimateAccumulator.create({ maxSnapshots: 64 }).add(points);
    const history = estimateHistory(acc, { trainSize: N });
    assert.ok(history.length > 10 && history.length <= 66 + 60, `${history.length} entries`);
    for (let i = 1; i < history.length; i++) assert.ok(history[i].step > history[i - 1].step);
    const now = currentEstimate(acc, { trainSize: N });
    assert.equal(history[history.length - 1].step, now.step);
    close(history[history.length - 1].indicator, now.indicator as number);
    assert.deepEqual(
      estimateHistory(points, { trainSize: N }),
      estimateHistory(EstimateAccumulator.create().add(points), { trainSize: N }),
    );
  });

  it('says which inputs are missing instead of giving a number it cannot support', () => {
    const noVariance = points.map(({ gradVariance: _, ...rest }) => rest);
    const e = currentEstimate(EstimateAccumulator.create().add(noVariance), { trainSize: N });
    assert.equal(e.indicator, null);
    assert.equal(e.expectedIncrement, null);
    assert.equal(e.calibrated, false);
    assert.equal(e.gap, null);
    assert.deepEqual(e.missing, ['gradVariance']);
    assert.ok(codes(e).includes('missing_inputs'));
    assert.ok(e.observedGap !== null, 'observed gaps are still reported');

    const noSize = currentEstimate(EstimateAccumulator.create().add(points), { trainSize: null });
    assert.equal(noSize.indicator, null);
    assert.deepEqual(noSize.missing, ['trainSize']);
    assert.ok(noSize.calibrated, 'the calibrated gap does not depend on n');

    const empty = currentEstimate(EstimateAccumulator.create(), { trainSize: N });
    assert.equal(empty.indicator, null);
    assert.deepEqual(empty.missing, ['gradVariance', 'updateNorm', 'lr', 'valLoss']);
  });

  it('flags a large-learning-rate run and not a small one', () => {
    const large = currentEstimate(EstimateAccumulator.create().add(syntheticRun(500, 5, 2)), { trainSize: N });
    assert.ok(codes(large).includes('large_second_order'), JSON.stringify(large.warnings));
    assert.ok(codes(large).includes('extreme_learning_rate'));
    assert.ok((large.secondOrderRatio ?? 0) > 4);
    const small = currentEstimate(EstimateAccumulator.create().add(syntheticRun(500, 5, 0.01)), { trainSize: N });
    assert.deepEqual(codes(small), []);
  });

  it('flags extreme batch sizes', () => {
    const pts: MetricPoint[] = Array.from({ length: 100 }, (_, i) => ({
      step: i + 1,
      lr: 0.1,
      gradNorm: 1,
      gradVariance: 10,
      batchSize: i < 50 ? 2 : 800,
    }));
    const e = currentEstimate(EstimateAccumulator.create().add(pts), { trainSize: N });
    const w = e.warnings.find((x) => x.code === 'extreme_batch_size');
    assert.ok(w && /batch size 2/.test(w.message) && /800/.test(w.message));
  });

  it('effectiveIncrement takes tr(PΣ) from extra.preconditionedVariance where logged, carried to the steps after', () => {
    const base: MetricPoint[] = Array.from({ length: 100 }, (_, i) => ({
      step: i + 1,
      lr: 0.01,
      gradNorm: 2,
      gradVariance: 50,
      updateNorm: 0.04,
    }));
    const served = (points: MetricPoint[]) =>
      currentEstimate(EstimateAccumulator.create().add(points), { trainSize: N }).served.value as number;
    // Without it: Σ (||Δw||/||ḡ||)·tr Σ / n = 100 · 0.02 · 50 / 1000.
    assert.ok(Math.abs(served(base) - 0.1) < 1e-12, `${served(base)}`);
    // Logged on every 10th step (an Adam-like P worth 3× the scalar form): the 9 steps after each carry it.
    const logged = base.map((p) => (p.step % 10 === 1 ? { ...p, extra: { preconditionedVariance: 3 } } : p));
    assert.ok(Math.abs(served(logged) - 0.3) < 1e-12, `${served(logged)}`);
    // A negative value is invalid and ignored (counted), like any invalid input.
    const invalid = base.map((p) => ({ ...p, extra: { preconditionedVariance: -1 } }));
    assert.ok(Math.abs(served(invalid) - 0.1) < 1e-12);
  });

  it('calibrates through the origin below 5 evaluation points and with an intercept from 5 (ordinary least squares)', () => {
    const rand = rng(3);
    const pairs = Array.from({ length: 12 }, (_, i) => {
      const x = 1 + i * 0.7;
      return { step: (i + 1) * 10, x, y: 0.3 + 0.05 * x + 0.01 * (rand() - 0.5) };
    });
    const few = calibrate(sumsOf(pairs.slice(0, AFFINE_MIN_POINTS - 1)), 10, 3);
    assert.equal(few?.method, 'least-squares-through-origin');
    assert.equal(few?.c, 0);
    const fit = calibrate(sumsOf(pairs), 10, 3);
    assert.ok(fit);
    assert.equal(fit.method, 'least-squares-affine');
    // The textbook OLS solution, computed directly.
    const k = pairs.length;
    const mx = pairs.reduce((a, p) => a + p.x, 0) / k;
    const my = pairs.reduce((a, p) => a + p.y, 0) / k;
    const slope =
      pairs.reduce((a, p) => a + (p.x - mx) * (p.y - my), 0) / pairs.reduce((a, p) => a + (p.x - mx) ** 2, 0);
    const intercept = my - slope * mx;
    assert.ok(Math.abs(fit.a - slope) < 1e-9 && Math.abs(fit.c - intercept) < 1e-9, `${fit.a} ${fit.c}`);
    const residuals = pairs.map((p) => p.y - slope * p.x - intercept);
    const s = Math.sqrt(residuals.reduce((a, r) => a + r * r, 0) / (k - 2));
    assert.ok(Math.abs(fit.s - s) < 1e-9);
    assert.ok(Math.abs(fit.interval.estimate - (slope * 10 + intercept)) < 1e-9);
    assert.ok(fit.interval.low < fit.interval.estimate && fit.interval.estimate < fit.interval.high);
    assert.ok(Math.abs(fit.c - 0.3) < 0.02 && Math.abs(fit.a - 0.05) < 0.005);
  });

  it('recovers a known calibration scale from synthetic evaluation points', () => {
    const e = currentEstimate(EstimateAccumulator.create().add(points), { trainSize: N });
    assert.ok(e.calibrated && e.gap && e.calibration);
    assert.ok(Math.abs((e.calibration.scale as number) - 0.05) < 0.05 * 0.01, `scale ${e.calibration.scale}`);
    const served = e.served.value as number;
    assert.equal(e.served.name, 'effectiveIncrement');
    assert.ok(e.gap.low <= 0.05 * served && 0.05 * served <= e.gap.high);
    assert.equal(e.trend.basis, 'observedGap');
    assert.equal(e.trend.direction, 'widening');

    const early = currentEstimate(EstimateAccumulator.create().add(points), { trainSize: N, calibrateUntilStep: 1000 });
    assert.equal(early.calibration?.points, 20);
    assert.ok(Math.abs((early.calibration?.scale as number) - 0.05) < 0.05 * 0.02);

    const two = currentEstimate(EstimateAccumulator.create().add(points.filter((p) => p.step <= 100)), {
      trainSize: N,
    });
    assert.equal(two.calibrated, false);
    assert.equal(two.gap, null);
    assert.ok(codes(two).includes('few_evaluation_points'));
  });

  it('counts and warns about NaN/Inf and out-of-range values, leaving the sums alone', () => {
    const bad: MetricPoint[] = [
      { step: 10, gradVariance: Number.NaN },
      { step: 20, lr: Number.POSITIVE_INFINITY, updateNorm: -1 },
    ];
    const clean = currentEstimate(EstimateAccumulator.create().add(points), { trainSize: N });
    const dirty = currentEstimate(
      EstimateAccumulator.create().add([...points, ...bad].sort((a, b) => a.step - b.step)),
      { trainSize: N },
    );
    assert.equal(dirty.indicator, clean.indicator);
    const nonFinite = dirty.warnings.find((w) => w.code === 'non_finite');
    assert.ok(nonFinite && /1 gradVariance/.test(nonFinite.message) && /1 lr/.test(nonFinite.message));
    assert.ok(codes(dirty).includes('invalid_values'));
    const ckpt = EstimateAccumulator.create()
      .add(points)
      .addCheckpoints([{ step: 100, updateNormPerStep: 0.1, nonFiniteCount: 3 }]);
    assert.ok(
      currentEstimate(ckpt, { trainSize: N }).warnings.some(
        (w) => w.code === 'non_finite' && /3 weights/.test(w.message),
      ),
    );
  });

  it('drops and counts training fields that arrive after their steps were folded', () => {
    const acc = EstimateAccumulator.create({ reorderWindow: 4 }).add(points.slice(0, 100));
    acc.add([{ step: 3, lr: 1 }]);
    const e = currentEstimate(acc, { trainSize: N });
    assert.equal(e.counts.latePoints, 1);
    assert.ok(codes(e).includes('late_points'));
  });

  it('gives the same estimate and history whether evaluations arrive live, late or in any order', () => {
    const isEval = (p: MetricPoint): boolean => p.valLoss !== undefined;
    const live = EstimateAccumulator.create().add(points);
    const evals = points.filter(isEval);
    const rand = rng(9);
    const shuffled = evals.slice();
    for (let k = shuffled.length - 1; k > 0; k--) {
      const j = Math.floor(rand() * (k + 1));
      [shuffled[k], shuffled[j]] = [shuffled[j], shuffled[k]];
    }
    const late = inBatches(
      points.filter((p) => !isEval(p)),
      5,
    );
    for (let i = 0; i < shuffled.length; i += 7) late.add(shuffled.slice(i, i + 7));
    const opts = { trainSize: N, calibrateUntilStep: 1800 };
    const a = currentEstimate(live, opts);
    const b = currentEstimate(late, opts);
    assert.equal(b.counts.latePoints, 0);
    assert.equal(b.counts.evaluationPoints, 60);
    assert.deepEqual({ ...b, counts: { ...b.counts, points: 0 } }, { ...a, counts: { ...a.counts, points: 0 } });
    assert.ok(a.calibrated && a.calibration?.points === 36);
    assert.deepEqual(estimateHistory(late, { trainSize: N }), estimateHistory(live, { trainSize: N }));
  });

  it('falls back to checkpoint update norms, whichever arrives first', () => {
    const bare: MetricPoint[] = Array.from({ length: 400 }, (_, i) => ({ step: i + 1, gradVariance: 16, lr: 0.1 }));
    const ckpts = [
      { step: 0, updateNormPerStep: null },
      { step: 200, updateNormPerStep: 0.02 },
      { step: 400, updateNormPerStep: 0.01 },
    ];
    const expected = (200 * 0.02 * 4 + 200 * 0.01 * 4) / Math.sqrt(N);
    const before = EstimateAccumulator.create({ reorderWindow: 8 }).addCheckpoints(ckpts).add(bare);
    const after = EstimateAccumulator.create({ reorderWindow: 8 }).add(bare).addCheckpoints(ckpts);
    for (const acc of [before, after]) {
      const e = currentEstimate(acc, { trainSize: N });
      close(e.indicator, expected);
      assert.equal(e.sources.updateNorm.checkpoints, 400);
      assert.ok(codes(e).includes('indicator_from_checkpoint_norms'));
    }
    // Before the covering checkpoint arrives, records wait in the buffer; a read uses the latest norm.
    const waiting = EstimateAccumulator.create({ reorderWindow: 8 }).addCheckpoints(ckpts.slice(0, 2)).add(bare);
    assert.ok(waiting.toJSON().pending.length >= 200);
    close(currentEstimate(waiting, { trainSize: N }).indicator, (400 * 0.02 * 4) / Math.sqrt(N));
  });

  it('removes the self-fit term from batch-gradient gap increments when fresh ones are absent', () => {
    const pts: MetricPoint[] = Array.from({ length: 100 }, (_, i) => ({
      step: i + 1,
      lr: 0.1,
      batchSize: 32,
      gradNorm: 1,
      gradVariance: 64,
      gapIncrement: 0.3,
    }));
    const e = currentEstimate(EstimateAccumulator.create().add(pts), { trainSize: N });
    close(e.measuredGapUncorrected, 30);
    close(e.measuredGap, 100 * (0.3 - 0.1 * 64 * (1 / 32 - 1 / N)));
    assert.equal(e.sources.measuredGap.selfFitCorrected, 100);
    const raw = currentEstimate(
      EstimateAccumulator.create().add(pts.map(({ step, gapIncrement }) => ({ step, gapIncrement }))),
      { trainSize: N },
    );
    close(raw.measuredGap, 30);
    assert.ok(codes(raw).includes('measured_gap_uncorrected'));
  });
});
