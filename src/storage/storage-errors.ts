import { PassThrough, type Readable } from 'node:stream';
import { type AppError, errors, isAppError } from '../errors.js';

/**
 * Storage failures as clients see them. A backend's own error (an OS error naming a file path, an SDK error
 * naming the bucket or the endpoint) never becomes the message: the message says which operation failed on
 * what, in the API's terms ("could not store step 100 of run 'a'", see `describeKey`), plus a coarse reason,
 * and the original error stays attached as `cause`, which the error handler logs.
 */
export function storageFailure(what: string, cause: unknown, reason?: string): AppError {
  if (isAppError(cause)) return cause;
  return errors.storageUnavailable(`${what}: ${reason ?? 'the blob store failed'}`, cause);
}

const UNREACHABLE = 'the blob store is unreachable';
const IN_THE_WAY = 'the blob store holds an unexpected entry where the data belongs';

const ERRNO_REASONS: Readonly<Record<string, string>> = {
  ENOSPC: 'the blob store is full',
  EDQUOT: 'the blob store is over its quota',
  EFBIG: 'the blob store cannot hold a file this large',
  EROFS: 'the blob store is read-only',
  EACCES: 'the blob store denied access',
  EPERM: 'the blob store denied access',
  ENOTDIR: IN_THE_WAY,
  EISDIR: IN_THE_WAY,
  EEXIST: IN_THE_WAY,
  ENOTEMPTY: IN_THE_WAY,
  EIO: 'the blob store reported an I/O error',
  EMFILE: 'the server has too many open files',
  ENFILE: 'the server has too many open files',
  ECONNREFUSED: UNREACHABLE,
  ECONNRESET: UNREACHABLE,
  ECONNABORTED: UNREACHABLE,
  ETIMEDOUT: UNREACHABLE,
  ENOTFOUND: UNREACHABLE,
  EAI_AGAIN: UNREACHABLE,
  EHOSTUNREACH: UNREACHABLE,
  ENETUNREACH: UNREACHABLE,
  EPIPE: UNREACHABLE,
};

/** A client-safe reason for an OS / network error code (`err.code`), or undefined for other errors. */
export function errnoReason(err: unknown): string | undefined {
  const code = errnoCode(err);
  return code !== undefined && Object.hasOwn(ERRNO_REASONS, code) ? ERRNO_REASONS[code] : undefined;
}

export function errnoCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

/**
 * `body` with its errors mapped by `toError` (a read that fails half-way reaches the route, and perhaps the
 * client, as a `storage_unavailable`, not as the raw backend error). Destroying the result destroys `body`.
 */
export function mapReadErrors(body: Readable, toError: (err: unknown) => Error): Readable {
  const out = new PassThrough({ highWaterMark: body.readableHighWaterMark });
  body.once('error', (err) => out.destroy(toError(err)));
  out.once('close', () => {
    if (!body.destroyed) body.destroy();
  });
  body.pipe(out);
  return out;
}
