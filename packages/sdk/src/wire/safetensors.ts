import { DTYPE_SIZES, elementCount, type Dtype } from './dtypes.js';

/**
 * safetensors writer (the Hugging Face format): an 8-byte little-endian header length N, N bytes of JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {k: v}}` padded with spaces to a
 * multiple of 8, then the tensors' raw little-endian bytes, offsets relative to the end of the header.
 * Imports nothing from the server, so the SDK and the scripts use it too.
 */
export interface TensorSpec {
  name: string;
  dtype: Dtype;
  shape: number[];
}

export interface TensorData extends TensorSpec {
  /** Raw little-endian bytes, elementCount(shape) * DTYPE_SIZES[dtype] long. */
  data: Uint8Array;
}

/** The header bytes (length prefix included) for tensors laid out in the given order. */
export function encodeSafetensorsHeader(tensors: readonly TensorSpec[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bytes = elementCount(t.shape) * DTYPE_SIZES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const jsonBytes = Buffer.byteLength(json);
  json += ' '.repeat((8 - (jsonBytes % 8)) % 8);
  const body = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + body.length);
  out.writeBigUInt64LE(BigInt(body.length), 0);
  body.copy(out, 8);
  return out;
}

/** A whole safetensors file in memory; for tests, fixtures and small checkpoints. */
export function encodeSafetensors(tensors: readonly TensorData[], metadata?: Record<string, string>): Buffer {
  for (const t of tensors) {
    const expected = elementCount(t.shape) * DTYPE_SIZES[t.dtype];
    if (t.data.byteLength !== expected) {
      throw new RangeError(`tensor '${t.name}': ${t.data.byteLength} bytes, shape and dtype need ${expected}`);
    }
  }
  return Buffer.concat([encodeSafetensorsHeader(tensors, metadata), ...tensors.map((t) => t.data)]);
}
