import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TrajgateConnectionError, TrajgateError, isLocalIoError } from './errors.js';
import { withRetry } from './retry.js';
import { sha256Of } from './source.js';
import type { Transport } from './transport.js';
import type { Progress } from './progress.js';

/** What a download needs to know about the checkpoint: its length and SHA-256 (the ETag, quoted). */
export interface ContentRef {
  path: string;
  bytes: number;
  sha256: string;
}

/**
 * Downloads into `file` by way of `file + '.partial'`: whatever a cut-short attempt (this call's or an
 * earlier process's) left there is resumed with `Range: bytes=N-` and `If-Range: "<sha256>"`, so if the
 * bytes behind the URL changed the server sends them whole and the partial file is overwritten. The
 * result is verified against the SHA-256 before it is renamed into place; a resumed file that fails the
 * check is downloaded once more from the start.
 */
export async function downloadToFile(
  transport: Transport,
  ref: ContentRef,
  file: string,
  onProgress?: Progress,
): Promise<void> {
  const partial = `${file}.partial`;
  for (let pass = 0; ; pass++) {
    let resumedFrom = 0;
    await withRetry(async () => {
      let have = await stat(partial).then(
        (s) => s.size,
        () => 0,
      );
      if (have > ref.bytes) have = 0; // longer than the checkpoint: not a prefix of it
      if (have === ref.bytes) return;
      resumedFrom ||= have;
      const res = await transport.send('GET', ref.path, { headers: rangeHeaders(ref, have), timed: false });
      const offset = res.status === 206 ? have : 0;
      await pipeline(
        body(res),
        counting(offset, ref.bytes, onProgress),
        createWriteStream(partial, { flags: offset > 0 ? 'a' : 'w' }),
      ).catch(asConnectionError(transport));
    }, transport.retry);
    const digest = await sha256Of(createReadStream(partial, { highWaterMark: 1 << 20 }));
    if (digest === ref.sha256) break;
    await rm(partial, { force: true });
    if (resumedFrom === 0 || pass > 0) throw mismatch(digest, ref);
  }
  await rename(partial, file);
}

/**
 * Downloads into a writable stream, which is ended when the download completes. A connection cut
 * part-way is resumed from the bytes already written (the stream cannot rewind, so if the server no
 * longer has the same bytes the download fails). On a checksum mismatch the stream is destroyed.
 */
export async function downloadToStream(
  transport: Transport,
  ref: ContentRef,
  sink: Writable,
  onProgress?: Progress,
): Promise<void> {
  const hash = createHash('sha256');
  let written = 0;
  await withRetry(async () => {
    const res = await transport.send('GET', ref.path, { headers: rangeHeaders(ref, written), timed: false });
    if (written > 0 && res.status !== 206) {
      await res.body?.cancel();
      throw new TrajgateError(0, 'checksum_mismatch', 'the checkpoint changed while it was being downloaded');
    }
    let writing = false;
    try {
      for await (const chunk of body(res)) {
        writing = true;
        hash.update(chunk);
        written += chunk.byteLength;
        onProgress?.(written, ref.bytes);
        if (!sink.write(chunk)) await once(sink, 'drain');
        writing = false;
      }
    } catch (err) {
      if (writing) throw err; // the sink failed: not the network's fault, not retried
      asConnectionError(transport)(err);
    }
  }, transport.retry);
  const digest = hash.digest('hex');
  if (digest !== ref.sha256) {
    const err = mismatch(digest, ref);
    sink.destroy(err);
    throw err;
  }
  sink.end();
  await once(sink, 'finish');
}

function rangeHeaders(ref: ContentRef, have: number): Record<string, string> {
  return have > 0 ? { range: `bytes=${have}-`, 'if-range': `"${ref.sha256}"` } : {};
}

function body(res: Response): ReadableStream<Uint8Array> {
  if (!res.body) throw new TrajgateError(res.status, 'invalid_response', 'the download had no body');
  return res.body;
}

/** A pipeline stage reporting (bytes so far, total) as chunks pass. */
function counting(offset: number, total: number, report?: Progress) {
  let received = offset;
  return async function* (source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      received += chunk.byteLength;
      report?.(received, total);
      yield chunk;
    }
  };
}

/** A body cut short is a connection failure (retryable); a local write failure stays what it is. */
function asConnectionError(transport: Transport): (err: unknown) => never {
  return (err) => {
    if (err instanceof TrajgateError || isLocalIoError(err)) throw err;
    throw new TrajgateConnectionError(transport.url, err);
  };
}

function mismatch(digest: string, ref: ContentRef): TrajgateError {
  return new TrajgateError(
    0,
    'checksum_mismatch',
    `downloaded bytes hash to ${digest}; the checkpoint's SHA-256 is ${ref.sha256}`,
  );
}
