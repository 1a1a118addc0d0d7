import { AppError } from '../../errors.js';

/**
 * A metric batch is read without holding the event loop (scripts/bench-metric-batch.ts measures it): its
 * points are decoded, checked against the limits and validated CHUNK_POINTS (or about CHUNK_BYTES of body)
 * at a time, yielding to other requests between chunks. Bodies up to WHOLE_BODY_BYTES are decoded in one
 * call (a few milliseconds); larger ones are scanned for the boundaries of their points, which are then
 * decoded a chunk at a time, so no single `JSON.parse` or `unpack` runs over the whole body.
 */
export const CHUNK_POINTS = 1000;
export const CHUNK_BYTES = 128 * 1024;
export const WHOLE_BODY_BYTES = 1024 * 1024;

/** The raw points of a batch, a chunk at a time; each call does a bounded amount of work. */
export interface BatchReader {
  /** Where the points sit in the body, for error paths: `['points']` or `[]`. */
  readonly prefix: readonly PropertyKey[];
  /** The next chunk of decoded points (possibly none yet: call again); null once all were read. */
  next(): unknown[] | null;
}

/**
 * JSON.parse, refusing a `__proto__` key: kept as an own property by JSON.parse, it disappears (becomes a
 * prototype) when the points are copied, so the batch would be stored altered. The reviver costs time, so it
 * runs only on text that could hold such a key (literally, or with an escaped underscore).
 */
export function parseJson(text: string): unknown {
  try {
    return text.includes('__proto__') || /\\u005[fF]/.test(text) ? JSON.parse(text, refuseProto) : JSON.parse(text);
  } catch (err) {
    throw new AppError('invalid_request', `request body is not valid JSON: ${(err as Error).message}`);
  }
}

function refuseProto(key: string, value: unknown): unknown {
  if (key === '__proto__') throw new SyntaxError("the key '__proto__' is not allowed");
  return value;
}

export function notMsgpack(err: unknown): AppError {
  const reason = err instanceof Error ? err.message : String(err);
  return new AppError('invalid_request', `request body is not valid msgpack: ${reason}`);
}

export const shapeError = () =>
  new AppError('invalid_request', 'invalid metric batch: send {"points": [...]} or an array of points, nothing else');
