import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { TrajgateClient } from '@trajgate/sdk';
import { TrainingStats, tensorsFromModel, tensorsFromVariables, type LossFn } from '@trajgate/sdk/tfjs';
import { prng } from './helpers/checkpoints.js';
import { startTestServer } from './helpers/gateway.js';

/** A 6 → 5 → 3 ReLU MLP with softmax cross-entropy, and a fixed data set of `rows` rows. */
function setup(seed: number, rows: number) {
  const random = prng(seed);
  const w1 = tf.variable(tf.randomNormal([6, 5], 0, 0.5, 'float32', seed), true, `w1_${seed}`);
  const w2 = tf.variable(tf.randomNormal([5, 3], 0, 0.5, 'float32', seed + 1), true, `w2_${seed}`);
  const variables = [w1, w2];
  const loss: LossFn = (x, y) =>
    tf.losses.softmaxCrossEntropy(y, tf.matMul(tf.relu(tf.matMul(x, w1)), w2)) as tf.Scalar;
  const xs = Array.from({ length: rows * 6 }, () => random() * 2 - 1);
  const labels = Array.from({ length: rows }, () => Math.floor(random() * 3));
  const batch = (order: number[]) => ({
    xs: tf.tensor2d(
      order.flatMap((i) => xs.slice(i * 6, i * 6 + 6)),
      [order.length, 6],
    ),
    ys: tf.oneHot(
      order.map((i) => labels[i]),
      3,
    ),
  });
  return { random, variables, loss, batch };
}

/** Flattened gradient of `loss` on `b` over `variables` (all parameters in one vector). */
function flatGrad(loss: LossFn, b: { xs: tf.Tensor; ys: tf.Tensor }, variables: tf.Variable[]): Float32Array {
  const flat = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => loss(b.xs, b.ys), variables);
    value.dispose();
    return tf.concat(variables.map((v) => grads[v.name].reshape([-1])));
  });
  const values = flat.dataSync() as Float32Array;
  flat.dispose();
  return values;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
  return sum;
}

/** All the variables' values in one vector. */
function flatWeights(variables: tf.Variable[]): Float32Array {
  const flat = tf.tidy(() => tf.concat(variables.map((v) => v.reshape([-1]))));
  const values = flat.dataSync() as Float32Array;
  flat.dispose();
  return values;
}

