import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import type { TensorData } from '@trajgate/sdk/wire/safetensors';
import { IMAGE_SIZE, NUM_CLASSES, deriveSeed, loadMnistSplit, mulberry32, type MnistSet } from './mnist-data.js';

/**
 * A real-training harness: an MLP (ReLU hidden layers, softmax cross-entropy) on MNIST with plain SGD in a
 * manual loop, so every logged quantity (gradient norm, per-sample gradient spread, the exact update Δw_t,
 * the measured gap increment) comes from the step itself. Deterministic for a seed on one backend.
 */

export type LrSchedule = 'constant' | 'cosine' | 'cosine-restart' | 'step';

/** Steps (round(atFraction·steps), + steps] train on uniformly random labels at lr × lrMultiplier. */
export interface LossSpikeEvent {
  kind: 'loss-spike';
  atFraction: number;
  steps: number;
  lrMultiplier: number;
}

export interface TrainMnistOptions {
  hidden: number[];
  schedule: LrSchedule;
  baseLr: number;
  batchSize: number;
  /** Number of SGD updates. */
  steps: number;
  trainSize: number;
  heldOutSize: number;
  /** Symmetric label noise rate, applied to training and held-out labels alike (see mnist-data.ts). */
  labelNoise: number;
  seed: number;
  /** Seeds which digits are train / held out; defaults to `seed`. */
  splitSeed?: number;
  /** Checkpoint after every this many steps (and at step 0 and at the end). */
  checkpointEvery: number;
  /** Evaluate after every this many steps (and at the end); 0 = only at the end. */
  evalEvery: number;
  /** Log gapIncrement every this many steps; 0 = off. */
  gapEvery: number;
  events?: LossSpikeEvent[];
  /** 'cosine-restart': the fraction of training where the cosine restarts at baseLr (default 0.5). */
  restartAt?: number;
  /** 'step': fractions of training where lr is multiplied by stepGamma (default [0.5, 0.75] and 0.1). */
  stepAt?: number[];
  stepGamma?: number;
  /** Rows of the training set used for trainEvalLoss / trainAcc (default: all). */
  trainEvalSize?: number;
  /**
   * 'sgd' (default): w ← w − lr·ḡ. 'adam': Adam (β1 0.9, β2 0.999, ε 1e-8, bias-corrected) at lr; then
   * updateNorm is the measured ||Δw_t|| and gapIncrement = <∇F_val − ∇F_train, Δw_t> with the actual Δw_t.
   */
  optimizer?: 'sgd' | 'adam';
}

/**
 * One step's metrics; structurally a catalog MetricPoint. Point `step` = s (1-based) describes the update
 * w_{s−1} → w_s: trainLoss is the batch loss at w_{s−1}; the eval fields are measured at w_s, the weights
 * of checkpoint s.
 */
export interface MnistMetricPoint {
  step: number;
  trainLoss: number;
  lr: number;
  batchSize: number;
  /** ||ḡ||, the mean batch gradient's norm. */
  gradNorm: number;
  /** tr Σ̂, unbiased estimate of the trace of the per-sample gradient covariance (see batchGradients). */
  gradVariance: number;
  /** ||Δw_t|| = lr·||ḡ|| (SGD), the measured weight change (Adam). */
  updateNorm: number;
  /** Held-out loss with noisy labels (eval points only). */
  valLoss?: number;
  /** <∇F_val − ∇F_train, Δw_t> on a held-out batch of batchSize rows (every gapEvery steps). */
  gapIncrement?: number;
  /** Eval points: heldOutLossClean, trainEvalLoss, trainAcc (vs noisy train labels), trainAccClean,
   *  heldOutAcc (vs clean labels), heldOutAccNoisy. Loss-spike steps: lossSpike = 1. Gap steps:
   *  gapIncrementFresh, the same increment with ∇F_train from an independent training batch. */
  extra?: Record<string, number>;
}

