import { AppError } from '../errors.js';
import type { ByteRange } from '../storage/blob-store.js';

/**
 * Resolves a `Range` header against a blob of `size` bytes (RFC 9110 §14). Returns null when the whole
 * blob should be sent: no header, a header we do not serve (other units, several ranges) or a malformed
 * one, all of which a server may ignore. Suffix (`bytes=-N`) and open (`bytes=N-`) ranges come back
 * absolute, so stores only ever see `start-end`. An unsatisfiable range throws 416.
 */
export function resolveRange(header: string | undefined, size: number): ByteRange | null {
  if (!header) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return null;
  const [, first, last] = match;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) throw unsatisfiable(header, size);
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (last !== '' && Number(last) < start) return null;
  if (start >= size) throw unsatisfiable(header, size);
  return { start, end };
}

function unsatisfiable(header: string, size: number): AppError {
  return new AppError('range_not_satisfiable', `range '${header}' is outside the ${size}-byte checkpoint`, { size });
}
