import type { CheckpointSummary } from '../model/summary.js';

/**
 * Binary layout of per-tensor sketches in `checkpoint_summaries.tensor_sketches`: a little-endian u32
 * count n, n u32 lengths (in float64 elements), then the float64 values one tensor after another.
 */
export function encodeTensorSketches(sketches: readonly Float64Array[]): Buffer {
  const total = sketches.reduce((sum, s) => sum + s.length, 0);
  const header = 4 + 4 * sketches.length;
  const out = Buffer.alloc(header + 8 * total);
  out.writeUInt32LE(sketches.length, 0);
  let offset = header;
  sketches.forEach((s, i) => {
    out.writeUInt32LE(s.length, 4 + 4 * i);
    out.set(new Uint8Array(s.buffer, s.byteOffset, s.byteLength), offset);
    offset += s.byteLength;
  });
  return out;
}

export function decodeTensorSketches(bytes: Uint8Array): Float64Array[] {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.readUInt32LE(0);
  let offset = 4 + 4 * n;
  const sketches: Float64Array[] = [];
  for (let i = 0; i < n; i++) {
    const length = view.readUInt32LE(4 + 4 * i);
    sketches.push(float64Copy(view.subarray(offset, offset + 8 * length)));
    offset += 8 * length;
  }
  return sketches;
}

export function encodeSketch(sketch: Float64Array): Buffer {
  return Buffer.from(sketch.buffer, sketch.byteOffset, sketch.byteLength);
}

/** Copies (stored bytes need not be 8-byte aligned). */
export function float64Copy(bytes: Uint8Array): Float64Array {
  const out = new Float64Array(bytes.byteLength / 8);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

export type SummaryParts = Pick<CheckpointSummary, 'sketch' | 'tensorSketches'>;