describe('TrainingStats', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  /**
   * The micro-batch estimator of tr Σ against the exact per-sample computation (32 per-sample gradients
   * of a small MLP). For one batch, averaged over random splits into K micro-batches, the estimator's
   * expectation is exactly the batch's sample covariance trace S² = 1/(m−1) Σ_i ||g_i − ḡ||² (group means
   * drawn without replacement have variance S²(m−b)/(bm) each, and b/(K−1) undoes the sum over K
   * groups). One estimate has relative standard deviation of at most about sqrt(2/(K−1)) = 53% (K = 8;
   * that is its spread when one direction dominates Σ; spread over many directions it is smaller), so the
   * mean of R = 400 splits is within 2.7% at one sigma. The test allows 10% (3.7 sigma at that worst
   * case); the data and splits are seeded, so it is deterministic.
   */
  it('estimates the per-sample gradient variance within sampling error of the exact value', () => {
    const m = 32;
    const { random, variables, loss, batch } = setup(21, m);
    const perSample = Array.from({ length: m }, (_, i) => {
      const b = batch([i]);
      const g = flatGrad(loss, b, variables);
      tf.dispose([b.xs, b.ys]);
      return g;
    });
    const mean = perSample[0].map((_, j) => perSample.reduce((s, g) => s + g[j], 0) / m);
    const exact = perSample.reduce((s, g) => s + g.reduce((t, x, j) => t + (x - mean[j]) ** 2, 0), 0) / (m - 1);

    const stats = new TrainingStats(tf, { microBatches: 8 });
    let sum = 0;
    const rounds = 400;
    for (let r = 0; r < rounds; r++) {
      const order = Array.from({ length: m }, (_, i) => i).sort(() => random() - 0.5);
      const b = batch(order);
      const result = stats.gradients(loss, b.xs, b.ys, variables);
      sum += result.gradVariance;
      // ḡ of the micro-batches is the whole batch's gradient.
      if (r === 0) assert.ok(Math.abs(result.gradNorm - Math.sqrt(dot(mean, mean))) < 1e-4 * result.gradNorm);
      tf.dispose([b.xs, b.ys, ...Object.values(result.grads)]);
    }
    const estimate = sum / rounds;
    assert.ok(Math.abs(estimate / exact - 1) < 0.1, `estimate ${estimate} vs exact ${exact}`);
    tf.dispose(variables);
  });

  it('steps with plain SGD: update norm lr·||ḡ|| and the gap increment <∇F_val − ḡ, −lr·ḡ>', () => {
    const { variables, loss, batch } = setup(5, 64);
    const optimizer = tf.train.sgd(0.2);
    const stats = new TrainingStats(tf, { microBatches: 4, gapEvery: 2 });
    const train = batch(Array.from({ length: 16 }, (_, i) => i));
    const heldOut = batch(Array.from({ length: 16 }, (_, i) => 32 + i));
    const fresh = batch(Array.from({ length: 16 }, (_, i) => 16 + i));
    const tensorsBefore = tf.memory().numTensors;
    for (let step = 1; step <= 4; step++) {
      // Expected values at the weights before the step.
      const g = flatGrad(loss, train, variables);
      const gv = flatGrad(loss, heldOut, variables);
      const gf = flatGrad(loss, fresh, variables);
      const point = stats.step({
        step,
        loss,
        xs: train.xs,
        ys: train.ys,
        variables,
        optimizer,
        lr: 0.2,
        heldOut,
        freshTrain: () => fresh,
      });
      assert.equal(point.step, step);
      assert.equal(point.batchSize, 16);
      assert.equal(point.lr, 0.2);
      const gradNorm = Math.sqrt(dot(g, g));
      assert.ok(Math.abs(point.gradNorm! - gradNorm) < 1e-4 * gradNorm);
      assert.ok(
        Math.abs(point.updateNorm! - 0.2 * gradNorm) < 1e-4 * gradNorm,
        `measured ${point.updateNorm} vs lr·||ḡ|| ${0.2 * gradNorm}`,
      );
      if (step % 2 === 0) {
        const expected = -0.2 * (dot(gv, g) - dot(g, g));
        assert.ok(
          Math.abs(point.gapIncrement! - expected) < 1e-3 * Math.abs(expected) + 1e-7,
          `gap ${point.gapIncrement} vs ${expected}`,
        );
        const expectedFresh = -0.2 * (dot(gv, g) - dot(gf, g));
        assert.ok(Math.abs(point.extra!.gapIncrementFresh - expectedFresh) < 1e-3 * Math.abs(expectedFresh) + 1e-7);
      } else {
        assert.equal(point.gapIncrement, undefined, 'only every gapEvery steps');
      }
    }
    assert.equal(tf.memory().numTensors, tensorsBefore, 'step() leaks no tensors');
    tf.dispose([train.xs, train.ys, heldOut.xs, heldOut.ys, fresh.xs, fresh.ys, ...variables]);
  });

  it('measures the real update of an adaptive optimizer, and snapshot()/updateNorm() for custom loops', () => {
    const { variables, loss, batch } = setup(9, 16);
    const optimizer = tf.train.adam(0.01);
    const stats = new TrainingStats(tf, { microBatches: 2 });
    const b = batch(Array.from({ length: 16 }, (_, i) => i));
    const before = flatWeights(variables);
    const point = stats.step({ step: 1, loss, xs: b.xs, ys: b.ys, variables, optimizer, lr: 0.01 });
    const afterStep = flatWeights(variables);
    const moved = Math.sqrt(before.reduce((s, x, i) => s + (afterStep[i] - x) ** 2, 0));
    assert.ok(Math.abs(point.updateNorm! - moved) < 1e-4 * moved, `updateNorm ${point.updateNorm} vs ${moved}`);
    assert.ok(Math.abs(point.updateNorm! - 0.01 * point.gradNorm!) > 1e-3 * moved, 'Adam does not move by lr·||ḡ||');

    const v = tf.variable(tf.zeros([4]));
    stats.snapshot([v]);
    v.assign(tf.tensor1d([3, 4, 0, 0]));
    assert.ok(Math.abs(stats.updateNorm([v]) - 5) < 1e-6);
    tf.dispose([b.xs, b.ys, v, ...variables]);
  });

  it("logs tr(PΣ) with Adam's preconditioner: the P tfjs's Adam applies, weighted over the micro-batches", () => {
    const { variables, loss, batch } = setup(13, 32);
    const [lr, beta2, epsilon, k] = [0.01, 0.99, 1e-7, 4];
    const b = batch(Array.from({ length: 32 }, (_, i) => i));
    const tensorsBefore = tf.memory().numTensors;
    // β1 = 0: Adam's step is exactly −P·ḡ, so the measured update checks the P TrainingStats keeps.
    const optimizer = tf.train.adam(lr, 0, beta2, epsilon);
    const stats = new TrainingStats(tf, { microBatches: k, preconditioner: { kind: 'adam', beta2, epsilon } });
    const rows = 32 / k;
    let v: Float64Array | null = null;
    for (let step = 1; step <= 3; step++) {
      const g = flatGrad(loss, b, variables);
      const micro = Array.from({ length: k }, (_, i) => {
        const part = batch(Array.from({ length: rows }, (_, r) => i * rows + r));
        const gk = flatGrad(loss, part, variables);
        tf.dispose([part.xs, part.ys]);
        return gk;
      });
      v = Float64Array.from(g, (x, i) => (v ? beta2 * v[i] : 0) + (1 - beta2) * x * x);
      const p = Float64Array.from(v, (x) => lr / (Math.sqrt(x / (1 - beta2 ** step)) + epsilon));
      let expected = 0;
      for (const gk of micro) for (let i = 0; i < p.length; i++) expected += p[i] * (gk[i] - g[i]) ** 2;
      expected *= rows / (k - 1);
      const before = flatWeights(variables);
      const point = stats.step({ step, loss, xs: b.xs, ys: b.ys, variables, optimizer, lr });
      const afterStep = flatWeights(variables);
      const mismatch = Math.sqrt(before.reduce((s, w, i) => s + (afterStep[i] - w + p[i] * g[i]) ** 2, 0));
      assert.ok(mismatch < 1e-3 * point.updateNorm!, `step ${step}: Δw differs from −P·ḡ by ${mismatch}`);
      const logged = point.extra!.preconditionedVariance;
      assert.ok(Math.abs(logged - expected) < 1e-3 * expected, `step ${step}: ${logged} vs ${expected}`);
      assert.ok(Math.abs(logged - lr * point.gradVariance!) > 0.1 * logged, 'not the SGD value');
    }
    stats.dispose();
    optimizer.dispose(); // its own moments
    assert.equal(tf.memory().numTensors, tensorsBefore, 'no tensors kept after dispose()');
    tf.dispose([b.xs, b.ys, ...variables]);
  });
});

