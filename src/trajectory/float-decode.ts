/**
 * Bit-exact decoding of half-precision formats through 65536-entry tables and of the FP8 formats through
 * 256-entry tables (every F16, BF16 and FP8 value is exactly representable as an F32).
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

/**
 * FP8 E4M3, the OCP "fn" variant (torch.float8_e4m3fn): sign, 4 exponent bits (bias 7), 3 mantissa bits;
 * no infinities, NaN only at 0x7F and 0xFF, largest finite ±448, subnormals m · 2^−9.
 */
function e4m3ToNumber(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const exponent = (b >>> 3) & 0xf;
  const mantissa = b & 0x7;
  if (exponent === 0xf && mantissa === 0x7) return NaN;
  if (exponent === 0) return sign * mantissa * 2 ** -9;
  return sign * (8 + mantissa) * 2 ** (exponent - 10);
}

/** FP8 E5M2 (IEEE-like, torch.float8_e5m2): 5 exponent bits (bias 15), 2 mantissa bits, ±Inf and NaNs. */
function e5m2ToNumber(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const exponent = (b >>> 2) & 0x1f;
  const mantissa = b & 0x3;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  if (exponent === 0) return sign * mantissa * 2 ** -16;
  return sign * (4 + mantissa) * 2 ** (exponent - 17);
}

/** FP8 E8M0 (OCP MX scale, torch.float8_e8m0fnu): 2^(b − 127), no sign, no zero; 0xFF is NaN. */
function e8m0ToNumber(b: number): number {
  return b === 0xff ? NaN : 2 ** (b - 127);
}

function buildByteTable(decode: (bits: number) => number): Float32Array {
  const table = new Float32Array(256);
  for (let bits = 0; bits < 256; bits++) table[bits] = decode(bits);
  return table;
}

/** Every FP8 value is exactly representable as an F32 (2^−127 as a subnormal). */
export const F8_E4M3_TABLE: Float32Array = buildByteTable(e4m3ToNumber);
export const F8_E5M2_TABLE: Float32Array = buildByteTable(e5m2ToNumber);
export const F8_E8M0_TABLE: Float32Array = buildByteTable(e8m0ToNumber);

export function decodeF16(bits: number): number {
  return F16_TABLE[bits & 0xffff];
}

export function decodeBF16(bits: number): number {
  return BF16_TABLE[bits & 0xffff];
}
