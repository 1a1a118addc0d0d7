import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { isAppError } from '../../src/errors.js';
import type { CheckpointDecoder, CheckpointLayout, DecoderLimits, TensorVisitor } from '../../src/ingest/decoder.js';
import { DTYPES, DTYPE_SIZES, elementCount, type Dtype } from '@trajgate/sdk/wire/dtypes';
import type { TensorData } from '@trajgate/sdk/wire/safetensors';

export const LIMITS: DecoderLimits = { maxHeaderBytes: 64 * 1024, maxTensors: 1000 };

/** mulberry32: the seeded PRNG the training harness uses, floats in [0, 1). */
export { mulberry32 as prng } from '../../scripts/lib/mnist-data.js';

export type Rng = () => number;

export const randomInt = (rng: Rng, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));

export function randomBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(rng() * 256);
  return out;
}

export function tensor(rng: Rng, name: string, dtype: Dtype, shape: number[]): TensorData {
  return { name, dtype, shape, data: randomBytes(rng, elementCount(shape) * DTYPE_SIZES[dtype]) };
}

function randomShape(rng: Rng): number[] {
  const roll = rng();
  if (roll < 0.15) return [];
  if (roll < 0.25) return [0, randomInt(rng, 1, 4)];
  return Array.from({ length: randomInt(rng, 1, 3) }, () => randomInt(rng, 1, 7));
}

/** A random checkpoint holding every dtype at least once, with scalar and zero-size tensors among them. */
export function randomCheckpoint(rng: Rng): TensorData[] {
  const dtypes: Dtype[] = [
    ...DTYPES,
    ...Array.from({ length: randomInt(rng, 0, 6) }, () => DTYPES[randomInt(rng, 0, DTYPES.length - 1)]),
  ];
  const tensors = dtypes.map((dtype, i) => tensor(rng, `t${i}.${dtype.toLowerCase()}`, dtype, randomShape(rng)));
  tensors.push(tensor(rng, 'scalar', 'F32', []), tensor(rng, 'empty', 'F16', [0, 3]));
  // Shuffle so scalars and empty tensors land anywhere.
  for (let i = tensors.length - 1; i > 0; i--) {
    const j = randomInt(rng, 0, i);
    [tensors[i], tensors[j]] = [tensors[j], tensors[i]];
  }
  return tensors;
}

/** How to cut a body into write() calls: a fixed size, explicit sizes (cycled), or random sizes. */
export type Chunking = number | number[] | { random: Rng; max: number };

export function* chunks(body: Uint8Array, chunking: Chunking): Generator<Uint8Array> {
  let pos = 0;
  let i = 0;
  while (pos < body.byteLength) {
    const size =
      typeof chunking === 'number'
        ? chunking
        : Array.isArray(chunking)
          ? chunking[i++ % chunking.length]
          : randomInt(chunking.random, 1, chunking.max);
    yield body.subarray(pos, pos + size);
    pos += size;
  }
}

/**
 * Records what a decoder reports and checks the contract as it goes: onHeader once and first; onData
 * slices element-aligned, non-empty, in byte order per tensor, and tensors in layout order.
 */
export class RecordingVisitor implements TensorVisitor {
  layout: CheckpointLayout | null = null;
  headerCalls = 0;
  dataCalls = 0;
  private pieces = new Map<number, Uint8Array[]>();
  private next = new Map<number, number>();
  private lastIndex = -1;

  onHeader(layout: CheckpointLayout): void {
    assert.equal(this.dataCalls, 0, 'onHeader comes before any onData');
    this.headerCalls++;
    this.layout = layout;
  }

  onData(index: number, byteOffset: number, bytes: Uint8Array): void {
    assert.ok(this.layout, 'onData after onHeader');
    const meta = this.layout.tensors[index];
    assert.ok(meta, `tensor index ${index} in range`);
    assert.ok(index >= this.lastIndex, `tensor ${index} after ${this.lastIndex}: tensors in order`);
    this.lastIndex = index;
    assert.ok(bytes.byteLength > 0, 'no empty slices');
    assert.equal(byteOffset, this.next.get(index) ?? 0, `tensor '${meta.name}' slices in byte order`);
    assert.equal(bytes.byteLength % DTYPE_SIZES[meta.dtype], 0, `tensor '${meta.name}' slice element-aligned`);
    assert.ok(byteOffset + bytes.byteLength <= meta.byteLength, `tensor '${meta.name}' slice within the tensor`);
    this.next.set(index, byteOffset + bytes.byteLength);
    this.dataCalls++;
    // Bytes are only valid during the call: copy.
    const list = this.pieces.get(index) ?? [];
    list.push(Uint8Array.from(bytes));
    this.pieces.set(index, list);
  }

