/**
 * Does the generalization estimate (docs/architecture.md §7) rank and track the true gap? Real MNIST runs with tfjs
 * (scripts/lib/mnist-train.ts) over learning rate × symmetric label noise, each run's metric points logged
 * through the SDK to a gateway (started on embedded defaults in a temporary directory, or --url), and the
 * estimate read back from GET /v1/runs/{run}/estimate and /estimate/history. The embedded gateway runs with
 * access control on (TRAJGATE_AUTH=tokens, a random bootstrap admin token); the runs are logged and read
 * with a writer token scoped to this evaluation's run ids. With --url, calls use --token or $TRAJGATE_TOKEN.
 *
 *   npx tsx scripts/eval-estimate.ts --quick   12 runs (4 lr × 3 noise), 1000 steps: about a minute on 2 cores
 *   npx tsx scripts/eval-estimate.ts           32 runs (4 lr × 4 noise × 2 seeds), 1250 steps (40 epochs): ~4 minutes
 *   npx tsx scripts/eval-estimate.ts [--quick] --url http://localhost:8080 [--token tg_...]
 *
 * Protocol (fixed before looking at results, after research/estimate-reference.md):
 * - MLP 784-64-10, plain SGD, batch 32, constant lr; n = 1000 training digits, 3000 held out (never
 *   trained on); held-out labels get the same symmetric noise as the training labels, so the true gap
 *   is held-out loss − training-set loss against the distribution the training set was drawn from.
 * - Evaluation every 50 steps: observed gap = valLoss − extra.trainEvalLoss (whole training set).
 * - gapIncrement every 5 steps; measuredGap uses extra.gapIncrementFresh (∇F_train from an independent
 *   training batch: unbiased), see the accumulator's notes; the raw client value is printed as well.
 * - Across runs: Kendall τ-b between each quantity at the end and the true final gap.
 * - Calibrated forecast: the estimate at the last step with calibration restricted to the evaluation
 *   points from the first 60% of training (least squares through the origin of gap on the indicator),
 *   i.e. a forecast of the end from the past; relative error |forecast − true| / |true|.
 * - Within a run: τ over the evaluation points between the indicator (and the calibrated estimate as it
 *   stood at each point, from estimateHistory) and the observed gap; mean over runs.
 * - Baselines: distance from initialisation ||w_T − w_0|| / sqrt(n), and − final training loss.
 */
import { trainMnist, type TrainMnistOptions } from './lib/mnist-train.js';
import { parseArgs } from 'node:util';
import { TrajgateClient } from '@trajgate/sdk';
import { startEmbeddedGateway } from './lib/embedded-gateway.js';
import type { TensorData } from '@trajgate/sdk/wire/safetensors';

const { values: args } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, url: { type: 'string' }, token: { type: 'string' } },
});
const quick = args.quick;
/** Every run id starts with it: the writer token's scope, and no clash with an earlier evaluation's runs. */
const runPrefix = `eval-${Date.now().toString(36)}-`;
const config = quick
  ? { lrs: [0.01, 0.03, 0.1, 0.3], noises: [0, 0.2, 0.4], seeds: [1], steps: 1000 }
  : { lrs: [0.01, 0.03, 0.1, 0.3], noises: [0, 0.2, 0.4, 0.6], seeds: [1, 2], steps: 1250 };
const n = 1000;
const CALIBRATION_FRACTION = 0.6;

interface RunOutcome {
  lr: number;
  noise: number;
  seed: number;
  trueGap: number;
  indicator: number;
  expectedIncrement: number;
  measuredGap: number;
  measuredGapUncorrected: number;
  forecast: number | null;
  forecastLow: number | null;
  forecastHigh: number | null;
  calibratedAll: number | null;
  distanceFromInit: number;
  finalTrainLoss: number;
  withinIndicator: number | null;
  withinCalibrated: number | null;
  secondOrderRatio: number | null;
  warnings: string[];
}

