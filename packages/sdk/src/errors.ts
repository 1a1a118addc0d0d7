import type { ErrorCode } from './contract/error-codes.js';

/**
 * Errors the SDK raises. A server error keeps the server's catalogue `code` (`contract/error-codes.ts`); a failure to reach the server at all (refused, reset, timed out) is a TrajgateConnectionError.
 */
export type KnownErrorCode =
  | ErrorCode
  /** SDK-side: a 2xx answer whose body was not the JSON the API promises. */
  | 'invalid_response'
  /** SDK-side: a one-shot stream failed part-way and cannot be sent again (pass a stream factory). */
  | 'stream_not_replayable';

/**
 * An answer from the server that is not a success, or (with `status` 0) a check the SDK made itself,
 * e.g. a download whose bytes do not hash to the checkpoint's SHA-256 (`checksum_mismatch`).
 */
export class TrajgateError extends Error {
  /** From a `Retry-After` header on 429 and 503 answers, in ms; retries wait at least this long. */
  retryAfterMs?: number;

  constructor(
    /** The HTTP status; 0 when the SDK raised the error itself. */
    readonly status: number,
    /** The server's error code, or `http_<status>` when the answer was not trajgate's error shape. */
    readonly code: KnownErrorCode | (string & {}),
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'TrajgateError';
  }
}

/** The server could not be reached, or the connection failed before a whole answer arrived. */
export class TrajgateConnectionError extends Error {
  constructor(
    readonly url: string,
    cause: unknown,
  ) {
    super(`cannot reach trajgate at ${url}: ${describeCause(cause)}`, { cause });
    this.name = 'TrajgateConnectionError';
  }
}

/** A failure of the local file system (a file to upload gone, a disk full), as opposed to the network. */
export function isLocalIoError(err: unknown): err is NodeJS.ErrnoException {
  return (
    err instanceof Error &&
    typeof (err as NodeJS.ErrnoException).syscall === 'string' &&
    typeof (err as NodeJS.ErrnoException).path === 'string'
  );
}

/** undici wraps the useful part (ECONNREFUSED, "other side closed") in `cause`. */
function describeCause(cause: unknown): string {
  if (!(cause instanceof Error)) return String(cause);
  return cause.cause instanceof Error ? cause.cause.message : cause.message;
}

/** Turns a non-2xx response into a TrajgateError (reading its body). */
export async function errorFromResponse(res: Response): Promise<TrajgateError> {
  const text = await res.text().catch(() => '');
  let error: TrajgateError | undefined;
  try {
    const body = JSON.parse(text) as {
      error?: { code?: unknown; message?: unknown; details?: Record<string, unknown> };
    };
    const e = body.error;
    if (e && typeof e.code === 'string') {
      error = new TrajgateError(
        res.status,
        e.code,
        typeof e.message === 'string' ? e.message : res.statusText,
        e.details,
      );
    }
  } catch {
    // not JSON: a proxy's error page, say
  }
  error ??= new TrajgateError(
    res.status,
    `http_${res.status}`,
    `${res.status} ${res.statusText}${text ? `: ${text.slice(0, 200)}` : ''}`,
  );
  const retryAfter = parseRetryAfter(res.headers.get('retry-after'));
  if (retryAfter !== undefined) error.retryAfterMs = retryAfter;
  return error;
}

/** `Retry-After` as delta-seconds or an HTTP date, in ms from now. */
function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
