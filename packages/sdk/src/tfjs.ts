import type * as TF from '@tensorflow/tfjs';
import type { Dtype } from './wire/dtypes.js';
import type { TensorData } from './wire/safetensors.js';
import type { MetricPoint } from './contract/api.js';

/**
 * TensorFlow.js adapter (`@trajgate/sdk/tfjs`). It uses only the public tfjs API and takes the `tf`
 * namespace as an argument, so it works the same with @tensorflow/tfjs, tfjs-node and tfjs-node-gpu:
 *
 *   import * as tf from '@tensorflow/tfjs-node';
 *   const stats = new TrainingStats(tf, { microBatches: 4, gapEvery: 10 });
 *   const point = stats.step({ step, loss, xs, ys, variables, optimizer, lr, heldOut });
 *   await run.log(point);
 *   if (step % 100 === 0) await run.checkpoint(step, tensorsFromVariables(variables));
 */
type Tf = typeof TF;

/** A mean loss over the rows given: `(xs, ys) => tf.losses.softmaxCrossEntropy(ys, model.apply(xs))`. */
export type LossFn = (xs: TF.Tensor, ys: TF.Tensor) => TF.Scalar;

/** Inputs and targets of one batch. */
export interface Batch {
  xs: TF.Tensor;
  ys: TF.Tensor;
}

const DTYPES: Partial<Record<TF.DataType, Dtype>> = { float32: 'F32', int32: 'I32', bool: 'BOOL' };

/**
 * A LayersModel's weights as tensors named by their variable names (`dense_1/kernel`), ready for
 * `run.checkpoint()`. The bytes are copies, so training may go on while they upload.
 */
export function tensorsFromModel(model: TF.LayersModel): TensorData[] {
  const seen = new Set<string>();
  return tensorsFromVariables(
    model.weights.map((w) => {
      const name = w.originalName && !seen.has(w.originalName) ? w.originalName : w.name;
      seen.add(name);
      return { name, tensor: w.read() };
    }),
  );
}

/**
 * Variables (or named tensors) as tensors for `run.checkpoint()`: float32 as F32, int32 as I32, bool as
 * BOOL, in the host's byte order (little-endian on every platform tfjs runs on). Copies the bytes
 * (synchronously: on a GPU backend this waits for the device).
 */
export function tensorsFromVariables(
  variables: readonly (TF.Variable | { name: string; tensor: TF.Tensor })[],
): TensorData[] {
  return variables.map((v) => {
    const [name, tensor] = 'tensor' in v ? [v.name, v.tensor] : [v.name, v];
    const dtype = DTYPES[tensor.dtype];
    if (!dtype) throw new TypeError(`tensor '${name}' has dtype ${tensor.dtype}, which trajgate does not store`);
    const values = tensor.dataSync() as Float32Array | Int32Array | Uint8Array;
    const copy = values.slice(); // the backend may hand out its own storage
    return {
      name,
      dtype,
      shape: [...tensor.shape],
      data: new Uint8Array(copy.buffer, copy.byteOffset, copy.byteLength),
    };
  });
}

export interface GradientStats {
  /** ḡ, the mean gradient over the whole batch, by variable name: what the optimizer applies. Caller disposes. */
  grads: TF.NamedTensorMap;
  /** The batch's mean loss. */
  loss: number;
  /** ||ḡ||. */
  gradNorm: number;
  /**
   * tr Σ̂, the trace of the per-sample gradient covariance, from the K micro-batch gradients g_k of b rows
   * each: tr Σ̂ = b/(K−1) · Σ_k ||g_k − ḡ||². Each g_k is a mean of b per-sample gradients, so its
   * covariance is Σ/b and Σ_k ||g_k − ḡ||² has expectation (K−1)·tr Σ/b: the estimate is unbiased for
   * i.i.d. rows. Its relative spread is about sqrt(2/(K−1)) at worst (fewer, larger micro-batches are
   * noisier), and averages out over the steps the estimate sums.
   */
  gradVariance: number;
  /**
   * tr(P Σ̂) for the optimizer's diagonal preconditioner P (Δw = −P·ḡ; Adam: η/(√v̂+ε)), from the same
   * micro-batches: b/(K−1) · Σ_k (g_k − ḡ)ᵀ P (g_k − ḡ). Logged as extra.preconditionedVariance; the
   * estimate's served indicator sums it (docs/architecture.md §7). Only with a `preconditioner` option.
   */
  preconditionedVariance?: number;
}

