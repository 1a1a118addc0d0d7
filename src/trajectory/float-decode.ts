/**
 * Bit-exact decoding of half-precision formats through 65536-entry tables (every F16 and BF16 value is
 * exactly representable as an F32), and typed views over little-endian bytes that may sit at any
 * alignment (copied into caller-owned scratch when misaligned).
 */
function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function buildTable(decode: (bits: number) => number): Float32Array {
  const table = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) table[bits] = decode(bits);
  return table;
}

export const F16_TABLE: Float32Array = buildTable(f16ToNumber);

/** BF16 is the upper half of an F32. */
export const BF16_TABLE: Float32Array = (() => {
  const words = new Uint32Array(65536);
  for (let bits = 0; bits < 65536; bits++) words[bits] = bits << 16;
  return new Float32Array(words.buffer);
})();

export function decodeF16(bits: number): number {
  return F16_TABLE[bits & 0xffff];
}

export function decodeBF16(bits: number): number {
  return BF16_TABLE[bits & 0xffff];
}

/** Reusable buffers, grown on demand, so the hot path allocates nothing per chunk. */
export class Scratch {
  private bytes = new Uint8Array(0);

  /** A view of `src` as `Ctor` elements: zero-copy when aligned, else copied into scratch. */
  view<T extends Float32Array | Float64Array | Uint16Array | Int32Array | Int16Array>(
    Ctor: { new (buffer: ArrayBufferLike, byteOffset: number, length: number): T; BYTES_PER_ELEMENT: number },
    src: Uint8Array,
  ): T {
    const size = Ctor.BYTES_PER_ELEMENT;
    const length = src.byteLength / size;
    if (src.byteOffset % size === 0) return new Ctor(src.buffer, src.byteOffset, length);
    if (this.bytes.byteLength < src.byteLength) this.bytes = new Uint8Array(Math.max(src.byteLength, 65536));
    this.bytes.set(src);
    return new Ctor(this.bytes.buffer, 0, length);
  }
}
