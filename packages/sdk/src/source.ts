import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Dtype } from './wire/dtypes.js';
import { FILE_EXTENSIONS, MEDIA_TYPES, OCTET_STREAM } from './wire/formats.js';
import { encodeNativeStream } from './wire/native-format.js';
import type { TensorData } from './wire/safetensors.js';
import { TrajgateError } from './errors.js';

/** A tensor given in memory. `data` holds the raw little-endian bytes (a Float32Array for F32, say). */
export interface TensorInput {
  dtype: Dtype;
  shape: readonly number[];
  data: ArrayBufferView;
}

/** Tensors by name, e.g. `{ 'dense/kernel': { dtype: 'F32', shape: [784, 64], data } }`. */
export type TensorMap = Readonly<Record<string, TensorInput>>;

/** Bytes as they come: a Node Readable, a generator, any async iterable of Uint8Array chunks. */
export type ByteStream = AsyncIterable<Uint8Array>;

/**
 * Where checkpoint bytes come from:
 * - a file path (`'ckpt.safetensors'` or `{ file }`), sent as is; `.safetensors` and `.tgckpt` name their
 *   format, anything else is sent as application/octet-stream and recognised by the server;
 * - tensors (`TensorData[]`, a `TensorMap`, or `{ tensors, metadata }`), encoded to trajgate's native
 *   msgpack format as they are sent: piece by piece, never copied into one buffer;
 * - bytes from a stream (`{ stream }`, or the iterable itself). A stream can be read only once, so an
 *   upload from a one-shot stream is attempted once; pass a factory
 *   (`{ stream: () => createReadStream(path) }`) to make it retryable.
 *
 * The SDK keeps references to tensor data until the upload ends: do not overwrite those buffers meanwhile
 * (`tensorsFromModel` in `@trajgate/sdk/tfjs` returns copies).
 */
export type CheckpointSource =
  | string
  | readonly TensorData[]
  | TensorMap
  | ByteStream
  | { file: string; contentType?: string }
  | { tensors: readonly TensorData[] | TensorMap; metadata?: Record<string, string> }
  | { stream: ByteStream | (() => ByteStream); contentType?: string; sha256?: string };

/** A source ready to send: its media type, size and SHA-256 when known, and a way to read its bytes. */
export interface PreparedSource {
  contentType: string;
  size: number | null;
  /** Known before sending: goes in the x-trajgate-sha256 header, so the server refuses altered bytes. */
  sha256?: string;
  /** Whether `open()` may be called again (for a retry). */
  replayable: boolean;
  open(): ByteStream;
}

/** Sources up to this many bytes are hashed before sending unless told otherwise (see UploadOptions). */
export const DEFAULT_HASH_FIRST_BYTES = 256 * 1024 * 1024;

const HASH_SLICE_BYTES = 8 * 1024 * 1024;

/**
 * Resolves a source. Tensors and files of at most `hashFirstBytes` are read once up front to compute their
 * SHA-256 (tensors: the encoder yields views of the tensors' own memory, so this pass only hashes; it
 * yields to the event loop every 8 MiB so a training loop on the same thread keeps going).
 */
export async function prepareSource(
  source: CheckpointSource,
  hashFirstBytes = DEFAULT_HASH_FIRST_BYTES,
): Promise<PreparedSource> {
  if (typeof source === 'string') return prepareFile(source, undefined, hashFirstBytes);
  if (Array.isArray(source)) return prepareTensors(source as readonly TensorData[], undefined, hashFirstBytes);
  if (isByteStream(source)) return prepareStream(source, undefined, undefined);
  const record = source as Record<string, unknown>;
  if (typeof record.file === 'string') {
    const { file, contentType } = source as { file: string; contentType?: string };
    return prepareFile(file, contentType, hashFirstBytes);
  }
  if ('tensors' in record && !isTensorInput(record.tensors)) {
    const { tensors, metadata } = source as {
      tensors: readonly TensorData[] | TensorMap;
      metadata?: Record<string, string>;
    };
    return prepareTensors(
      Array.isArray(tensors) ? (tensors as readonly TensorData[]) : fromTensorMap(tensors as TensorMap),
      metadata,
      hashFirstBytes,
    );
  }
  if (typeof record.stream === 'function' || isByteStream(record.stream)) {
    const { stream, contentType, sha256 } = source as {
      stream: ByteStream | (() => ByteStream);
      contentType?: string;
      sha256?: string;
    };
    return prepareStream(stream, contentType, sha256);
  }
  return prepareTensors(fromTensorMap(source as TensorMap), undefined, hashFirstBytes);
}