export interface TrainingStatsOptions {
  /** K, micro-batches per step (≥ 2; the batch size must be a multiple of K). Default 4. */
  microBatches?: number;
  /** Measure gapIncrement every this many steps, when the step is given a held-out batch. Default 10; 0: never. */
  gapEvery?: number;
  /**
   * How `step()` gets ||Δw||: `measured` compares the weights before and after the optimizer step (any
   * optimizer; one copy of the weights per step), `sgd` takes lr·||ḡ|| (exact for plain SGD only).
   * Default `measured`.
   */
  updateNorm?: 'measured' | 'sgd';
  /**
   * The optimizer's diagonal preconditioner, for extra.preconditionedVariance. `adam`: TrainingStats keeps
   * Adam's second moment v itself from the gradients it applies (β2, ε as given to tf.train.adam; defaults
   * 0.999 and 1e-8) and takes P = lr/(√(v/(1−β2^t)) + ε), as tfjs's Adam does. Omit for SGD (P = lr·I,
   * which the server derives from lr·||ḡ|| and tr Σ) and for optimizers whose P is not of this form.
   */
  preconditioner?: { kind: 'adam'; beta2?: number; epsilon?: number };
}

export interface StepInput {
  step: number;
  loss: LossFn;
  xs: TF.Tensor;
  ys: TF.Tensor;
  /** The variables trained; their gradients are taken and the optimizer updates them. */
  variables: readonly TF.Variable[];
  optimizer: TF.Optimizer;
  /** The step's learning rate, as logged (η_t). */
  lr: number;
  /** A held-out batch, or a function giving one (called on gap steps only; the SDK disposes neither). */
  heldOut?: Batch | (() => Batch);
  /**
   * Optional: a training batch independent of the step's, for `extra.gapIncrementFresh` =
   * <∇F_val − ∇F_fresh, Δw_t>. gapIncrement takes ∇F_train from the step's own batch, whose <ḡ, Δw>
   * carries a self-fit term (+η·Var ḡ) the server subtracts; the fresh form has none and the server
   * prefers it.
   */
  freshTrain?: Batch | (() => Batch);
}

/**
 * Per-step statistics for the generalization estimate (docs/architecture.md §7). `step()` does a whole training step:
 * K micro-batch gradients (one forward/backward pass each instead of one for the batch), the optimizer
 * update, and the metric point for `run.log()`: trainLoss, lr, batchSize, gradNorm, gradVariance,
 * updateNorm and, every `gapEvery` steps given a held-out batch, gapIncrement = <∇F_val − ∇F_train, Δw_t>
 * with both gradients taken at the weights before the update. The lower-level methods serve custom loops.
 */
export class TrainingStats {
  private readonly k: number;
  private readonly gapEvery: number;
  private previous: Map<string, TF.Tensor> | null = null;
  /** Adam's second moment by variable name, and its step count (the `adam` preconditioner). */
  private secondMoment: Map<string, TF.Tensor> | null = null;
  private adamSteps = 0;

  constructor(
    private readonly tf: Tf,
    private readonly options: TrainingStatsOptions = {},
  ) {
    this.k = options.microBatches ?? 4;
    this.gapEvery = options.gapEvery ?? 10;
    if (!Number.isInteger(this.k) || this.k < 2)
      throw new RangeError(`microBatches must be an integer ≥ 2, got ${this.k}`);
  }

  /** One training step (gradients, optimizer update, statistics); returns the step's metric point. */
  step(input: StepInput): MetricPoint {
    const tf = this.tf;
    const { variables, lr } = input;
    const stats = this.gradients(input.loss, input.xs, input.ys, variables, this.preconditionerFor(lr));
    const onGapStep = this.gapEvery > 0 && input.step % this.gapEvery === 0 && input.heldOut !== undefined;
    const measured = (this.options.updateNorm ?? 'measured') === 'measured';
    const owned: TF.Tensor[] = Object.values(stats.grads);
    try {
      let valGrads: TF.NamedTensorMap | null = null;
      let freshGrads: TF.NamedTensorMap | null = null;
      if (onGapStep) {
        valGrads = this.meanGradients(input.loss, resolve(input.heldOut!), variables);
        owned.push(...Object.values(valGrads));
        if (input.freshTrain) {
          freshGrads = this.meanGradients(input.loss, resolve(input.freshTrain), variables);
          owned.push(...Object.values(freshGrads));
        }
      }
      if (measured) this.snapshot(variables);
      input.optimizer.applyGradients(stats.grads);
      const point: MetricPoint = {
        step: input.step,
        trainLoss: stats.loss,
        lr,
        batchSize: input.xs.shape[0],
        gradNorm: stats.gradNorm,
        gradVariance: stats.gradVariance,
      };
      if (stats.preconditionedVariance !== undefined)
        point.extra = { preconditionedVariance: stats.preconditionedVariance };
      const update = measured ? this.takeUpdate(variables) : this.sgdUpdate(stats.grads, lr);
      owned.push(...Object.values(update));
      point.updateNorm = measured ? this.norm(update) : lr * stats.gradNorm;
      if (valGrads) {
        point.gapIncrement = this.dot(valGrads, update) - this.dot(stats.grads, update);
        if (freshGrads)
          point.extra = {
            ...point.extra,
            gapIncrementFresh: this.dot(valGrads, update) - this.dot(freshGrads, update),
          };
      }
      return point;
    } finally {
      tf.dispose(owned);
      this.disposeSnapshot();
    }
  }

