import { ERROR_STATUS, type ErrorCode } from '@trajgate/sdk/contract';

/**
 * Errors as the server raises them. The catalogue of codes and statuses is the wire contract's
 * (`@trajgate/sdk/contract`), shared with the SDK. Modules throw `AppError`s made by the `errors` factories;
 * `http/error-handler.ts` renders them as `{error: {code, message, details?}}`.
 */
export { ERROR_CODES, ERROR_STATUS, type ErrorCode } from '@trajgate/sdk/contract';

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
