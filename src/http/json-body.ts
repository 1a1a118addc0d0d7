import express from 'express';
import { AppError } from '../errors.js';

/**
 * Parses a JSON request body (up to `limit` bytes). A body sent with another content type is refused
 * with 415 instead of being ignored; a request without a body leaves `req.body` undefined.
 */
export function jsonBody(limit: number): ReturnType<typeof express.json> {
  const parse = express.json({ limit, strict: true });
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
