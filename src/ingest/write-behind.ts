import type { BlobWriter } from '../storage/blob-store.js';

export interface WriteBehindOptions {
  /** Chunks are handed to the writer in batches of at least this many bytes (the last one may be smaller). */
  batchBytes: number;
  /** Bytes taken but not yet written (queued plus the write in flight) above which `push` asks to wait. */
  maxBufferedBytes: number;
}

export const DEFAULT_WRITE_BEHIND: Readonly<WriteBehindOptions> = Object.freeze({
  batchBytes: 4 * 1024 * 1024,
  maxBufferedBytes: 16 * 1024 * 1024,
});

/** A batch is written once it holds this many chunks, whatever their size (writev takes up to 1024). */
const MAX_BATCH_CHUNKS = 1024;

/**
 * Bounded write-behind in front of a `BlobWriter`: `push` takes a chunk synchronously and returns at once,
 * so the caller goes on receiving and analysing while earlier bytes are being written; chunks are batched
 * into writes of `batchBytes` (one `write` call with several buffers: no copy) and written one batch at a
 * time, in order, by a single drain loop. When more than `maxBufferedBytes` are waiting, `push` returns
 * false and the caller waits on `drained()` — that is the back-pressure that reaches the socket.
 *
 * Pushed chunks are kept (not copied) until written: a caller must not reuse a chunk's memory after
 * pushing it (Node streams never do). The first write failure is kept; `push` stops taking chunks
 * (returns false, `drained()` rejects) and `finish()` rejects with it.
 */
export class WriteBehind {
  private batch: Uint8Array[] = [];
  private batchSize = 0;
  private readonly queue: Uint8Array[][] = [];
  /** Bytes pushed but not yet written: the current batch, the queue and the write in flight. */
  private buffered = 0;
  private draining: Promise<void> | null = null;
  private failure: { error: unknown } | null = null;
  private waiter: { resolve: () => void; reject: (err: unknown) => void } | null = null;
  private written = 0;

  constructor(
    private readonly writer: BlobWriter,
    private readonly options: WriteBehindOptions = DEFAULT_WRITE_BEHIND,
  ) {}

  /** Bytes the writer has accepted so far. */
  get bytesWritten(): number {
    return this.written;
  }

  /** Takes `chunk`; false means "wait for `drained()` before pushing more" (or a write failed). */
  push(chunk: Uint8Array): boolean {
    if (this.failure) return false;
    if (chunk.byteLength === 0) return true;
    this.batch.push(chunk);
    this.batchSize += chunk.byteLength;
    this.buffered += chunk.byteLength;
    if (this.batchSize >= this.options.batchBytes || this.batch.length >= MAX_BATCH_CHUNKS) this.seal();
    return !this.full();
  }

  /** Resolves once the buffered bytes are back under the limit; rejects if a write failed. */
  drained(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure.error);
    if (!this.full()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** Writes what is left and waits for every write; rejects with the first write failure. */
  async finish(): Promise<void> {
    this.seal();
    while (this.draining) await this.draining;
    if (this.failure) throw this.failure.error;
  }

  /** Stops writing: drops what is queued and waits for the write in flight (the caller aborts the writer). */
  async stop(): Promise<void> {
    this.queue.length = 0;
    this.batch = [];
    this.batchSize = 0;
    this.failure ??= { error: new Error('write-behind stopped') };
    while (this.draining) await this.draining.catch(() => undefined);
  }

  /** Over the byte limit, or holding so many small batches that their count is the cost. */
  private full(): boolean {
    return (
      this.buffered > this.options.maxBufferedBytes ||
      this.queue.length > Math.ceil(this.options.maxBufferedBytes / this.options.batchBytes)
    );
  }

  private seal(): void {
    if (this.batchSize === 0) return;
    this.queue.push(this.batch);
    this.batch = [];
    this.batchSize = 0;
    this.draining ??= this.drain();
  }

  private async drain(): Promise<void> {
    try {
      for (let next = this.queue.shift(); next && !this.failure; next = this.queue.shift()) {
        const size = next.reduce((n, c) => n + c.byteLength, 0);
        await this.writer.write(next.length === 1 ? next[0] : next);
        this.written += size;
        this.buffered -= size;
        if (this.waiter && !this.full()) {
          this.waiter.resolve();
          this.waiter = null;
        }
      }
    } catch (err) {
      this.failure ??= { error: err };
      this.waiter?.reject(err);
      this.waiter = null;
    } finally {
      this.draining = null;
    }
  }
}
