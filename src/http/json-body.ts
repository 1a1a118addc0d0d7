import express from 'express';
import { AppError } from '../errors.js';

/**
 * Parses a JSON request body (up to `limit` bytes). A body sent with another content type is refused
 * with 415 instead of being ignored; a request without a body leaves `req.body` undefined; a `__proto__`
 * key anywhere is refused with 400.
 */
export function jsonBody(limit: number): ReturnType<typeof express.json> {
  const parse = express.json({ limit, strict: true, reviver: refusePrototypeKeys });
  return (req, res, next) => {
    const { 'content-type': type = '', 'content-length': length, 'transfer-encoding': chunked } = req.headers;
    const hasBody = chunked !== undefined || (length !== undefined && length !== '0');
    const mediaType = type.split(';')[0].trim().toLowerCase();
    if (hasBody && mediaType !== 'application/json') {
      next(new AppError('unsupported_media_type', `send this body as application/json, not '${type || 'no type'}'`));
      return;
    }
    parse(req, res, next);
  };
}

/**
 * JSON.parse keeps a `__proto__` key as an own property, but copying the object (as schema validation does)
 * turns it into a prototype assignment that silently disappears: refuse it while parsing.
 */
function refusePrototypeKeys(key: string, value: unknown): unknown {
  if (key === '__proto__') throw new SyntaxError("the key '__proto__' is not allowed");
  return value;
}
