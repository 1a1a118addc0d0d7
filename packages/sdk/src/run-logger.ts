import type { TrajgateClient, UploadOptions } from './client.js';
import { BackgroundQueue } from './queue.js';
import type { CheckpointSource } from './source.js';
import type { MetricPoint, RunInput, UploadResult } from './contract/api.js';

export interface RunLoggerOptions extends RunInput {
  /** The run's fields, as an object; merged with the top-level ones (kept for older callers). */
  run?: RunInput;
  /** Uploads running at once. Default 2. */
  uploadConcurrency?: number;
  /** Uploads waiting or running before `checkpoint()` waits. Default 4. */
  uploadCapacity?: number;
  /** Points per metric batch. Default 1000. */
  batchSize?: number;
  /** A partial batch is sent after this long, in ms. Default 1000. */
  flushIntervalMs?: number;
  /**
   * Metric batches waiting or in flight before `log()` waits. Default 32. With the batch size this bounds
   * the points held in memory: at most (metricCapacity + 1) × batchSize.
   */
  metricCapacity?: number;
  /** Metric batch encoding. Default msgpack. */
  metricFormat?: 'msgpack' | 'json';
  /** Called with each background failure as it happens; `flush()` and `close()` also reject with them. */
  onError?: (err: unknown) => void;
  /** Called after each upload is stored, with the server's record and retention decision. */
  onUploaded?: (result: UploadResult) => void;
}

const RUN_FIELDS = ['plannedSteps', 'trainSize', 'allowShapeChange', 'tags'] as const;

/**
 * What a training loop talks to (`client.run(id, options)`). `log()` and `checkpoint()` hand work to
 * bounded background queues and return at once, waiting only while a queue is full (back-pressure).
 * Metric batches are sent one at a time, in the order logged; uploads run `uploadConcurrency` at once.
 * Call `close()` at the end: it sends what is buffered and rejects with any background failure (failures
 * are kept until a `flush()` or `close()` reports them, and passed to `onError` as they happen).
 */
export class RunLogger {
  private readonly uploads: BackgroundQueue;
  private readonly metrics: BackgroundQueue;
  private readonly runInput: RunInput | null;
  private buffer: MetricPoint[] = [];
  private timer: NodeJS.Timeout | null = null;
  private ready: Promise<unknown> | null = null;
  private closed = false;

  constructor(
    private readonly client: TrajgateClient,
    /** The run id. */
    readonly id: string,
    private readonly options: RunLoggerOptions = {},
  ) {
    this.uploads = new BackgroundQueue({
      concurrency: options.uploadConcurrency ?? 2,
      capacity: options.uploadCapacity ?? 4,
      onError: options.onError,
    });
    this.metrics = new BackgroundQueue({
      concurrency: 1,
      capacity: options.metricCapacity ?? 32,
      onError: options.onError,
    });
    const input: RunInput = { ...options.run };
    for (const key of RUN_FIELDS) if (options[key] !== undefined) Object.assign(input, { [key]: options[key] });
    this.runInput = Object.keys(input).length > 0 ? input : null;
  }

  /**
   * Records one metric point. Resolves at once, except when a full batch finds the metric queue full:
   * then it waits until one batch has been sent.
   */
  async log(point: MetricPoint): Promise<void> {
    this.assertOpen();
    this.buffer.push(point);
    if (this.buffer.length >= (this.options.batchSize ?? 1000)) await this.sendBuffer();
    else
      this.timer ??= setTimeout(
        () => void this.sendBuffer().catch(() => undefined),
        this.options.flushIntervalMs ?? 1000,
      ).unref();
  }

  /**
   * Queues an upload of the checkpoint at `step` (tensors, a file path or a stream; see
   * CheckpointSource) and resolves once it is queued: at once unless `uploadCapacity` uploads are
   * already waiting or running. Tensor data is read when the upload runs: do not overwrite it before.
   */
  async checkpoint(step: number, source: CheckpointSource, options: UploadOptions = {}): Promise<void> {
    this.assertOpen();
    await this.uploads.enqueue(async () => {
      await this.ensureRun();
      const result = await this.client.uploadCheckpoint(this.id, step, source, options);
      this.options.onUploaded?.(result);
    });
  }

  /** Sends buffered points and waits for every queued batch and upload; rejects with failures so far. */
  async flush(): Promise<void> {
    await this.sendBuffer();
    const results = await Promise.allSettled([this.metrics.flush(), this.uploads.flush()]);
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new AggregateError(failures, `${failures.length} background operations failed`);
  }

  /** Flushes, then refuses further work. Rejects with any background failure not yet reported. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      await Promise.allSettled([this.metrics.close(), this.uploads.close()]);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`run logger for '${this.id}' is closed`);
  }

  private async sendBuffer(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    await this.metrics.enqueue(async () => {
      await this.ensureRun();
      await this.client.logMetrics(this.id, batch, { format: this.options.metricFormat });
    });
  }

  /** PUTs the run once before its first batch or upload; a failed attempt is tried again next time. */
  private ensureRun(): Promise<unknown> {
    if (!this.runInput) return Promise.resolve();
    this.ready ??= this.client.putRun(this.id, this.runInput).catch((err: unknown) => {
      this.ready = null;
      throw err;
    });
    return this.ready;
  }
}