describe('tfjs tensors through a real gateway', () => {
  let server: Awaited<ReturnType<typeof startTestServer>>;
  before(async () => {
    await tf.setBackend('cpu');
    server = await startTestServer();
  });
  after(async () => {
    await server.close();
  });

  it('uploads a LayersModel and logged TrainingStats points; the estimate finds every input it needs', async () => {
    const model = tf.sequential({ layers: [tf.layers.dense({ units: 3, inputShape: [6], name: 'd' })] });
    const exported = tensorsFromModel(model);
    assert.deepEqual(
      exported.map((t) => [t.name, t.dtype, t.shape]),
      [
        ['d/kernel', 'F32', [6, 3]],
        ['d/bias', 'F32', [3]],
      ],
    );

    const client = new TrajgateClient({ url: server.url });
    const run = client.run('tfjs', { plannedSteps: 6, trainSize: 64 });
    const { variables, loss, batch } = setup(3, 64);
    const optimizer = tf.train.sgd(0.1);
    const stats = new TrainingStats(tf, { gapEvery: 3 });
    const train = batch(Array.from({ length: 32 }, (_, i) => i));
    const heldOut = batch(Array.from({ length: 32 }, (_, i) => 32 + i));
    await run.checkpoint(0, tensorsFromVariables(variables));
    for (let step = 1; step <= 6; step++) {
      const point = stats.step({ step, loss, xs: train.xs, ys: train.ys, variables, optimizer, lr: 0.1, heldOut });
      await run.log(step === 6 ? { ...point, valLoss: 1.2 } : point);
      if (step % 3 === 0) await run.checkpoint(step, tensorsFromVariables(variables));
    }
    await run.close();

    const checkpoints = await client.listCheckpoints('tfjs', { tensors: true });
    assert.deepEqual(
      checkpoints.map((c) => c.step),
      [0, 3, 6],
    );
    const last = tf.tidy(() => variables.map((v) => tf.norm(v).dataSync()[0]));
    checkpoints[2].tensors.forEach((t, i) => {
      assert.ok(Math.abs(t.norm - last[i]) < 1e-4 * last[i], `${t.name} norm`);
    });
    const points = await client.getMetrics('tfjs');
    assert.equal(points.length, 6);
    assert.equal(points.filter((p) => p.gapIncrement !== undefined).length, 2);
    const estimate = await client.getEstimate('tfjs');
    assert.deepEqual(estimate.missing, []);
    assert.ok(estimate.indicator !== null && estimate.indicator > 0);
    tf.dispose([train.xs, train.ys, heldOut.xs, heldOut.ys, ...variables]);
    model.dispose();
  });
});
