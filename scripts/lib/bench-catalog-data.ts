/**
 * Synthetic but realistic catalog content for scripts/bench-catalog.ts: a Llama-like tensor table, the
 * trajectory summaries an upload of each checkpoint would store (the gateway's sketch spec and per-tensor
 * sketch plan, so every stored summary has the byte size a real one has), and the metric points a training
 * loop logs between checkpoints.
 *
 * What is simulated: the sketch *values*. Computing them the way the ingest does (one pass over every
 * weight) would mean reading about 2 GiB of BF16 weights per checkpoint, 100,000 times. A CountSketch is
 * linear, so the sketch of w_t is the sketch of w_0 plus the sketches of the updates; the sketch of a
 * dense random vector of norm r has independent buckets of variance r²/k. Each run therefore starts from
 * Gaussian buckets of the initial weights' norms and adds, per checkpoint, a Gaussian update of the norm an
 * lr-scheduled training step gives, correlated with the previous update (momentum), so the indicators the
 * real code computes from these sketches (update norms, cosines, path length, top tensors) look like a
 * real run's. Exact statistics (norm, mean, maxAbs) follow the same norms.
 */
import { tensorEntryOf } from '../../src/ingest/checkpoint-analysis.js';
import { elementCount, type Dtype } from '@trajgate/sdk/wire/dtypes';
import type { NewCheckpoint } from '../../src/catalog/catalog.js';
import type { MetricPoint, TensorEntry } from '../../src/model/records.js';
import type { CheckpointSummary, SketchSpec, TensorStats } from '../../src/model/summary.js';
import { checkpointDataKey } from '../../src/storage/keys.js';
import { DEFAULT_SKETCH_SPEC } from '../../src/trajectory/accumulator.js';
import { planTensorSketches, type TensorSketchPlan } from '../../src/trajectory/tensor-sketch-plan.js';
import { deriveSeed, mulberry32 } from './mnist-data.js';

export interface ModelTensor {
  name: string;
  dtype: Dtype;
  shape: number[];
  count: number;
  /** Standard deviation of the initial values (0: a norm weight initialised to ones). */
  initStd: number;
}

const HIDDEN = 2048;
const INTERMEDIATE = 5632;
const KV = 256;
const VOCAB = 32000;

/**
 * `n` tensors of a TinyLlama-1.1B-like model (BF16): the embedding, decoder layers of 9 tensors each
 * (attention q/k/v/o, MLP gate/up/down, two RMSNorm weights) and the final norm. n = 200 is the real model's
 * table: 22 layers, 1.1 billion parameters.
 */
export function llamaLikeTable(n: number): ModelTensor[] {
  const layer = (i: number): [string, number[], number][] => {
    const p = `model.layers.${i}`;
    return [
      [`${p}.input_layernorm.weight`, [HIDDEN], 0],
      [`${p}.self_attn.q_proj.weight`, [HIDDEN, HIDDEN], 0.02],
      [`${p}.self_attn.k_proj.weight`, [KV, HIDDEN], 0.02],
      [`${p}.self_attn.v_proj.weight`, [KV, HIDDEN], 0.02],
      [`${p}.self_attn.o_proj.weight`, [HIDDEN, HIDDEN], 0.02],
      [`${p}.post_attention_layernorm.weight`, [HIDDEN], 0],
      [`${p}.mlp.gate_proj.weight`, [INTERMEDIATE, HIDDEN], 0.02],
      [`${p}.mlp.up_proj.weight`, [INTERMEDIATE, HIDDEN], 0.02],
      [`${p}.mlp.down_proj.weight`, [HIDDEN, INTERMEDIATE], 0.02],
    ];
  };
  const specs: [string, number[], number][] = [['model.embed_tokens.weight', [VOCAB, HIDDEN], 0.02]];
  for (let i = 0; specs.length < n - 1; i++) specs.push(...layer(i).slice(0, n - 1 - specs.length));
  if (n > 1) specs.push(['model.norm.weight', [HIDDEN], 0]);
  return specs.map(([name, shape, initStd]) => ({ name, dtype: 'BF16', shape, count: elementCount(shape), initStd }));
}

/** Standard normal deviates from a seeded uniform source (Box-Muller, both outputs used). */
export class Gaussian {
  private spare: number | null = null;
  constructor(private readonly uniform: () => number) {}