  /** The concatenated bytes seen for tensor `name`. */
  bytesOf(name: string): Buffer {
    assert.ok(this.layout);
    const index = this.layout.tensors.findIndex((t) => t.name === name);
    assert.ok(index >= 0, `tensor '${name}' in layout`);
    return Buffer.concat(this.pieces.get(index) ?? []);
  }
}

export type DecoderFactory = (visitor: TensorVisitor, limits: DecoderLimits) => CheckpointDecoder;

/** Feeds `body` to a new decoder in the given chunking, ends it, and returns what the visitor saw. */
export function decode(
  create: DecoderFactory,
  body: Uint8Array,
  chunking: Chunking = body.byteLength || 1,
  limits: DecoderLimits = LIMITS,
): { visitor: RecordingVisitor; layout: CheckpointLayout; decoder: CheckpointDecoder } {
  const visitor = new RecordingVisitor();
  const decoder = create(visitor, limits);
  for (const chunk of chunks(body, chunking)) decoder.write(chunk);
  const layout = decoder.end();
  assert.equal(visitor.headerCalls, 1, 'onHeader called once');
  assert.strictEqual(layout, visitor.layout, 'end() returns the layout given to onHeader');
  return { visitor, layout, decoder };
}

/** Asserts the decoded layout and bytes match `tensors` (in this order) and `metadata`. */
export function assertDecodedAs(
  result: { visitor: RecordingVisitor; layout: CheckpointLayout },
  tensors: readonly TensorData[],
  metadata: Record<string, string> | null,
): void {
  assert.deepEqual(
    result.layout.tensors,
    tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.data.byteLength })),
  );
  assert.deepEqual(result.layout.metadata, metadata);
  for (const t of tensors)
    assert.deepEqual(result.visitor.bytesOf(t.name), Buffer.from(t.data), `bytes of '${t.name}'`);
}

/** Runs `fn` and asserts it throws an AppError with `code` (and a message matching `message`, if given). */
export function assertCode(fn: () => unknown, code: string, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isAppError(err), `expected an AppError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

/** Feeds the body chunk by chunk and ends, as a single call for assertCode. */
/** Feeds `body` in `size`-byte pieces through one write buffer that is overwritten after every write. */
export function decodeThroughReusedBuffer(
  create: DecoderFactory,
  body: Uint8Array,
  size: number,
): { visitor: RecordingVisitor; layout: CheckpointLayout } {
  const visitor = new RecordingVisitor();
  const decoder = create(visitor, LIMITS);
  const scratch = new Uint8Array(size);
  for (const chunk of chunks(body, size)) {
    scratch.set(chunk);
    decoder.write(scratch.subarray(0, chunk.byteLength));
    scratch.fill(0xee);
  }
  return { visitor, layout: decoder.end() };
}

export function feedAll(
  create: DecoderFactory,
  body: Uint8Array,
  chunking: Chunking = body.byteLength || 1,
  limits = LIMITS,
): () => void {
  return () => {
    const decoder = create(new RecordingVisitor(), limits);
    for (const chunk of chunks(body, chunking)) decoder.write(chunk);
    decoder.end();
  };
}

/** A visitor that ignores data, for memory and throughput checks. */
export const nullVisitor: TensorVisitor = { onHeader() {}, onData() {} };

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/**
 * Decodes `body` fed as fresh copies of `chunkBytes`-sized chunks (as a socket would deliver it) and
 * returns the largest rise of heap plus ArrayBuffer memory, sampled after a forced GC every 2 MiB, above
 * the lowest sample taken before it. A decoder (or visitor) that keeps the chunks shows up as a rise of
 * about the body size. Measuring from the lowest earlier sample rather than from the first one matters:
 * garbage the caller made (the body's source tensors, a previous test's buffers) can stay reachable from a
 * stale stack slot through the first GC and be freed mid-run, which offsets a fixed baseline by as much as
 * the body and once hid a visitor that kept everything.
 */
export function measureDecodeGrowth(
  create: DecoderFactory,
  body: Uint8Array,
  chunkBytes: number,
  visitor: TensorVisitor = nullVisitor,
): number {
  const sampleEvery = Math.max(1, Math.floor((2 * 1024 * 1024) / chunkBytes));
  let trough = Number.POSITIVE_INFINITY;
  let rise = 0;
  const sample = () => {
    gc();
    const m = process.memoryUsage();
    const used = m.heapUsed + m.arrayBuffers;
    trough = Math.min(trough, used);
    rise = Math.max(rise, used - trough);
  };
  sample();
  const decoder = create(visitor, LIMITS);
  let n = 0;
  for (const chunk of chunks(body, chunkBytes)) {
    decoder.write(Buffer.from(chunk));
    if (++n % sampleEvery === 0) sample();
  }
  sample();
  decoder.end();
  sample();
  return rise;
}