export interface TrainHooks {
  onMetrics?: (point: MnistMetricPoint) => void | Promise<void>;
  /** Called at step 0 (init), every checkpointEvery steps and at the end; tensors are dense_<l>.kernel
   *  [in, out] and dense_<l>.bias [out], F32 little-endian. */
  onCheckpoint?: (step: number, tensors: TensorData[]) => void | Promise<void>;
}

export interface TrainMnistResult {
  steps: number;
  /** Loss on the training-eval rows (noisy labels) at the end. */
  finalTrainLoss: number;
  /** Held-out loss (noisy labels) at the end. */
  finalHeldOutLoss: number;
  finalHeldOutLossClean: number;
  finalTrainAcc: number;
  finalHeldOutAcc: number;
  /** finalHeldOutLoss − finalTrainLoss. */
  trueGap: number;
  /** Σ of logged gapIncrement values (unweighted; null when gapEvery = 0). */
  gapIncrementSum: number | null;
  /** Σ of logged extra.gapIncrementFresh (∇F_train from an independent training batch). */
  gapIncrementFreshSum: number | null;
  lastBatchLoss: number;
  checkpoints: number;
  wallSeconds: number;
  stepsPerSecond: number;
  backend: string;
}

let backendReady: Promise<string> | undefined;

/** Selects the wasm backend once per process (3–4× faster than cpu here); returns the backend name. */
export function initTfBackend(): Promise<string> {
  backendReady ??= (async () => {
    if (!(await tf.setBackend('wasm'))) throw new Error('tfjs: the wasm backend failed to initialise');
    await tf.ready();
    return tf.getBackend();
  })();
  return backendReady;
}

// ---------------------------------------------------------------------------------------------------------
// Model

export interface DenseLayer {
  kernel: tf.Variable;
  bias: tf.Variable;
  inputs: number;
  units: number;
}

export interface Mlp {
  layers: DenseLayer[];
}

const INIT_STREAM = 13;

/** He-normal kernels (std sqrt(2/fanIn)) from the seed via Box–Muller, zero biases. */
export function createMlp(hidden: number[], seed: number): Mlp {
  const rand = mulberry32(deriveSeed(seed, INIT_STREAM));
  const widths = [IMAGE_SIZE, ...hidden, NUM_CLASSES];
  const layers: DenseLayer[] = [];
  for (let l = 0; l + 1 < widths.length; l++) {
    const [inputs, units] = [widths[l], widths[l + 1]];
    const values = gaussian(inputs * units, Math.sqrt(2 / inputs), rand);
    const [kernel, bias] = tf.tidy(() => [
      tf.variable(tf.tensor2d(values, [inputs, units])),
      tf.variable(tf.zeros([units])),
    ]);
    layers.push({ kernel, bias, inputs, units });
  }
  return { layers };
}

export function disposeMlp(mlp: Mlp): void {
  for (const layer of mlp.layers) {
    layer.kernel.dispose();
    layer.bias.dispose();
  }
}

/** Kernel and bias of each layer, in order: the order of gradients everywhere below. */
export function mlpParams(mlp: Mlp): tf.Variable[] {
  return mlp.layers.flatMap((l) => [l.kernel, l.bias]);
}

function gaussian(count: number, std: number, rand: () => number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const u = 1 - rand();
    const v = rand();
    const r = std * Math.sqrt(-2 * Math.log(u));
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < count) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/**
 * Logits for `x` with weights taken from `params` (kernel, bias per layer). Optional `probes[l]` (zeros,
 * [m, units_l]) are added to layer l's pre-activation so the gradient w.r.t. them is the per-sample delta;
 * `inputSqNorms` receives ||a_{l−1,i}||² per layer (kept tensors, the caller disposes them).
 */
