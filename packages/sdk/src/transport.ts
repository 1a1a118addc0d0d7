import { TrajgateConnectionError, TrajgateError, errorFromResponse, isLocalIoError } from './errors.js';
import { withRetry, isRetryable, type RetryOptions } from './retry.js';
import type { ByteStream } from './source.js';

export interface RequestSpec {
  json?: unknown;
  /** A body factory, called once per attempt. */
  body?: () => ByteStream;
  headers?: Record<string, string>;
  /** false: one attempt; a function: which errors to retry (default: isRetryable). */
  retry?: false | ((err: unknown) => boolean);
  /** Apply the client's timeoutMs (default true; uploads and downloads are not timed as a whole). */
  timed?: boolean;
}

/** One HTTP exchange at a time: errors typed, retries with backoff, JSON in and out. */
export class Transport {
  constructor(
    readonly url: string,
    private readonly fetchImpl: typeof fetch,
    private readonly timeoutMs: number,
    readonly retry: RetryOptions,
  ) {}

  /** The request, retried as the spec allows; the parsed JSON answer. */
  json<T>(method: string, path: string, spec: RequestSpec = {}): Promise<T> {
    const attempt = async () => this.readJson<T>(await this.send(method, path, spec));
    if (spec.retry === false) return attempt();
    return withRetry(attempt, this.retry, spec.retry ?? isRetryable);
  }

  /** One attempt: a 2xx Response, or a TrajgateError / TrajgateConnectionError. */
  async send(method: string, path: string, spec: RequestSpec = {}): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', ...spec.headers };
    let body: ReadableStream<Uint8Array> | string | undefined;
    if (spec.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(spec.json);
    } else if (spec.body) {
      body = ReadableStream.from(spec.body());
    }
    const signal = spec.timed === false ? undefined : AbortSignal.timeout(this.timeoutMs);
    // `duplex: 'half'` is what undici requires for a streamed body; lib.dom's RequestInit lacks the key.
    const init: RequestInit & { duplex?: 'half' } = { method, headers, body, signal, duplex: 'half' };
    let res: Response;
    try {
      res = await this.fetchImpl(`${this.url}${path}`, init);
    } catch (err) {
      // A body that failed on its own (a one-shot stream read twice, a file gone) is not a network error.
      const cause = err instanceof Error ? err.cause : undefined;
      if (cause instanceof TrajgateError || isLocalIoError(cause)) throw cause;
      throw new TrajgateConnectionError(this.url, err);
    }
    if (!res.ok) throw await errorFromResponse(res);
    return res;
  }

  private async readJson<T>(res: Response): Promise<T> {
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw new TrajgateConnectionError(this.url, err);
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new TrajgateError(res.status, 'invalid_response', `expected JSON, got: ${text.slice(0, 200)}`);
    }
  }
}
