import type { TensorData } from '../wire/safetensors.js';
import type { CheckpointSource, TrajgateClient, UploadOptions } from './client.js';
import { BackgroundQueue } from './queue.js';
import type { MetricPoint, RunInput, UploadResult } from './types.js';

export interface RunLoggerOptions {
  /** Created or updated once, before the first metric batch or upload. */
  run?: RunInput;
  /** Uploads running at once. Default 2. */
  uploadConcurrency?: number;
  /** Uploads waiting or running before `checkpoint()` waits. Default 4. */
  uploadCapacity?: number;
  /** Points per metric batch. Default 1000. */
  batchSize?: number;
  /** A partial batch is sent after this long, in ms. Default 1000. */
  flushIntervalMs?: number;
  /** Metric batches waiting or in flight before `log()` waits. Default 32. */
  metricCapacity?: number;
  /** Called with each background failure as it happens; `flush()` and `close()` also reject with them. */
  onError?: (err: unknown) => void;
  /** Called after each upload is stored. */
  onUploaded?: (result: UploadResult) => void;
}

/**
 * What a training loop talks to. `log()` and `checkpoint()` hand work to bounded background queues and
 * return at once, waiting only when a queue is full (back-pressure); metric batches are sent one at a
 * time, in order. Call `close()` at the end: it sends what is left and reports any failure.
 */
export class RunLogger {
  private readonly uploads: BackgroundQueue;
  private readonly metrics: BackgroundQueue;
  private buffer: MetricPoint[] = [];
  private timer: NodeJS.Timeout | null = null;
  private ready: Promise<unknown> | null = null;

  constructor(
    private readonly client: TrajgateClient,
    readonly id: string,
    private readonly options: RunLoggerOptions = {},
  ) {
    this.uploads = new BackgroundQueue({ concurrency: options.uploadConcurrency ?? 2, capacity: options.uploadCapacity ?? 4, onError: options.onError });
    this.metrics = new BackgroundQueue({ concurrency: 1, capacity: options.metricCapacity ?? 32, onError: options.onError });
  }

  /** Records one metric point; resolves at once unless the metric queue is full. */
  async log(point: MetricPoint): Promise<void> {
    this.buffer.push(point);
    if (this.buffer.length >= (this.options.batchSize ?? 1000)) await this.sendBuffer();
    else this.timer ??= setTimeout(() => void this.sendBuffer().catch(() => undefined), this.options.flushIntervalMs ?? 1000).unref();
  }

  /** Queues an upload of the checkpoint at `step`; resolves once queued. */
  async checkpoint(step: number, source: CheckpointSource | readonly TensorData[], options: UploadOptions = {}): Promise<void> {
    const resolved: CheckpointSource = Array.isArray(source) ? { tensors: source as readonly TensorData[] } : (source as CheckpointSource);
    await this.uploads.enqueue(async () => {
      await this.ensureRun();
      const result = await this.client.uploadCheckpoint(this.id, step, resolved, options);
      this.options.onUploaded?.(result);
    });
  }

  /** Sends buffered points and waits for every queued batch and upload; rejects with failures. */
  async flush(): Promise<void> {
    await this.sendBuffer();
    const results = await Promise.allSettled([this.metrics.flush(), this.uploads.flush()]);
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new AggregateError(failures, `${failures.length} background operations failed`);
  }

  async close(): Promise<void> {
    await this.flush();
    await Promise.all([this.metrics.close(), this.uploads.close()]);
  }

  private async sendBuffer(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    await this.metrics.enqueue(async () => {
      await this.ensureRun();
      await this.client.logMetrics(this.id, batch);
    });
  }

  private ensureRun(): Promise<unknown> {
    this.ready ??= this.options.run ? this.client.putRun(this.id, this.options.run) : Promise.resolve();
    return this.ready;
  }
}
