import { unpackMultiple } from 'msgpackr';
import {
  checkBatchSize,
  extraKeysViolation,
  type InputLimits,
  maxPointBytes,
  pointBytesViolation,
} from '../../model/limits.js';
import { refuseOverLimit } from '../rate-limit.js';
import { type BatchReader, CHUNK_BYTES, CHUNK_POINTS, notMsgpack, shapeError } from './batch-reader.js';

/**
 * A large msgpack batch: the header gives the number of points (checked against the limit at once); a
 * skipper walks each point's tokens without decoding them, checking the size of its nested map (`extra`)
 * and its bytes, and msgpackr decodes a chunk of whole points at a time.
 */
export class MsgpackBatchReader implements BatchReader {
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
