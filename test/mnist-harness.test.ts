import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { IMAGE_SIZE, NUM_CLASSES, loadMnistSplit } from '../scripts/lib/mnist-data.js';
import {
  batchGradients,
  createMlp,
  disposeMlp,
  gradVarianceEstimate,
  initTfBackend,
  mlpParams,
  preconditionedVariance,
  trainMnist,
  type MnistMetricPoint,
  type TrainMnistOptions,
} from '../scripts/lib/mnist-train.js';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';

const tiny: TrainMnistOptions = {
  hidden: [16],
  schedule: 'cosine',
  baseLr: 0.1,
  batchSize: 16,
  steps: 40,
  trainSize: 256,
  heldOutSize: 256,
  labelNoise: 0.2,
  seed: 7,
  checkpointEvery: 15,
  evalEvery: 10,
  gapEvery: 5,
};

interface Recorded {
  points: MnistMetricPoint[];
  checkpoints: { step: number; sha256: string }[];
  tensorCounts: number[];
}

async function record(options: TrainMnistOptions): Promise<Recorded> {
  const rec: Recorded = { points: [], checkpoints: [], tensorCounts: [] };
  await trainMnist(options, {
    onMetrics: (p) => {
      rec.points.push(p);
      rec.tensorCounts.push(tf.memory().numTensors);
    },
    onCheckpoint: (step, tensors) => {
      const sha256 = createHash('sha256').update(encodeSafetensors(tensors)).digest('hex');
      rec.checkpoints.push({ step, sha256 });
    },
  });
  return rec;
}

describe('mnist data', () => {
  it('splits deterministically, noises train and held-out labels separately at about the rate', () => {
    const a = loadMnistSplit({ trainSize: 2000, heldOutSize: 3000, labelNoise: 0.3, seed: 3 });
    const b = loadMnistSplit({ trainSize: 2000, heldOutSize: 3000, labelNoise: 0.3, seed: 3 });
    assert.deepEqual(a.train.labels, b.train.labels);
    assert.deepEqual(a.heldOut.images.subarray(0, IMAGE_SIZE * 4), b.heldOut.images.subarray(0, IMAGE_SIZE * 4));
    for (const set of [a.train, a.heldOut]) {
      const flipped = set.labels.filter((y, i) => y !== set.cleanLabels[i]).length / set.size;
      // Binomial sd at n = 2000, p = 0.3 is 0.01; 0.04 is four of them.
      assert.ok(Math.abs(flipped - 0.3) < 0.04, `flip rate ${flipped}`);
      assert.ok(set.labels.every((y) => y < NUM_CLASSES));
    }
    const clean = loadMnistSplit({ trainSize: 100, heldOutSize: 100, labelNoise: 0, seed: 3 });
    assert.deepEqual(clean.train.labels, clean.train.cleanLabels);
  });
});

