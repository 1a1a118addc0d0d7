import { createHash } from 'node:crypto';
import { TrajgateError } from './errors.js';
import type { Progress } from './progress.js';
import { isRetryable, type RetryOptions } from './retry.js';
import type { ByteStream, PreparedSource } from './source.js';
import type { Transport } from './transport.js';

const TUS = { 'tus-resumable': '1.0.0' };
const PATCH_TYPE = 'application/offset+octet-stream';

/** What the last PATCH said: the checkpoint's status and SHA-256, as the server stored it. */
export interface ResumableOutcome {
  status: string;
  sha256: string;
}

export interface ResumableOptions {
  /** Where sessions are created: `/v1/runs/{run}/checkpoints/{step}/uploads`. */
  collection: string;
  pin?: boolean;
  onProgress?: Progress;
  /** Failed attempts in a row that moved no byte before giving up (connection errors, 429, 5xx). */
  retry: RetryOptions;
}

/**
 * Sends a source of known size with the tus protocol (docs/api.md, Resumable uploads): one session,
 * PATCHes from the server's offset after any failure instead of from byte 0. The source must be
 * replayable (each attempt reopens it and skips what the server has). Progress reports the bytes the
 * server is known to hold plus those sent since. The SHA-256 of the bytes is computed across the
 * attempts (each byte hashed once, in order) and compared with the server's when no digest was sent up front.
 */
export async function sendResumable(
  transport: Transport,
  prepared: PreparedSource,
  options: ResumableOptions,
): Promise<ResumableOutcome> {
  const size = prepared.size;
  if (size === null || !prepared.replayable)
    throw new Error('a resumable upload needs a replayable source of known size');
  const metadata = [`filetype ${b64(prepared.contentType)}`];
  if (prepared.sha256) metadata.push(`sha256 ${b64(prepared.sha256)}`);
  if (options.pin) metadata.push(`pin ${b64('true')}`);
  const created = await retrying(options.retry, () =>
    transport.send('POST', options.collection, {
      headers: { ...TUS, 'upload-length': String(size), 'upload-metadata': metadata.join(',') },
      retry: false,
    }),
  );
  const location = created.headers.get('location');
  if (!location) throw new TrajgateError(created.status, 'invalid_response', 'the server created no upload session');
  const session = new URL(location, transport.url).pathname;

  const hash = createHash('sha256');
  let hashed = 0;
  let offset = 0;
  let failures = 0;
  for (;;) {
    const from = offset;
    try {
      const res = await transport.send('PATCH', session, {
        headers: { ...TUS, 'upload-offset': String(from), 'content-type': PATCH_TYPE },
        body: () =>
          fromOffset(prepared.open(), from, (position, chunk) => {
            // Hash each byte once, in order: only the part of a chunk past what is hashed already.
            if (position + chunk.byteLength > hashed && position <= hashed) {
              hash.update(chunk.subarray(hashed - position));
              hashed = position + chunk.byteLength;
            }
            options.onProgress?.(position + chunk.byteLength, size);
          }),
        timed: false,
        retry: false,
      });
      offset = Number(res.headers.get('upload-offset') ?? from);
      const status = res.headers.get('x-trajgate-checkpoint-status');
      if (status) {
        const sha256 = res.headers.get('x-trajgate-sha256') ?? '';
        if (!prepared.sha256 && hashed === size && hash.digest('hex') !== sha256) {
          throw new TrajgateError(0, 'checksum_mismatch', `the server stored bytes hashing to ${sha256}`, {
            session,
          });
        }
        return { status, sha256 };
      }
      failures = offset > from ? 0 : failures + 1;
    } catch (err) {
      if (err instanceof TrajgateError && err.code === 'upload_offset_mismatch') {
        // The server says where it stands (further on while it still takes in what a cut attempt sent;
        // 0 after a restart lost its stream): go on from there.
        offset = Number(err.details?.uploadOffset ?? 0);
        failures = offset > from ? 0 : failures + 1;
      } else if (isRetryable(err)) {
        // Give the server a moment to take in what arrived before the cut, then ask where it stands.
        await backoff(options.retry, failures + 1, err);
        offset = await retrying(options.retry, async () =>
          Number((await transport.send('HEAD', session, { headers: TUS, retry: false })).headers.get('upload-offset')),
        );
        failures = offset > from ? 0 : failures + 1;
      } else throw err;
      if (failures > (options.retry.retries ?? 5)) throw err;
    }
  }
}

/** The source's bytes from `offset` on; `seen(position, chunk)` for each chunk passed on. */
async function* fromOffset(
  source: ByteStream,
  offset: number,
  seen: (position: number, chunk: Uint8Array) => void,
): AsyncGenerator<Uint8Array> {
  let position = 0;
  for await (const chunk of source) {
    const end = position + chunk.byteLength;
    if (end > offset) {
      const part = position >= offset ? chunk : chunk.subarray(offset - position);
      const at = Math.max(position, offset);
      seen(at, part);
      yield part;
    }
    position = end;
  }
}

async function retrying<T>(retry: RetryOptions, attempt: () => Promise<T>): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (n > (retry.retries ?? 5) || !isRetryable(err)) throw err;
      await backoff(retry, n, err);
    }
  }
}

/** Full-jitter backoff as withRetry's, at least a 429/503's Retry-After. */
function backoff(retry: RetryOptions, n: number, err: unknown): Promise<void> {
  const max = retry.maxDelayMs ?? 10_000;
  const jitter = Math.random() * Math.min(max, (retry.baseDelayMs ?? 200) * 2 ** (n - 1));
  const floor = err instanceof TrajgateError && err.retryAfterMs !== undefined ? Math.min(max, err.retryAfterMs) : 0;
  return new Promise((resolve) => setTimeout(resolve, Math.max(jitter, floor)));
}

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');
