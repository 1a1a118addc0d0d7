/**
 * Checks of the tensor table both checkpoint headers declare (safetensors JSON, native msgpack): dtype,
 * shape and string metadata, each violation raising the error the decoder contract names.
 */
import { AppError, errors } from '../errors.js';
import { DTYPES, DTYPE_SIZES, isDtype, type Dtype } from '@trajgate/sdk/wire/dtypes';

/**
 * safetensors dtypes that are valid in the format but that trajgate does not store (unsupported_dtype), with
 * the reason. The sub-byte float types pack 2 (F4) or 1⅓ (F6: four elements in three bytes) elements per
 * byte in a bit order the safetensors format leaves undefined, so their values, hence statistics, could
 * only be guessed; a C64 element is a complex number, whose mean the tensor table's real `mean` cannot hold.
 */
const KNOWN_UNSUPPORTED_DTYPES: ReadonlyMap<string, string> = new Map([
  ['F4', 'a sub-byte type (4 bits, bit packing undefined by the format)'],
  ['F6_E2M3', 'a sub-byte type (6 bits, bit packing undefined by the format)'],
  ['F6_E3M2', 'a sub-byte type (6 bits, bit packing undefined by the format)'],
  ['C64', 'a complex type (the statistics are real numbers)'],
]);

/** Deepest nesting of arrays and maps/objects a checkpoint header may have (valid ones need 4). */
export const MAX_HEADER_DEPTH = 64;

/**
 * Checks a declared dtype: a supported one is returned; a real safetensors dtype trajgate does not store is
 * unsupported_dtype; anything else is malformed_checkpoint.
 */
export function checkDtype(tensor: string, dtype: unknown): Dtype {
  if (isDtype(dtype)) return dtype;
  const reason = typeof dtype === 'string' ? KNOWN_UNSUPPORTED_DTYPES.get(dtype) : undefined;
  if (reason !== undefined) {
    throw new AppError(
      'unsupported_dtype',
      `tensor '${tensor}' has dtype ${dtype}, which trajgate does not store: ${reason}`,
      { tensor, dtype, supported: DTYPES, unsupported: [...KNOWN_UNSUPPORTED_DTYPES.keys()] },
    );
  }
  throw errors.malformed(`tensor '${tensor}' has an invalid dtype ${describe(dtype)}`, { tensor });
}

/**
 * Checks a declared shape (an array of non-negative safe integers) and returns the tensor's byte length.
 * Like the Rust reference, a running product that overflows is an error even if a later dimension is 0.
 */
export function checkShape(tensor: string, dtype: Dtype, shape: unknown): number {
  if (!Array.isArray(shape))
    throw errors.malformed(`tensor '${tensor}' has a shape that is not an array: ${describe(shape)}`, { tensor });
  let bytes = DTYPE_SIZES[dtype];
  for (const d of shape as unknown[]) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw errors.malformed(
        `tensor '${tensor}' has an invalid shape ${describe(shape)}: dimensions must be non-negative integers`,
        {
          tensor,
        },
      );
    }
    bytes *= d;
    if (bytes > Number.MAX_SAFE_INTEGER)
      throw errors.malformed(`tensor '${tensor}' has a shape ${describe(shape)} too large to address`, { tensor });
  }
  return bytes;
}

/** Checks `{string: string}` metadata (`what` names it in messages). */
export function checkMetadata(what: string, value: unknown): Record<string, string> {
  if (!isPlainObject(value)) throw errors.malformed(`${what} must be an object of strings, got ${describe(value)}`);
  const entries = Object.entries(value);
  for (const [k, v] of entries) {
    if (typeof v !== 'string')
      throw errors.malformed(`${what} value for key '${k}' must be a string, got ${describe(v)}`, { key: k });
  }
  // fromEntries defines own properties, so a key named "__proto__" survives (assignment would drop it).
  return Object.fromEntries(entries) as Record<string, string>;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A short rendering of a bad value for error messages: JSON-like, at most 60 characters. It never walks
 * further into the value than those characters reach, so a huge or deeply nested value costs no more than a
 * small one (and cannot exhaust the stack, as JSON.stringify and String do on a value nested 5,000 deep).
 */
export function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const out: string[] = [];
  let length = 0;
  const emit = (text: string): boolean => {
    out.push(text);
    length += text.length;
    return length <= DESCRIBE_CHARS;
  };
  const render = (v: unknown): boolean => {
    if (Array.isArray(v)) {
      if (!emit('[')) return false;
      for (let i = 0; i < v.length; i++) if ((i > 0 && !emit(',')) || !render(v[i])) return false;
      return emit(']');
    }
    if (typeof v === 'object' && v !== null) {
      if (!emit('{')) return false;
      let first = true;
      for (const key in v) {
        if (!Object.hasOwn(v, key)) continue;
        if ((!first && !emit(',')) || !emit(`${JSON.stringify(key)}:`) || !render((v as Record<string, unknown>)[key]))
          return false;
        first = false;
      }
      return emit('}');
    }
    if (typeof v === 'string') return emit(JSON.stringify(v.length > DESCRIBE_CHARS ? v.slice(0, DESCRIBE_CHARS) : v));
    if (typeof v === 'number' || typeof v === 'bigint') return emit(String(v));
    return emit(v === undefined ? 'null' : (JSON.stringify(v) ?? String(v)));
  };
  render(value);
  const text = out.join('');
  return text.length > DESCRIBE_CHARS ? `${text.slice(0, DESCRIBE_CHARS - 3)}...` : text;
}

const DESCRIBE_CHARS = 60;