function forward(
  params: tf.Tensor[],
  x: tf.Tensor,
  probes?: tf.Tensor[],
  inputSqNorms?: tf.Tensor[],
  inputSquares?: tf.Tensor[],
): tf.Tensor {
  let a = x;
  const depth = params.length / 2;
  for (let l = 0; l < depth; l++) {
    if (inputSqNorms) inputSqNorms.push(tf.keep(tf.sum(tf.square(a), 1)));
    if (inputSquares) inputSquares.push(tf.keep(tf.square(a)));
    let z = tf.add(tf.matMul(a, params[2 * l]), params[2 * l + 1]);
    if (probes) z = tf.add(z, probes[l]);
    a = l + 1 < depth ? tf.relu(z) : z;
  }
  return a;
}

/** Mean softmax cross-entropy of logits against one-hot targets. */
function crossEntropy(logits: tf.Tensor, oneHot: tf.Tensor): tf.Scalar {
  return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.logSoftmax(logits)), 1))) as tf.Scalar;
}

export interface BatchGradients {
  loss: tf.Scalar;
  /** ḡ per parameter, in mlpParams order. */
  grads: tf.Tensor[];
  /** ||g_i||² for each sample i: the squared norm of that sample's loss gradient over all parameters. */
  perSampleSqNorms: tf.Tensor1D;
}

/**
 * ḡ and the exact per-sample gradient norms in one backward pass. For a dense layer z = aW + b, sample i's
 * gradient is ∇W_i = a_i δ_iᵀ and ∇b_i = δ_i, with δ_i = ∂loss_i/∂z_i, so ||∇W_i||² = ||a_i||²·||δ_i||² and
 * ||∇b_i||² = ||δ_i||². δ_i is read off as m × the gradient of the *mean* loss w.r.t. a zero probe added to
 * z (the probe's row i only reaches loss_i/m). The caller disposes the result.
 */
export function batchGradients(mlp: Mlp, xs: tf.Tensor, oneHot: tf.Tensor): BatchGradients {
  const m = xs.shape[0];
  const params = mlpParams(mlp);
  const inputSqNorms: tf.Tensor[] = [];
  try {
    return tf.tidy(() => {
      const probes = mlp.layers.map((l) => tf.zeros([m, l.units]));
      const f = (...args: tf.Tensor[]): tf.Scalar =>
        crossEntropy(forward(args.slice(0, params.length), xs, args.slice(params.length), inputSqNorms), oneHot);
      const { value, grads } = tf.valueAndGrads(f)([...params, ...probes]);
      const deltaSq = grads.slice(params.length).map((g) => tf.sum(tf.square(g), 1));
      const perLayer = deltaSq.map((d, l) => tf.mul(d, tf.add(inputSqNorms[l], 1)));
      const perSampleSqNorms = tf.mul(tf.addN(perLayer), m * m) as tf.Tensor1D;
      return { loss: value as tf.Scalar, grads: grads.slice(0, params.length), perSampleSqNorms };
    });
  } finally {
    for (const t of inputSqNorms) t.dispose();
  }
}

/**
 * tr(P Σ̂) for a diagonal preconditioner P (one tensor per parameter, mlpParams order): the per-sample
 * gradient covariance measured in the metric of the update Δw = −P ḡ, i.e. the variance of the update each
 * sample alone would cause. With z = aW + b per layer, sample i's gradient is a_i δ_iᵀ and δ_i, so
 * g_iᵀ P g_i = Σ_jk P_W[j,k] a_ij² δ_ik² + Σ_k P_b[k] δ_ik² = rowsum((a_i² P_W) ⊙ δ_i²) + δ_i² · P_b;
 * tr(P Σ̂) = m/(m−1)·(mean_i g_iᵀ P g_i − ḡᵀ P ḡ). For SGD (P = η·I) it is η·tr Σ̂.
 */
