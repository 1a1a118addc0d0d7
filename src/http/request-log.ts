import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Logger } from 'pino';

/**
 * One log line per request when it finishes or the client goes away. Fields are listed one by one: never
 * bodies, never headers (so never `Authorization`), and the URL with secret-looking query values masked.
 */
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
          url: loggableUrl(req.originalUrl),
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

/** Query parameters whose values are credentials (`?token=…`, `?access_token=…`, a presigned `X-Amz-Signature`). */
const SECRET_PARAM = /token|secret|password|passwd|credential|signature|api[-_]?key|access[-_]?key|auth|session/i;

/** `url` (a request's path and query) with the values of secret-looking query parameters replaced by `***`. */
export function loggableUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const query = url
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = eq < 0 ? pair : pair.slice(0, eq);
      let decoded = name;
      try {
        decoded = decodeURIComponent(name.replace(/\+/g, ' '));
      } catch {
        // A malformed escape: match on the raw name.
      }
      return eq >= 0 && SECRET_PARAM.test(decoded) ? `${name}=***` : pair;
    })
    .join('&');
  return `${url.slice(0, q)}?${query}`;
}