  /**
   * ḡ of `loss` over `variables`, with its norm and the micro-batch estimate of tr Σ. Micro-batches are
   * contiguous slices of the batch (shuffle rows across batches, not within micro-batches).
   */
  gradients(
    loss: LossFn,
    xs: TF.Tensor,
    ys: TF.Tensor,
    variables: readonly TF.Variable[],
    preconditioner?: (grads: TF.NamedTensorMap) => TF.NamedTensorMap,
  ): GradientStats {
    const tf = this.tf;
    const k = this.k;
    const m = xs.shape[0];
    if (m % k !== 0) throw new RangeError(`a batch of ${m} rows cannot be split into ${k} equal micro-batches`);
    const b = m / k;
    const perBatch: TF.NamedTensorMap[] = [];
    let lossSum = 0;
    try {
      for (let i = 0; i < k; i++) {
        const { value, grads } = tf.tidy(() =>
          tf.variableGrads(() => loss(tf.slice(xs, i * b, b), tf.slice(ys, i * b, b)), [...variables]),
        );
        lossSum += value.dataSync()[0];
        value.dispose();
        perBatch.push(grads);
      }
      const names = Object.keys(perBatch[0]);
      const grads: TF.NamedTensorMap = {};
      for (const name of names) grads[name] = tf.tidy(() => tf.div(tf.addN(perBatch.map((g) => g[name])), k));
      const p = preconditioner?.(grads);
      const [meanSq, spread, weighted] = tf.tidy(() => {
        const sq = tf.addN(names.map((n) => tf.sum(tf.square(grads[n]))));
        const dev = tf.addN(perBatch.flatMap((g) => names.map((n) => tf.sum(tf.square(tf.sub(g[n], grads[n]))))));
        const pDev = p
          ? tf.addN(perBatch.flatMap((g) => names.map((n) => tf.sum(tf.mul(p[n], tf.square(tf.sub(g[n], grads[n])))))))
          : tf.scalar(0);
        return tf.stack([sq, dev, pDev]).dataSync();
      });
      if (p) tf.dispose(Object.values(p));
      return {
        grads,
        loss: lossSum / k,
        gradNorm: Math.sqrt(meanSq),
        gradVariance: (b / (k - 1)) * spread,
        ...(p ? { preconditionedVariance: (b / (k - 1)) * weighted } : {}),
      };
    } finally {
      for (const g of perBatch) tf.dispose(Object.values(g));
    }
  }

  /**
   * For the `adam` preconditioner: a function that advances the kept second moment with the step's ḡ (as
   * the optimizer will) and returns P = lr/(√v̂+ε) by variable name (the caller disposes it).
   */
  private preconditionerFor(lr: number): ((grads: TF.NamedTensorMap) => TF.NamedTensorMap) | undefined {
    const spec = this.options.preconditioner;
    if (!spec) return undefined;
    const tf = this.tf;
    const beta2 = spec.beta2 ?? 0.999;
    const epsilon = spec.epsilon ?? 1e-8;
    return (grads) => {
      const moments = this.secondMoment ?? new Map<string, TF.Tensor>();
      this.secondMoment = moments;
      this.adamSteps++;
      const correction = 1 - beta2 ** this.adamSteps;
      const out: TF.NamedTensorMap = {};
      for (const [name, g] of Object.entries(grads)) {
        const previous = moments.get(name);
        const next = tf.tidy(() =>
          previous ? tf.add(tf.mul(previous, beta2), tf.mul(tf.square(g), 1 - beta2)) : tf.mul(tf.square(g), 1 - beta2),
        );
        previous?.dispose();
        moments.set(name, next);
        out[name] = tf.tidy(() => tf.div(lr, tf.add(tf.sqrt(tf.div(next, correction)), epsilon)));
      }
      return out;
    };
  }