describe('mnist harness', () => {
  it('a tiny run is deterministic, logs every field, checkpoints on schedule and leaks no tensors', async () => {
    const first = await record(tiny);
    const second = await record(tiny);
    assert.deepEqual(second.checkpoints, first.checkpoints, 'identical checkpoint bytes for one seed');
    assert.deepEqual(
      first.checkpoints.map((c) => c.step),
      [0, 15, 30, 40],
    );
    assert.equal(first.points.length, tiny.steps);
    first.points.forEach((p, i) => {
      assert.equal(p.step, i + 1);
      for (const field of ['trainLoss', 'lr', 'batchSize', 'gradNorm', 'gradVariance', 'updateNorm'] as const) {
        assert.ok(Number.isFinite(p[field]), `step ${p.step}: ${field}`);
      }
      assert.ok(Math.abs(p.updateNorm - p.lr * p.gradNorm) <= 1e-12 * p.updateNorm);
      const isEval = p.step % tiny.evalEvery === 0 || p.step === tiny.steps;
      assert.equal(p.valLoss !== undefined, isEval, `step ${p.step}: valLoss`);
      if (isEval) {
        for (const key of ['heldOutLossClean', 'trainEvalLoss', 'trainAcc', 'heldOutAcc']) {
          assert.ok(Number.isFinite(p.extra?.[key]), `step ${p.step}: extra.${key}`);
        }
      }
      assert.equal(p.gapIncrement !== undefined, p.step % tiny.gapEvery === 0, `step ${p.step}: gapIncrement`);
    });
    // Same count at every step of one run (no per-step growth), and across runs.
    assert.equal(new Set([...first.tensorCounts, ...second.tensorCounts]).size, 1, `${first.tensorCounts}`);
  });

  it('tr Σ from per-sample norms matches a brute-force loop of single-sample gradients', async () => {
    await initTfBackend();
    const { train } = loadMnistSplit({ trainSize: 64, heldOutSize: 16, labelNoise: 0.2, seed: 11 });
    const m = 24;
    const mlp = createMlp([32, 16], 5);
    const before = tf.memory().numTensors;
    const oneHot = new Float32Array(m * NUM_CLASSES);
    for (let i = 0; i < m; i++) oneHot[i * NUM_CLASSES + train.labels[i]] = 1;
    const xs = tf.tensor2d(train.images.subarray(0, m * IMAGE_SIZE), [m, IMAGE_SIZE]);
    const ys = tf.tensor2d(oneHot, [m, NUM_CLASSES]);

    const fast = batchGradients(mlp, xs, ys);
    const fastPerSample = Array.from(fast.perSampleSqNorms.dataSync());
    const fastMean = fast.grads.map((g) => Float64Array.from(g.dataSync()));

    // Brute force: one variableGrads call per sample, in float64 on the host from there on.
    const perSample: Float64Array[] = [];
    for (let i = 0; i < m; i++) {
      const xi = xs.slice([i, 0], [1, IMAGE_SIZE]);
      const yi = ys.slice([i, 0], [1, NUM_CLASSES]);
      const { value, grads } = tf.variableGrads(() => {
        let a: tf.Tensor = xi;
        mlp.layers.forEach((l, k) => {
          const z = tf.add(tf.matMul(a, l.kernel), l.bias);
          a = k + 1 < mlp.layers.length ? tf.relu(z) : z;
        });
        return tf.neg(tf.sum(tf.mul(yi, tf.logSoftmax(a)))) as tf.Scalar;
      }, mlpParams(mlp));
      perSample.push(Float64Array.from(mlpParams(mlp).flatMap((p) => Array.from(grads[p.name].dataSync()))));
      tf.dispose([xi, yi, value, ...Object.values(grads)]);
    }
    const dim = perSample[0].length;
    const mean = new Float64Array(dim);
    for (const g of perSample) for (let j = 0; j < dim; j++) mean[j] += g[j] / m;
    // Direct definition: sum over coordinates of the unbiased sample variance.
    let traceDirect = 0;
    for (let j = 0; j < dim; j++) {
      let s = 0;
      for (const g of perSample) s += (g[j] - mean[j]) ** 2;
      traceDirect += s / (m - 1);
    }
    const sqNorm = (v: Float64Array): number => v.reduce((s, x) => s + x * x, 0);
    const meanSqNorm = perSample.reduce((s, g) => s + sqNorm(g), 0) / m;

    // Tolerance: everything before the host is float32 (relative rounding ~6e-8 per op over sums of up to
    // ~25k terms, so ~1e-5 relative at worst). tr Σ = m/(m−1)(mean||g_i||² − ||ḡ||²) subtracts two numbers
    // of size mean||g_i||², so its absolute error scales with mean||g_i||², not with tr Σ: bound it by
    // 1e-4 · mean||g_i||² (here ||ḡ||² is a few % of mean||g_i||², so this is also < 1e-3 relative to tr Σ).
    perSample.forEach((g, i) => {
      assert.ok(Math.abs(fastPerSample[i] - sqNorm(g)) <= 1e-4 * sqNorm(g), `sample ${i}`);
    });
    const fastFlat = Float64Array.from(fastMean.flatMap((g) => Array.from(g)));
    const maxMean = Math.max(...mean.map(Math.abs));
    fastFlat.forEach((v, j) => {
      assert.ok(Math.abs(v - mean[j]) <= 1e-4 * maxMean, `ḡ[${j}]`);
    });
    const fastTrace = gradVarianceEstimate(fastPerSample, sqNorm(fastFlat));
    assert.ok(Math.abs(fastTrace - traceDirect) <= 1e-4 * meanSqNorm, `${fastTrace} vs ${traceDirect}`);
    assert.ok(traceDirect > 0.5 * meanSqNorm, 'the check is not dominated by cancellation');

    // tr(P Σ̂) for a diagonal P spread over three orders of magnitude, against Σ_j P_j·Var_j directly.
    const precond = mlpParams(mlp).map((p, i) =>
      tf.tidy(() => tf.exp(tf.mul(tf.randomUniform(p.shape, -3, 3, 'float32', 17 + i), 1))),
    );
    const weights = Float64Array.from(precond.flatMap((t) => Array.from(t.dataSync())));
    let weightedDirect = 0;
    let weightedScale = 0;
    for (let j = 0; j < dim; j++) {
      let s = 0;
      for (const g of perSample) s += (g[j] - mean[j]) ** 2;
      weightedDirect += (weights[j] * s) / (m - 1);
      for (const g of perSample) weightedScale += (weights[j] * g[j] ** 2) / m;
    }
    const weighted = preconditionedVariance(mlp, xs, ys, precond);
    assert.ok(Math.abs(weighted - weightedDirect) <= 1e-4 * weightedScale, `${weighted} vs ${weightedDirect}`);
    const scalar = mlpParams(mlp).map((p) => tf.fill(p.shape, 0.05));
    const sgd = preconditionedVariance(mlp, xs, ys, scalar);
    assert.ok(Math.abs(sgd - 0.05 * fastTrace) <= 1e-4 * 0.05 * meanSqNorm, 'P = η·I gives η·tr Σ');
    tf.dispose([...precond, ...scalar]);

    tf.dispose([xs, ys, fast.loss, fast.perSampleSqNorms, ...fast.grads]);
    assert.equal(tf.memory().numTensors, before);
    disposeMlp(mlp);
  });
});
