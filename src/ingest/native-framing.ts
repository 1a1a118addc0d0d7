/**
 * Byte-level msgpack framing of the native format (spec: @trajgate/sdk/wire/native-format): the type
 * bytes the decoder reads by hand to find the header record's start and each data record's prefix
 * (0x92, a uint tensor index, a bin chunk header).
 */
import { errors } from '../errors.js';

const MAP_FIXMAP_FIRST = 0x80;
const MAP_FIXMAP_LAST = 0x8f;
const MAP16 = 0xde;
const MAP32 = 0xdf;
/** Longest record prefix: 0x92, uint32 index (5 bytes), bin32 header (5 bytes). */
export const MAX_PREFIX_BYTES = 11;

/** A native body starts with the header record, a msgpack map. */
export function checkHeaderStart(byte: number): void {
  const isMap = (byte >= MAP_FIXMAP_FIRST && byte <= MAP_FIXMAP_LAST) || byte === MAP16 || byte === MAP32;
  if (!isMap)
    throw errors.malformed(`not a native checkpoint: it must start with a msgpack map, got byte 0x${hex(byte)}`);
}

/** Extra bytes after a msgpack uint's type byte: 0 for a positive fixint; -1 if it is not an allowed uint. */
export function uintWidth(type: number): number {
  if (type < 0x80) return 0;
  if (type === 0xcc) return 1;
  if (type === 0xcd) return 2;
  if (type === 0xce) return 4;
  return -1;
}

/** Length bytes after a msgpack bin type byte; -1 if not bin. */
export function binWidth(type: number): number {
  if (type === 0xc4) return 1;
  if (type === 0xc5) return 2;
  if (type === 0xc6) return 4;
  return -1;
}

/** The big-endian unsigned integer in `bytes[at, at + width)`. */
export function readUint(bytes: Uint8Array, at: number, width: number): number {
  let n = 0;
  for (let i = 0; i < width; i++) n = n * 256 + bytes[at + i];
  return n;
}

/** A byte as two hex digits, for messages. */
export function hex(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}

/** Where the header record ends, and how its top-level `version` value is encoded. */
export interface HeaderExtent {
  /** Byte length of the header record. */
  end: number;
  /** Type byte of the value of the top-level key "version"; -1 when there is none. */
  versionType: number;
}

/** The msgpack type byte encodes an integer (fixint, uint 8-64, int 8-64). */
export function isIntegerType(type: number): boolean {
  return type <= 0x7f || (type >= 0xcc && type <= 0xd3) || type >= 0xe0;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Walks the msgpack header record at the start of `bytes` without building it, iteratively and in linear
 * time. Returns its extent once it is whole, or `{ missing }`, a lower bound on the bytes still to come.
 * Rejects (malformed_checkpoint), as soon as it meets them, what the format forbids but msgpackr would
 * decode: nesting deeper than `maxDepth` (msgpackr recurses once per level), extension types, map keys
 * that are not strings (or not UTF-8) or that repeat within one map (msgpackr keeps the last), and 0xc1.
 */
export function scanHeaderRecord(bytes: Uint8Array, maxDepth: number): HeaderExtent | { missing: number } {
  const n = bytes.byteLength;
  /** Per open array or map: items still to come (a map of k entries has 2k items, keys at even counts). */
  const left: number[] = [];
  /** Per open container: the keys read so far of a map, null for an array. */
  const keys: (Set<string> | null)[] = [];
  let pos = 0;
  let versionType = -1;
  let versionNext = false;
  for (;;) {
    if (pos >= n) return { missing: 1 };
    const type = bytes[pos];
    const top = left.length - 1;
    const mapKeys = top >= 0 ? keys[top] : null;
    const isKey = mapKeys !== null && left[top] % 2 === 0;
    if (versionNext) {
      versionType = type;
      versionNext = false;
    }
    // The item: `head` bytes of type and length, then `payload` bytes, or `count` items (a container).
    let head = 1;
    let payload = 0;
    let count = -1;
    let isMap = false;
    let isString = false;
    if (type <= 0x7f || type >= 0xe0 || type === 0xc0 || type === 0xc2 || type === 0xc3) {
      // fixint, nil, bool
    } else if (type <= 0x8f) {
      count = type & 0x0f;
      isMap = true;
    } else if (type <= 0x9f) {
      count = type & 0x0f;
    } else if (type <= 0xbf) {
      payload = type & 0x1f;
      isString = true;
    } else if (type === 0xca || type === 0xcb) {
      head = type === 0xca ? 5 : 9;
    } else if (type >= 0xcc && type <= 0xd3) {
      head = 1 + (1 << (type & 0x3));
    } else {
      const width = lengthWidth(type);
      if (width < 0) {
        const problem =
          type === 0xc1
            ? `it is not valid msgpack: the never-used type byte 0xc1 at offset ${pos}`
            : `it holds a msgpack extension type (0x${hex(type)}) at offset ${pos}, which the format does not allow`;
        throw errors.malformed(`native header record: ${problem}`, { offset: pos });
      }
      head = 1 + width;
      if (pos + head > n) return { missing: pos + head - n };
      const length = readUint(bytes, pos + 1, width);
      if (type === 0xdc || type === 0xdd) count = length;
      else if (type === 0xde || type === 0xdf) {
        count = length;
        isMap = true;
      } else {
        payload = length;
        isString = type >= 0xd9;
      }
    }
    if (isKey && !isString) {
      throw errors.malformed(`native header: a map key at offset ${pos} is not a string (type byte 0x${hex(type)})`, {
        offset: pos,
      });
    }
    const end = pos + head + payload;
    if (end > n) return { missing: end - n };
    if (isKey) {
      let key: string;
      try {
        key = utf8.decode(bytes.subarray(pos + head, end));
      } catch {
        throw errors.malformed(`native header: the map key at offset ${pos} is not valid UTF-8`, { offset: pos });
      }
      if (key === '__proto__') {
        // msgpack decoders rename it (msgpackr to `__proto_`), so it could not be kept as sent.
        throw errors.malformed(`native header: the map key '__proto__' is not allowed (at offset ${pos})`, {
          offset: pos,
        });
      }
      if (mapKeys.has(key)) {
        throw errors.malformed(`native header repeats the key '${key}' in one map (at offset ${pos})`, {
          key,
          offset: pos,
        });
      }
      mapKeys.add(key);
      versionNext = top === 0 && key === 'version';
    }
    pos = end;
    if (count > 0) {
      if (left.length === maxDepth) {
        throw errors.malformed(`native header nests arrays or maps deeper than ${maxDepth} levels (at offset ${pos})`, {
          limit: maxDepth,
          offset: pos,
        });
      }
      left.push(isMap ? 2 * count : count);
      keys.push(isMap ? new Set() : null);
      continue;
    }
    // An item is complete: count it in its container, closing every container it completes.
    for (;;) {
      if (left.length === 0) return { end: pos, versionType };
      if (--left[left.length - 1] > 0) break;
      left.pop();
      keys.pop();
    }
  }
}

/** Length bytes after the type byte of a str8-32, bin8-32, array16/32 or map16/32; -1 for anything else. */
function lengthWidth(type: number): number {
  switch (type) {
    case 0xc4:
    case 0xd9:
      return 1;
    case 0xc5:
    case 0xda:
    case 0xdc:
    case 0xde:
      return 2;
    case 0xc6:
    case 0xdb:
    case 0xdd:
    case 0xdf:
      return 4;
    default:
      return -1;
  }
}
