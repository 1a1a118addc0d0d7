import { createHash } from 'node:crypto';
import type { AppError } from '../errors.js';
import type { BlobWriter } from '../storage/blob-store.js';
import { type AnalysisSession, type AnalysisWorkers, inlineSession } from './analysis-worker.js';
import type { BodyAnalysisResult, BodyAnalysisStart } from './body-analysis.js';

export interface PipelineOptions {
  /** Bytes per slab: the unit of analysis hand-off and of writes. */
  slabBytes: number;
  /** Slabs per upload: the bound on bytes received but not yet both analysed and written. */
  slabs: number;
  /** Bodies declared larger than this (or of unknown length) are analysed on a worker thread, if one is free. */
  workerAboveBytes: number;
  /** The process's analysis workers; null: every body is analysed on the request thread. */
  workers: AnalysisWorkers | null;
}

/** Every body analysed on the request thread; the gateway passes its workers (TRAJGATE_ANALYSIS_THREADS). */
export const DEFAULT_PIPELINE: Readonly<PipelineOptions> = Object.freeze({
  slabBytes: 1024 * 1024,
  slabs: 6,
  workerAboveBytes: 8 * 1024 * 1024,
  workers: null,
});

export interface PipelineOutcome extends BodyAnalysisResult {
  /** Bytes received (and written). */
  bytes: number;
  sha256: string;
}

/**
 * The ingest hot path, one reusable unit: receive → hash and analyse (decoder, statistics) → write, with
 * bounded buffering between them. Received chunks are copied into a ring of `slabs` slabs; a full slab is
 * hashed here, goes at once to the analysis (a worker thread for large bodies, so the decoder and the
 * trajectory kernels run beside the request's thread) and to the blob writer (one slab per write, in
 * order), and is reused once both are done with it. The receive loop waits only when every slab is busy: that back-pressure reaches
 * the socket. Memory per upload is `slabs × slabBytes` whatever the body size.
 *
 * Resolves once the body is whole, analysed and written (not committed: the caller commits or aborts the
 * writer). Rejects with the first failure of the body, the analysis or a write; in-flight writes have
 * settled by then.
 */
export async function runIngestPipeline(
  body: AsyncIterable<Uint8Array>,
  writer: BlobWriter,
  start: BodyAnalysisStart,
  options: PipelineOptions = DEFAULT_PIPELINE,
): Promise<PipelineOutcome> {
  const large = start.contentLength === undefined || start.contentLength > options.workerAboveBytes;
  const workers = large && options.workers?.available() ? options.workers : null;
  const onWorker = workers !== null;
  // A worker gets all its shared slabs up front; inline, slabs are allocated when first used and no larger
  // than the declared body, so a small upload does not pay for the whole ring.
  const slabBytes = onWorker
    ? options.slabBytes
    : Math.max(1, Math.min(options.slabBytes, start.contentLength ?? options.slabBytes));
  const buffers = onWorker ? Array.from({ length: options.slabs }, () => new SharedArrayBuffer(slabBytes)) : [];
  const slabs: Uint8Array[] = buffers.map((b) => new Uint8Array(b));
  const slabOf = (slot: number) => {
    slabs[slot] ??= new Uint8Array(slabBytes);
    return slabs[slot];
  };
  const ring = new SlabRing(options.slabs);
  const hooks = { onDone: (slot: number) => ring.release(slot), onFailure: (err: AppError) => ring.fail(err) };
  const session: AnalysisSession = workers
    ? workers.session(start, buffers, hooks)
    : inlineSession(start, slabs, hooks);
  const writes = new SlabWriter(writer, slabs, ring);

  // SHA-256 on this thread, slab by slab: it and the copy keep this thread about as busy as the analysis
  // keeps the worker (measured), so neither waits long for the other.
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    let slot = await ring.acquire();
    let used = 0;
    const seal = () => {
      ring.hold(slot, 2); // the analysis and the write each release it once
      session.submit(slot, used);
      hash.update(slabOf(slot).subarray(0, used));
      writes.enqueue(slot, used);
    };
    for await (const chunk of body) {
      ring.throwIfFailed();
      bytes += chunk.byteLength;
      for (let offset = 0; offset < chunk.byteLength; ) {
        const n = Math.min(chunk.byteLength - offset, slabBytes - used);
        slabOf(slot).set(chunk.subarray(offset, offset + n), used);
        used += n;
        offset += n;
        if (used === slabBytes) {
          seal();
          slot = ring.tryAcquire() ?? (await ring.acquire());
          used = 0;
        }
      }
    }
    if (used > 0) seal();
    else ring.release(slot, 1);
    const result = await session.finish();
    await writes.finish();
    return { ...result, bytes, sha256: hash.digest('hex') };
  } catch (err) {
    session.abandon();
    await writes.stop();
    throw ring.failure ?? err;
  }
}

/**
 * Which slabs are free. A slab in use carries a count of holders (the analysis and the write); it is free
 * again when the count reaches zero. `fail` wakes a waiting `acquire` with the error.
 */
class SlabRing {
  private readonly holders: number[];
  private readonly free: number[];
  private waiter: { resolve(slot: number): void; reject(err: unknown): void } | null = null;
  failure: unknown = null;

  constructor(count: number) {
    this.holders = new Array(count).fill(0);
    this.free = Array.from({ length: count }, (_, i) => count - 1 - i);
  }

  tryAcquire(): number | undefined {
    this.throwIfFailed();
    const slot = this.free.pop();
    if (slot !== undefined) this.holders[slot] = 1;
    return slot;
  }

  acquire(): Promise<number> {
    const slot = this.tryAcquire();
    if (slot !== undefined) return Promise.resolve(slot);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  hold(slot: number, holders: number): void {
    this.holders[slot] = holders;
  }

  release(slot: number, times = 1): void {
    this.holders[slot] -= times;
    if (this.holders[slot] > 0) return;
    const waiter = this.waiter;
    if (waiter && !this.failure) {
      this.waiter = null;
      this.holders[slot] = 1;
      waiter.resolve(slot);
    } else {
      this.free.push(slot);
    }
  }

  fail(err: unknown): void {
    this.failure ??= err;
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.reject(this.failure);
  }

  throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }
}

/** Writes sealed slabs in order, one at a time; a failed write fails the ring. */
class SlabWriter {
  private readonly queue: { slot: number; length: number }[] = [];
  private draining: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly writer: BlobWriter,
    private readonly slabs: Uint8Array[],
    private readonly ring: SlabRing,
  ) {}

  enqueue(slot: number, length: number): void {
    this.queue.push({ slot, length });
    this.kick();
  }

  async finish(): Promise<void> {
    while (this.draining) await this.draining;
    this.ring.throwIfFailed();
  }

  /** Drops what is queued and waits for the write in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    while (this.draining) await this.draining;
  }

  /** Starts the drain loop unless it runs; `draining` is cleared only after the loop's promise settled. */
  private kick(): void {
    if (this.draining || this.queue.length === 0) return;
    this.draining = this.drain().finally(() => {
      this.draining = null;
      this.kick();
    });
  }

  private async drain(): Promise<void> {
    for (let next = this.queue.shift(); next; next = this.queue.shift()) {
      if (!this.stopped && !this.ring.failure) {
        try {
          await this.writer.write(this.slabs[next.slot].subarray(0, next.length));
        } catch (err) {
          this.ring.fail(err);
        }
      }
      this.ring.release(next.slot);
    }
  }
}
