import { TrajgateConnectionError, TrajgateError } from './errors.js';

export interface RetryOptions {
  /** Attempts after the first. Default 5. */
  retries?: number;
  /** Ceiling of the first backoff in ms; doubles each attempt. Default 200. */
  baseDelayMs?: number;
  /** Largest backoff in ms (a server's Retry-After is capped by it too). Default 10,000. */
  maxDelayMs?: number;
}

/** Connection failures, 429 and 5xx are worth another try; other 4xx are the caller's to fix. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof TrajgateConnectionError) return true;
  return err instanceof TrajgateError && (err.status === 429 || err.status >= 500);
}

/**
 * Runs `attempt` until it succeeds or fails for good. Between attempts it sleeps a random time in
 * [0, min(maxDelayMs, baseDelayMs · 2^n)] ("full jitter", so many clients hit by one outage do not come
 * back in lockstep), but at least the server's Retry-After. `canRetry` narrows which errors are retried.
 */
export async function withRetry<T>(
  attempt: (n: number) => Promise<T>,
  options: RetryOptions = {},
  canRetry: (err: unknown) => boolean = isRetryable,
): Promise<T> {
  const retries = options.retries ?? 5;
  const base = options.baseDelayMs ?? 200;
  const max = options.maxDelayMs ?? 10_000;
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (n >= retries || !canRetry(err)) throw err;
      const jitter = Math.random() * Math.min(max, base * 2 ** n);
      const floor =
        err instanceof TrajgateError && err.retryAfterMs !== undefined ? Math.min(max, err.retryAfterMs) : 0;
      await new Promise((resolve) => setTimeout(resolve, Math.max(jitter, floor)));
    }
  }
}
