import { existsSync } from 'node:fs';
import type { MetricPoint, TrajgateClient } from '@trajgate/sdk';
import { type Browser, chromium } from 'playwright-core';
import { mulberry32 } from './mnist-data.js';

/**
 * What the run page's test, benchmark and screenshot share: Debian's chromium, started the one way this
 * closed network allows (never a browser download), and a synthetic training run to look at.
 */

export const CHROMIUM = process.env.TRAJGATE_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Headless chromium with nothing that reaches out to the network on its own. Playwright gives every launch
 * a fresh profile directory (its own --user-data-dir) and removes it on close.
 */
export function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `no browser at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium) or set TRAJGATE_CHROMIUM`,
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

export interface SyntheticRunShape {
  /** Optimizer steps, one metric point each. */
  steps: number;
  /** A checkpoint every this many steps (the first at step `checkpointEvery`). */
  checkpointEvery: number;
  /** A validation loss every this many steps. */
  evalEvery: number;
  /** Weights per checkpoint (one F32 tensor). */
  params: number;
  seed: number;
}

/**
 * Learning rate: cosine decay from 0.1 over the first 60% of the run, then a restart to 0.1 decaying again
 * (the restart is the change the trajectory should flag).
 */
function learningRate(step: number, steps: number): number {
  const restart = Math.floor(0.6 * steps);
  const [from, length] = step < restart ? [0, restart] : [restart, steps - restart];
  return 0.001 + 0.099 * 0.5 * (1 + Math.cos((Math.PI * (step - from)) / length));
}

/**
 * Creates `run` (plannedSteps, trainSize) and sends its metrics and checkpoints as a training job would: the
 * weights take a noisy step of size ∝ learning rate each step; losses fall, the validation loss drifts above
 * the training loss. Returns the metric points sent.
 */
export async function sendSyntheticRun(
  client: TrajgateClient,
  run: string,
  shape: SyntheticRunShape,
  onProgress?: (step: number) => void,
): Promise<MetricPoint[]> {
  const rand = mulberry32(shape.seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  await client.putRun(run, { plannedSteps: shape.steps, trainSize: 2000 });
  const w = Float32Array.from({ length: shape.params }, () => gauss() * 0.1);
  const drift = Float32Array.from({ length: shape.params }, () => gauss());
  const sent: MetricPoint[] = [];
  let batch: MetricPoint[] = [];
  const flush = async () => {
    if (batch.length) await client.logMetrics(run, batch);
    batch = [];
  };
  for (let step = 1; step <= shape.steps; step++) {
    const lr = learningRate(step, shape.steps);
    let update = 0;
    for (let i = 0; i < w.length; i++) {
      const d = lr * (0.05 * drift[i] + gauss());
      w[i] += d;
      update += d * d;
    }
    const progress = step / shape.steps;
    const trainLoss = 0.15 + 2.2 * Math.exp(-5 * progress) + 0.3 * lr + 0.03 * gauss();
    const point: MetricPoint = {
      step,
      trainLoss,
      lr,
      batchSize: 32,
      gradNorm: 1 + 0.1 * Math.abs(gauss()),
      gradVariance: 40 * (1 + 0.1 * Math.abs(gauss())),
      updateNorm: Math.sqrt(update),
    };
    if (step % shape.evalEvery === 0) {
      const trainEvalLoss = 0.15 + 2.2 * Math.exp(-5 * progress);
      point.valLoss = trainEvalLoss + 0.05 + 0.25 * progress + 0.01 * gauss();
      point.extra = { trainEvalLoss };
    }
    batch.push(point);
    sent.push(point);
    if (step % shape.checkpointEvery === 0) {
      await flush();
      const tensor = { name: 'w', dtype: 'F32' as const, shape: [w.length], data: new Uint8Array(w.slice().buffer) };
      await client.uploadCheckpoint(run, step, [tensor]);
      onProgress?.(step);
    }
  }
  await flush();
  return sent;
}
