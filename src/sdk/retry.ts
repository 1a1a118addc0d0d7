import { TrajgateConnectionError, TrajgateError } from './errors.js';

export interface RetryOptions {
  /** Attempts after the first. Default 5. */
  retries?: number;
  /** First backoff ceiling in ms; doubles each attempt. Default 200. */
  baseDelayMs?: number;
  /** Largest backoff ceiling in ms. Default 10,000. */
  maxDelayMs?: number;
}

/** Connection failures, 429 and 5xx are worth another try; other 4xx are the caller's to fix. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof TrajgateConnectionError) return true;
  return err instanceof TrajgateError && (err.status === 429 || err.status >= 500);
}

/** Runs `attempt` until it succeeds or fails for good, sleeping with exponential backoff and full jitter. */
export async function withRetry<T>(attempt: (n: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const retries = options.retries ?? 5;
  const base = options.baseDelayMs ?? 200;
  const max = options.maxDelayMs ?? 10_000;
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (n >= retries || !isRetryable(err)) throw err;
      const ceiling = Math.min(max, base * 2 ** n);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
    }
  }
}
