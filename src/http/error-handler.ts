import type { ErrorRequestHandler, RequestHandler } from 'express';
import { type Logger, stdSerializers } from 'pino';
import type { Telemetry } from '../observability/telemetry.js';
import { AppError, type ErrorCode, isAppError } from '../errors.js';
import { loggableUrl } from './request-log.js';

/**
 * The one place where errors become HTTP responses: `{error: {code, message, details?}}` with the status
 * from the catalogue. Errors raised by Express's own body parsers are translated; anything unknown is a
 * 500 `internal` whose details stay in the log.
 *
 * What the client sees is only the AppError's own message, which names the failure in the API's terms; the
 * detail (the `cause`: an OS error with its path, an SDK error with its bucket or endpoint) goes to the log
 * line of a 5xx, never into the response. The log line carries no headers and no secret query values.
 */
export function errorHandler(logger: Logger, telemetry?: Telemetry): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const appError = toAppError(err);
    telemetry?.error(appError.code, appError.status);
    if (appError.status >= 500) {
      logger.error(
        {
          err,
          cause: isAppError(err) ? serializeCause(err.cause) : undefined,
          reqId: res.locals.reqId,
          method: req.method,
          url: loggableUrl(req.originalUrl),
        },
        appError.message,
      );
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // A body we stopped reading is discarded, and the connection is not reused for another request.
    if (!req.complete) {
      res.setHeader('Connection', 'close');
      req.resume();
    }
    // Headers a handler set for the success case (a download's type, length, ETag) do not describe the error.
    for (const header of ['Content-Type', 'Content-Length', 'Content-Disposition', 'ETag', 'Accept-Ranges']) {
      res.removeHeader(header);
    }
    res.status(appError.status).json({
      error: {
        code: appError.code,
        message: clientMessage(appError),
        ...(appError.details ? { details: appError.details } : {}),
      },
    });
  };
}

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(new AppError('not_found', `no route for ${req.method} ${req.path}`));
};

/** The cause of a 5xx as its own log field (code, syscall, path, S3 metadata and stack); undefined if none. */
function serializeCause(cause: unknown): unknown {
  if (cause === undefined) return undefined;
  return cause instanceof Error ? stdSerializers.err(cause) : cause;
}

/**
 * Messages of 5xx errors that look like they carry server internals (an absolute path, a URL, an OS error
 * code) are a bug in whatever raised them; the client gets a generic message instead (the log has it all).
 */
const ERRNO = 'ENOENT|ENOTDIR|EISDIR|EEXIST|EACCES|EPERM|ENOSPC|EROFS|EIO|EMFILE|ENFILE|EPIPE';
const LEAKY = new RegExp(
  [
    String.raw`(^|[\s'"(=:,[])/[\w.-]+`, // an absolute POSIX path
    String.raw`\b[A-Za-z]:\\`, // a Windows path
    String.raw`\b[a-z][a-z0-9+.-]*://`, // a URL (endpoint, s3://bucket)
    String.raw`\b(${ERRNO}|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN)\b`, // an OS error code
  ].join('|'),
);

const GENERIC_MESSAGES: Partial<Record<ErrorCode, string>> = {
  storage_unavailable: 'the blob store is unavailable',
  catalog_unavailable: 'the catalog is unavailable',
};

function clientMessage(error: AppError): string {
  if (error.status < 500 || !LEAKY.test(error.message)) return error.message;
  return GENERIC_MESSAGES[error.code] ?? 'internal error';
}

function toAppError(err: unknown): AppError {
  if (isAppError(err)) return err;
  // The router decodes path parameters with decodeURIComponent: `%` or `%zz` in a run id.
  if (err instanceof URIError) {
    return new AppError('invalid_request', 'the request path is not valid percent-encoding (a lone or malformed %)');
  }
  const bodyParserType = typeof err === 'object' && err !== null && 'type' in err ? String(err.type) : undefined;
  switch (bodyParserType) {
    case 'entity.parse.failed':
      return new AppError('invalid_request', `request body is not valid JSON: ${(err as Error).message}`);
    case 'request.aborted':
      return new AppError('invalid_request', 'the request body was cut off before it ended');
    case 'request.size.invalid':
      return new AppError('length_mismatch', 'the request body is not as long as its Content-Length says');
    case 'entity.too.large':
      return new AppError('body_too_large', 'request body exceeds the configured limit');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new AppError('unsupported_media_type', (err as Error).message);
    default:
      return new AppError('internal', 'internal error', undefined, { cause: err });
  }
}
