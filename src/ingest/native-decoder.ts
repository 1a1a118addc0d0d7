import { Unpackr } from 'msgpackr';
import { z } from 'zod';
import { AppError, errors } from '../errors.js';
import { DTYPE_SIZES } from '@trajgate/sdk/wire/dtypes';
import {
  NATIVE_FORMAT_NAME,
  NATIVE_FORMAT_VERSION,
  NATIVE_MAX_CHUNK_BYTES,
  NATIVE_RECORD_MARKER,
} from '@trajgate/sdk/wire/native-format';
import type { CheckpointDecoder, CheckpointLayout, DecoderLimits, TensorMeta, TensorVisitor } from './decoder.js';
import { ElementSlicer } from './element-slicer.js';
import { MAX_HEADER_DEPTH, checkDtype, checkMetadata, checkShape, describe, isPlainObject } from './header-checks.js';
import {
  MAX_PREFIX_BYTES,
  binWidth,
  checkHeaderStart,
  hex,
  isIntegerType,
  readUint,
  scanHeaderRecord,
  uintWidth,
} from './native-framing.js';

/**
 * Streaming decoder for the native format (spec: @trajgate/sdk/wire/native-format). The header record has no
 * length prefix, so it is buffered until a byte-level walk (`scanHeaderRecord`, which also bounds its depth
 * and rejects what the format forbids) finds its end, then unpacked with msgpackr; data records are parsed
 * by hand and their chunks streamed to the visitor without buffering.
 */
export function createNativeDecoder(visitor: TensorVisitor, limits: DecoderLimits): CheckpointDecoder {
  return new NativeDecoder(visitor, limits);
}

/** int64AsType 'number': an oversized uint64 becomes an unsafe number, which validation then rejects. */
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

const HeaderSchema = z.strictObject({
  format: z.literal(NATIVE_FORMAT_NAME),
  version: z.literal(NATIVE_FORMAT_VERSION),
  tensors: z.array(z.strictObject({ name: z.string().min(1), dtype: z.unknown(), shape: z.unknown() })),
  metadata: z.unknown().optional(),
});

class NativeDecoder implements CheckpointDecoder {
  readonly format = 'native' as const;
  readonly expectedLength = null;

  private received = 0;
  private layout: CheckpointLayout | null = null;
  private readonly slicer: ElementSlicer;

  // Header phase: buffered pieces, and the buffered size at which to try unpacking again.
  private headerPieces: Uint8Array[] = [];
  private headerBuffered = 0;
  private nextAttempt = 1;

  // Data phase.
  private readonly prefix = new Uint8Array(MAX_PREFIX_BYTES);
  private prefixLength = 0;
  /** Total prefix length, known once enough of it has arrived; 0 until then. */
  private prefixNeed = 0;
  /** Bytes of the current record's chunk still to come. */
  private payloadLeft = 0;
  private tensor = -1;
  /** Bytes of the current tensor not yet claimed by a record. */
  private tensorLeft = 0;
  /** Index of the last tensor with bytes, -1 if none. */
  private lastWithData = -1;
  /** Stream offset of the next byte, for messages. */
  private position = 0;

  constructor(
    private readonly visitor: TensorVisitor,
    private readonly limits: DecoderLimits,
  ) {
    this.slicer = new ElementSlicer(visitor);
  }

  write(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.received += chunk.byteLength;
    if (this.layout === null) {
      const rest = this.feedHeader(chunk);
      if (rest !== null) this.writeData(rest.bytes, rest.start);
    } else {
      this.writeData(chunk, 0);
    }
  }

  end(): CheckpointLayout {
    if (this.layout === null && this.headerBuffered > 0) {
      // The last attempt may have been deferred (see feedHeader).
      const rest = this.unpackHeader();
      if (rest !== null) this.writeData(rest.bytes, rest.start);
    }
    if (this.layout === null) {
      throw new AppError('truncated_body', `body ended after ${this.received} bytes, inside the native header record`, {
        received: this.received,
      });
    }
    if (!this.complete()) {
      const missing = this.missingBytes();
      throw new AppError(
        'truncated_body',
        `body ended after ${this.received} bytes with ${missing} bytes of tensor data still to come` +
          (this.tensor >= 0 ? ` (in or after tensor '${this.layout.tensors[this.tensor].name}')` : ''),
        { received: this.received, missingTensorBytes: missing },
      );
    }
    return this.layout;
  }

  /**
   * Buffers header bytes; once the header record is whole, unpacks and validates it and returns where the
   * data records begin. The walk is retried only after the buffer has grown by half (or by what it found
   * missing), so a header trickling in byte by byte costs linear, not quadratic, time. Bytes kept past a
   * write() are copies: the caller may reuse its chunk once write() returns.
   */
  private feedHeader(chunk: Uint8Array): { bytes: Uint8Array; start: number } | null {
    if (this.headerBuffered === 0) checkHeaderStart(chunk[0]);
    this.headerBuffered += chunk.byteLength;
    if (this.headerBuffered < this.nextAttempt) {
      this.headerPieces.push(new Uint8Array(chunk));
      return null;
    }
    this.headerPieces.push(chunk);
    return this.unpackHeader();
  }

