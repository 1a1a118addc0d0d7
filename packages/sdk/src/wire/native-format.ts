import { Packr } from 'msgpackr';
import { DTYPE_SIZES, elementCount } from './dtypes.js';
import type { TensorData, TensorSpec } from './safetensors.js';

/**
 * The trajgate native checkpoint format, version 1 (media type application/vnd.trajgate.checkpoint+msgpack,
 * file extension .tgckpt). It lets a writer stream tensors without knowing their layout up front beyond
 * names, dtypes and shapes, and lets a reader check every byte as it arrives.
 *
 * A checkpoint is a MessagePack stream (https://github.com/msgpack/msgpack/blob/master/spec.md): values
 * written back to back, with no framing between them.
 *
 * Record 0, the header, is a map with exactly these string keys:
 *   format:   the string "trajgate-checkpoint"
 *   version:  the integer 1
 *   tensors:  an array of maps {name: string, dtype: string, shape: array of uint}, exactly those keys;
 *             names are non-empty and unique; dtype is one of F64 F32 F16 BF16 F8_E5M2 F8_E4M3 F8_E8M0
 *             I64 I32 I16 I8 U64 U32 U16 U8 BOOL (safetensors names and encodings, little-endian; see
 *             dtypes.ts; BOOL is one byte, 0 or 1); shape [] is a scalar (one element). A tensor's byte
 *             length is product(shape) * size(dtype).
 *   metadata: optional; a map of string keys to string values
 * Every key of every map is a string, unique within its map; the header nests at most 64 levels deep.
 * Readers cap the header's encoded size and the tensor count (the trajgate server: 16 MiB and 100,000 by
 * default; see TRAJGATE_MAX_HEADER_KB and TRAJGATE_MAX_TENSORS).
 *
 * Then data records, each a MessagePack array of exactly two elements, encoded as:
 *   0x92                                   fixarray of 2
 *   tensor index, an unsigned integer      positive fixint (0x00-0x7f), uint8 (0xcc), uint16 (0xcd) or
 *                                          uint32 (0xce), big-endian as MessagePack requires; the index
 *                                          into the header's tensors array
 *   chunk, a byte string                   bin8 (0xc4 + 1-byte length), bin16 (0xc5 + 2-byte length) or
 *                                          bin32 (0xc6 + 4-byte length), then the bytes
 * Rules:
 *   - the concatenated chunks of tensor i are exactly its raw little-endian bytes;
 *   - tensors appear in header order: the index never decreases, and a tensor's records end (its bytes are
 *     complete) before the next tensor's first record; a zero-byte tensor has no records;
 *   - every chunk holds 1 to NATIVE_MAX_CHUNK_BYTES (16 MiB) bytes, and need not be element-aligned;
 *   - the stream ends right after the last byte of the last tensor with data: anything after is an error.
 * Nothing else (no extension types, no other record shapes) may appear.
 *
 * This module is shared by the SDK and the server; it imports only src/wire and msgpackr.
 */
export const NATIVE_FORMAT_NAME = 'trajgate-checkpoint';
export const NATIVE_FORMAT_VERSION = 1;
export const NATIVE_MAX_CHUNK_BYTES = 16 * 1024 * 1024;
/** Chunk size `encodeNative`/`encodeNativeStream` use unless told otherwise. */
export const NATIVE_DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;

/** First bytes of a data record. */
export const NATIVE_RECORD_MARKER = 0x92;

export interface NativeHeader {
  format: typeof NATIVE_FORMAT_NAME;
  version: typeof NATIVE_FORMAT_VERSION;
  tensors: TensorSpec[];
  metadata?: Record<string, string>;
}

export interface NativeEncodeOptions {
  /** Bytes per data record, 1..NATIVE_MAX_CHUNK_BYTES; default NATIVE_DEFAULT_CHUNK_BYTES. */
  chunkBytes?: number;
  metadata?: Record<string, string>;
}

const packr = new Packr({ useRecords: false, variableMapSize: true });

