import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { computeIndicators } from '../src/trajectory/run-indicators.js';
import { distance, tensorDistances } from '../src/trajectory/sketch-distance.js';
import type { Dtype } from '@trajgate/sdk/wire/dtypes';
import {
  exactDistance,
  gaussian,
  quantile,
  rng,
  summariseChunked,
  tensor,
  type TestTensor,
} from './helpers/trajectory-fixtures.js';

/**
 * Sketch-estimated distances against exact float64 distances over the materialised weights: relative
 * error ≤ 5% at the 99th percentile with k = 8192 (expected rms ≈ sqrt(1/(2k)) ≈ 0.8%).
 */
interface Layer {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Update scale relative to the other layers. */
  speed: number;
}

const LAYERS: Layer[] = (
  [
    { name: 'embed.weight', dtype: 'BF16', shape: [50, 1024] },
    { name: 'block.0.attn.weight', dtype: 'F32', shape: [32, 4096] },
    { name: 'block.0.norm.weight', dtype: 'F32', shape: [1024] },
    { name: 'block.0.norm.bias', dtype: 'F32', shape: [48] },
    { name: 'head.weight', dtype: 'F16', shape: [10, 3000] },
  ] as const
).map((l, i) => ({ ...l, shape: [...l.shape], speed: i === 1 ? 4 : 1 }));

