import { AppError, errors } from '../errors.js';
import { DTYPE_SIZES } from '@trajgate/sdk/wire/dtypes';
import type { CheckpointDecoder, CheckpointLayout, DecoderLimits, TensorMeta, TensorVisitor } from './decoder.js';
import { ElementSlicer } from './element-slicer.js';
import { MAX_HEADER_DEPTH, checkDtype, checkMetadata, checkShape, describe, isPlainObject } from './header-checks.js';

/**
 * Streaming safetensors decoder. Body: an 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}}`, then the data
 * section, offsets relative to its start. Validation follows the Rust reference implementation: offsets
 * sorted by (begin, end) must tile the data section from 0 with no gap or overlap, and each tensor's span
 * must equal elementCount(shape) * dtype size. The data section is never buffered: slices go straight to
 * the visitor (see `ElementSlicer`).
 */
export function createSafetensorsDecoder(visitor: TensorVisitor, limits: DecoderLimits): CheckpointDecoder {
  return new SafetensorsDecoder(visitor, limits);
}

const PREFIX_BYTES = 8;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;

interface Entry extends TensorMeta {
  begin: number;
  end: number;
}

enum Phase {
  Prefix,
  Header,
  Data,
}

class SafetensorsDecoder implements CheckpointDecoder {
  readonly format = 'safetensors' as const;
  expectedLength: number | null = null;

  private phase = Phase.Prefix;
  private received = 0;
  private readonly prefix = new Uint8Array(PREFIX_BYTES);
  private header: Uint8Array | null = null;
  private headerFilled = 0;
  private layout: CheckpointLayout | null = null;
  /** Data-section ends of the layout's tensors, parallel to layout.tensors. */
  private ends: number[] = [];
  private readonly slicer: ElementSlicer;
  private tensor = 0;
  private dataPos = 0;
  private dataLength = 0;

  constructor(
    private readonly visitor: TensorVisitor,
    private readonly limits: DecoderLimits,
  ) {
    this.slicer = new ElementSlicer(visitor);
  }

  write(chunk: Uint8Array): void {
    let pos = 0;
    if (this.phase === Phase.Prefix) pos = this.fillPrefix(chunk, pos);
    if (this.phase === Phase.Header) pos = this.fillHeader(chunk, pos);
    if (this.phase === Phase.Data) this.writeData(chunk, pos);
    this.received += chunk.byteLength;
  }

  end(): CheckpointLayout {
    if (this.phase === Phase.Prefix) {
      throw new AppError(
        'truncated_body',
        `body ended after ${this.received} bytes, inside the 8-byte safetensors header length`,
        {
          received: this.received,
          expected: PREFIX_BYTES,
        },
      );
    }
    if (this.phase === Phase.Header)
      throw errors.truncated(this.received, PREFIX_BYTES + (this.header?.byteLength ?? 0));
    if (this.dataPos < this.dataLength || this.layout === null)
      throw errors.truncated(this.received, this.expectedLength ?? 0);
    return this.layout;
  }

  private fillPrefix(chunk: Uint8Array, pos: number): number {
    while (this.received + pos < PREFIX_BYTES && pos < chunk.byteLength)
      this.prefix[this.received + pos] = chunk[pos++];
    if (this.received + pos < PREFIX_BYTES) return pos;
    const view = new DataView(this.prefix.buffer);
    const low = view.getUint32(0, true);
    const high = view.getUint32(4, true);
    const length = high * 2 ** 32 + low; // may round above 2^53; only compared with the cap
    if (length > this.limits.maxHeaderBytes) {
      throw new AppError(
        'header_too_large',
        `safetensors header of ${length} bytes exceeds the limit of ${this.limits.maxHeaderBytes}`,
        {
          headerBytes: length,
          limit: this.limits.maxHeaderBytes,
        },
      );
    }
    if (length === 0) throw errors.malformed('safetensors header length is 0');
    this.header = new Uint8Array(length);
    this.phase = Phase.Header;
    return pos;
  }

