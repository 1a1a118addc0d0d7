import { Worker } from 'node:worker_threads';
import type { AppError } from '../errors.js';
import {
  BodyAnalysis,
  type BodyAnalysisResult,
  type BodyAnalysisStart,
  type SerializedError,
  deserializeError,
  serializeError,
} from './body-analysis.js';

/** Messages to the analysis worker (analysis-thread.ts). */
export type FromMain =
  | ({ type: 'start'; slabs: SharedArrayBuffer[] } & BodyAnalysisStart)
  | { type: 'data'; slot: number; length: number }
  | { type: 'end' };

/** Messages from the analysis worker. */
export type ToMain =
  | { type: 'ack'; slot: number }
  | ({ type: 'result' } & BodyAnalysisResult)
  | { type: 'error'; error: SerializedError };

/**
 * The analysis of one upload's body, fed slab by slab (ingest-pipeline.ts). `submit` hands over the first
 * `length` bytes of slab `slot`; `onDone(slot)` is called once the slab may be reused. The first error is
 * kept in `failure` as soon as it is known.
 */
export interface AnalysisSession {
  readonly failure: AppError | null;
  submit(slot: number, length: number): void;
  /** After the last submit: the result, or the first error. */
  finish(): Promise<BodyAnalysisResult>;
  /** The upload failed elsewhere: stop, release what the session holds. */
  abandon(): void;
}

export interface SessionHooks {
  onDone(slot: number): void;
  /** Called once, when the first error becomes known. */
  onFailure(err: AppError): void;
}

/** On the request's thread: each slab is analysed when submitted. For bodies too small to be worth a worker. */
export function inlineSession(start: BodyAnalysisStart, slabs: Uint8Array[], hooks: SessionHooks): AnalysisSession {
  let analysis: BodyAnalysis | null = null;
  let failure: AppError | null = null;
  const fail = (err: unknown) => {
    failure ??= deserializeError(serializeError(err));
    hooks.onFailure(failure);
  };
  try {
    analysis = new BodyAnalysis(start);
  } catch (err) {
    fail(err);
  }
  return {
    get failure() {
      return failure;
    },
    submit(slot, length) {
      if (!failure && analysis) {
        try {
          analysis.update(slabs[slot].subarray(0, length));
        } catch (err) {
          fail(err);
        }
      }
      hooks.onDone(slot);
    },
    async finish() {
      if (failure || !analysis) throw failure;
      try {
        return analysis.finish();
      } catch (err) {
        fail(err);
        throw failure;
      }
    },
    abandon() {
      analysis = null;
    },
  };
}

/**
 * Analysis workers, reused across uploads: an upload takes an idle one or starts one, and gives it back
 * when its analysis completed (a worker whose upload failed midway is terminated instead, so no state
 * carries over). At most `maxWorkers` exist at once (TRAJGATE_ANALYSIS_THREADS; each costs memory, a V8
 * isolate), so `available()` is false while they are all busy, or always with 0, and the upload analyses
 * inline. Workers start when first needed and never keep the process alive.
 */
export class AnalysisWorkers {
  private readonly idle: Worker[] = [];
  private busy = 0;

  constructor(private readonly maxWorkers: number) {}

  available(): boolean {
    return this.busy < this.maxWorkers;
  }

  session(start: BodyAnalysisStart, slabs: SharedArrayBuffer[], hooks: SessionHooks): AnalysisSession {
    const worker = this.idle.pop() ?? this.start();
    this.busy += 1;
    let failure: AppError | null = null;
    let settle: { resolve(r: BodyAnalysisResult): void; reject(e: unknown): void } | null = null;
    let result: BodyAnalysisResult | null = null;
    let released = false;
    const release = (reuse: boolean) => {
      if (released) return;
      released = true;
      this.busy -= 1;
      worker.off('message', onMessage);
      worker.off('error', onCrash);
      worker.off('exit', onCrash);
      if (reuse) this.idle.push(worker);
      else void worker.terminate();
    };
    const fail = (err: AppError) => {
      if (failure) return;
      failure = err;
      hooks.onFailure(err);
      settle?.reject(err);
      release(false);
    };
    const onMessage = (message: ToMain) => {
      if (message.type === 'ack') hooks.onDone(message.slot);
      else if (message.type === 'error') fail(deserializeError(message.error));
      else {
        result = { analysed: message.analysed };
        settle?.resolve(result);
        release(true);
      }
    };
    const onCrash = (err: unknown) =>
      fail(deserializeError({ code: 'internal', message: `the analysis worker stopped: ${String(err)}` }));
    worker.on('message', onMessage);
    worker.on('error', onCrash);
    worker.on('exit', onCrash);
    worker.postMessage({ type: 'start', slabs, ...start } satisfies FromMain);
    return {
      get failure() {
        return failure;
      },
      submit(slot, length) {
        if (failure) hooks.onDone(slot);
        else worker.postMessage({ type: 'data', slot, length } satisfies FromMain);
      },
      finish() {
        if (failure) return Promise.reject(failure);
        worker.postMessage({ type: 'end' } satisfies FromMain);
        return new Promise((resolve, reject) => {
          settle = { resolve, reject };
        });
      },
      abandon() {
        if (!result) release(false);
      },
    };
  }

  private start(): Worker {
    const worker = startWorker();
    // An idle worker that dies is dropped; a busy one's session reports it (its own listeners).
    worker.on('error', () => undefined);
    worker.once('exit', () => {
      const i = this.idle.indexOf(worker);
      if (i >= 0) this.idle.splice(i, 1);
    });
    return worker;
  }
}

/**
 * A worker on analysis-thread: the compiled `.js` beside this module, or under tsx (sources, tests) the
 * `.ts` with tsx's loader registered in the worker first (workers do not inherit `--import tsx`).
 */
function startWorker(): Worker {
  const fromSources = import.meta.url.endsWith('.ts');
  const entry = new URL(fromSources ? './analysis-thread.ts' : './analysis-thread.js', import.meta.url);
  const worker = fromSources
    ? new Worker(
        `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); })`,
        { eval: true },
      )
    : new Worker(entry);
  worker.unref();
  return worker;
}
