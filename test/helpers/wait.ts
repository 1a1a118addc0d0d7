/**
 * Waiting in tests without betting on wall-clock time: wait on the event itself (`within`), or, where no
 * event exists, poll its effect with a deadline (`waitFor`). The deadlines are safety nets for a loaded CI
 * machine, not expectations: a wait that runs out fails naming what it waited for.
 */

export interface WaitOptions {
  /** What is awaited, for the error message: "the server to stage the upload". */
  what: string;
  /** Give up after this long. Default 10 s. */
  timeoutMs?: number;
}

export interface PollOptions extends WaitOptions {
  /** Pause between two checks. Default 10 ms. */
  intervalMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/** Polls `predicate` until it returns a truthy value, and returns that value; throws once the deadline passes. */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  { what, timeoutMs = DEFAULT_TIMEOUT_MS, intervalMs = 10 }: PollOptions,
): Promise<NonNullable<T>> {
  const deadline = performance.now() + timeoutMs;
  for (let checks = 1; ; checks++) {
    const value = await predicate();
    if (value) return value as NonNullable<T>;
    if (performance.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms (${checks} checks) waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Resolves as `promise` does, or rejects naming `what` if it has not settled within the deadline. */
export function within<T>(promise: Promise<T>, { what, timeoutMs = DEFAULT_TIMEOUT_MS }: WaitOptions): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** A promise and the function that resolves it, for turning a callback into something to wait on. */
export function signal<T = void>(): { promise: Promise<T>; resolve: (value: T) => void; settled: () => boolean } {
  let settled = false;
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = (value) => {
      settled = true;
      r(value);
    };
  });
  return { promise, resolve, settled: () => settled };
}
