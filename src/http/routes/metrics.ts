import { setImmediate as nextTurn } from 'node:timers/promises';
import express, { type Request, Router } from 'express';
import { unpack, unpackMultiple } from 'msgpackr';
import { z } from 'zod';
import {
  checkBatchSize,
  checkExtraKeys,
  extraKeysViolation,
  type InputLimits,
  maxPointBytes,
  pointBytesViolation,
} from '../../model/limits.js';
import { MetricPoint } from '../../model/records.js';
import { AppError } from '../../errors.js';
import { callerOf, need } from '../access.js';
import type { AppContext } from '../context.js';
import { parseRunId } from '../ids.js';
import { PointBudget, refuseOverLimit } from '../rate-limit.js';
import { parseInput } from '../validate.js';

/** The largest page of a run's metric series. */
const MAX_SERIES_LIMIT = 100_000;

/**
 * A metric batch is read without holding the event loop (scripts/bench-metric-batch.ts measures it): its
 * points are decoded, checked against the limits and validated CHUNK_POINTS (or about CHUNK_BYTES of body)
 * at a time, yielding to other requests between chunks. Bodies up to WHOLE_BODY_BYTES are decoded in one
 * call (a few milliseconds); larger ones are scanned for the boundaries of their points, which are then
 * decoded a chunk at a time, so no single `JSON.parse` or `unpack` runs over the whole body.
 */
const CHUNK_POINTS = 1000;
const CHUNK_BYTES = 128 * 1024;
const WHOLE_BODY_BYTES = 1024 * 1024;

/** A batch is `{points: [...]}` or a bare array of points, as JSON or msgpack. */
const BatchShape = z.union([z.object({ points: z.array(z.unknown()) }).strict(), z.array(z.unknown())]);
const PointChunk = z.array(MetricPoint);

const SeriesQuery = z
  .object({
    fromStep: z.coerce.number().int().nonnegative().optional(),
    toStep: z.coerce.number().int().nonnegative().optional(),
    limit: z.coerce.number().int().min(1).max(MAX_SERIES_LIMIT).default(10_000),
  })
  .strict();

const MSGPACK_TYPES = ['application/msgpack', 'application/x-msgpack'];
const IDEMPOTENCY_HEADER = 'idempotency-key';
const IDEMPOTENCY_KEY = /^[A-Za-z0-9._:-]{8,128}$/;

/** A batch's Idempotency-Key: a retry with the same key stores the batch once. */
function idempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (!IDEMPOTENCY_KEY.test(header)) {
    throw new AppError('invalid_request', 'Idempotency-Key must be 8-128 characters from [A-Za-z0-9._:-] (a UUID is)');
  }
  return header;
}

export function metricRoutes(ctx: AppContext): Router {
  const router = Router();
  const { limits } = ctx.config;
  const body = express.raw({ limit: limits.maxJsonBytes, type: ['application/json', ...MSGPACK_TYPES] });
  const perMinute = new PointBudget(
    limits.maxPointsPerMinute,
    60,
    'metric points per run per minute',
    'TRAJGATE_MAX_POINTS_PER_MINUTE',
  );

  router.post('/v1/runs/:run/metrics', need('writer'), body, async (req, res) => {
    const run = parseRunId(req.params.run);
    const key = idempotencyKey(req.get(IDEMPOTENCY_HEADER));
    const points = await readPoints(batchReader(req, limits), limits);
    await perMinute.take(run, points.length, res);
    let outcome: { accepted: number; replayed: boolean };
    try {
      outcome = await ctx.runs.appendMetrics(run, points, callerOf(res), key);
    } catch (err) {
      await perMinute.giveBack(run, points.length);
      throw err;
    }
    if (outcome.replayed) {
      await perMinute.giveBack(run, points.length);
      res.setHeader('Idempotency-Replayed', 'true');
    }
    res.json({ accepted: outcome.accepted });
  });

  router.get('/v1/runs/:run/metrics', need('reader'), async (req, res) => {
    const run = parseRunId(req.params.run);
    const query = parseInput(SeriesQuery, req.query, 'query');
    res.json({ items: await ctx.runs.listMetrics(run, query) });
  });

  return router;
}

/** The raw points of a batch, a chunk at a time; each call does a bounded amount of work. */
interface BatchReader {
  /** Where the points sit in the body, for error paths: `['points']` or `[]`. */
  readonly prefix: readonly PropertyKey[];
  /** The next chunk of decoded points (possibly none yet: call again); null once all were read. */
  next(): unknown[] | null;
}

