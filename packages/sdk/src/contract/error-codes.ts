/**
 * The error catalogue: every failure the gateway reports has a stable `code` and an HTTP status here, and
 * nowhere else — the server renders them (`src/errors.ts`), the SDK raises them as `TrajgateError.code`,
 * and the OpenAPI `ErrorCode` enum lists them (a test checks it). Codes are public API: add codes, never
 * rename one.
 */
export const ERROR_STATUS = {
  invalid_request: 400,
  invalid_run_id: 400,
  invalid_step: 400,
  malformed_checkpoint: 400,
  truncated_body: 400,
  length_mismatch: 400,
  checksum_mismatch: 400,
  invalid_checksum_header: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  run_not_found: 404,
  checkpoint_not_found: 404,
  policy_not_found: 404,
  token_not_found: 404,
  checkpoint_conflict: 409,
  checkpoint_discarded: 410,
  checkpoint_not_restorable: 409,
  request_timeout: 408,
  header_too_large: 413,
  body_too_large: 413,
  unsupported_media_type: 415,
  range_not_satisfiable: 416,
  unsupported_dtype: 422,
  shape_mismatch: 422,
  non_finite_weights: 422,
  limit_exceeded: 422,
  rate_limited: 429,
  storage_unavailable: 503,
  catalog_unavailable: 503,
  internal: 500,
  upload_not_found: 404,
  upload_expired: 410,
  upload_offset_mismatch: 409,
  tus_version_unsupported: 412,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;
export const ERROR_CODES = Object.keys(ERROR_STATUS) as ErrorCode[];

/** The body of every error answer. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}
