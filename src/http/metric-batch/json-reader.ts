import { checkBatchSize, extraKeysViolation, type InputLimits, pointBytesViolation } from '../../model/limits.js';
import { AppError } from '../../errors.js';
import { refuseOverLimit } from '../rate-limit.js';
import { type BatchReader, CHUNK_BYTES, CHUNK_POINTS, parseJson, shapeError } from './batch-reader.js';

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
export class JsonBatchReader implements BatchReader {
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