/** Decodes, limits and validates the batch's points in chunks, yielding to the event loop between them. */
async function readPoints(reader: BatchReader, limits: InputLimits): Promise<MetricPoint[]> {
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

function batchReader(req: Request, limits: InputLimits): BatchReader {
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

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new AppError('invalid_request', `request body is not valid JSON: ${(err as Error).message}`);
  }
}

function unpackWhole(bytes: Buffer): unknown {
  try {
    return unpack(bytes);
  } catch (err) {
    throw notMsgpack(err);
  }
}

function notMsgpack(err: unknown): AppError {
  const reason = err instanceof Error ? err.message : String(err);
  return new AppError('invalid_request', `request body is not valid msgpack: ${reason}`);
}

function hasBom(b: Buffer): boolean {
  return b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf;
}

const shapeError = () =>
  new AppError('invalid_request', 'invalid metric batch: send {"points": [...]} or an array of points, nothing else');

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const LBRACE = 0x7b;
const RBRACE = 0x7d;

function skipWhitespace(b: Buffer, i: number): number {
  while (i < b.length && (b[i] === 0x20 || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
  return i;
}

/**
 * A large JSON batch: a byte scanner finds the points of the array (commas outside strings at its top
 * level), counts the keys of each point's nested object (`extra`) and each point's bytes, and hands
 * `JSON.parse` a chunk of whole points at a time. The scanner only places the cuts: `JSON.parse` checks
 * every chunk, and chunks that each parse, joined by the commas between them, are valid JSON as a whole.
 */
class JsonBatchReader implements BatchReader {
  readonly prefix: readonly PropertyKey[];
  /** Whether the array is the value of `{"points": ...}`. */
  private readonly wrapped: boolean;
  private pos: number;
  /** Nesting inside the points array: 1 between points, 2 in a point, 3 in its `extra`. */
  private depth = 1;
  private inString = false;
  private escaped = false;
  /** Keys seen in the current depth-3 object. */
  private keys = 0;
  /** Index of the point being scanned (the commas seen at depth 1). */
  private index = 0;
  private elementStart: number;
  private chunkStart: number;
  private chunkFirst = 0;
  /** Past the batch limit: only counting the points, for the answer. */
  private counting = false;
  private finished = false;

  constructor(
    private readonly b: Buffer,
    private readonly limits: InputLimits,
  ) {
    let i = skipWhitespace(b, 0);
    this.wrapped = b[i] === LBRACE;
    if (this.wrapped) {
      i = skipWhitespace(b, i + 1);
      if (b[i] !== QUOTE) throw shapeError();
      const keyEnd = this.stringEnd(i + 1);
      let key: unknown;
      try {
        key = JSON.parse(b.toString('utf8', i, keyEnd));
      } catch {
        throw shapeError();
      }
      if (key !== 'points') throw shapeError();
      i = skipWhitespace(b, keyEnd);
      if (b[i] !== COLON) throw shapeError();
      i = skipWhitespace(b, i + 1);
    }
    if (b[i] !== LBRACKET) throw shapeError();
    this.prefix = this.wrapped ? ['points'] : [];
    this.pos = i + 1;
    this.elementStart = this.pos;
    this.chunkStart = this.pos;
  }

  next(): unknown[] | null {
    if (this.finished) return null;
    const { b } = this;
    const stop = Math.min(b.length, this.pos + CHUNK_BYTES);
    const maxKeys = this.limits.maxExtraKeys;
    // The scanner's state in locals for the loop, stored back however it is left.
    let { depth, inString, escaped, keys } = this;
    let i = this.pos;
    try {
      for (; i < stop; i++) {
        const c = b[i];
        if (inString) {
          if (escaped) escaped = false;
          else if (c === BACKSLASH) escaped = true;
          else if (c === QUOTE) inString = false;
        } else if (c === QUOTE) {
          inString = true;
        } else if (c === LBRACE || c === LBRACKET) {
          if (++depth === 3) keys = 0;
        } else if (c === RBRACE || c === RBRACKET) {
          if (depth === 3 && c === RBRACE && keys > maxKeys && !this.counting) {
            refuseOverLimit(extraKeysViolation(keys, this.index, this.limits));
          }
          if (--depth === 0) {
            this.pos = i + 1;
            return this.end(i);
          }
        } else if (c === COLON) {
          if (depth === 3) keys++;
        } else if (c === COMMA && depth === 1) {
          const chunk = this.comma(i);
          if (chunk) {
            this.pos = i + 1;
            return chunk;
          }
        }
      }
    } finally {
      this.depth = depth;
      this.inString = inString;
      this.escaped = escaped;
      this.keys = keys;
    }
    this.pos = i;
    if (i >= b.length)
      throw new AppError('invalid_request', 'request body is not valid JSON: it ends inside the batch');
    return [];
  }

  /** A comma between points at byte `at`: the chunk, when it is complete. */
  private comma(at: number): unknown[] | null {
    this.endElement(at);
    this.index++;
    this.elementStart = at + 1;
    if (this.index >= this.limits.maxPointsPerBatch) this.counting = true;
    if (this.counting || (this.index - this.chunkFirst < CHUNK_POINTS && at - this.chunkStart < CHUNK_BYTES)) {
      return null;
    }
    const chunk = this.decode(this.chunkStart, at, this.index - this.chunkFirst);
    this.chunkStart = at + 1;
    this.chunkFirst = this.index;
    return chunk;
  }

  /** The array closed at byte `close`: the last chunk, once the rest of the body is checked. */
  private end(close: number): unknown[] {
    this.finished = true;
    const empty = skipWhitespace(this.b, this.elementStart) === close;
    if (empty && this.index > 0)
      throw new AppError('invalid_request', 'request body is not valid JSON: a comma ends the array');
    const total = empty ? 0 : this.index + 1;
    refuseOverLimit(checkBatchSize(total, this.limits));
    if (!empty) this.endElement(close);
    let i = skipWhitespace(this.b, close + 1);
    if (this.wrapped) {
      if (this.b[i] !== RBRACE) throw shapeError();
      i = skipWhitespace(this.b, i + 1);
    }
    if (i !== this.b.length) throw shapeError();
    return total === this.chunkFirst ? [] : this.decode(this.chunkStart, close, total - this.chunkFirst);
  }

  private endElement(at: number): void {
    if (this.counting) return;
    refuseOverLimit(pointBytesViolation(at - this.elementStart, this.index, this.limits));
  }

  private decode(start: number, end: number, expected: number): unknown[] {
    const points = parseJson(`[${this.b.toString('utf8', start, end)}]`);
    if (!Array.isArray(points) || points.length !== expected) {
      throw new AppError('invalid_request', 'request body is not valid JSON: an empty element in the array');
    }
    return points;
  }

  /** The index after the quote that closes the string whose contents start at `i`. */
  private stringEnd(i: number): number {
    const { b } = this;
    for (; i < b.length; i++) {
      if (b[i] === BACKSLASH) i++;
      else if (b[i] === QUOTE) return i + 1;
    }
    throw shapeError();
  }
}

/**
 * A large msgpack batch: the header gives the number of points (checked against the limit at once); a
 * skipper walks each point's tokens without decoding them, checking the size of its nested map (`extra`)
 * and its bytes, and msgpackr decodes a chunk of whole points at a time.
 */
class MsgpackBatchReader implements BatchReader {
  readonly prefix: readonly PropertyKey[];
  private readonly total: number;
  private pos: number;
  /** Values still to read in each open container of the point being walked (empty between points). */
  private readonly open: number[] = [];
  private readonly token: Token = { size: 0, children: 0, map: false };
  private index = 0;
  private elementStart: number;
  private chunkStart: number;
  private chunkFirst = 0;

  constructor(
    private readonly b: Buffer,
    private readonly limits: InputLimits,
  ) {
    let pos = 0;
    const map = containerHeader(b, pos);
    if (map?.map) {
      if (map.count !== 1 || b[map.next] === undefined) throw shapeError();
      const key = stringAt(b, map.next);
      if (key?.value !== 'points') throw shapeError();
      pos = key.next;
    }
    const array = containerHeader(b, pos);
    if (!array || array.map) throw shapeError();
    refuseOverLimit(checkBatchSize(array.count, limits));
    this.prefix = map?.map ? ['points'] : [];
    this.total = array.count;
    this.pos = array.next;
    this.elementStart = this.pos;
    this.chunkStart = this.pos;
  }

  next(): unknown[] | null {
    if (this.index === this.total) {
      if (this.pos !== this.b.length) throw notMsgpack('data after the batch');
      return null;
    }
    const { b, open, token } = this;
    const stop = this.pos + CHUNK_BYTES;
    const maxBytes = maxPointBytes(this.limits);
    let pos = this.pos;
    while (pos < stop) {
      if (open.length === 0) {
        this.elementStart = pos;
        open.push(1);
      }
      const depth = open.length;
      if (!readToken(b, pos, token)) throw notMsgpack(`invalid or cut-off data at byte ${pos}`);
      if (token.map && depth === 2) refuseOverLimit(extraKeysViolation(token.children / 2, this.index, this.limits));
      pos += token.size;
      if (pos - this.elementStart > maxBytes) {
        refuseOverLimit(pointBytesViolation(pos - this.elementStart, this.index, this.limits));
      }
      open[open.length - 1]--;
      if (token.children > 0) open.push(token.children);
      while (open.length > 0 && open[open.length - 1] === 0) open.pop();
      if (open.length > 0) continue;
      this.index++;
      const last = this.index === this.total;
      if (last || this.index - this.chunkFirst >= CHUNK_POINTS || pos - this.chunkStart >= CHUNK_BYTES) {
        const chunk = this.decode(this.chunkStart, pos, this.index - this.chunkFirst);
        this.chunkStart = pos;
        this.chunkFirst = this.index;
        this.pos = pos;
        return chunk;
      }
    }
    this.pos = pos;
    return [];
  }

  private decode(start: number, end: number, expected: number): unknown[] {
    let points: unknown[];
    try {
      points = unpackMultiple(this.b.subarray(start, end));
    } catch (err) {
      throw notMsgpack(err);
    }
    if (points.length !== expected) throw notMsgpack('the points do not decode as they are laid out');
    return points;
  }
}

/** A msgpack token: its bytes (header and, for strings, binaries and extensions, payload) and contents. */
interface Token {
  size: number;
  /** Values inside it (a map's keys and values). */
  children: number;
  map: boolean;
}

/**
 * Reads the msgpack token at `pos` into `t` (https://github.com/msgpack/msgpack/blob/master/spec.md);
 * false if the byte is not a type or the token runs past the end.
 */
function readToken(b: Buffer, pos: number, t: Token): boolean {
  const c = b[pos];
  if (c === undefined) return false;
  t.children = 0;
  t.map = false;
  if (c <= 0x7f || c >= 0xe0) t.size = 1;
  else if (c <= 0x8f) {
    t.size = 1;
    t.children = 2 * (c & 0x0f);
    t.map = true;
  } else if (c <= 0x9f) {
    t.size = 1;
    t.children = c & 0x0f;
  } else if (c <= 0xbf) t.size = 1 + (c & 0x1f);
  else {
    const fixed = FIXED_SIZES[c - 0xc0];
    if (fixed > 0) t.size = fixed;
    else {
      // Strings, binaries and extensions: a length of 1, 2 or 4 bytes, then (extensions) a type byte.
      const lengthBytes = LENGTH_BYTES[c - 0xc0];
      if (lengthBytes === 0 || pos + 1 + lengthBytes > b.length) return false;
      const n = lengthBytes === 1 ? b[pos + 1] : lengthBytes === 2 ? b.readUInt16BE(pos + 1) : b.readUInt32BE(pos + 1);
      if (c >= 0xdc) {
        t.size = 1 + lengthBytes;
        t.map = c >= 0xde;
        t.children = t.map ? 2 * n : n;
      } else {
        t.size = 1 + lengthBytes + (c >= 0xc7 && c <= 0xc9 ? 1 : 0) + n;
      }
    }
  }
  return pos + t.size <= b.length;
}

/** Token sizes of the types 0xc0..0xdf that have one (0: sized by a length field, or 0xc1, never used). */
// biome-ignore format: a table
const FIXED_SIZES = [
  1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 5, 9, 2, 3, 5, 9, // c0..cf
  2, 3, 5, 9, 3, 4, 6, 10, 18, 0, 0, 0, 0, 0, 0, 0, // d0..df
];
/** Bytes of the length field of the types 0xc0..0xdf that have one. */
// biome-ignore format: a table
const LENGTH_BYTES = [
  0, 0, 0, 0, 1, 2, 4, 1, 2, 4, 0, 0, 0, 0, 0, 0, // c0..cf
  0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 2, 4, 2, 4, // d0..df
];

/** An array or map header at `pos`: its entry count (a map's pairs) and where its contents start. */
function containerHeader(b: Buffer, pos: number): { map: boolean; count: number; next: number } | null {
  const token: Token = { size: 0, children: 0, map: false };
  if (!readToken(b, pos, token) || (token.children === 0 && !isEmptyContainer(b[pos]))) return null;
  return { map: token.map, count: token.map ? token.children / 2 : token.children, next: pos + token.size };
}

function isEmptyContainer(c: number): boolean {
  return c === 0x80 || c === 0x90 || c === 0xdc || c === 0xdd || c === 0xde || c === 0xdf;
}

/** A msgpack string at `pos` and where it ends; null if there is none. */
function stringAt(b: Buffer, pos: number): { value: string; next: number } | null {
  const c = b[pos];
  const token: Token = { size: 0, children: 0, map: false };
  if (!readToken(b, pos, token) || !((c >= 0xa0 && c <= 0xbf) || c === 0xd9 || c === 0xda || c === 0xdb)) return null;
  const header = c <= 0xbf ? 1 : c === 0xd9 ? 2 : c === 0xda ? 3 : 5;
  return { value: b.toString('utf8', pos + header, pos + token.size), next: pos + token.size };
}
