/**
 * The estimate's read path for a run with 1,000,000 metric points (docs/architecture.md §7: reading must not rescan
 * the run). Prints the time to fold 1M points (batches of 1000, as the metrics endpoint receives them),
 * the latency of currentEstimate from the maintained state (p50/p99/max over many reads), and the size
 * and round-trip cost of the persisted state.
 *
 *   npx tsx scripts/bench-estimate.ts [--points 1000000] [--reads 5000]
 */
import type { MetricPoint } from '../src/model/records.js';
import { EstimateAccumulator } from '../src/estimate/accumulator.js';
import { currentEstimate } from '../src/estimate/estimate.js';
import { estimateHistory } from '../src/estimate/history.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const total = arg('--points', 1_000_000);
const reads = arg('--reads', 5000);
const BATCH = 1000;
const trainSize = 50_000;

/** One SDK-like point per step: lr, loss, norms, tr Σ; gap increments every 10 steps, evaluation every 1000. */
function point(step: number): MetricPoint {
  const p: MetricPoint = {
    step,
    lr: 0.1 * (1 + Math.cos((Math.PI * step) / total)) * 0.5 + 1e-4,
    batchSize: 64,
    trainLoss: 2 / (1 + step / 1e4) + 0.05 * Math.sin(step),
    gradNorm: 1 + 0.3 * Math.sin(step / 7),
    gradVariance: 40 + 10 * Math.cos(step / 13),
  };
  if (step % 10 === 0) {
    p.gapIncrement = 1e-4 * Math.sin(step);
    p.extra = { gapIncrementFresh: 1e-5 * Math.cos(step) };
  }
  if (step % 1000 === 0) {
    p.valLoss = 2 / (1 + step / 2e4);
    p.extra = { ...p.extra, trainEvalLoss: 2 / (1 + step / 1e4) };
  }
  return p;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const acc = EstimateAccumulator.create();
const batches: MetricPoint[][] = [];
for (let s = 1; s <= total; s += BATCH)
  batches.push(Array.from({ length: Math.min(BATCH, total - s + 1) }, (_, i) => point(s + i)));

let t0 = performance.now();
for (const b of batches) acc.add(b);
const addMs = performance.now() - t0;
batches.length = 0; // the gateway does not keep the points in memory either

const phases = [
  { name: 'early', fromStep: 0, toStep: total / 4 },
  { name: 'mid', fromStep: total / 4, toStep: (3 * total) / 4 },
  { name: 'late', fromStep: (3 * total) / 4, toStep: total },
];
const latencies: number[] = [];
let sink = 0;
for (let i = 0; i < reads; i++) {
  const start = performance.now();
  const e = currentEstimate(acc, { trainSize, phases });
  latencies.push(performance.now() - start);
  sink += e.indicator ?? 0;
}
latencies.sort((a, b) => a - b);

t0 = performance.now();
const json = JSON.stringify(acc.toJSON());
const serializeMs = performance.now() - t0;
t0 = performance.now();
const restored = EstimateAccumulator.fromJSON(JSON.parse(json));
const restoreMs = performance.now() - t0;
t0 = performance.now();
const history = estimateHistory(restored, { trainSize });
const historyMs = performance.now() - t0;
const e = currentEstimate(acc, { trainSize, phases });

console.log(`points ${total.toLocaleString('en')} in batches of ${BATCH}; node ${process.version}`);
console.log(`add: ${addMs.toFixed(0)} ms total, ${((addMs * 1e3) / total).toFixed(2)} µs/point`);
console.log(
  `currentEstimate (3 phases) over ${reads} reads: p50 ${quantile(latencies, 0.5).toFixed(3)} ms, p99 ${quantile(latencies, 0.99).toFixed(3)} ms, max ${latencies[latencies.length - 1].toFixed(3)} ms`,
);
console.log(
  `state: ${(json.length / 1024).toFixed(0)} KiB JSON; toJSON+stringify ${serializeMs.toFixed(1)} ms; parse+fromJSON ${restoreMs.toFixed(1)} ms`,
);
console.log(`estimateHistory: ${history.length} entries in ${historyMs.toFixed(1)} ms`);
console.log(
  `check: step ${e.step}, indicator ${e.indicator?.toFixed(3)}, calibrated ${e.calibrated}, warnings [${e.warnings.map((w) => w.code).join(', ')}] (${sink > 0 ? 'ok' : '?'})`,
);
