/**
 * Trains an MNIST MLP with the real-training harness and writes the run to a directory:
 *   checkpoints/<step:010d>.safetensors, metrics.jsonl (one MetricPoint per line), summary.json.
 *
 *   npx tsx scripts/train-mnist.ts --out /tmp/run1 --hidden 128 --lr 0.1 --schedule cosine --steps 600 \
 *     --train-size 2000 --checkpoint-every 20 --label-noise 0.2 --seed 1
 */
import { appendFileSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import { trainMnist, type LossSpikeEvent, type LrSchedule, type TrainMnistOptions } from './lib/mnist-train.js';

interface CliOptions {
  out: string;
  hidden: number[];
  lr: number;
  schedule: LrSchedule;
  batchSize: number;
  steps: number;
  trainSize: number;
  heldOutSize: number;
  labelNoise: number;
  seed: number;
  splitSeed?: number;
  checkpointEvery: number;
  evalEvery?: number;
  gapEvery: number;
  restartAt?: number;
  spike: LossSpikeEvent[];
  trainEvalSize?: number;
  progressEvery: number;
  overwrite: boolean;
}

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('not an integer');
  return n;
};
const num = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError('not a number');
  return n;
};
const widths = (v: string): number[] => (v.trim() === '' ? [] : v.split(',').map(int));
const spike = (v: string, previous: LossSpikeEvent[]): LossSpikeEvent[] => {
  const parts = v.split(':').map(Number);
  if (parts.length !== 3 || parts.some((p) => !Number.isFinite(p))) {
    throw new InvalidArgumentError('expected atFraction:steps:lrMultiplier, e.g. 0.5:5:10');
  }
  return [...previous, { kind: 'loss-spike', atFraction: parts[0], steps: parts[1], lrMultiplier: parts[2] }];
};

function parseCli(argv: string[]): CliOptions {
  const program = new Command()
    .name('train-mnist')
    .description('Train an MNIST MLP (tfjs, wasm) and write checkpoints, metrics.jsonl and summary.json')
    .requiredOption('--out <dir>', 'run directory')
    .option('--hidden <widths>', 'hidden layer widths, comma separated', widths, [128])
    .option('--lr <lr>', 'base learning rate', num, 0.1)
    .addOption(
      new Option('--schedule <schedule>', 'learning-rate schedule')
        .choices(['constant', 'cosine', 'cosine-restart', 'step'])
        .default('cosine'),
    )
    .option('--batch-size <n>', 'batch size', int, 64)
    .option('--steps <n>', 'SGD steps', int, 600)
    .option('--train-size <n>', 'training digits', int, 2000)
    .option('--held-out-size <n>', 'held-out digits', int, 3000)
    .option('--label-noise <rate>', 'symmetric label noise rate (train and held out)', num, 0)
    .option('--seed <n>', 'seed (init, batches, noise; split too unless --split-seed)', int, 1)
    .option('--split-seed <n>', 'seed of the train/held-out split', int)
    .option('--checkpoint-every <n>', 'steps between checkpoints', int, 20)
    .option('--eval-every <n>', 'steps between evaluations (default: --checkpoint-every)', int)
    .option('--gap-every <n>', 'steps between gapIncrement measurements (0 = off)', int, 0)
    .option('--restart-at <fraction>', 'cosine-restart: where the restart happens', num)
    .option('--spike <at:steps:mult>', 'loss-spike event (random labels at lr × mult); repeatable', spike, [])
    .option('--train-eval-size <n>', 'training rows used for trainEvalLoss (default: all)', int)
    .option('--progress-every <n>', 'steps between progress lines', int, 50)
    .option('--overwrite', 'replace an existing run in --out', false);
  program.parse(argv);
  return program.opts<CliOptions>();
}

function prepareOut(out: string, overwrite: boolean): string {
  const checkpointDir = join(out, 'checkpoints');
  const existing = existsSync(checkpointDir) && readdirSync(checkpointDir).length > 0;
  if ((existing || existsSync(join(out, 'metrics.jsonl'))) && !overwrite) {
    throw new Error(`${out} already holds a run; pass --overwrite to replace it`);
  }
  for (const name of ['checkpoints', 'metrics.jsonl', 'summary.json'])
    rmSync(join(out, name), { recursive: true, force: true });
  mkdirSync(checkpointDir, { recursive: true });
  return checkpointDir;
}

async function main(): Promise<void> {
  const cli = parseCli(process.argv);
  const checkpointDir = prepareOut(cli.out, cli.overwrite);
  const options: TrainMnistOptions = {
    hidden: cli.hidden,
    schedule: cli.schedule,
    baseLr: cli.lr,
    batchSize: cli.batchSize,
    steps: cli.steps,
    trainSize: cli.trainSize,
    heldOutSize: cli.heldOutSize,
    labelNoise: cli.labelNoise,
    seed: cli.seed,
    splitSeed: cli.splitSeed,
    checkpointEvery: cli.checkpointEvery,
    evalEvery: cli.evalEvery ?? cli.checkpointEvery,
    gapEvery: cli.gapEvery,
    restartAt: cli.restartAt,
    events: cli.spike,
    trainEvalSize: cli.trainEvalSize,
  };
  const metricsPath = join(cli.out, 'metrics.jsonl');
  let pending: string[] = [];
  const flush = (): void => {
    if (pending.length > 0) appendFileSync(metricsPath, pending.join(''));
    pending = [];
  };
  let windowStart = performance.now();
  let windowStep = 0;

  const result = await trainMnist(options, {
    onMetrics: (p) => {
      pending.push(`${JSON.stringify(p)}\n`);
      if (p.step % cli.progressEvery !== 0 && p.step !== options.steps) return;
      const now = performance.now();
      const rate = (p.step - windowStep) / ((now - windowStart) / 1000);
      [windowStart, windowStep] = [now, p.step];
      const val = p.valLoss === undefined ? '' : `  val ${p.valLoss.toFixed(4)}`;
      console.log(
        `step ${String(p.step).padStart(6)}  loss ${p.trainLoss.toFixed(4)}${val}  lr ${p.lr.toPrecision(3)}  ${rate.toFixed(1)} steps/s`,
      );
    },
    onCheckpoint: (step, tensors) => {
      flush();
      const file = join(checkpointDir, `${String(step).padStart(10, '0')}.safetensors`);
      writeFileSync(file, encodeSafetensors(tensors, { step: String(step), format: 'pt' }));
    },
  });
  flush();
  const summary = { options, result };
  writeFileSync(join(cli.out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  console.log(JSON.stringify(result, null, 2));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