  private fillHeader(chunk: Uint8Array, pos: number): number {
    const header = this.header as Uint8Array;
    const take = Math.min(header.byteLength - this.headerFilled, chunk.byteLength - pos);
    header.set(chunk.subarray(pos, pos + take), this.headerFilled);
    this.headerFilled += take;
    pos += take;
    if (this.headerFilled < header.byteLength) return pos;
    this.header = null;
    this.startData(header.byteLength, parseHeader(header, this.limits));
    return pos;
  }

  private startData(headerBytes: number, { entries, metadata }: ParsedHeader): void {
    const tensors = entries.map(({ name, dtype, shape, byteLength }) => ({ name, dtype, shape, byteLength }));
    this.ends = entries.map((e) => e.end);
    this.dataLength = entries.length > 0 ? entries[entries.length - 1].end : 0;
    const total = PREFIX_BYTES + headerBytes + this.dataLength;
    if (!Number.isSafeInteger(total))
      throw errors.malformed(`safetensors data section of ${this.dataLength} bytes is too large`);
    this.expectedLength = total;
    this.layout = { format: 'safetensors', tensors, metadata };
    this.phase = Phase.Data;
    this.visitor.onHeader(this.layout);
    this.tensor = -1;
    this.nextTensor();
  }

  /** Advances to the next tensor with bytes (zero-byte tensors get no onData). */
  private nextTensor(): void {
    const tensors = (this.layout as CheckpointLayout).tensors;
    do this.tensor++;
    while (this.tensor < tensors.length && tensors[this.tensor].byteLength === 0);
    if (this.tensor < tensors.length) this.slicer.begin(this.tensor, DTYPE_SIZES[tensors[this.tensor].dtype]);
  }

  private writeData(chunk: Uint8Array, pos: number): void {
    const length = chunk.byteLength;
    while (pos < length) {
      if (this.dataPos === this.dataLength) {
        const expected = this.expectedLength as number;
        throw new AppError(
          'length_mismatch',
          `body continues past the ${expected} bytes the safetensors header declares`,
          {
            expected,
            received: this.received + length,
          },
        );
      }
      const tensorEnd = this.ends[this.tensor];
      const take = Math.min(length - pos, tensorEnd - this.dataPos);
      this.slicer.push(chunk, pos, pos + take);
      pos += take;
      this.dataPos += take;
      if (this.dataPos === tensorEnd) this.nextTensor();
    }
  }
}

interface ParsedHeader {
  /** In data order. */
  entries: Entry[];
  metadata: Record<string, string> | null;
}