export function preconditionedVariance(mlp: Mlp, xs: tf.Tensor, oneHot: tf.Tensor, precond: tf.Tensor[]): number {
  const m = xs.shape[0];
  const params = mlpParams(mlp);
  const inputSquares: tf.Tensor[] = [];
  try {
    const result = tf.tidy(() => {
      const probes = mlp.layers.map((l) => tf.zeros([m, l.units]));
      const f = (...args: tf.Tensor[]): tf.Scalar =>
        crossEntropy(forward(args.slice(0, params.length), xs, args.slice(params.length)), oneHot);
      const { grads } = tf.valueAndGrads(f)([...params, ...probes]);
      forward(params, xs, undefined, undefined, inputSquares);
      const perSample = mlp.layers.map((_, l) => {
        const deltaSq = tf.square(tf.mul(grads[params.length + l], m));
        const kernel = tf.sum(tf.mul(tf.matMul(inputSquares[l], precond[2 * l]), deltaSq), 1);
        const bias = tf.sum(tf.mul(deltaSq, precond[2 * l + 1]), 1);
        return tf.add(kernel, bias);
      });
      const meanSample = tf.mean(tf.addN(perSample));
      const mean = tf.addN(grads.slice(0, params.length).map((g, i) => tf.sum(tf.mul(tf.square(g), precond[i]))));
      return tf.keep(tf.stack([meanSample, mean]));
    });
    const [meanSample, mean] = result.dataSync();
    result.dispose();
    return m < 2 ? 0 : Math.max(0, (m / (m - 1)) * (meanSample - mean));
  } finally {
    for (const t of inputSquares) t.dispose();
  }
}

/** ∇F on a batch w.r.t. the parameters only (no per-sample norms). The caller disposes the result. */
function meanGradients(mlp: Mlp, xs: tf.Tensor, oneHot: tf.Tensor): tf.Tensor[] {
  const params = mlpParams(mlp);
  return tf.tidy(() => tf.grads((...args: tf.Tensor[]) => crossEntropy(forward(args, xs), oneHot))(params));
}

/**
 * tr Σ̂ from per-sample squared norms and ||ḡ||²: tr Σ = E||g_i − ḡ||² = mean_i ||g_i||² − ||ḡ||², times
 * m/(m−1) for the unbiased (Bessel-corrected) estimate. Clamped at 0 against rounding.
 */
export function gradVarianceEstimate(perSampleSqNorms: ArrayLike<number>, meanGradSqNorm: number): number {
  const m = perSampleSqNorms.length;
  if (m < 2) return 0;
  let sum = 0;
  for (let i = 0; i < m; i++) sum += perSampleSqNorms[i];
  return Math.max(0, (m / (m - 1)) * (sum / m - meanGradSqNorm));
}

/** Reads a scalar computed by `f` and disposes it. */
function readScalar(f: () => tf.Tensor): number {
  const t = tf.tidy(f);
  const value = t.dataSync()[0];
  t.dispose();
  return value;
}

function sumOfSquares(tensors: tf.Tensor[]): number {
  return readScalar(() => tf.addN(tensors.map((t) => tf.sum(tf.square(t)))));
}

function dotAll(a: tf.Tensor[], b: tf.Tensor[]): number {
  return readScalar(() => tf.addN(a.map((t, i) => tf.sum(tf.mul(t, b[i])))));
}

// ---------------------------------------------------------------------------------------------------------
// Schedule

export function learningRate(options: TrainMnistOptions, stepIndex: number): number {
  const { baseLr, steps } = options;
  const cosine = (t: number, span: number): number => 0.5 * baseLr * (1 + Math.cos((Math.PI * t) / span));
  switch (options.schedule) {
    case 'constant':
      return baseLr;
    case 'cosine':
      return cosine(stepIndex, steps);
    case 'cosine-restart': {
      const restart = Math.max(1, Math.min(steps - 1, Math.round((options.restartAt ?? 0.5) * steps)));
      return stepIndex < restart ? cosine(stepIndex, restart) : cosine(stepIndex - restart, steps - restart);
    }
    case 'step': {
      const passed = (options.stepAt ?? [0.5, 0.75]).filter((f) => stepIndex >= Math.round(f * steps)).length;
      return baseLr * (options.stepGamma ?? 0.1) ** passed;
    }
  }
}