/** A tensor map as TensorData (views of the same memory, not copies). */
export function fromTensorMap(map: TensorMap): TensorData[] {
  return Object.entries(map).map(([name, t]) => {
    if (!isTensorInput(t)) throw new TypeError(`tensor '${name}' needs dtype, shape and data`);
    return {
      name,
      dtype: t.dtype,
      shape: [...t.shape],
      data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
    };
  });
}

function isTensorInput(value: unknown): value is TensorInput {
  if (typeof value !== 'object' || value === null) return false;
  const t = value as Partial<TensorInput>;
  return typeof t.dtype === 'string' && Array.isArray(t.shape) && ArrayBuffer.isView(t.data);
}

function isByteStream(value: unknown): value is ByteStream {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}

async function prepareTensors(
  tensors: readonly TensorData[],
  metadata: Record<string, string> | undefined,
  hashFirstBytes: number,
): Promise<PreparedSource> {
  const encode = () => encodeNativeStream(tensors, { metadata });
  let size = 0;
  for (const piece of encode()) size += piece.byteLength; // also validates names, shapes and lengths
  let sha256: string | undefined;
  if (size <= hashFirstBytes) {
    const hash = createHash('sha256');
    let sinceYield = 0;
    for (const piece of encode()) {
      hash.update(piece);
      sinceYield += piece.byteLength;
      if (sinceYield >= HASH_SLICE_BYTES) {
        sinceYield = 0;
        await nextTurn();
      }
    }
    sha256 = hash.digest('hex');
  }
  return { contentType: MEDIA_TYPES.native, size, sha256, replayable: true, open: () => toAsync(encode()) };
}

async function prepareFile(
  path: string,
  contentType: string | undefined,
  hashFirstBytes: number,
): Promise<PreparedSource> {
  const { size } = await stat(path);
  const open = () => createReadStream(path, { highWaterMark: 1 << 20 });
  return {
    contentType: contentType ?? mediaTypeOf(path),
    size,
    sha256: size <= hashFirstBytes ? await sha256Of(open()) : undefined,
    replayable: true,
    open,
  };
}

function prepareStream(
  stream: ByteStream | (() => ByteStream),
  contentType: string | undefined,
  sha256: string | undefined,
): PreparedSource {
  const base = { contentType: contentType ?? OCTET_STREAM, size: null, sha256 };
  if (typeof stream === 'function') return { ...base, replayable: true, open: stream };
  let opened = false;
  return {
    ...base,
    replayable: false,
    open: () => {
      if (opened)
        throw new TrajgateError(
          0,
          'stream_not_replayable',
          'a one-shot stream was read already; pass { stream: () => ... } to allow retries',
        );
      opened = true;
      return stream;
    },
  };
}

function mediaTypeOf(path: string): string {
  const ext = extname(path).slice(1);
  if (ext === FILE_EXTENSIONS.safetensors) return MEDIA_TYPES.safetensors;
  if (ext === FILE_EXTENSIONS.native) return MEDIA_TYPES.native;
  return OCTET_STREAM;
}

/** The lowercase hex SHA-256 of a byte stream. */
export async function sha256Of(stream: ByteStream): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk);
  return hash.digest('hex');
}

async function* toAsync(pieces: Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* pieces;
}
