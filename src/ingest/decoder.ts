import type { Dtype } from '@trajgate/sdk/wire/dtypes';
import type { CheckpointFormat } from '@trajgate/sdk/wire/formats';

/**
 * Streaming checkpoint decoders (safetensors, native msgpack) share this contract. A decoder is fed the
 * body chunk by chunk and reports tensor data to a visitor as it arrives, holding at most a few small
 * buffers (the header, a partial record prefix, fewer than 8 carried bytes of a split element) whatever the
 * checkpoint size. Every violation throws an `AppError` naming the problem (malformed_checkpoint,
 * header_too_large, unsupported_dtype, truncated_body, length_mismatch).
 */
export interface TensorMeta {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** elementCount(shape) * DTYPE_SIZES[dtype]. */
  byteLength: number;
}

export interface CheckpointLayout {
  format: CheckpointFormat;
  /** In the order their bytes appear in the body. */
  tensors: TensorMeta[];
  /** safetensors `__metadata__` or the native header's `metadata`; string values only. */
  metadata: Record<string, string> | null;
}

export interface TensorVisitor {
  /** Called once, after the header is read and fully validated, before any onData. */
  onHeader(layout: CheckpointLayout): void;
  /**
   * Successive slices of tensor `index` (into `layout.tensors`), in byte order, each a whole number of
   * elements. `byteOffset` is the slice's offset within the tensor. The bytes are only valid during the
   * call and may sit at any alignment in their ArrayBuffer.
   */
  onData(index: number, byteOffset: number, bytes: Uint8Array): void;
}

export interface CheckpointDecoder {
  readonly format: CheckpointFormat;
  /** The whole body's length, once the decoder knows it (safetensors: after the header), else null. */
  readonly expectedLength: number | null;
  /** Feeds the next bytes of the body. Throws on malformed input, including bytes past the end. */
  write(chunk: Uint8Array): void;
  /** The body has ended. Throws truncated_body if the checkpoint is incomplete; returns its layout. */
  end(): CheckpointLayout;
}

export interface DecoderLimits {
  /** Cap on the safetensors JSON header or the native header record, in bytes. */
  maxHeaderBytes: number;
  /** Cap on the number of tensors in one checkpoint. */
  maxTensors: number;
}