/** Parses and validates the JSON header. */
function parseHeader(bytes: Uint8Array, limits: DecoderLimits): ParsedHeader {
  if (bytes[0] !== OPEN_BRACE)
    throw errors.malformed(`safetensors header must start with '{', got byte 0x${bytes[0].toString(16)}`);
  let text: string;
  let json: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw errors.malformed(`safetensors header is not valid UTF-8 JSON: ${(err as Error).message}`);
  }
  checkStructure(text);
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw errors.malformed(`safetensors header is not valid UTF-8 JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(json)) throw errors.malformed(`safetensors header must be a JSON object, got ${describe(json)}`);
  const names = Object.keys(json).filter((k) => k !== '__metadata__');
  if (names.length > limits.maxTensors) {
    throw errors.malformed(`checkpoint has ${names.length} tensors, more than the limit of ${limits.maxTensors}`, {
      tensors: names.length,
      limit: limits.maxTensors,
    });
  }
  const metadata = Object.hasOwn(json, '__metadata__') ? checkMetadata('__metadata__', json.__metadata__) : null;
  const entries = names.map((name) => parseEntry(name, json[name]));
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  checkContiguous(entries);
  return { entries, metadata };
}

function parseEntry(name: string, value: unknown): Entry {
  if (!isPlainObject(value))
    throw errors.malformed(`tensor '${name}' must be an object, got ${describe(value)}`, { tensor: name });
  if (!Object.hasOwn(value, 'dtype')) throw errors.malformed(`tensor '${name}' has no dtype`, { tensor: name });
  const dtype = checkDtype(name, value.dtype);
  const byteLength = checkShape(name, dtype, value.shape);
  const offsets = value.data_offsets;
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o: unknown) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0) ||
    offsets[0] > offsets[1]
  ) {
    throw errors.malformed(
      `tensor '${name}' has invalid data_offsets ${describe(offsets)}: expected [begin, end] integers with begin <= end`,
      {
        tensor: name,
      },
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end - begin !== byteLength) {
    throw errors.malformed(
      `tensor '${name}': data_offsets [${begin}, ${end}] span ${end - begin} bytes but shape ${JSON.stringify(value.shape)} of ${dtype} needs ${byteLength}`,
      { tensor: name, span: end - begin, expected: byteLength },
    );
  }
  return { name, dtype, shape: value.shape as number[], byteLength, begin, end };
}

/** Sorted entries must tile the data section from 0: each begins where the previous ended. */
function checkContiguous(entries: Entry[]): void {
  let cursor = 0;
  let previous: string | null = null;
  for (const e of entries) {
    if (e.begin !== cursor) {
      const problem =
        previous === null
          ? `the data section starts at 0 but the first tensor, '${e.name}', begins at ${e.begin}`
          : e.begin < cursor
            ? `tensor '${e.name}' begins at ${e.begin}, overlapping '${previous}' which ends at ${cursor}`
            : `tensor '${e.name}' begins at ${e.begin}, leaving a gap after '${previous}' which ends at ${cursor}`;
      throw errors.malformed(problem, { tensor: e.name, begin: e.begin, expected: cursor });
    }
    cursor = e.end;
    previous = e.name;
  }
}

/**
 * One linear pass over the header text, before JSON.parse, for what JSON.parse cannot report: nesting deeper
 * than MAX_HEADER_DEPTH (any recursive walk over the parsed value could then exhaust the stack) and a key
 * repeated within one object (JSON.parse silently keeps the last). It reads only strings, brackets, commas
 * and colons; on text that is not JSON it stops and leaves the error to JSON.parse.
 */
function checkStructure(text: string): void {
  /** Per open container: its keys so far (an object) or null (an array). */
  const keys: (Set<string> | null)[] = [];
  /** Per open container: the key it is the value of, when its parent is an object. */
  const names: (string | null)[] = [];
  let expectKey = false;
  let lastKey: string | null = null;
  // The next backslash at or after the current string's start; only ever searched forward (linear time).
  let backslash = text.indexOf('\\');
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      let end = text.indexOf('"', i + 1);
      if (end < 0) return;
      if (backslash !== -1 && backslash < i) backslash = text.indexOf('\\', i);
      const escaped = backslash !== -1 && backslash < end;
      if (escaped) {
        end = backslash;
        while (end < n && text.charCodeAt(end) !== QUOTE) end += text.charCodeAt(end) === BACKSLASH ? 2 : 1;
        if (end >= n) return;
        backslash = text.indexOf('\\', end);
      }
      const object = keys[keys.length - 1];
      if (expectKey && object) {
        let key: string;
        try {
          key = escaped ? (JSON.parse(text.slice(i, end + 1)) as string) : text.slice(i + 1, end);
        } catch {
          return;
        }
        if (object.has(key)) {
          const path = names.filter((name) => name !== null);
          const where = path.length > 0 ? ` in ${path.map((name) => describe(name)).join(' > ')}` : '';
          throw errors.malformed(`safetensors header repeats the key ${describe(key)}${where}: keys must be unique`, {
            key,
            path,
          });
        }
        object.add(key);
        lastKey = key;
        expectKey = false;
      }
      i = end;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (keys.length === MAX_HEADER_DEPTH) {
        throw errors.malformed(
          `safetensors header nests arrays or objects deeper than ${MAX_HEADER_DEPTH} levels (at character ${i})`,
          { limit: MAX_HEADER_DEPTH, offset: i },
        );
      }
      names.push(keys.length > 0 && keys[keys.length - 1] !== null ? lastKey : null);
      keys.push(c === OPEN_BRACE ? new Set() : null);
      expectKey = c === OPEN_BRACE;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      keys.pop();
      names.pop();
      expectKey = false;
    } else if (c === COMMA) {
      expectKey = keys.length > 0 && keys[keys.length - 1] !== null;
    } else if (c === COLON) {
      expectKey = false;
    }
  }
}
