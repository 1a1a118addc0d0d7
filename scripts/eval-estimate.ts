/**
 * Does the generalization estimate (docs/architecture.md §7) rank and track the true gap? Real MNIST runs with tfjs
 * (scripts/lib/mnist-train.ts) in two families (scripts/lib/estimate-runs.ts): A, learning rate × label
 * noise at batch 32, n = 1000, width 64, SGD; B, held out from the indicator's design, varying batch size
 * (16–128), training-set size (500–2000), width (32–128), learning rate, noise, and SGD or Adam. Each run's
 * metric points are logged through the SDK to a gateway (embedded on defaults in a temporary directory, or
 * --url) twice: "live" (evaluation points in the training stream) and "late" (training points first, then
 * the 20 evaluation points after training, in shuffled order, as an asynchronous evaluator posts them). The
 * embedded gateway runs with access control on (a writer token scoped to this evaluation's run ids).
 *
 *   npx tsx scripts/eval-estimate.ts --quick   A: 12 runs (4 lr × 3 noise), 1000 steps; B: 8 runs, 800 steps
 *   npx tsx scripts/eval-estimate.ts           A: 32 runs (4 lr × 4 noise × 2 seeds), 1200 steps; B: 16 runs, 1000 steps
 *   --cache DIR   keep trained runs (points and truth) in DIR and reuse them on the next evaluation
 *   --url http://localhost:8080 [--token tg_...]
 *
 * Protocol (fixed before looking at results, after research/estimate-reference.md):
 * - MLP 784-w-10, constant lr; held-out digits (3000, never trained on) get the same symmetric label noise
 *   as the training labels, so the true gap is held-out loss − training-set loss at the end.
 * - Evaluation every steps/20: observed gap = valLoss − extra.trainEvalLoss (whole training set).
 * - Across runs, per family: Kendall τ-b between each indicator at the end and the true final gap.
 * - Forecast: the estimate at the last step with calibration restricted to the evaluation points from the
 *   first 60% of training; relative error |forecast − true| / |true|; live and late runs.
 * - Within a run: τ over the evaluation points between the served indicator (from /estimate/history) and
 *   the observed gap; mean over runs.
 * - Siblings, leave-one-out per family: each run's gap from the other runs' own calibration scales
 *   (calibration.scale of their estimates, pooled as the gateway pools a calibration group: siblingGap in
 *   src/estimate/estimate.ts) times its served indicator; error and whether the true gap is in the interval.
 */
import { parseArgs } from 'node:util';
import { TrajgateClient } from '@trajgate/sdk';
import type { Estimate, MetricPoint } from '@trajgate/sdk/contract';
import { siblingGap, poolScales } from '../src/estimate/estimate.js';
import { startEmbeddedGateway } from './lib/embedded-gateway.js';
import { familyA, familyB, specName, trainOrLoad, type RunSpec, type TrainedRun } from './lib/estimate-runs.js';
import { mulberry32 } from './lib/mnist-data.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    url: { type: 'string' },
    token: { type: 'string' },
    cache: { type: 'string' },
  },
});
const quick = args.quick;
/** Every run id starts with it: the writer token's scope, and no clash with an earlier evaluation's runs. */
const runPrefix = `eval-${Date.now().toString(36)}-`;
const CALIBRATION_FRACTION = 0.6;
const CANDIDATES = ['indicator', 'expectedIncrement', 'effectiveIncrement', 'noiseCorrectedIndicator'] as const;
type Candidate = (typeof CANDIDATES)[number];

