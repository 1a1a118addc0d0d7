/**
 * `npm run demo`: trains a small MLP on real MNIST digits with tfjs and sends a checkpoint every N steps
 * and metrics every step through the SDK to a gateway (one started on embedded defaults in a temporary
 * directory, or --url), then prints what the gateway kept and why, bytes kept versus uploaded, the
 * trajectory and the generalization estimate. It also trains the same model without the SDK first and
 * reports the SDK's overhead on the training loop.
 *
 * The embedded gateway runs with access control on (TRAJGATE_AUTH=tokens, a random bootstrap admin token):
 * the admin creates a writer token scoped to the demo's run and sets the run's policy (an operator's
 * action); training uploads, metrics and reads go with the writer token. With --url the gateway is yours,
 * and every call uses --token or $TRAJGATE_TOKEN (if it has access control on, the token must be an
 * operator's or admin's, to set the run's policy).
 *
 *   npm run demo -- [--url http://localhost:8080] [--token tg_...] [--steps 900] [--checkpoint-every 30] [--budget 8]
 */
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { formatTable } from '../src/cli/table.js';
import { TrajgateClient } from '@trajgate/sdk';
import { type EmbeddedGateway, startEmbeddedGateway } from './lib/embedded-gateway.js';
import { trainMnist, type TrainMnistOptions } from './lib/mnist-train.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    steps: { type: 'string', default: '900' },
    'checkpoint-every': { type: 'string', default: '30' },
    budget: { type: 'string', default: '8' },
  },
});
const steps = Number(values.steps);
const checkpointEvery = Number(values['checkpoint-every']);

const training: TrainMnistOptions = {
  hidden: [64],
  schedule: 'cosine-restart',
  restartAt: 0.6,
  baseLr: 0.1,
  batchSize: 32,
  steps,
  trainSize: 2000,
  heldOutSize: 1000,
  labelNoise: 0.1,
  seed: 7,
  checkpointEvery,
  evalEvery: checkpointEvery,
  gapEvery: 0,
};

function progress(label: string): cliProgress.SingleBar {
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] step {value}/{total} | loss {loss} | {rate} steps/s`,
      noTTYOutput: true,
      notTTYSchedule: 2000,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(steps, 0, { loss: '-', rate: '-' });
  return bar;
}

async function main(): Promise<void> {
  const started = performance.now();
  let gateway: EmbeddedGateway | null = null;
  const runId = `demo-${Date.now().toString(36)}`;
  // `client` trains and reads; `setup` sets the run's policy (an operator's action).
  let client: TrajgateClient;
  let setup: TrajgateClient;
  if (values.url) {
    client = setup = new TrajgateClient({ url: values.url, token: values.token });
  } else {
    gateway = await startEmbeddedGateway('demo', [runId]);
    client = gateway.client;
    setup = gateway.admin;
    console.log(
      `gateway on embedded defaults with access control at ${gateway.url} (data in ${gateway.dataDir}); ` +
        `training with writer token ${gateway.writer.id}, scoped to ${runId}`,
    );
  }
  try {
    // 1. The same training without the SDK: the baseline for its overhead.
    const baselineBar = progress('baseline (no SDK)');
    const baseline = await trainMnist(training, {
      onMetrics: (p) => baselineBar.update(p.step, { loss: p.trainLoss.toFixed(3), rate: '' }),
    });
    baselineBar.stop();

    // 2. With the SDK: metrics every step, a checkpoint every N steps, through background queues.
    await client.putRun(runId, { plannedSteps: steps, trainSize: training.trainSize });
    await setup.setRunPolicy(runId, { policy: { budget: { maxCheckpoints: Number(values.budget) } } });
    const run = client.run(runId);
    const bar = progress('training with trajgate');
    const t0 = performance.now();
    const result = await trainMnist(training, {
      onMetrics: async (p) => {
        await run.log(p);
        bar.update(p.step, {
          loss: p.trainLoss.toFixed(3),
          rate: (p.step / ((performance.now() - t0) / 1000)).toFixed(0),
        });
      },
      onCheckpoint: (step, tensors) => run.checkpoint(step, tensors),
    });
    await run.close();
    bar.stop();

    // 3. What the gateway kept, and why.
    const checkpoints = await client.listCheckpoints(runId);
    const kept = checkpoints.filter((c) => c.status === 'kept');
    console.log(`\nkept ${kept.length} of ${checkpoints.length} checkpoints:`);
    console.log(
      formatTable(
        ['step', 'classes', 'why'],
        kept.map((c) => [c.step, c.classes.join(','), c.reasons.join(' / ')]),
      ),
    );
    const uploaded = checkpoints.reduce((s, c) => s + c.bytes, 0);
    const keptBytes = kept.reduce((s, c) => s + c.bytes, 0);
    console.log(`\nbytes kept ${keptBytes} of ${uploaded} uploaded (${((100 * keptBytes) / uploaded).toFixed(1)}%)`);

    const trajectory = await client.getTrajectory(runId);
    console.log(
      `trajectory: ${trajectory.totals.checkpoints} checkpoints, path length ${trajectory.totals.pathLength.toFixed(3)}, ` +
        `distance from start ${trajectory.totals.distanceFromStart.toFixed(3)}, phases ${trajectory.phases.boundaries.map((b) => `${b.phase} ${b.fromStep}–${b.toStep}`).join(', ')}, ` +
        `highest change score ${Math.max(...trajectory.items.map((i) => i.changeScore)).toFixed(1)} at step ${trajectory.items.reduce((a, b) => (b.changeScore > a.changeScore ? b : a)).step}`,
    );
    const estimate = await client.getEstimate(runId);
    const gap = estimate.gap;
    console.log(
      `generalization estimate (trajectory indicator after Fu et al. 2023): B_T ${estimate.indicator?.toFixed(3) ?? '-'}, ` +
        `${gap ? `calibrated gap ${gap.estimate.toFixed(3)} [${gap.low.toFixed(3)}, ${gap.high.toFixed(3)}]` : 'not calibrated yet'}; true gap on held-out digits ${result.trueGap.toFixed(3)}`,
    );
    const ratio = result.stepsPerSecond / baseline.stepsPerSecond;
    console.log(
      `training speed: ${baseline.stepsPerSecond.toFixed(1)} steps/s without the SDK, ${result.stepsPerSecond.toFixed(1)} with it (${(100 * (1 - ratio)).toFixed(1)}% overhead)`,
    );
    console.log(`demo wall time ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    await gateway?.close();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
