import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { TrainingStats, tensorsFromModel } from '../src/sdk/tfjs.js';
import { prng } from './helpers/checkpoints.js';

/**
 * The micro-batch estimator of tr Σ against the exact per-sample computation on a small model. For one
 * batch, averaged over random splits into K micro-batches, the estimator's expectation is exactly the
 * batch's sample covariance trace (1/(m−1) Σ_i ||g_i − ḡ||²); a single estimate has relative standard
 * deviation about sqrt(2/(K−1)), so the mean of R splits is within sqrt(2/(K−1)/R) ≈ 2.7% (K = 8, R = 400)
 * at one sigma. The test allows 10%, about 3.7 sigma.
 */
describe('TrainingStats', () => {
  it('estimates the per-sample gradient variance within sampling error', async () => {
    await tf.setBackend('cpu');
    const random = prng(21);
    const m = 32;
    const w1 = tf.variable(tf.randomNormal([6, 5], 0, 0.5, 'float32', 1), true, 'w1');
    const w2 = tf.variable(tf.randomNormal([5, 3], 0, 0.5, 'float32', 2), true, 'w2');
    const variables = [w1, w2];
    const loss = (x: tf.Tensor, y: tf.Tensor) => tf.losses.softmaxCrossEntropy(y, tf.matMul(tf.relu(tf.matMul(x, w1)), w2)) as tf.Scalar;
    const xsData = Array.from({ length: m * 6 }, () => random() * 2 - 1);
    const labels = Array.from({ length: m }, () => Math.floor(random() * 3));

    const perSample = labels.map((label, i) =>
      tf.tidy(() => {
        const x = tf.tensor2d(xsData.slice(i * 6, i * 6 + 6), [1, 6]);
        const y = tf.oneHot([label], 3);
        const { grads } = tf.variableGrads(() => loss(x, y), variables);
        return tf.concat(Object.values(grads).map((g) => g.reshape([-1])));
      }),
    );
    const exact = tf.tidy(() => {
      const G = tf.stack(perSample);
      const mean = tf.mean(G, 0);
      return tf.sum(tf.square(tf.sub(G, mean))).dataSync()[0] / (m - 1);
    });

    const stats = new TrainingStats(tf, { microBatches: 8 });
    let sum = 0;
    const rounds = 400;
    for (let r = 0; r < rounds; r++) {
      const order = Array.from({ length: m }, (_, i) => i).sort(() => random() - 0.5);
      const xs = tf.tensor2d(order.flatMap((i) => xsData.slice(i * 6, i * 6 + 6)), [m, 6]);
      const ys = tf.oneHot(order.map((i) => labels[i]), 3);
      const result = stats.gradients(loss, xs, ys, variables);
      sum += result.gradVariance;
      for (const g of Object.values(result.grads)) g.dispose();
      xs.dispose();
      ys.dispose();
    }
    const estimate = sum / rounds;
    assert.ok(Math.abs(estimate / exact - 1) < 0.1, `estimate ${estimate} vs exact ${exact}`);
  });

  it('measures update norms and exports model weights', async () => {
    await tf.setBackend('cpu');
    const model = tf.sequential({ layers: [tf.layers.dense({ units: 3, inputShape: [4], name: 'd' })] });
    const tensors = tensorsFromModel(model);
    assert.deepEqual(tensors.map((t) => [t.name, t.shape]), [['d/kernel', [4, 3]], ['d/bias', [3]]]);
    const v = tf.variable(tf.zeros([4]));
    const stats = new TrainingStats(tf);
    stats.snapshot([v]);
    v.assign(tf.tensor1d([3, 4, 0, 0]));
    assert.ok(Math.abs(stats.updateNorm([v]) - 5) < 1e-6);
  });
});