function activeSpike(options: TrainMnistOptions, step: number): LossSpikeEvent | undefined {
  return options.events?.find((e) => {
    const start = Math.round(e.atFraction * options.steps);
    return step > start && step <= start + e.steps;
  });
}

// ---------------------------------------------------------------------------------------------------------
// Data on the device

interface DeviceSet {
  x: tf.Tensor2D;
  y: tf.Tensor2D;
  yClean: tf.Tensor2D;
  size: number;
}

function oneHotRows(labels: ArrayLike<number>): Float32Array {
  const out = new Float32Array(labels.length * NUM_CLASSES);
  for (let i = 0; i < labels.length; i++) out[i * NUM_CLASSES + labels[i]] = 1;
  return out;
}

function toDevice(set: MnistSet, rows = set.size): DeviceSet {
  return {
    x: tf.tensor2d(set.images.subarray(0, rows * IMAGE_SIZE), [rows, IMAGE_SIZE]),
    y: tf.tensor2d(oneHotRows(set.labels.subarray(0, rows)), [rows, NUM_CLASSES]),
    yClean: tf.tensor2d(oneHotRows(set.cleanLabels.subarray(0, rows)), [rows, NUM_CLASSES]),
    size: rows,
  };
}

function disposeSet(set: DeviceSet): void {
  tf.dispose([set.x, set.y, set.yClean]);
}

/** Batches of distinct rows: consecutive slices of seeded per-epoch permutations (wrapping across epochs). */
function batchSampler(size: number, batchSize: number, seed: number): () => Int32Array {
  const rand = mulberry32(seed);
  let order = new Int32Array(0);
  let pos = 0;
  return () => {
    const batch = new Int32Array(batchSize);
    for (let i = 0; i < batchSize; i++) {
      if (pos >= order.length) {
        order = Int32Array.from({ length: size }, (_, k) => k);
        for (let k = size - 1; k > 0; k--) {
          const j = Math.floor(rand() * (k + 1));
          [order[k], order[j]] = [order[j], order[k]];
        }
        pos = 0;
      }
      batch[i] = order[pos++];
    }
    return batch;
  };
}

interface EvalResult {
  loss: number;
  lossClean: number;
  acc: number;
  accClean: number;
}

function evaluate(mlp: Mlp, set: DeviceSet): EvalResult {
  const values = tf.tidy(() => {
    const logits = forward(mlpParams(mlp), set.x);
    const predicted = tf.argMax(logits, 1);
    const acc = (y: tf.Tensor): tf.Scalar => tf.mean(tf.cast(tf.equal(predicted, tf.argMax(y, 1)), 'float32'));
    return tf.stack([crossEntropy(logits, set.y), crossEntropy(logits, set.yClean), acc(set.y), acc(set.yClean)]);
  });
  const [loss, lossClean, acc, accClean] = values.dataSync();
  values.dispose();
  return { loss, lossClean, acc, accClean };
}

// ---------------------------------------------------------------------------------------------------------
// Checkpoints

