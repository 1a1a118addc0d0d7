/**
 * Errors the SDK raises. A server error keeps the server's catalogue `code` (see the OpenAPI
 * `ErrorCode` enum); a failure to reach the server at all is a TrajgateConnectionError.
 */
export type KnownErrorCode =
  | 'invalid_request'
  | 'invalid_run_id'
  | 'invalid_step'
  | 'malformed_checkpoint'
  | 'truncated_body'
  | 'length_mismatch'
  | 'checksum_mismatch'
  | 'invalid_checksum_header'
  | 'not_found'
  | 'run_not_found'
  | 'checkpoint_not_found'
  | 'policy_not_found'
  | 'checkpoint_conflict'
  | 'checkpoint_not_restorable'
  | 'checkpoint_discarded'
  | 'header_too_large'
  | 'body_too_large'
  | 'unsupported_media_type'
  | 'range_not_satisfiable'
  | 'unsupported_dtype'
  | 'shape_mismatch'
  | 'non_finite_weights'
  | 'storage_unavailable'
  | 'catalog_unavailable'
  | 'internal';

export class TrajgateError extends Error {
  constructor(
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

export class TrajgateConnectionError extends Error {
  constructor(
    readonly url: string,
    cause: unknown,
  ) {
    super(`cannot reach trajgate at ${url}: ${cause instanceof Error ? (cause.cause instanceof Error ? cause.cause.message : cause.message) : String(cause)}`, { cause });
    this.name = 'TrajgateConnectionError';
  }
}

/** Turns a non-2xx response into a TrajgateError. */
export async function errorFromResponse(res: Response): Promise<TrajgateError> {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string; details?: Record<string, unknown> } };
    if (body.error?.code) return new TrajgateError(res.status, body.error.code, body.error.message ?? res.statusText, body.error.details);
  } catch {
    // not JSON: a proxy's page, say
  }
  return new TrajgateError(res.status, `http_${res.status}`, `${res.status} ${res.statusText}${text ? `: ${text.slice(0, 200)}` : ''}`);
}
