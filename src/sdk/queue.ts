export interface QueueOptions {
  /** Tasks running at once. Default 2. */
  concurrency?: number;
  /** Tasks waiting or running before `enqueue` makes the caller wait. Default 16. */
  capacity?: number;
  /** Called with each task failure as it happens (failures are also reported by flush and close). */
  onError?: (err: unknown) => void;
}

/**
 * A bounded background work queue: training code hands work off and goes on, waiting only when the queue
 * is full (back-pressure). Failures are never dropped: `flush()` and `close()` reject with them.
 */
export class BackgroundQueue {
  private readonly concurrency: number;
  private readonly capacity: number;
  private readonly waiting: (() => Promise<void>)[] = [];
  private running = 0;
  private failures: unknown[] = [];
  private closed = false;
  private spaceWaiters: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly options: QueueOptions = {}) {
    this.concurrency = Math.max(1, options.concurrency ?? 2);
    this.capacity = Math.max(this.concurrency, options.capacity ?? 16);
  }

  /** Tasks waiting or running. */
  get size(): number {
    return this.waiting.length + this.running;
  }

  /** Resolves as soon as the task is accepted, which is at once unless the queue is full. */
  async enqueue(task: () => Promise<void>): Promise<void> {
    if (this.closed) throw new Error('the queue is closed');
    while (this.size >= this.capacity) await new Promise<void>((resolve) => this.spaceWaiters.push(resolve));
    this.waiting.push(task);
    this.pump();
  }

  /** Waits until every accepted task has finished; rejects with the failures since the last flush. */
  async flush(): Promise<void> {
    while (this.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    const failures = this.failures;
    this.failures = [];
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new AggregateError(failures, `${failures.length} background tasks failed`);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  private pump(): void {
    while (this.running < this.concurrency && this.waiting.length > 0) {
      const task = this.waiting.shift()!;
      this.running++;
      task()
        .catch((err: unknown) => {
          this.failures.push(err);
          this.options.onError?.(err);
        })
        .finally(() => {
          this.running--;
          this.spaceWaiters.shift()?.();
          if (this.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
          this.pump();
        });
    }
  }
}
