/**
 * The error catalogue: every failure a client can see has a stable `code` and an HTTP status here, and
 * nowhere else. Modules throw `AppError`s made by the `errors` factories; `http/error-handler.ts` renders
 * them as `{error: {code, message, details?}}`. Codes are part of the public API (the SDK switches on
 * them): add codes, never rename one.
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
  not_found: 404,
  run_not_found: 404,
  checkpoint_not_found: 404,
  policy_not_found: 404,
  checkpoint_conflict: 409,
  checkpoint_discarded: 410,
  checkpoint_not_restorable: 409,
  header_too_large: 413,
  body_too_large: 413,
  unsupported_media_type: 415,
  range_not_satisfiable: 416,
  unsupported_dtype: 422,
  shape_mismatch: 422,
  non_finite_weights: 422,
  storage_unavailable: 503,
  catalog_unavailable: 503,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;
export const ERROR_CODES = Object.keys(ERROR_STATUS) as ErrorCode[];

export type ErrorDetails = Record<string, unknown>;

export class AppError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: ErrorDetails,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AppError';
    this.status = ERROR_STATUS[code];
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/** Factories for the errors thrown in more than one place; one-off errors use `new AppError(code, ...)`. */
export const errors = {
  invalidRequest: (message: string, details?: ErrorDetails) => new AppError('invalid_request', message, details),
  runNotFound: (run: string) => new AppError('run_not_found', `run '${run}' does not exist`, { run }),
  checkpointNotFound: (run: string, step: number) =>
    new AppError('checkpoint_not_found', `run '${run}' has no checkpoint at step ${step}`, { run, step }),
  malformed: (message: string, details?: ErrorDetails) => new AppError('malformed_checkpoint', message, details),
  truncated: (received: number, expected: number) =>
    new AppError('truncated_body', `body ended after ${received} bytes; the checkpoint declares ${expected}`, {
      received,
      expected,
    }),
  storageUnavailable: (message: string, cause?: unknown) =>
    new AppError('storage_unavailable', message, undefined, { cause }),
  catalogUnavailable: (message: string, cause?: unknown) =>
    new AppError('catalog_unavailable', message, undefined, { cause }),
};
