import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { CheckpointAccumulator } from '../src/trajectory/accumulator.js';
import { loadTfjsKernels, tfjsKernels, type TfjsKernels } from '../src/trajectory/tfjs-backend.js';

const values = Float32Array.from({ length: 20_000 }, (_, i) => Math.sin(i * 0.37) * 0.3);

function compare(kernels: TfjsKernels): void {
  const acc = new CheckpointAccumulator();
  acc.begin([{ name: 'layer.weight', dtype: 'F32', shape: [values.length] }]);
  acc.update(0, 0, new Uint8Array(values.buffer));
  const reference = acc.finish(0);
  const stats = kernels.stats(values);
  const ts = reference.tensors[0];
  // tfjs sums in float32 on most backends: agreement to float32 rounding, not to 1e-9.
  for (const key of ['norm', 'mean', 'maxAbs'] as const)
    assert.ok(Math.abs(stats[key] - ts[key]) <= 1e-5 * Math.max(1, Math.abs(ts[key])), key);
  assert.deepEqual([stats.count, stats.nanCount, stats.infCount], [ts.count, 0, 0]);
  const sketch = kernels.sketch('layer.weight', values, 8192);
  let diff = 0;
  let size = 0;
  for (let b = 0; b < 8192; b++) {
    diff += (sketch[b] - reference.sketch[b]) ** 2;
    size += reference.sketch[b] ** 2;
  }
  assert.ok(Math.sqrt(diff / size) < 1e-6, 'same buckets and signs as the TS sketch');
}

describe('tfjs compute backend', () => {
  it('matches the TypeScript kernels on tfjs-node-gpu, where it loads', async (t) => {
    const loaded = await loadTfjsKernels();
    if (!loaded.available) {
      t.skip(`skipped: ${loaded.reason}`);
      return;
    }
    compare(loaded.kernels);
  });

  it('computes the same kernels with tfjs ops on the pure-JS backend', async () => {
    await tf.setBackend('cpu');
    compare(tfjsKernels(tf));
    const withNaN = Float32Array.from([1, Number.NaN, -2, Infinity]);
    assert.deepEqual(tfjsKernels(tf).stats(withNaN), {
      count: 4,
      norm: Math.sqrt(5),
      mean: -0.5,
      maxAbs: 2,
      nanCount: 1,
      infCount: 1,
    });
  });
});