/** Record 0: the header map, msgpack-encoded. */
export function encodeNativeHeader(tensors: readonly TensorSpec[], metadata?: Record<string, string>): Uint8Array {
  const header: NativeHeader = {
    format: NATIVE_FORMAT_NAME,
    version: NATIVE_FORMAT_VERSION,
    tensors: tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape: [...shape] })),
  };
  if (metadata) header.metadata = metadata;
  return packr.pack(header);
}

/** The bytes preceding a data record's chunk: fixarray(2), the tensor index, the bin header. */
export function encodeNativeDataRecordPrefix(index: number, chunkLength: number): Uint8Array {
  if (!Number.isInteger(index) || index < 0 || index > 0xffffffff)
    throw new RangeError(`tensor index ${index} is not a uint32`);
  if (!Number.isInteger(chunkLength) || chunkLength < 1 || chunkLength > NATIVE_MAX_CHUNK_BYTES) {
    throw new RangeError(`chunk of ${chunkLength} bytes is outside 1..${NATIVE_MAX_CHUNK_BYTES}`);
  }
  const out = new Uint8Array(11);
  const view = new DataView(out.buffer);
  out[0] = NATIVE_RECORD_MARKER;
  let n = 1;
  if (index < 0x80) {
    out[n++] = index; // positive fixint
  } else {
    const [type, width] = index <= 0xff ? [0xcc, 1] : index <= 0xffff ? [0xcd, 2] : [0xce, 4];
    out[n++] = type;
    n = writeUintBE(view, n, index, width);
  }
  const [binType, lengthWidth] = chunkLength <= 0xff ? [0xc4, 1] : chunkLength <= 0xffff ? [0xc5, 2] : [0xc6, 4];
  out[n++] = binType;
  n = writeUintBE(view, n, chunkLength, lengthWidth);
  return out.subarray(0, n);
}

/** Writes `value` big-endian in `width` (1, 2 or 4) bytes at `at`; returns the offset after it. */
function writeUintBE(view: DataView, at: number, value: number, width: number): number {
  if (width === 1) view.setUint8(at, value);
  else if (width === 2) view.setUint16(at, value);
  else view.setUint32(at, value);
  return at + width;
}

/**
 * The checkpoint as a sequence of pieces (header, then record prefixes alternating with subarrays of the
 * tensors' data), never copying tensor data; write them in order.
 */
export function* encodeNativeStream(
  tensors: readonly TensorData[],
  opts: NativeEncodeOptions = {},
): Generator<Uint8Array> {
  const chunkBytes = opts.chunkBytes ?? NATIVE_DEFAULT_CHUNK_BYTES;
  if (!Number.isInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > NATIVE_MAX_CHUNK_BYTES) {
    throw new RangeError(`chunkBytes ${chunkBytes} is outside 1..${NATIVE_MAX_CHUNK_BYTES}`);
  }
  checkTensors(tensors);
  yield encodeNativeHeader(tensors, opts.metadata);
  for (let i = 0; i < tensors.length; i++) {
    const data = tensors[i].data;
    for (let offset = 0; offset < data.byteLength; offset += chunkBytes) {
      const chunk = data.subarray(offset, Math.min(offset + chunkBytes, data.byteLength));
      yield encodeNativeDataRecordPrefix(i, chunk.byteLength);
      yield chunk;
    }
  }
}

/** A whole native checkpoint in memory; for tests, fixtures and small checkpoints. */
export function encodeNative(tensors: readonly TensorData[], opts: NativeEncodeOptions = {}): Buffer {
  return Buffer.concat([...encodeNativeStream(tensors, opts)]);
}

function checkTensors(tensors: readonly TensorData[]): void {
  const names = new Set<string>();
  for (const t of tensors) {
    if (t.name === '' || names.has(t.name)) throw new RangeError(`tensor name '${t.name}' is empty or repeated`);
    names.add(t.name);
    const expected = elementCount(t.shape) * DTYPE_SIZES[t.dtype];
    if (t.data.byteLength !== expected) {
      throw new RangeError(`tensor '${t.name}': ${t.data.byteLength} bytes, shape and dtype need ${expected}`);
    }
  }
}
