/**
 * Retention quality: trajgate's default policy against the rules users have today, at the same budget
 * (number of kept checkpoints), on recorded trajectories: synthetic ones with injected events (a learning-
 * rate restart, a loss spike, a plateau) and real tfjs MNIST runs (cosine schedule with a warm restart and
 * a burst of random labels). Coverage uses exact weight-space distances from the raw weights: for every
 * uploaded checkpoint, the distance to its nearest kept one, as a fraction of the run's path length (sum of
 * distances between successive checkpoints); mean and max. Event recall: an event counts as caught when a
 * kept checkpoint is within one checkpoint of it. Phases: how many of trajgate's three phases (its own
 * assignment, the same for every rule) have a kept checkpoint.
 *
 * trajgate is measured twice (scripts/lib/retention-eval.ts): offline, the engine applied once to the
 * complete run; online, what the gateway does — a decision after every upload on the run so far, discarded
 * bytes deleted once their grace period (--grace, default 0) has passed while the run goes on, so that a
 * checkpoint deleted early can never be kept (scripts/lib/retention-replay.ts). The online row's "peak
 * stored" is the most checkpoints whose bytes were stored at once (kept and held back). "×ref" divides
 * by the better of uniform thinning and every N steps (means over runs); the targets are printed last.
 * "every N steps" uses the finest grid (a multiple of the checkpoint interval) that fits the budget; the
 * other rules keep exactly the budget. The "(path-only model)" row is the offline decision without
 * sketches, i.e. what runs longer than SKETCH_COVERAGE_MAX_CHECKPOINTS get.
 *
 *   npx tsx scripts/eval-retention.ts [--quick] [--budgets 6,10,15] [--grace 0] [--interval 60]
 */
import { parseArgs } from 'node:util';
import { evaluateRuns, printBudget, printRunRatios, printTargets, type BudgetResult } from './lib/retention-eval.js';
import { mnistRun, syntheticRun, type RecordedRun } from './lib/retention-runs.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    budgets: { type: 'string', default: '6,10,15' },
    grace: { type: 'string', default: '0' },
    interval: { type: 'string', default: '60' },
  },
});
const options = {
  budgets: values.budgets.split(',').map(Number),
  graceSeconds: Number(values.grace),
  uploadIntervalSeconds: Number(values.interval),
};
if (options.budgets.some((b) => !Number.isInteger(b) || b < 2) || !(options.graceSeconds >= 0)) {
  console.error('--budgets takes whole numbers ≥ 2, --grace a number of seconds ≥ 0');
  process.exit(2);
}

function report(title: string, runs: RecordedRun[]): BudgetResult[] {
  const results = evaluateRuns(runs, options);
  for (const result of results) {
    printBudget(title, result, runs[0].steps.length);
    printRunRatios(result);
  }
  return results;
}

async function main(): Promise<void> {
  const seeds = values.quick ? [1, 2] : [1, 2, 3];
  const mnistSteps = values.quick ? 600 : 1200;
  const started = performance.now();
  console.log(
    `online replay: a decision after every upload, one upload every ${options.uploadIntervalSeconds} s, graceSeconds ${options.graceSeconds}, the collector before every upload`,
  );
  const synthetic = report(
    `synthetic trajectories (${seeds.length} seeds, restart + loss spike + plateau)`,
    seeds.map((s) => syntheticRun(s)),
  );
  const real: RecordedRun[] = [];
  for (const seed of seeds) real.push(await mnistRun(seed, mnistSteps));
  const mnist = report(
    `real tfjs MNIST runs (${seeds.length} seeds, 784-64-10, ${mnistSteps} steps, cosine restart at 60%, random-label burst at 35%)`,
    real,
  );
  printTargets([
    { name: 'synthetic', results: synthetic },
    { name: 'MNIST', results: mnist },
  ]);
  console.log(`\nwall time ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