  next(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    const u = 1 - this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    const theta = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  fill(out: Float64Array, sd: number): void {
    for (let i = 0; i < out.length; i++) out[i] = sd * this.next();
  }
}

/** Training shape shared by the summaries and the metric points of a run. */
export interface RunShape {
  checkpoints: number;
  /** Optimizer steps between checkpoints. */
  interval: number;
  /** Metric points logged over the run. */
  points: number;
}

const PEAK_LR = 4e-4;
const WARMUP_FRACTION = 0.02;
/** Relative change of a weight matrix over one checkpoint interval at the peak learning rate. */
const PEAK_RELATIVE_UPDATE = 0.01;
/** Correlation of consecutive updates in sketch space (momentum). */
const MOMENTUM = 0.3;

/** Warm-up then cosine decay to 10% of the peak, as a fraction of the run's planned steps. */
export function learningRate(step: number, plannedSteps: number): number {
  const f = step / plannedSteps;
  if (f < WARMUP_FRACTION) return (PEAK_LR * f) / WARMUP_FRACTION;
  const progress = (f - WARMUP_FRACTION) / (1 - WARMUP_FRACTION);
  return PEAK_LR * (0.1 + 0.45 * (1 + Math.cos(Math.PI * Math.min(1, progress))));
}

/**
 * One run's checkpoints, generated in step order: `next()` gives the NewCheckpoint the ingest would hand
 * `insertCheckpoint` for the next checkpoint (summary included).
 */
export class SyntheticRun {
  readonly plans: TensorSketchPlan[];
  private readonly gauss: Gaussian;
  private readonly uniform: () => number;
  private readonly sumSq: Float64Array;
  private readonly means: Float64Array;
  private readonly initNorms: Float64Array;
  private sketch: Float64Array;
  private tensorSketches: Float64Array[];
  private direction: Float64Array;
  private tensorDirections: Float64Array[];
  private index = 0;
  private readonly bytes: number;

  constructor(
    readonly run: string,
    readonly table: readonly ModelTensor[],
    readonly shape: RunShape,
    seed: number,
    readonly spec: SketchSpec = DEFAULT_SKETCH_SPEC,
  ) {
    this.uniform = mulberry32(seed);
    this.gauss = new Gaussian(this.uniform);
    this.plans = planTensorSketches(table, spec.tensorK);
    this.sumSq = Float64Array.from(table, (t) => (t.initStd === 0 ? t.count : t.initStd * t.initStd * t.count));
    this.initNorms = this.sumSq.map(Math.sqrt);
    this.means = Float64Array.from(table, (t) => (t.initStd === 0 ? 1 : (t.initStd / Math.sqrt(t.count)) * 0.1));
    const total = this.sumSq.reduce((a, b) => a + b, 0);
    this.sketch = new Float64Array(spec.k);
    this.gauss.fill(this.sketch, Math.sqrt(total / spec.k));
    this.tensorSketches = this.plans.map((p, i) => {
      const s = new Float64Array(p.length);
      this.gauss.fill(s, Math.sqrt(this.sumSq[i] / Math.max(1, p.length)));
      return s;
    });
    this.direction = new Float64Array(spec.k);
    this.tensorDirections = this.plans.map((p) => new Float64Array(p.length));
    this.bytes = 8 + 4096 + table.reduce((n, t) => n + 2 * t.count, 0);
  }

  get plannedSteps(): number {
    return this.shape.checkpoints * this.shape.interval;
  }

  /** Step of checkpoint i (0-based). */
  stepOf(i: number): number {
    return (i + 1) * this.shape.interval;
  }

