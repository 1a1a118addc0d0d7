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
