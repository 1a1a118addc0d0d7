export interface QueueOptions {
  /** Tasks running at once. Default 2. */
  concurrency?: number;
  /** Tasks accepted (waiting or running) before `enqueue` makes the caller wait. Default 16. */
  capacity?: number;
  /** Called with each task failure as it happens (failures are also reported by flush and close). */
  onError?: (err: unknown) => void;
}

type Task = () => Promise<void>;

/**
 * A bounded background work queue: the caller hands work off and goes on, waiting only while the queue
 * holds `capacity` tasks (back-pressure). Tasks start in the order they were enqueued, callers waiting
 * for room are admitted first come, first served, and failures are never dropped: `flush()` and
 * `close()` reject with them.
 */
export class BackgroundQueue {
  private readonly concurrency: number;
  private readonly capacity: number;
  private readonly waiting: Task[] = [];
  private readonly blocked: { task: Task; admitted: () => void }[] = [];
  private running = 0;
  private failures: unknown[] = [];
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly options: QueueOptions = {}) {
    this.concurrency = Math.max(1, options.concurrency ?? 2);
    this.capacity = Math.max(this.concurrency, options.capacity ?? 16);
  }

  /** Tasks accepted and not yet finished (waiting or running). */
  get size(): number {
    return this.waiting.length + this.running;
  }

  /** Callers of `enqueue` waiting for room. */
  get blockedCallers(): number {
    return this.blocked.length;
  }

  /**
   * Accepts `task`; resolves once it is accepted, which is at once unless the queue is full. Rejects if
   * the queue is closed. The task's own outcome is reported by `flush()`, `close()` and `onError`.
   */
  enqueue(task: Task): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the queue is closed'));
    if (this.blocked.length === 0 && this.size < this.capacity) {
      this.waiting.push(task);
      this.pump();
      return Promise.resolve();
    }
    return new Promise<void>((admitted) => this.blocked.push({ task, admitted }));
  }

  /** Waits until every accepted task has finished; rejects with the failures since the last flush. */
  async flush(): Promise<void> {
    while (this.size > 0 || this.blocked.length > 0)
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    const failures = this.failures;
    this.failures = [];
    if (failures.length === 1) throw failures[0];
    if (failures.length > 1) throw new AggregateError(failures, `${failures.length} background tasks failed`);
  }

  /** Refuses new tasks, then flushes. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  private pump(): void {
    while (this.running < this.concurrency && this.waiting.length > 0) {
      const task = this.waiting.shift()!;
      this.running++;
      Promise.resolve()
        .then(task)
        .catch((err: unknown) => {
          this.failures.push(err);
          this.options.onError?.(err);
        })
        .finally(() => {
          this.running--;
          // Hand the freed slot straight to the longest-waiting caller, so nobody can jump the line.
          const next = this.blocked.shift();
          if (next) {
            this.waiting.push(next.task);
            next.admitted();
          }
          this.pump();
          if (this.size === 0 && this.blocked.length === 0) for (const wake of this.idleWaiters.splice(0)) wake();
        });
    }
  }
}