  next(): NewCheckpoint {
    const step = this.stepOf(this.index);
    if (this.index > 0) this.advance(step);
    this.index++;
    const tensors: TensorStats[] = this.table.map((t, i) => {
      const norm = Math.sqrt(this.sumSq[i]);
      const rms = norm / Math.sqrt(t.count);
      return {
        name: t.name,
        dtype: t.dtype,
        shape: t.shape,
        count: t.count,
        norm,
        mean: this.means[i],
        // About the largest of `count` normal deviates, a little noisy; a norm weight stays near its mean.
        maxAbs:
          t.initStd === 0
            ? Math.abs(this.means[i]) + 3 * rms * (0.05 + 0.01 * this.uniform())
            : rms * Math.sqrt(2 * Math.log(t.count)) * (1 + 0.05 * this.uniform()),
        nanCount: 0,
        infCount: 0,
      };
    });
    const summary: CheckpointSummary = {
      step,
      spec: this.spec,
      sketch: this.sketch.slice(),
      tensors,
      tensorSketches: this.tensorSketches.map((s) => s.slice()),
      weightNorm: Math.sqrt(this.sumSq.reduce((a, b) => a + b, 0)),
    };
    const uploadId = `${(1_760_000_000_000 + step * 1000).toString(36)}${this.hex(12)}`;
    const entries: TensorEntry[] = tensors.map(tensorEntryOf);
    return {
      run: this.run,
      step,
      uploadId,
      sha256: this.hex(64),
      bytes: this.bytes,
      format: 'safetensors',
      blobKey: checkpointDataKey(this.run, step, uploadId, 'safetensors'),
      tensors: entries,
      metadata: { format: 'pt' },
      summary,
    };
  }

  /** One checkpoint interval of training up to `step`: every tensor moves by an lr-scaled update. */
  private advance(step: number): void {
    const lr = learningRate(step, this.plannedSteps);
    const relative = (PEAK_RELATIVE_UPDATE * lr) / PEAK_LR;
    const keep = MOMENTUM;
    const fresh = Math.sqrt(1 - MOMENTUM * MOMENTUM);
    let totalSq = 0;
    this.table.forEach((t, i) => {
      // Norm weights move less than matrices; each tensor's share varies a little from interval to interval.
      const u = relative * this.initNorms[i] * (t.initStd === 0 ? 0.2 : 1) * (0.8 + 0.4 * this.uniform());
      totalSq += u * u;
      this.sumSq[i] += u * u;
      this.means[i] += (u / t.count) * this.gauss.next();
      const plan = this.plans[i];
      if (plan.length === 0) return;
      const dir = this.tensorDirections[i];
      const sketch = this.tensorSketches[i];
      const sd = u / Math.sqrt(plan.length);
      for (let b = 0; b < dir.length; b++) {
        dir[b] = keep * dir[b] + fresh * this.gauss.next();
        sketch[b] += sd * dir[b];
      }
    });
    const sd = Math.sqrt(totalSq / this.spec.k);
    for (let b = 0; b < this.direction.length; b++) {
      this.direction[b] = keep * this.direction[b] + fresh * this.gauss.next();
      this.sketch[b] += sd * this.direction[b];
    }
  }

  private hex(digits: number): string {
    let s = '';
    while (s.length < digits)
      s += Math.floor(this.uniform() * 2 ** 32)
        .toString(16)
        .padStart(8, '0');
    return s.slice(0, digits);
  }
}

/**
 * The metric points a training loop logs over a run: `shape.points` points at evenly spaced steps up to the
 * last checkpoint, each with trainLoss, lr, gradNorm and batchSize; at every checkpoint step also valLoss and
 * extra.trainEvalLoss (an evaluation).
 */
export function runMetrics(shape: RunShape, seed: number): MetricPoint[] {
  const uniform = mulberry32(deriveSeed(seed, 1));
  const gauss = new Gaussian(uniform);
  const planned = shape.checkpoints * shape.interval;
  const points: MetricPoint[] = [];
  for (let i = 0; i < shape.points; i++) {
    const step = Math.max(1, Math.round(((i + 1) * planned) / shape.points));
    const progress = step / planned;
    const trainLoss = 2 + 8 * Math.exp(-6 * progress) + 0.05 * gauss.next();
    const p: MetricPoint = {
      step,
      trainLoss,
      lr: learningRate(step, planned),
      gradNorm: 0.3 + 2 * Math.exp(-4 * progress) + 0.05 * Math.abs(gauss.next()),
      batchSize: 256,
    };
    if (step % shape.interval === 0) {
      p.valLoss = trainLoss + 0.02 + 0.1 * progress;
      p.extra = { trainEvalLoss: trainLoss - 0.01 };
    }
    points.push(p);
  }
  return points;
}

/** Splits `total` into `parts` counts that differ by at most one. */
export function spread(total: number, parts: number, index: number): number {
  return Math.floor(total / parts) + (index < total % parts ? 1 : 0);
}
