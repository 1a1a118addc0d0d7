/**
 * Tensor element types understood by trajgate, named as in safetensors. Shared by the server's decoders
 * and the SDK's encoders (this file imports nothing).
 *
 * Every safetensors dtype of at least one byte per element except C64: floats (F64, F32, F16, BF16 and
 * the FP8 types F8_E5M2, F8_E4M3 — the OCP "fn" variant: no infinities, NaN is 0x7F/0xFF, max 448 — and
 * F8_E8M0, the MX scale type 2^(e − 127) with NaN 0xFF), signed and unsigned integers up to 64 bits, and
 * BOOL (one byte). All little-endian.
 */
export const DTYPE_SIZES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
} as const;

export type Dtype = keyof typeof DTYPE_SIZES;
export const DTYPES = Object.keys(DTYPE_SIZES) as Dtype[];

export function isDtype(value: unknown): value is Dtype {
  return typeof value === 'string' && Object.hasOwn(DTYPE_SIZES, value);
}

/** Float dtypes: the weights. Integer and boolean tensors (counters, masks, indices) are not. */
export type FloatDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'F8_E5M2' | 'F8_E4M3' | 'F8_E8M0';
export type IntegerDtype = Exclude<Dtype, FloatDtype>;

export const FLOAT_DTYPES: ReadonlySet<Dtype> = new Set<FloatDtype>([
  'F64',
  'F32',
  'F16',
  'BF16',
  'F8_E5M2',
  'F8_E4M3',
  'F8_E8M0',
]);

export function isFloatDtype(dtype: Dtype): dtype is FloatDtype {
  return FLOAT_DTYPES.has(dtype);
}

/** Number of elements of a shape; [] is a scalar (1 element). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
