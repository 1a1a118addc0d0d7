import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Request } from 'express';
import { unpack } from 'msgpackr';
import { z } from 'zod';
import { checkBatchSize, checkExtraKeys, type InputLimits } from '../../model/limits.js';
import { MetricPoint } from '../../model/records.js';
import { AppError } from '../../errors.js';
import { refuseOverLimit } from '../rate-limit.js';
import { parseInput } from '../validate.js';
import { type BatchReader, CHUNK_POINTS, notMsgpack, parseJson, WHOLE_BODY_BYTES } from './batch-reader.js';
import { JsonBatchReader } from './json-reader.js';
import { MsgpackBatchReader } from './msgpack-reader.js';

/** A batch is `{points: [...]}` or a bare array of points, as JSON or msgpack. */
const BatchShape = z.union([z.object({ points: z.array(z.unknown()) }).strict(), z.array(z.unknown())]);
const PointChunk = z.array(MetricPoint);

/** The content types of a msgpack batch. */
export const MSGPACK_TYPES = ['application/msgpack', 'application/x-msgpack'];

/** Decodes, limits and validates the batch's points in chunks, yielding to the event loop between them. */
export async function readPoints(reader: BatchReader, limits: InputLimits): Promise<MetricPoint[]> {
  const points: MetricPoint[] = [];
  for (let chunk = reader.next(); chunk !== null; chunk = reader.next()) {
    for (let i = 0; i < chunk.length; i++) refuseOverLimit(checkExtraKeys(chunk[i], points.length + i, limits));
    const parsed = PointChunk.safeParse(chunk);
    if (!parsed.success) throw invalidPoints(parsed.error, reader.prefix, points.length);
    for (const point of parsed.data) points.push(point);
    await nextTurn();
  }
  return points;
}

/** The same answer as `parseInput` gives, with the paths of the points' places in the whole batch. */
function invalidPoints(error: z.ZodError, prefix: readonly PropertyKey[], offset: number): AppError {
  const problems = error.issues.slice(0, 20).map((issue) => {
    const [index, ...rest] = issue.path;
    const path = [...prefix, typeof index === 'number' ? index + offset : index, ...rest];
    return { path: path.map(String).join('.'), message: issue.message };
  });
  const summary = problems.map((p) => `${p.path}: ${p.message}`).join('; ');
  return new AppError('invalid_request', `invalid metric batch: ${summary}`, { problems });
}

const PROTO_KEY = Buffer.from('__proto__');

export function batchReader(req: Request, limits: InputLimits): BatchReader {
  const matched = req.is(['json', ...MSGPACK_TYPES]);
  if (!matched) {
    throw new AppError('unsupported_media_type', 'send metric batches as application/json or application/msgpack');
  }
  const body: unknown = req.body;
  const bytes = Buffer.isBuffer(body) ? body : Buffer.alloc(0);
  if (matched === 'json') {
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.get('content-type') ?? '')?.[1]?.toLowerCase();
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      throw new AppError('unsupported_media_type', `send JSON metric batches as UTF-8, not '${charset}'`);
    }
    const text = hasBom(bytes) ? bytes.subarray(3) : bytes;
    if (text.length > WHOLE_BODY_BYTES) return new JsonBatchReader(text, limits);
    return wholeReader(parseJson(text.toString('utf8')), limits);
  }
  // msgpack decoders rename a `__proto__` key (msgpackr to `__proto_`): refuse it rather than store it altered.
  // Keys are the only strings a metric batch holds, so the bytes are enough to tell.
  if (bytes.includes(PROTO_KEY)) {
    throw new AppError('invalid_request', "invalid metric batch: the key '__proto__' is not allowed");
  }
  if (bytes.length > WHOLE_BODY_BYTES) return new MsgpackBatchReader(bytes, limits);
  return wholeReader(unpackWhole(bytes), limits);
}

/** A body decoded in one call, its points handed out in chunks. */
function wholeReader(value: unknown, limits: InputLimits): BatchReader {
  const batch = parseInput(BatchShape, value, 'metric batch');
  const points = Array.isArray(batch) ? batch : batch.points;
  refuseOverLimit(checkBatchSize(points.length, limits));
  let at = 0;
  return {
    prefix: Array.isArray(batch) ? [] : ['points'],
    next() {
      if (at >= points.length) return null;
      at += CHUNK_POINTS;
      return points.slice(at - CHUNK_POINTS, at);
    },
  };
}

function unpackWhole(bytes: Buffer): unknown {
  try {
    return unpack(bytes);
  } catch (err) {
    throw notMsgpack(err);
  }
}

function hasBom(b: Buffer): boolean {
  return b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf;
}
