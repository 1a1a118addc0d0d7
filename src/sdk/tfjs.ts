import type * as TF from '@tensorflow/tfjs';
import type { TensorData } from '../wire/safetensors.js';
import type { MetricPoint } from './types.js';

/**
 * TensorFlow.js adapter. It uses only the public tfjs API and takes the `tf` namespace as an argument, so
 * it works the same with @tensorflow/tfjs, tfjs-node and tfjs-node-gpu.
 */
type Tf = typeof TF;

/** The model's weights as F32 tensors named by their variable names, ready for `run.checkpoint()`. */
export function tensorsFromModel(model: TF.LayersModel): TensorData[] {
  return tensorsFromVariables(model.weights.map((w) => ({ name: w.originalName ?? w.name, tensor: w.read() })));
}

export function tensorsFromVariables(variables: readonly { name: string; tensor: TF.Tensor }[]): TensorData[] {
  return variables.map(({ name, tensor }) => {
    const values = tensor.dataSync() as Float32Array;
    return { name, dtype: 'F32', shape: [...tensor.shape], data: new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)) };
  });
}

export interface StepStats {
  /** The mean gradient over the whole batch, per variable: what the optimizer applies. Caller disposes. */
  grads: TF.NamedTensorMap;
  loss: number;
  /** ||ḡ||. */
  gradNorm: number;
  /**
   * tr Σ̂, the trace of the per-sample gradient covariance, from K micro-batch gradients g_k of size b:
   * tr Σ̂ = b/(K−1) · Σ_k ||g_k − ḡ||². Each g_k has covariance Σ/b, so Σ_k ||g_k − ḡ||² has expectation
   * (K−1)·tr Σ/b; over random splits of a batch it equals the batch's own sample covariance trace.
   */
  gradVariance: number;
}

/**
 * Per-step statistics the generalization estimate needs (DESIGN §7), computed from K micro-batch
 * gradients: one forward/backward pass per micro-batch, K in all, instead of one for the whole batch.
 */
export class TrainingStats {
  private previous: Map<string, TF.Tensor> | null = null;

  constructor(
    private readonly tf: Tf,
    private readonly options: { microBatches?: number } = {},
  ) {}

  /**
   * Gradients of `loss(xs, ys)` over `variables` (micro-batches are contiguous slices of the batch, whose
   * size must be a multiple of K) with their norm and spread.
   */
  gradients(loss: (xs: TF.Tensor, ys: TF.Tensor) => TF.Scalar, xs: TF.Tensor, ys: TF.Tensor, variables: readonly TF.Variable[]): StepStats {
    const tf = this.tf;
    const k = this.options.microBatches ?? 4;
    const m = xs.shape[0];
    if (k < 2 || m % k !== 0) throw new RangeError(`batch of ${m} cannot be split into ${k} equal micro-batches (K ≥ 2)`);
    const b = m / k;
    const perBatch: TF.NamedTensorMap[] = [];
    let lossSum = 0;
    for (let i = 0; i < k; i++) {
      const { value, grads } = tf.tidy(() => {
        const x = tf.slice(xs, i * b, b);
        const y = tf.slice(ys, i * b, b);
        return tf.variableGrads(() => loss(x, y), [...variables]);
      });
      lossSum += value.dataSync()[0];
      value.dispose();
      perBatch.push(grads);
    }
    const names = Object.keys(perBatch[0]);
    const grads: TF.NamedTensorMap = {};
    for (const name of names) grads[name] = tf.tidy(() => tf.div(tf.addN(perBatch.map((g) => g[name])), k));
    const [gradNorm, spread] = tf.tidy(() => {
      const meanSq = tf.addN(names.map((n) => tf.sum(tf.square(grads[n]))));
      const deviations = tf.addN(perBatch.flatMap((g) => names.map((n) => tf.sum(tf.square(tf.sub(g[n], grads[n]))))));
      return [Math.sqrt(meanSq.dataSync()[0]), deviations.dataSync()[0]];
    });
    for (const g of perBatch) for (const t of Object.values(g)) t.dispose();
    return { grads, loss: lossSum / k, gradNorm, gradVariance: (b / (k - 1)) * spread };
  }

  /**
   * ||w_after − w_before|| for the update just applied: call `snapshot(variables)` before the optimizer
   * step and `updateNorm(variables)` after it.
   */
  snapshot(variables: readonly TF.Variable[]): void {
    this.disposeSnapshot();
    this.previous = new Map(variables.map((v) => [v.name, this.tf.clone(v)]));
  }

  updateNorm(variables: readonly TF.Variable[]): number {
    if (!this.previous) throw new Error('call snapshot() before the optimizer step');
    const tf = this.tf;
    const previous = this.previous;
    const norm = tf.tidy(() => Math.sqrt(tf.addN(variables.map((v) => tf.sum(tf.square(tf.sub(v, previous.get(v.name)!))))).dataSync()[0]));
    this.disposeSnapshot();
    return norm;
  }

  /**
   * The step's measured first-order contribution to the generalization gap, <∇F_val − ∇F_train, Δw_t>,
   * with ∇F_val the gradient on a held-out batch and Δw_t = −lr · ∇F_train for plain SGD.
   */
  gapIncrement(loss: (xs: TF.Tensor, ys: TF.Tensor) => TF.Scalar, heldOut: { xs: TF.Tensor; ys: TF.Tensor }, trainGrads: TF.NamedTensorMap, lr: number, variables: readonly TF.Variable[]): number {
    const tf = this.tf;
    const { value, grads } = tf.variableGrads(() => loss(heldOut.xs, heldOut.ys), [...variables]);
    value.dispose();
    const result = tf.tidy(() =>
      tf.addN(Object.keys(trainGrads).map((n) => tf.sum(tf.mul(tf.sub(grads[n], trainGrads[n]), tf.mul(trainGrads[n], -lr))))).dataSync()[0],
    );
    for (const t of Object.values(grads)) t.dispose();
    return result;
  }

  /** A metric point from this step's statistics. */
  point(step: number, stats: StepStats, extra: Omit<MetricPoint, 'step' | 'trainLoss' | 'gradNorm' | 'gradVariance'> = {}): MetricPoint {
    return { step, trainLoss: stats.loss, gradNorm: stats.gradNorm, gradVariance: stats.gradVariance, ...extra };
  }

  dispose(): void {
    this.disposeSnapshot();
  }

  private disposeSnapshot(): void {
    if (this.previous) for (const t of this.previous.values()) t.dispose();
    this.previous = null;
  }
}
