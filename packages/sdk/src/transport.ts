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

/**
 * One HTTP exchange at a time: errors typed, retries with backoff, JSON in and out, the bearer token on
 * every request. The token lives in a private field (so `util.inspect` and `JSON.stringify` of a client
 * never show it) and is cut out of any error message that would carry it.
 */
export class Transport {
  readonly #token: string | null;

  constructor(
    readonly url: string,
    private readonly fetchImpl: typeof fetch,
    private readonly timeoutMs: number,
    readonly retry: RetryOptions,
    token: string | null = null,
  ) {
    this.#token = token;
  }

  /** The request, retried as the spec allows; the parsed JSON answer. */
  json<T>(method: string, path: string, spec: RequestSpec = {}): Promise<T> {
    const attempt = async () => this.readJson<T>(await this.send(method, path, spec));
    if (spec.retry === false) return attempt();
    return withRetry(attempt, this.retry, spec.retry ?? isRetryable);
  }

  /** One attempt: a 2xx Response, or a TrajgateError / TrajgateConnectionError. */
  async send(method: string, path: string, spec: RequestSpec = {}): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', ...spec.headers };
    if (this.#token !== null) headers.authorization = `Bearer ${this.#token}`;
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
      throw this.redact(new TrajgateConnectionError(this.url, err));
    }
    if (!res.ok) throw this.redact(await errorFromResponse(res));
    return res;
  }

  /** The error with the token cut out of its message and stack (a proxy echoing headers, say). */
  private redact<E extends Error>(err: E): E {
    const token = this.#token;
    if (token === null) return err;
    const cut = (text: string) => text.split(token).join('<token>');
    if (err.message.includes(token)) err.message = cut(err.message);
    if (err.stack?.includes(token)) err.stack = cut(err.stack);
    return err;
  }

  private async readJson<T>(res: Response): Promise<T> {
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw this.redact(new TrajgateConnectionError(this.url, err));
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw this.redact(new TrajgateError(res.status, 'invalid_response', `expected JSON, got: ${text.slice(0, 200)}`));
    }
  }
}