  /** Only the last of `headerPieces` may be the caller's chunk (see feedHeader). */
  private unpackHeader(): { bytes: Uint8Array; start: number } | null {
    const pieces = this.headerPieces;
    const buffer = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces);
    const max = this.limits.maxHeaderBytes;
    const extent = scanHeaderRecord(buffer, MAX_HEADER_DEPTH);
    if ('missing' in extent) {
      if (this.headerBuffered + extent.missing > max) throw headerTooLarge(max);
      this.headerPieces = [buffer === pieces[pieces.length - 1] ? new Uint8Array(buffer) : buffer];
      const grown = Math.max(this.headerBuffered + extent.missing, Math.ceil(this.headerBuffered * 1.5));
      this.nextAttempt = Math.min(grown, max + 1);
      return null;
    }
    if (extent.end > max) throw headerTooLarge(max);
    let header: unknown;
    try {
      // A fresh view: msgpackr caches a DataView as a property of the array it is given.
      header = unpackr.unpack(buffer.subarray(0, extent.end));
    } catch (err) {
      throw errors.malformed(`native header record is not valid msgpack: ${messageOf(err)}`);
    }
    this.headerPieces = [];
    this.position = extent.end;
    this.startData(parseHeader(header, this.limits, extent.versionType));
    return { bytes: buffer, start: extent.end };
  }

  private startData(layout: CheckpointLayout): void {
    this.layout = layout;
    layout.tensors.forEach((t, i) => {
      if (t.byteLength > 0) this.lastWithData = i;
    });
    this.visitor.onHeader(layout);
  }

  /** Hot path: chunk payloads go straight to the slicer; only record prefixes are read byte by byte. */
  private writeData(bytes: Uint8Array, pos: number): void {
    const length = bytes.byteLength;
    while (pos < length) {
      if (this.payloadLeft > 0) {
        const take = Math.min(length - pos, this.payloadLeft);
        this.slicer.push(bytes, pos, pos + take);
        pos += take;
        this.payloadLeft -= take;
        this.position += take;
      } else {
        pos = this.readPrefix(bytes, pos);
      }
    }
  }

  /** Consumes record-prefix bytes from `pos`; starts the record once its prefix is whole. */
  private readPrefix(bytes: Uint8Array, pos: number): number {
    if (this.prefixLength === 0 && this.complete()) {
      throw errors.malformed(`unexpected bytes at offset ${this.position}, after the last tensor's data`, {
        offset: this.position,
      });
    }
    while (pos < bytes.byteLength) {
      const byte = bytes[pos++];
      this.prefix[this.prefixLength++] = byte;
      this.position++;
      if (this.prefixNeed === 0) this.prefixNeed = this.prefixSize(byte);
      if (this.prefixLength === this.prefixNeed) {
        this.startRecord();
        break;
      }
    }
    return pos;
  }

  /** Checks the prefix byte just added; returns the whole prefix's length once known, else 0. */
  private prefixSize(byte: number): number {
    const n = this.prefixLength;
    const recordAt = this.position - n;
    if (n === 1) {
      if (byte !== NATIVE_RECORD_MARKER) {
        throw errors.malformed(
          `expected a data record (msgpack fixarray of 2, 0x92) at offset ${recordAt}, got 0x${hex(byte)}`,
          {
            offset: recordAt,
          },
        );
      }
      return 0;
    }
    const indexWidth = uintWidth(this.prefix[1]);
    if (indexWidth < 0) {
      throw errors.malformed(
        `data record at offset ${recordAt}: the tensor index must be a msgpack uint up to uint32, got type byte 0x${hex(this.prefix[1])}`,
        {
          offset: recordAt,
        },
      );
    }
    const binAt = 2 + indexWidth;
    if (n <= binAt) return 0;
    const lengthWidth = binWidth(this.prefix[binAt]);
    if (lengthWidth < 0) {
      throw errors.malformed(
        `data record at offset ${recordAt}: the chunk must be msgpack bin, got type byte 0x${hex(this.prefix[binAt])}`,
        {
          offset: recordAt,
        },
      );
    }
    return binAt + 1 + lengthWidth;
  }

  private startRecord(): void {
    const p = this.prefix;
    const indexWidth = uintWidth(p[1]);
    const index = indexWidth === 0 ? p[1] : readUint(p, 2, indexWidth);
    const lengthAt = 3 + indexWidth;
    const chunkLength = readUint(p, lengthAt, this.prefixNeed - lengthAt);
    const recordAt = this.position - this.prefixNeed;
    this.prefixLength = 0;
    this.prefixNeed = 0;
    this.enterTensor(index, recordAt);
    const name = (this.layout as CheckpointLayout).tensors[index].name;
    if (chunkLength === 0)
      throw errors.malformed(`empty data record for tensor '${name}' at offset ${recordAt}`, {
        tensor: name,
        offset: recordAt,
      });
    if (chunkLength > NATIVE_MAX_CHUNK_BYTES) {
      throw errors.malformed(
        `data record for tensor '${name}' at offset ${recordAt} holds ${chunkLength} bytes, over the ${NATIVE_MAX_CHUNK_BYTES}-byte chunk limit`,
        {
          tensor: name,
          offset: recordAt,
        },
      );
    }
    if (chunkLength > this.tensorLeft) {
      throw errors.malformed(
        `data record for tensor '${name}' at offset ${recordAt} holds ${chunkLength} bytes but only ${this.tensorLeft} of the tensor remain`,
        { tensor: name, offset: recordAt, chunkBytes: chunkLength, remaining: this.tensorLeft },
      );
    }
    this.tensorLeft -= chunkLength;
    this.payloadLeft = chunkLength;
  }

  /** Moves to tensor `index` if it is next in header order and the current one is complete. */
  private enterTensor(index: number, recordAt: number): void {
    const tensors = (this.layout as CheckpointLayout).tensors;
    if (index >= tensors.length) {
      throw errors.malformed(
        `data record at offset ${recordAt} names tensor index ${index}, but the header lists ${tensors.length} tensors`,
        {
          offset: recordAt,
          index,
        },
      );
    }
    if (index === this.tensor) return;
    const name = tensors[index].name;
    if (index < this.tensor) {
      throw errors.malformed(
        `data record for tensor '${name}' at offset ${recordAt} comes after tensor '${tensors[this.tensor].name}': tensors must follow header order`,
        {
          tensor: name,
          offset: recordAt,
        },
      );
    }
    for (let i = Math.max(this.tensor, 0); i < index; i++) {
      const unfinished = i === this.tensor ? this.tensorLeft : tensors[i].byteLength;
      if (unfinished > 0) {
        throw errors.malformed(
          `data record for tensor '${name}' at offset ${recordAt} starts before tensor '${tensors[i].name}' is complete (${unfinished} bytes missing)`,
          {
            tensor: name,
            offset: recordAt,
            incomplete: tensors[i].name,
          },
        );
      }
    }
    this.tensor = index;
    this.tensorLeft = tensors[index].byteLength;
    this.slicer.begin(index, DTYPE_SIZES[tensors[index].dtype]);
  }

  /** Every tensor's bytes have arrived. */
  private complete(): boolean {
    return this.payloadLeft === 0 && this.tensorLeft === 0 && this.tensor >= this.lastWithData;
  }

  private missingBytes(): number {
    const tensors = (this.layout as CheckpointLayout).tensors;
    let missing = this.payloadLeft + this.tensorLeft;
    for (let i = Math.max(this.tensor + 1, 0); i < tensors.length; i++) missing += tensors[i].byteLength;
    return missing;
  }
}