  /** Frees the weight copy held between `snapshot()` and `updateNorm()`, and the `adam` second moment, if any. */
  dispose(): void {
    if (this.secondMoment) this.tf.dispose([...this.secondMoment.values()]);
    this.secondMoment = null;
    this.disposeSnapshot();
  }

  /** Keeps a copy of the weights; call before the optimizer step, then `updateNorm()` after it. */
  snapshot(variables: readonly TF.Variable[]): void {
    this.disposeSnapshot();
    this.previous = new Map(variables.map((v) => [v.name, this.tf.clone(v)]));
  }

  /** ||w_after − w_before|| for the update applied since `snapshot()`. */
  updateNorm(variables: readonly TF.Variable[]): number {
    const update = this.takeUpdate(variables);
    try {
      return this.norm(update);
    } finally {
      this.tf.dispose(Object.values(update));
    }
  }

  /**
   * <∇F_val − ∇F_train, Δw> for an update given as the weight change (a map by variable name, e.g. from
   * custom code) or as a learning rate for plain SGD (Δw = −lr·∇F_train). Both gradients must be taken at
   * the weights before the update: call it before the optimizer step.
   */
  gapIncrement(
    loss: LossFn,
    heldOut: Batch,
    trainGrads: TF.NamedTensorMap,
    update: number | TF.NamedTensorMap,
    variables: readonly TF.Variable[],
  ): number {
    const valGrads = this.meanGradients(loss, heldOut, variables);
    const delta = typeof update === 'number' ? this.sgdUpdate(trainGrads, update) : update;
    try {
      return this.dot(valGrads, delta) - this.dot(trainGrads, delta);
    } finally {
      this.tf.dispose(Object.values(valGrads));
      if (delta !== update) this.tf.dispose(Object.values(delta));
    }
  }

  /** A metric point from gradient statistics, plus whatever else the caller measured. */
  point(
    step: number,
    stats: GradientStats,
    extra: Omit<MetricPoint, 'step' | 'trainLoss' | 'gradNorm' | 'gradVariance'> = {},
  ): MetricPoint {
    const point: MetricPoint = {
      step,
      trainLoss: stats.loss,
      gradNorm: stats.gradNorm,
      gradVariance: stats.gradVariance,
      ...extra,
    };
    if (stats.preconditionedVariance !== undefined)
      point.extra = { ...point.extra, preconditionedVariance: stats.preconditionedVariance };
    return point;
  }

  private meanGradients(loss: LossFn, batch: Batch, variables: readonly TF.Variable[]): TF.NamedTensorMap {
    const { value, grads } = this.tf.variableGrads(() => loss(batch.xs, batch.ys), [...variables]);
    value.dispose();
    return grads;
  }

  /** w − snapshot, by variable name (the caller disposes); drops the snapshot. */
  private takeUpdate(variables: readonly TF.Variable[]): TF.NamedTensorMap {
    const previous = this.previous;
    if (!previous) throw new Error('call snapshot() before the optimizer step');
    const tf = this.tf;
    const update: TF.NamedTensorMap = {};
    for (const v of variables) update[v.name] = tf.tidy(() => tf.sub(v, previous.get(v.name)!));
    this.disposeSnapshot();
    return update;
  }

  private sgdUpdate(grads: TF.NamedTensorMap, lr: number): TF.NamedTensorMap {
    const tf = this.tf;
    const update: TF.NamedTensorMap = {};
    for (const [name, g] of Object.entries(grads)) update[name] = tf.tidy(() => tf.mul(g, -lr));
    return update;
  }

  private norm(map: TF.NamedTensorMap): number {
    return Math.sqrt(this.dot(map, map));
  }

  /** Σ over the names of `b` of <a[name], b[name]>. */
  private dot(a: TF.NamedTensorMap, b: TF.NamedTensorMap): number {
    const tf = this.tf;
    return tf.tidy(() => tf.addN(Object.keys(b).map((n) => tf.sum(tf.mul(a[n], b[n])))).dataSync()[0]);
  }

  private disposeSnapshot(): void {
    if (this.previous) this.tf.dispose([...this.previous.values()]);
    this.previous = null;
  }
}

function resolve(batch: Batch | (() => Batch)): Batch {
  return typeof batch === 'function' ? batch() : batch;
}