interface RunOutcome {
  trained: TrainedRun;
  live: Estimate;
  late: Estimate;
  forecastLive: Estimate;
  forecastLate: Estimate;
  within: number | null;
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

const fmt = (v: number | null | undefined, digits = 3): string =>
  v === null || v === undefined || Number.isNaN(v) ? '—' : v.toFixed(digits);
const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const relError = (estimate: number | undefined, truth: number): number =>
  estimate === undefined ? Number.NaN : Math.abs(estimate - truth) / Math.abs(truth);

/** The gateway: one of yours (--url), or embedded with access control on, used through a writer token. */
async function openGateway(): Promise<{ client: TrajgateClient; close(): Promise<void> }> {
  if (args.url) return { client: new TrajgateClient({ url: args.url, token: args.token }), close: async () => {} };
  return startEmbeddedGateway('eval-estimate', [`${runPrefix}*`]);
}
const gateway = await openGateway();

/** Logs the run's points: all in training order (live), or training fields first and the evaluations after, shuffled. */
async function logRun(id: string, spec: RunSpec, points: readonly MetricPoint[], mode: 'live' | 'late'): Promise<void> {
  const run = gateway.client.run(id, { run: { trainSize: spec.trainSize } });
  if (mode === 'live') for (const p of points) await run.log(p);
  else {
    const evals: MetricPoint[] = [];
    for (const p of points) {
      const { valLoss, extra, ...training } = p;
      if (valLoss === undefined) {
        await run.log(p);
        continue;
      }
      const { trainEvalLoss, ...otherExtra } = extra ?? {};
      await run.log({ ...training, extra: otherExtra });
      evals.push({ step: p.step, valLoss, extra: trainEvalLoss === undefined ? {} : { trainEvalLoss } });
    }
    await run.flush();
    const rand = mulberry32(spec.steps + spec.trainSize);
    for (let k = evals.length - 1; k > 0; k--) {
      const j = Math.floor(rand() * (k + 1));
      [evals[k], evals[j]] = [evals[j], evals[k]];
    }
    for (const p of evals) await run.log(p);
  }
  await run.close();
}

async function evaluateRun(trained: TrainedRun): Promise<RunOutcome> {
  const { spec } = trained;
  const points = trained.points.map((p) => ({
    ...p,
    extra: p.extra ? Object.fromEntries(Object.entries(p.extra).filter(([, v]) => v !== undefined)) : undefined,
  })) as MetricPoint[];
  const ids = { live: `${runPrefix}${specName(spec)}-live`, late: `${runPrefix}${specName(spec)}-late` };
  await logRun(ids.live, spec, points, 'live');
  await logRun(ids.late, spec, points, 'late');
  const until = { calibrateUntilStep: Math.floor(CALIBRATION_FRACTION * spec.steps) };
  const history = (await gateway.client.getEstimateHistory(ids.live)).filter(
    (h) => h.observedGap !== null && h.served !== null,
  );
  return {
    trained,
    live: await gateway.client.getEstimate(ids.live),
    late: await gateway.client.getEstimate(ids.late),
    forecastLive: await gateway.client.getEstimate(ids.live, until),
    forecastLate: await gateway.client.getEstimate(ids.late, until),
    within: kendall(
      history.map((h) => h.served as number),
      history.map((h) => h.observedGap as number),
    ),
  };
}

const started = performance.now();
const families: [string, RunSpec[]][] = [
  ['A', familyA(quick)],
  ['B', familyB(quick)],
];
const served: string[] = [];
console.log(`eval-estimate (${quick ? 'quick' : 'full'})`);
for (const [family, specs] of families) {
  console.log(`\nfamily ${family}: ${specs.length} runs`);
  console.log(
    'opt  lr      noise batch n     width trueGap  B_T     E_T     E_eff   B_nc    forecast live [95%]       late     τ_in  warnings',
  );
  const runs: RunOutcome[] = [];
  for (const spec of specs) {
    const r = await evaluateRun(await trainOrLoad(spec, args.cache));
    runs.push(r);
    const s = r.trained.spec;
    console.log(
      [
        s.optimizer.padEnd(4),
        String(s.lr).padEnd(7),
        s.noise.toFixed(1).padEnd(5),
        String(s.batchSize).padEnd(5),
        String(s.trainSize).padEnd(5),
        String(s.width).padEnd(5),
        fmt(r.trained.trueGap).padEnd(8),
        ...CANDIDATES.map((c) => fmt(r.live[c], 3).padEnd(7)),
        `${fmt(r.forecastLive.gap?.estimate)} [${fmt(r.forecastLive.gap?.low)}, ${fmt(r.forecastLive.gap?.high)}]`.padEnd(
          25,
        ),
        fmt(r.forecastLate.gap?.estimate).padEnd(8),
        fmt(r.within).padEnd(5),
        r.late.warnings.map((w) => w.code).join(',') || '-',
      ].join(' '),
    );
  }
  const truth = runs.map((r) => r.trained.trueGap);
  const tau = (c: Candidate): number | null =>
    kendall(
      runs.map((r) => r.live[c] ?? Number.NaN),
      truth,
    );
  console.log(`Kendall τ-b with the true final gap across the ${runs.length} runs of family ${family}:`);
  for (const c of CANDIDATES) console.log(`  ${c.padEnd(24)} ${fmt(tau(c))}`);
  console.log(
    `  measuredGap              ${fmt(
      kendall(
        runs.map((r) => r.live.measuredGap ?? Number.NaN),
        truth,
      ),
    )}`,
  );
  const dist = runs.map((r) => r.trained.distanceFromInit / Math.sqrt(r.trained.spec.trainSize));
  console.log(`  baseline ‖w_T − w_0‖/√n  ${fmt(kendall(dist, truth))}`);
  console.log(
    `  baseline −trainLoss      ${fmt(
      kendall(
        runs.map((r) => -r.trained.finalTrainLoss),
        truth,
      ),
    )}`,
  );
  const name = runs[0].live.served.name;
  served.push(`${family}: ${name} τ ${fmt(tau(name))}`);
  const same = runs.filter((r) => JSON.stringify(r.forecastLive.gap) === JSON.stringify(r.forecastLate.gap)).length;
  for (const mode of ['live', 'late'] as const) {
    const errs = runs.map((r) =>
      relError((mode === 'live' ? r.forecastLive : r.forecastLate).gap?.estimate, r.trained.trueGap),
    );
    const ok = errs.filter((e) => !Number.isNaN(e));
    console.log(
      `Forecast from the first ${CALIBRATION_FRACTION * 100}% (${mode} evaluations): available ${ok.length}/${runs.length}, median relative error ${fmt(100 * median(ok), 1)}%, max ${fmt(100 * Math.max(...ok), 1)}%`,
    );
  }
  console.log(
    `Live and late runs with identical forecasts: ${same}/${runs.length}; late points reported: ${runs.reduce((a, r) => a + r.late.counts.latePoints, 0)}`,
  );
  const within = runs.map((r) => r.within).filter((x): x is number => x !== null);
  console.log(
    `Within-run τ (served indicator vs observed gap): mean ${fmt(mean(within))}, min ${fmt(Math.min(...within))}`,
  );
  const scales = runs.map((r) => r.live.calibration?.scale ?? Number.NaN);
  const loo: number[] = [];
  let inside = 0;
  runs.forEach((r, i) => {
    const gap = siblingGap(poolScales(scales.filter((_, j) => j !== i)), r.live.served.value ?? Number.NaN);
    if (!gap) return;
    loo.push(relError(gap.estimate, r.trained.trueGap));
    if (r.trained.trueGap >= gap.low && r.trained.trueGap <= gap.high) inside++;
  });
  console.log(
    `Siblings leave-one-out: median relative error ${fmt(100 * median(loo), 1)}%, max ${fmt(100 * Math.max(...loo), 1)}%, true gap inside the interval ${inside}/${runs.length}; scales ${fmt(Math.min(...scales))}–${fmt(Math.max(...scales))}`,
  );
}
console.log(`\nserved indicator: ${served.join('; ')}`);
console.log(`wall ${((performance.now() - started) / 1000).toFixed(0)} s`);
await gateway.close();
