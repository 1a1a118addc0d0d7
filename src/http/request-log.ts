import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Logger } from 'pino';

/** One log line per request when it finishes or the client goes away; never bodies. */
export function requestLog(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    const reqId = req.get('x-request-id')?.slice(0, 128) || randomUUID();
    res.locals.reqId = reqId;
    res.setHeader('x-request-id', reqId);
    let logged = false;
    const log = () => {
      if (logged) return;
      logged = true;
      logger.info(
        {
          reqId,
          method: req.method,
          url: req.originalUrl,
          status: res.statusCode,
          ms: Number(process.hrtime.bigint() - started) / 1e6,
          bytesIn: Number(req.get('content-length') ?? 0),
          completed: res.writableFinished,
        },
        'request',
      );
    };
    res.on('finish', log);
    res.on('close', log);
    next();
  };
}