/** Kendall τ-b (ties in either variable handled); null when undefined. */
function kendall(x: readonly number[], y: readonly number[]): number | null {
  let concordant = 0;
  let discordant = 0;
  let tiesX = 0;
  let tiesY = 0;
  for (let i = 0; i < x.length; i++) {
    for (let j = i + 1; j < x.length; j++) {
      const a = Math.sign(x[i] - x[j]);
      const b = Math.sign(y[i] - y[j]);
      if (a === 0 && b === 0) continue;
      if (a === 0) tiesX++;
      else if (b === 0) tiesY++;
      else if (a === b) concordant++;
      else discordant++;
    }
  }
  const denom = Math.sqrt((concordant + discordant + tiesX) * (concordant + discordant + tiesY));
  return denom > 0 ? (concordant - discordant) / denom : null;
}

function flatWeights(tensors: readonly TensorData[]): Float64Array {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : 1));
  const parts = sorted.map((t) => new Float32Array(t.data.slice().buffer));
  const out = new Float64Array(parts.reduce((acc, p) => acc + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

async function runOne(lr: number, noise: number, seed: number): Promise<RunOutcome> {
  const options: TrainMnistOptions = {
    hidden: [64],
    schedule: 'constant',
    baseLr: lr,
    batchSize: 32,
    steps: config.steps,
    trainSize: n,
    heldOutSize: 3000,
    labelNoise: noise,
    seed,
    checkpointEvery: config.steps,
    evalEvery: 50,
    gapEvery: 5,
  };
  const runId = `${runPrefix}lr${lr}-noise${noise}-seed${seed}`;
  const run = gateway.client.run(runId, { run: { trainSize: n } });
  let w0: Float64Array | null = null;
  let distance = NaN;
  const result = await trainMnist(options, {
    onMetrics: (p) => run.log(p),
    onCheckpoint: (step, tensors) => {
      const w = flatWeights(tensors);
      if (step === 0) w0 = w;
      else if (w0) {
        let sq = 0;
        for (let i = 0; i < w.length; i++) sq += (w[i] - w0[i]) ** 2;
        distance = Math.sqrt(sq);
      }
    },
  });
  await run.close();
  const final = await gateway.client.getEstimate(runId);
  const forecast = await gateway.client.getEstimate(runId, {
    calibrateUntilStep: Math.floor(CALIBRATION_FRACTION * config.steps),
  });
  const history = (await gateway.client.getEstimateHistory(runId)).filter((h) => h.observedGap !== null);
  const withIndicator = history.filter((h) => h.indicator !== null);
  const withGap = history.filter((h) => h.gap !== null);
  return {
    lr,
    noise,
    seed,
    trueGap: result.trueGap,
    indicator: final.indicator ?? NaN,
    expectedIncrement: final.expectedIncrement ?? NaN,
    measuredGap: final.measuredGap ?? NaN,
    measuredGapUncorrected: final.measuredGapUncorrected ?? NaN,
    forecast: forecast.gap?.estimate ?? null,
    forecastLow: forecast.gap?.low ?? null,
    forecastHigh: forecast.gap?.high ?? null,
    calibratedAll: final.gap?.estimate ?? null,
    distanceFromInit: distance,
    finalTrainLoss: result.finalTrainLoss,
    withinIndicator: kendall(
      withIndicator.map((h) => h.indicator as number),
      withIndicator.map((h) => h.observedGap as number),
    ),
    withinCalibrated: kendall(
      withGap.map((h) => (h.gap as { estimate: number }).estimate),
      withGap.map((h) => h.observedGap as number),
    ),
    secondOrderRatio: final.secondOrderRatio ?? null,
    warnings: final.warnings.map((w) => w.code),
  };
}

const fmt = (v: number | null, digits = 3): string => (v === null || Number.isNaN(v) ? '—' : v.toFixed(digits));
const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The gateway: one of yours (--url), or embedded with access control on, used through a writer token. */
async function openGateway(): Promise<{ client: TrajgateClient; close(): Promise<void> }> {
  if (args.url) return { client: new TrajgateClient({ url: args.url, token: args.token }), close: async () => {} };
  const gateway = await startEmbeddedGateway('eval-estimate', [`${runPrefix}*`]);
  return gateway;
}
const gateway = await openGateway();

const started = performance.now();
const runs: RunOutcome[] = [];
console.log(
  `eval-estimate (${quick ? 'quick' : 'full'}): ${config.lrs.length * config.noises.length * config.seeds.length} runs, ${config.steps} steps each, n = ${n}`,
);
console.log(
  'lr     noise seed  trueGap  B_T      E_T     measured  rawGapInc  forecast [95%]            dist/√n  trainLoss  τ_in(B)  SO/B   warnings',
);
for (const seed of config.seeds) {
  for (const noise of config.noises) {
    for (const lr of config.lrs) {
      const r = await runOne(lr, noise, seed);
      runs.push(r);
      console.log(
        [
          r.lr.toFixed(2).padEnd(6),
          r.noise.toFixed(1).padEnd(5),
          String(r.seed).padEnd(5),
          fmt(r.trueGap).padEnd(8),
          fmt(r.indicator, 2).padEnd(8),
          fmt(r.expectedIncrement).padEnd(7),
          fmt(r.measuredGap).padEnd(9),
          fmt(r.measuredGapUncorrected, 1).padEnd(10),
          `${fmt(r.forecast)} [${fmt(r.forecastLow)}, ${fmt(r.forecastHigh)}]`.padEnd(25),
          fmt(r.distanceFromInit / Math.sqrt(n)).padEnd(8),
          fmt(r.finalTrainLoss).padEnd(10),
          fmt(r.withinIndicator).padEnd(8),
          fmt(r.secondOrderRatio, 2).padEnd(6),
          r.warnings.join(',') || '-',
        ].join(' '),
      );
    }
  }
}

const truth = runs.map((r) => r.trueGap);
const tau = (values: number[]): string => fmt(kendall(values, truth));
const withForecast = runs.filter((r) => r.forecast !== null);
const relErrors = withForecast.map((r) => Math.abs((r.forecast as number) - r.trueGap) / Math.abs(r.trueGap));
const inside = withForecast.filter(
  (r) => r.trueGap >= (r.forecastLow as number) && r.trueGap <= (r.forecastHigh as number),
).length;
const within = (xs: (number | null)[]): string => {
  const v = xs.filter((x): x is number => x !== null);
  return v.length ? `${fmt(mean(v))} (min ${fmt(Math.min(...v))}, ${v.length} runs)` : '—';
};

console.log('');
console.log(`Kendall τ-b across ${runs.length} runs with the true final gap:`);
console.log(`  indicator B_T (uncalibrated)                    ${tau(runs.map((r) => r.indicator))}`);
console.log(`  expected increment E_T                          ${tau(runs.map((r) => r.expectedIncrement))}`);
console.log(`  measured decomposition (gapIncrementFresh)      ${tau(runs.map((r) => r.measuredGap))}`);
console.log(`  raw client gapIncrement sum (self-fit biased)   ${tau(runs.map((r) => r.measuredGapUncorrected))}`);
console.log(
  `  calibrated forecast (fit on first 60%)          ${fmt(
    kendall(
      withForecast.map((r) => r.forecast as number),
      withForecast.map((r) => r.trueGap),
    ),
  )}`,
);
console.log(`  calibrated on all evaluation points             ${tau(runs.map((r) => r.calibratedAll ?? NaN))}`);
console.log(
  `  baseline: distance from init / sqrt(n)          ${tau(runs.map((r) => r.distanceFromInit / Math.sqrt(n)))}`,
);
console.log(`  baseline: − final training loss                 ${tau(runs.map((r) => -r.finalTrainLoss))}`);
console.log(
  `Within-run τ over evaluation points, mean: indicator ${within(runs.map((r) => r.withinIndicator))}; calibrated ${within(runs.map((r) => r.withinCalibrated))}`,
);
console.log(
  `Calibrated forecast of the final gap from the first ${CALIBRATION_FRACTION * 100}%: median relative error ${fmt(100 * median(relErrors), 1)}%, ` +
    `max ${fmt(100 * Math.max(...relErrors), 1)}%, true gap inside the 95% interval ${inside}/${withForecast.length}`,
);
const ratios = runs.map((r) => r.trueGap / r.indicator);
console.log(`true gap / B_T at the end: ${fmt(Math.min(...ratios), 4)} – ${fmt(Math.max(...ratios), 4)}`);
console.log(`wall ${((performance.now() - started) / 1000).toFixed(0)} s`);
await gateway.close();