/** The model's weights as safetensors-ready F32 tensors (little-endian: the host order on x86/arm). */
export async function snapshotMlp(mlp: Mlp): Promise<TensorData[]> {
  const out: TensorData[] = [];
  for (const [l, layer] of mlp.layers.entries()) {
    for (const [kind, v] of [
      ['kernel', layer.kernel],
      ['bias', layer.bias],
    ] as const) {
      const values = (await v.data()) as Float32Array;
      out.push({
        name: `dense_${l}.${kind}`,
        dtype: 'F32',
        shape: [...v.shape],
        data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
      });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// The loop

const BATCH_STREAM = 10;
const GAP_STREAM = 11;
const SPIKE_STREAM = 12;
const FRESH_STREAM = 14;

export async function trainMnist(options: TrainMnistOptions, hooks: TrainHooks = {}): Promise<TrainMnistResult> {
  validate(options);
  const backend = await initTfBackend();
  const split = loadMnistSplit(options);
  const train = toDevice(split.train);
  const trainEval = toDevice(split.train, Math.min(options.trainEvalSize ?? split.train.size, split.train.size));
  const heldOut = toDevice(split.heldOut);
  const mlp = createMlp(options.hidden, options.seed);
  try {
    return await runLoop(options, hooks, { mlp, train, trainEval, heldOut, backend });
  } finally {
    disposeMlp(mlp);
    [train, trainEval, heldOut].forEach(disposeSet);
    disposeAdam(mlp);
  }
}

interface LoopState {
  mlp: Mlp;
  train: DeviceSet;
  trainEval: DeviceSet;
  heldOut: DeviceSet;
  backend: string;
}

async function runLoop(options: TrainMnistOptions, hooks: TrainHooks, state: LoopState): Promise<TrainMnistResult> {
  const { mlp, train, trainEval, heldOut } = state;
  const { steps, batchSize: m, seed } = options;
  const nextTrainBatch = batchSampler(train.size, m, deriveSeed(seed, BATCH_STREAM));
  const nextHeldOutBatch = batchSampler(heldOut.size, m, deriveSeed(seed, GAP_STREAM));
  const nextFreshBatch = batchSampler(train.size, m, deriveSeed(seed, FRESH_STREAM));
  const spikeRand = mulberry32(deriveSeed(seed, SPIKE_STREAM));
  const started = performance.now();
  let checkpoints = 0;
  let gapIncrementSum: number | null = options.gapEvery > 0 ? 0 : null;
  let gapIncrementFreshSum = 0;
  let lastBatchLoss = NaN;
  let lastEval: { train: EvalResult; heldOut: EvalResult } | undefined;
  const adam = options.optimizer === 'adam' ? createAdam(mlp) : null;

  const checkpoint = async (step: number): Promise<void> => {
    checkpoints++;
    if (hooks.onCheckpoint) await hooks.onCheckpoint(step, await snapshotMlp(mlp));
  };
  await checkpoint(0);

  for (let step = 1; step <= steps; step++) {
    const spike = activeSpike(options, step);
    const lr = learningRate(options, step - 1) * (spike?.lrMultiplier ?? 1);
    const rows = nextTrainBatch();
    const [xs, ys] = tf.tidy(() => {
      const idx = tf.tensor1d(rows, 'int32');
      const labels = spike
        ? tf.tensor2d(oneHotRows(randomLabels(m, spikeRand)), [m, NUM_CLASSES])
        : tf.gather(train.y, idx);
      return [tf.gather(train.x, idx), labels];
    });
    const bg = batchGradients(mlp, xs, ys);
    const trainLoss = bg.loss.dataSync()[0];
    const gradSq = sumOfSquares(bg.grads);
    const gradVariance = gradVarianceEstimate(bg.perSampleSqNorms.dataSync(), gradSq);
    const point: MnistMetricPoint = {
      step,
      trainLoss,
      lr,
      batchSize: m,
      gradNorm: Math.sqrt(gradSq),
      gradVariance,
      updateNorm: lr * Math.sqrt(gradSq),
    };
    const adamUpdate = adam ? adamStep(adam, bg.grads, lr) : null;
    if (adamUpdate) {
      point.updateNorm = Math.sqrt(sumOfSquares(adamUpdate));
      const precond = adamPreconditioner(adam!, lr);
      point.extra = { ...point.extra, preconditionedVariance: preconditionedVariance(mlp, xs, ys, precond) };
      tf.dispose(precond);
    }
    if (adamUpdate && options.gapEvery > 0 && step % options.gapEvery === 0) {
      const valGrads = rowsGradients(mlp, heldOut, nextHeldOutBatch());
      const freshGrads = rowsGradients(mlp, train, nextFreshBatch());
      const valDot = dotAll(valGrads, adamUpdate);
      point.gapIncrement = valDot - dotAll(bg.grads, adamUpdate);
      const fresh = valDot - dotAll(freshGrads, adamUpdate);
      point.extra = { ...point.extra, gapIncrementFresh: fresh };
      tf.dispose([...valGrads, ...freshGrads]);
      gapIncrementSum = (gapIncrementSum ?? 0) + point.gapIncrement;
      gapIncrementFreshSum += fresh;
    } else if (options.gapEvery > 0 && step % options.gapEvery === 0) {
      // <∇F_val − ḡ, −lr·ḡ> = −lr·(<∇F_val, ḡ> − ||ḡ||²), both gradients at w_{t} (before the update).
      const valGrads = rowsGradients(mlp, heldOut, nextHeldOutBatch());
      const valDot = dotAll(valGrads, bg.grads);
      point.gapIncrement = -lr * (valDot - gradSq);
      // The step batch's own ḡ carries a self-fit term: E[−lr(<∇F_val, ḡ> − ||ḡ||²)] includes +lr·tr Σ/m.
      // Against an independent training batch that term cancels, leaving −lr<∇F_μ − ∇F_S, ∇F_S>.
      const freshGrads = rowsGradients(mlp, train, nextFreshBatch());
      const freshDot = dotAll(freshGrads, bg.grads);
      point.extra = { ...point.extra, gapIncrementFresh: -lr * (valDot - freshDot) };
      tf.dispose([...valGrads, ...freshGrads]);
      gapIncrementSum = (gapIncrementSum ?? 0) + point.gapIncrement;
      gapIncrementFreshSum += -lr * (valDot - freshDot);
    }
    if (adamUpdate) {
      applyUpdate(mlp, adamUpdate);
      tf.dispose(adamUpdate);
    } else applySgd(mlp, bg.grads, lr);
    tf.dispose([xs, ys, bg.loss, bg.perSampleSqNorms, ...bg.grads]);
    lastBatchLoss = trainLoss;
    if (spike) point.extra = { ...point.extra, lossSpike: 1 };

    if (step === steps || (options.evalEvery > 0 && step % options.evalEvery === 0)) {
      lastEval = { train: evaluate(mlp, trainEval), heldOut: evaluate(mlp, heldOut) };
      point.valLoss = lastEval.heldOut.loss;
      point.extra = { ...point.extra, ...evalExtra(lastEval.train, lastEval.heldOut) };
    }
    if (hooks.onMetrics) await hooks.onMetrics(point);
    if (step === steps || step % options.checkpointEvery === 0) await checkpoint(step);
  }

  const wallSeconds = (performance.now() - started) / 1000;
  const final = lastEval ?? { train: evaluate(mlp, trainEval), heldOut: evaluate(mlp, heldOut) };
  return {
    steps,
    finalTrainLoss: final.train.loss,
    finalHeldOutLoss: final.heldOut.loss,
    finalHeldOutLossClean: final.heldOut.lossClean,
    finalTrainAcc: final.train.acc,
    finalHeldOutAcc: final.heldOut.accClean,
    trueGap: final.heldOut.loss - final.train.loss,
    gapIncrementSum,
    gapIncrementFreshSum: gapIncrementSum === null ? null : gapIncrementFreshSum,
    lastBatchLoss,
    checkpoints,
    wallSeconds,
    stepsPerSecond: steps / wallSeconds,
    backend: state.backend,
  };
}

function evalExtra(train: EvalResult, heldOut: EvalResult): Record<string, number> {
  return {
    heldOutLossClean: heldOut.lossClean,
    trainEvalLoss: train.loss,
    trainAcc: train.acc,
    trainAccClean: train.accClean,
    heldOutAcc: heldOut.accClean,
    heldOutAccNoisy: heldOut.acc,
  };
}

/** Mean gradient on the given rows of a set (noisy labels). */
function rowsGradients(mlp: Mlp, set: DeviceSet, rows: Int32Array): tf.Tensor[] {
  const [xs, ys] = tf.tidy(() => {
    const idx = tf.tensor1d(rows, 'int32');
    return [tf.gather(set.x, idx), tf.gather(set.y, idx)];
  });
  try {
    return meanGradients(mlp, xs, ys);
  } finally {
    tf.dispose([xs, ys]);
  }
}

/** w ← w − lr·ḡ, so Δw_t = −lr·ḡ exactly (up to float32 rounding of the subtraction). */
function applySgd(mlp: Mlp, grads: tf.Tensor[], lr: number): void {
  mlpParams(mlp).forEach((p, i) => {
    tf.tidy(() => p.assign(tf.sub(p, tf.mul(grads[i], lr))));
  });
}

interface AdamState {
  m: tf.Variable[];
  v: tf.Variable[];
  t: number;
}

const adamStates = new WeakMap<Mlp, AdamState>();

function createAdam(mlp: Mlp): AdamState {
  const zeros = (): tf.Variable[] => mlpParams(mlp).map((p) => tf.variable(tf.zerosLike(p)));
  const state = { m: zeros(), v: zeros(), t: 0 };
  adamStates.set(mlp, state);
  return state;
}

function disposeAdam(mlp: Mlp): void {
  const state = adamStates.get(mlp);
  if (state) tf.dispose([...state.m, ...state.v]);
  adamStates.delete(mlp);
}

/** Advances Adam's moments with ḡ and returns Δw_t (the caller applies and disposes it). */
function adamStep(state: AdamState, grads: tf.Tensor[], lr: number): tf.Tensor[] {
  const [b1, b2, eps] = [0.9, 0.999, 1e-8];
  state.t++;
  const c1 = 1 - b1 ** state.t;
  const c2 = 1 - b2 ** state.t;
  return grads.map((g, i) =>
    tf.tidy(() => {
      state.m[i].assign(tf.add(tf.mul(state.m[i], b1), tf.mul(g, 1 - b1)));
      state.v[i].assign(tf.add(tf.mul(state.v[i], b2), tf.mul(tf.square(g), 1 - b2)));
      const mHat = tf.div(state.m[i], c1);
      const vHat = tf.div(state.v[i], c2);
      return tf.mul(tf.div(mHat, tf.add(tf.sqrt(vHat), eps)), -lr);
    }),
  );
}

/** Adam's diagonal preconditioner at the current moments: lr/(sqrt(v̂)+ε), so Δw ≈ −P·m̂ (caller disposes). */
function adamPreconditioner(state: AdamState, lr: number): tf.Tensor[] {
  const c2 = 1 - 0.999 ** state.t;
  return state.v.map((v) => tf.tidy(() => tf.div(lr, tf.add(tf.sqrt(tf.div(v, c2)), 1e-8))));
}

function applyUpdate(mlp: Mlp, update: tf.Tensor[]): void {
  mlpParams(mlp).forEach((p, i) => {
    tf.tidy(() => p.assign(tf.add(p, update[i])));
  });
}

function randomLabels(count: number, rand: () => number): Uint8Array {
  return Uint8Array.from({ length: count }, () => Math.floor(rand() * NUM_CLASSES));
}

function validate(o: TrainMnistOptions): void {
  const positiveInts: [string, number][] = [
    ['steps', o.steps],
    ['batchSize', o.batchSize],
    ['checkpointEvery', o.checkpointEvery],
    ['trainSize', o.trainSize],
    ['heldOutSize', o.heldOutSize],
  ];
  for (const [name, v] of positiveInts) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  }
  for (const [name, v] of [
    ['evalEvery', o.evalEvery],
    ['gapEvery', o.gapEvery],
  ] as const) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer, got ${v}`);
  }
  if (o.batchSize < 2) throw new RangeError('batchSize must be at least 2 (gradVariance needs two samples)');
  if (!(o.baseLr > 0)) throw new RangeError(`baseLr must be positive, got ${o.baseLr}`);
  if (o.hidden.some((h) => !Number.isInteger(h) || h < 1))
    throw new RangeError(`hidden widths must be positive integers`);
}