const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * A random walk of `checkpoints` weight vectors, each update `relative` × ||w_0|| in norm; with
 * `rankOne`, every update of a matrix is an outer product u vᵀ (the hash's hardest case).
 */
function walk(
  seed: number,
  checkpoints: number,
  relative: number,
  options: { f64?: boolean; rankOne?: boolean } = {},
): TestTensor[][] {
  const random = rng(seed);
  const normal = gaussian(random);
  const layers = LAYERS.map((l) => ({ ...l, dtype: options.f64 ? ('F64' as const) : l.dtype }));
  let current = layers.map((l) =>
    tensor(
      l.name,
      l.dtype,
      Array.from({ length: count(l.shape) }, () => 0.05 * normal()),
      l.shape,
    ),
  );
  const w0 = Math.sqrt(current.reduce((s, t) => s + t.held.reduce((a, v) => a + v * v, 0), 0));
  const out = [current];
  for (let c = 1; c < checkpoints; c++) {
    const deltas = layers.map((l) => {
      if (options.rankOne && l.shape.length === 2) {
        const [rows, cols] = l.shape;
        const u = Array.from({ length: rows }, normal);
        const v = Array.from({ length: cols }, normal);
        return Float64Array.from({ length: rows * cols }, (_, i) => l.speed * u[Math.floor(i / cols)] * v[i % cols]);
      }
      return Float64Array.from({ length: count(l.shape) }, () => l.speed * normal());
    });
    const norm = Math.sqrt(deltas.reduce((s, d) => s + d.reduce((a, v) => a + v * v, 0), 0));
    const scale = (relative * w0) / norm;
    current = current.map((t, i) =>
      tensor(
        t.name,
        t.dtype,
        Float64Array.from(t.held, (v, j) => v + scale * deltas[i][j]),
        t.shape,
      ),
    );
    out.push(current);
  }
  return out;
}

const flat = (w: TestTensor[]) => {
  const out = new Float64Array(w.reduce((s, t) => s + t.held.length, 0));
  let o = 0;
  for (const t of w) {
    out.set(t.held, o);
    o += t.held.length;
  }
  return out;
};

function errors(
  trajectory: TestTensor[][],
  seed: number,
): { whole: number[]; perTensor: number[]; topIsFastest: boolean[] } {
  const random = rng(seed);
  const summaries = trajectory.map((w, step) => summariseChunked(step * 100, w, random, { maxElements: 16384 }));
  const indicators = computeIndicators(summaries);
  const vectors = trajectory.map(flat);
  const whole: number[] = [];
  const perTensor: number[] = [];
  const topIsFastest: boolean[] = [];
  for (let c = 1; c < trajectory.length; c++) {
    whole.push(indicators[c].updateNorm! / exactDistance(vectors[c], vectors[c - 1]) - 1);
    whole.push(indicators[c].distanceFromStart / exactDistance(vectors[c], vectors[0]) - 1);
    whole.push(
      distance(summaries[c], summaries[Math.max(0, c - 2)]) / exactDistance(vectors[c], vectors[Math.max(0, c - 2)]) -
        1,
    );
    for (const t of tensorDistances(summaries[c], summaries[c - 1])) {
      const i = trajectory[c].findIndex((x) => x.name === t.name);
      perTensor.push(t.updateNorm / exactDistance(trajectory[c][i].held, trajectory[c - 1][i].held) - 1);
    }
    // Where one tensor clearly moved most (1.5x the next, exactly), topTensors must name it first.
    const exact = trajectory[c]
      .map((t, i) => ({ name: t.name, norm: exactDistance(t.held, trajectory[c - 1][i].held) }))
      .sort((a, b) => b.norm - a.norm);
    if (exact[0].norm > 1.5 * exact[1].norm) topIsFastest.push(indicators[c].topTensors[0].name === exact[0].name);
  }
  return { whole: whole.filter(Number.isFinite).map(Math.abs), perTensor: perTensor.map(Math.abs), topIsFastest };
}

describe('sketch-estimated distances (k = 8192)', () => {
  it('are within 5% at the 99th percentile over random trajectories, ||Δw|| from 1e-1 to 1e-6 of ||w||', (t) => {
    const whole: number[] = [];
    const perTensor: number[] = [];
    let seed = 100;
    for (const relative of [1e-1, 1e-3, 1e-6]) {
      for (let run = 0; run < 3; run++) {
        const e = errors(walk(seed++, 6, relative), seed);
        whole.push(...e.whole);
        perTensor.push(...e.perTensor);
        assert.ok(
          e.topIsFastest.length > 0 && e.topIsFastest.every(Boolean),
          'the tensor that moved most ranks first in topTensors',
        );
      }
    }
    t.diagnostic(
      `${whole.length} estimates: p50 ${quantile(whole, 0.5).toFixed(4)}, p99 ${quantile(whole, 0.99).toFixed(4)}; per-tensor p99 ${quantile(perTensor, 0.99).toFixed(3)}`,
    );
    assert.ok(whole.length >= 120, `${whole.length} estimates`);
    assert.ok(quantile(whole, 0.99) < 0.05, `p99 relative error ${quantile(whole, 0.99)}`);
    // Per-tensor sketches have 64 buckets (rms error ≈ 9%); tensors of ≤ 64 elements are exact.
    assert.ok(quantile(perTensor, 0.99) < 0.4, `per-tensor p99 ${quantile(perTensor, 0.99)}`);
  });

  it('hold at 1e-6 and 1e-9 of ||w|| on float64 weights: no cancellation in the bucket differences', (t) => {
    const all: number[] = [];
    for (const [seed, relative] of [
      [7, 1e-6],
      [8, 1e-9],
    ] as const)
      all.push(...errors(walk(seed, 5, relative, { f64: true }), seed).whole);
    t.diagnostic(`p99 ${quantile(all, 0.99).toFixed(4)}`);
    assert.ok(quantile(all, 0.99) < 0.05, `p99 ${quantile(all, 0.99)}`);
  });

  it('hold for rank-1 updates laid out in rows of 4096 and 1024 (the structured worst case of tabulation)', (t) => {
    const all: number[] = [];
    for (let seed = 20; seed < 24; seed++) all.push(...errors(walk(seed, 6, 1e-2, { rankOne: true }), seed).whole);
    const rms = Math.sqrt(all.reduce((s, e) => s + e * e, 0) / all.length);
    t.diagnostic(`rms ${rms.toFixed(4)}, p99 ${quantile(all, 0.99).toFixed(4)}`);
    assert.ok(quantile(all, 0.99) < 0.05, `p99 ${quantile(all, 0.99)}`);
    assert.ok(rms < 0.015, `rms ${rms} (a random hash gives ≈ 0.008)`);
  });
});
