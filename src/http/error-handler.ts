import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from 'pino';
import { AppError, isAppError } from '../errors.js';

/**
 * The one place where errors become HTTP responses: `{error: {code, message, details?}}` with the status
 * from the catalogue. Errors raised by Express's own body parsers are translated; anything unknown is a
 * 500 `internal` whose details stay in the log.
 */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const appError = toAppError(err);
    if (appError.status >= 500) {
      logger.error({ err, reqId: res.locals.reqId, method: req.method, url: req.originalUrl }, appError.message);
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
        message: appError.message,
        ...(appError.details ? { details: appError.details } : {}),
      },
    });
  };
}

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(new AppError('not_found', `no route for ${req.method} ${req.path}`));
};

function toAppError(err: unknown): AppError {
  if (isAppError(err)) return err;
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