/**
 * Validates the unpacked header record and builds the layout. `versionType` is the msgpack type byte of the
 * version (msgpackr decodes the float 1.0 as the number 1, so only the byte tells an integer).
 */
function parseHeader(value: unknown, limits: DecoderLimits, versionType: number): CheckpointLayout {
  if (!isPlainObject(value)) throw errors.malformed(`native header record must be a map, got ${describe(value)}`);
  if (value.format !== NATIVE_FORMAT_NAME) {
    throw errors.malformed(
      `not a trajgate checkpoint: header format is ${describe(value.format)}, expected "${NATIVE_FORMAT_NAME}"`,
    );
  }
  if (typeof value.version === 'number' && !isIntegerType(versionType)) {
    const encoding = `encoded as a float (type byte 0x${hex(versionType)})`;
    throw errors.malformed(
      `native format version must be a msgpack integer, got ${describe(value.version)} ${encoding}`,
    );
  }
  if (value.version !== NATIVE_FORMAT_VERSION) {
    throw errors.malformed(
      `native format version ${describe(value.version)} is not supported (this server reads version ${NATIVE_FORMAT_VERSION})`,
    );
  }
  if (Array.isArray(value.tensors) && value.tensors.length > limits.maxTensors) {
    throw errors.malformed(
      `checkpoint has ${value.tensors.length} tensors, more than the limit of ${limits.maxTensors}`,
      {
        tensors: value.tensors.length,
        limit: limits.maxTensors,
      },
    );
  }
  const parsed = HeaderSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw errors.malformed(`native header: ${issue.path.join('.') || 'record'}: ${issue.message}`);
  }
  const names = new Set<string>();
  const tensors: TensorMeta[] = parsed.data.tensors.map((t) => {
    if (names.has(t.name)) throw errors.malformed(`native header lists tensor '${t.name}' twice`, { tensor: t.name });
    names.add(t.name);
    const dtype = checkDtype(t.name, t.dtype);
    const byteLength = checkShape(t.name, dtype, t.shape);
    return { name: t.name, dtype, shape: t.shape as number[], byteLength };
  });
  const metadata =
    parsed.data.metadata === undefined ? null : checkMetadata('native header metadata', parsed.data.metadata);
  return { format: 'native', tensors, metadata };
}

function headerTooLarge(max: number): AppError {
  return new AppError('header_too_large', `native header record exceeds the limit of ${max} bytes`, { limit: max });
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
