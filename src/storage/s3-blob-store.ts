/**
 * S3 (and S3-compatible) blob store.
 *
 * Layout: every key lives at `<prefix><key>` in one bucket; `prefix` is '' or ends with '/'. Checkpoint data
 * objects have a `.json` manifest beside them, written after the data object is complete (docs/architecture.md §4).
 *
 * Visibility: a streamed write is an S3 multipart upload fed by a PassThrough (lib-storage `Upload`). S3
 * shows nothing at the key until CompleteMultipartUpload, and `Upload` only completes once the stream has
 * ended, which happens in `commit()` and nowhere else; a blob smaller than one part is sent as a single
 * PutObject, also only at the end of the stream. So the "staging area" on S3 is the set of uncompleted
 * multipart uploads: `abort()` fails the stream, which makes `Upload` send AbortMultipartUpload, and a
 * crash leaves an uncompleted upload that `collectStaging` aborts (ListMultipartUploads) at start-up.
 *
 * Orphans: a data object whose commit succeeded but whose manifest was never written (a crash between the
 * two) is visible to `list` but has no `.json` beside it; the start-up collector, not this class, removes it.
 *
 * Checksums: the client only computes request checksums when an operation requires one and only validates
 * response checksums likewise. The SDK default (WHEN_SUPPORTED) sends streamed bodies with aws-chunked
 * framing plus a trailing checksum, which several S3-compatible servers store verbatim.
 *
 * Errors: missing keys (NoSuchKey / NotFound) become null results, everything else `storage_unavailable` whose
 * message names the operation and the key in the API's terms and a coarse reason, never the bucket, the
 * endpoint, a credential or the SDK's message (that is the error's `cause`, for the server log).
 */
import { Readable, PassThrough } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  type ListMultipartUploadsCommandOutput,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { errors } from '../errors.js';
import type { BlobInfo, BlobReadResult, BlobStore, BlobWriter, ByteRange } from './blob-store.js';
import { describeKey, describePrefix } from './keys.js';
import { errnoReason, mapReadErrors, storageFailure } from './storage-errors.js';

export interface S3BlobStoreOptions {
  bucket: string;
  /** '' or a prefix ending with '/'. */
  prefix: string;
  endpoint?: string;
  region: string;
  forcePathStyle?: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  partSizeBytes: number;
  /** Parts uploaded concurrently per writer. */
  queueSize?: number;
}

const COLLECT = 'could not clean up unfinished uploads';

/** How long `abort()` waits for the upload to be aborted server-side before giving up on it. */
const ABORT_WAIT_MS = 10_000;

export class S3BlobStore implements BlobStore {
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;

  constructor(private readonly options: S3BlobStoreOptions) {
    this.bucket = options.bucket;
    this.prefix = options.prefix;
    this.description = `s3://${options.bucket}/${options.prefix}`;
    this.client = new S3Client({
      region: options.region,
      endpoint: options.endpoint,
      forcePathStyle: options.forcePathStyle,
      credentials: options.credentials,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  createWriter(key: string): BlobWriter {
    return new S3BlobWriter(this, key, this.client, {
      Bucket: this.bucket,
      Key: this.prefix + key,
      partSize: this.options.partSizeBytes,
      queueSize: this.options.queueSize ?? 4,
    });
  }

  async putSmall(key: string, body: Uint8Array | string, contentType?: string): Promise<void> {
    await this.send(`could not store ${describeKey(key)}`, () =>
      this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, Body: body, ContentType: contentType }),
      ),
    );
  }

  async get(key: string, range?: ByteRange): Promise<BlobReadResult | null> {
    const what = `could not read ${describeKey(key)}`;
    const out = await this.sendOrNull(what, () =>
      this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.prefix + key,
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }),
      ),
    );
    if (!out) return null;
    const body = out.Body;
    if (!(body instanceof Readable)) {
      throw errors.storageUnavailable(`${what}: the blob store sent no data`, new Error('response has no body stream'));
    }
    const mapped = (stream: Readable) => mapReadErrors(stream, (err) => toStorageError(what, err));
    if (!range) {
      if (out.ContentLength === undefined) {
        throw failRead(body, `${what}: the blob store sent no size`, 'response has no Content-Length');
      }
      return { body: mapped(body), size: out.ContentLength };
    }
    const served = parseContentRange(out.ContentRange, out.ContentLength);
    if (!served || served.start !== range.start || served.end < range.end) {
      throw failRead(
        body,
        `${what}: the blob store did not serve bytes ${range.start}-${range.end}`,
        `asked for bytes ${range.start}-${range.end}, got ${out.ContentRange ?? 'none'}`,
      );
    }
    // Some S3-compatible servers (s3rver: `bytes=0-0`) send more than asked; pass on exactly the range.
    const exact = served.end > range.end ? truncate(body, range.end - range.start + 1) : body;
    return { body: mapped(exact), size: served.total, range };
  }

  async head(key: string): Promise<BlobInfo | null> {
    const out = await this.sendOrNull(`could not look up ${describeKey(key)}`, () =>
      this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key })),
    );
    if (!out) return null;
    return { key, size: out.ContentLength ?? 0, lastModified: out.LastModified ?? new Date(0) };
  }

  async delete(key: string): Promise<void> {
    await this.sendOrNull(`could not delete ${describeKey(key)}`, () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key })),
    );
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    let token: string | undefined;
    do {
      const page = await this.send(`could not list ${describePrefix(prefix)}`, () =>
        this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }),
        ),
      );
      for (const obj of page.Contents ?? []) {
        if (obj.Key === undefined) continue;
        yield {
          key: obj.Key.slice(this.prefix.length),
          size: obj.Size ?? 0,
          lastModified: obj.LastModified ?? new Date(0),
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async ping(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      // HeadBucket has no body, so a missing bucket is a bare 404.
      const reason = httpStatus(err) === 404 ? 'the configured bucket does not exist' : undefined;
      throw toStorageError('the blob store is unavailable', err, reason);
    }
  }

  /**
   * Aborts multipart uploads under the prefix initiated more than `olderThanMs` ago. Servers that do not
   * implement ListMultipartUploads (s3rver answers NotImplemented) have nothing to collect: 0.
   */
  async collectStaging(olderThanMs: number): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      let page: ListMultipartUploadsCommandOutput;
      try {
        page = await this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: this.prefix,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        );
      } catch (err) {
        if (errorName(err) === 'NotImplemented' || httpStatus(err) === 501) return removed;
        throw toStorageError(COLLECT, err);
      }
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId || !upload.Initiated || upload.Initiated.getTime() >= cutoff) continue;
        const { Key, UploadId } = upload;
        // A part written since the cutoff means a writer (maybe another replica) is still at it.
        const parts = await this.sendOrNull(COLLECT, () =>
          this.client.send(new ListPartsCommand({ Bucket: this.bucket, Key, UploadId })),
        );
        if (parts?.Parts?.some((p) => p.LastModified && p.LastModified.getTime() >= cutoff)) continue;
        await this.sendOrNull(COLLECT, () =>
          this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId })),
        );
        removed += 1;
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return removed;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /** Runs one S3 call, mapping every failure to `storage_unavailable`. */
  private async send<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw toStorageError(what, err);
    }
  }

  /** Like `send`, but a missing key (NoSuchKey / NotFound) resolves to null. */
  private async sendOrNull<T>(what: string, call: () => Promise<T>): Promise<T | null> {
    try {
      return await call();
    } catch (err) {
      if (isMissingKey(err)) return null;
      throw toStorageError(what, err);
    }
  }
}

type Outcome = { ok: true } | { ok: false; error: unknown };

class S3BlobWriter implements BlobWriter {
  private readonly stream = new PassThrough();
  private readonly upload: Upload;
  /** Settles (never rejects) when the upload completes, fails or is aborted. */
  private readonly outcome: Promise<Outcome>;
  private failure: unknown = null;
  private size = 0;
  private state: 'open' | 'committing' | 'committed' | 'done' = 'open';

  constructor(
    private readonly store: BlobStore,
    private readonly key: string,
    client: S3Client,
    params: { Bucket: string; Key: string; partSize: number; queueSize: number },
  ) {
    // Stream errors (our own destroy in abort) reach the caller through the upload's outcome.
    this.stream.on('error', () => undefined);
    this.upload = new Upload({
      client,
      params: { Bucket: params.Bucket, Key: params.Key, Body: this.stream },
      partSize: params.partSize,
      queueSize: params.queueSize,
      leavePartsOnError: false,
    });
    // Started now so parts upload while bytes arrive; the outcome is kept and reported on the next call.
    this.outcome = this.upload.done().then(
      (): Outcome => ({ ok: true }),
      (error: unknown): Outcome => {
        this.failure ??= error;
        return { ok: false, error };
      },
    );
  }

  async write(data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    if (this.state !== 'open') throw new Error('write after commit or abort');
    this.throwIfFailed();
    let more = true;
    for (const chunk of Array.isArray(data) ? data : [data]) {
      this.size += chunk.byteLength;
      // A copy: lib-storage keeps what it reads until a part is full, after this write has resolved.
      more = this.stream.write(Buffer.from(chunk));
    }
    if (!more) await this.drainOrFailure();
    this.throwIfFailed();
  }

  async commit(): Promise<BlobInfo> {
    if (this.state !== 'open') throw new Error('commit after commit or abort');
    this.state = 'committing';
    this.throwIfFailed();
    this.stream.end();
    const outcome = await this.outcome;
    this.state = 'done';
    if (!outcome.ok) throw toStorageError(`could not store ${describeKey(this.key)}`, outcome.error);
    const info = await this.store.head(this.key);
    if (!info || info.size !== this.size) {
      // A server that stored different bytes (e.g. with transfer framing) must not leave a wrong blob behind.
      await this.store.delete(this.key).catch(() => undefined);
      const kept = `the blob store kept ${info ? info.size : 'no'} bytes of ${this.size}`;
      throw errors.storageUnavailable(
        `could not store ${describeKey(this.key)}: ${kept}`,
        new Error(`${this.key}: ${kept}`),
      );
    }
    this.state = 'committed';
    return { key: this.key, size: this.size, lastModified: info.lastModified };
  }

  /**
   * Fails the stream so `Upload` stops and sends AbortMultipartUpload, then waits (bounded) for that, so a
   * resolved abort means the server holds nothing for this write. `upload.abort()` afterwards stops any
   * part still queued if the wait timed out.
   */
  async abort(): Promise<void> {
    if (this.state === 'committed') return;
    this.state = 'done';
    this.stream.destroy(new Error('blob write aborted'));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ABORT_WAIT_MS);
    });
    await Promise.race([this.outcome, timeout]);
    clearTimeout(timer);
    await this.upload.abort();
  }

  private throwIfFailed(): void {
    if (this.failure !== null) throw toStorageError(`could not store ${describeKey(this.key)}`, this.failure);
  }

  /** Waits for the stream to take more, or for the upload to fail (then nothing will ever drain it). */
  private async drainOrFailure(): Promise<void> {
    let onDrain: (() => void) | undefined;
    const drained = new Promise<void>((resolve) => {
      onDrain = resolve;
      this.stream.once('drain', resolve);
    });
    try {
      await Promise.race([drained, this.outcome]);
    } finally {
      if (onDrain) this.stream.off('drain', onDrain);
    }
  }
}

/** `storage_unavailable` for `what`, with a client-safe reason; the SDK error (bucket, endpoint) is the cause. */
function toStorageError(what: string, err: unknown, reason?: string): Error {
  return storageFailure(what, err, reason ?? s3Reason(err));
}

const DENIED = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken']);
const UNREACHABLE = new Set(['TimeoutError', 'RequestTimeout', 'NetworkingError']);

/** A reason that names no bucket, endpoint or credential, from the error's name, status or OS code. */
function s3Reason(err: unknown): string | undefined {
  const os = errnoReason(err);
  if (os) return os;
  const name = errorName(err) ?? '';
  const status = httpStatus(err) ?? 0;
  if (name === 'NoSuchBucket') return 'the configured bucket does not exist';
  if (DENIED.has(name) || status === 401 || status === 403) return 'the blob store denied access';
  if (UNREACHABLE.has(name)) return 'the blob store is unreachable';
  if (name === 'SlowDown' || status === 503) return 'the blob store is overloaded';
  if (status >= 500) return 'the blob store reported an internal error';
  return undefined;
}

function isMissingKey(err: unknown): boolean {
  const name = errorName(err);
  return name === 'NoSuchKey' || name === 'NotFound';
}

function errorName(err: unknown): string | undefined {
  return err instanceof Error ? err.name : undefined;
}

function httpStatus(err: unknown): number | undefined {
  if (!err || typeof err !== 'object' || !('$metadata' in err)) return undefined;
  const meta = err.$metadata;
  if (!meta || typeof meta !== 'object' || !('httpStatusCode' in meta)) return undefined;
  return typeof meta.httpStatusCode === 'number' ? meta.httpStatusCode : undefined;
}

/** `bytes 0-9/1234` → {start: 0, end: 9, total: 1234}; no header (a server that ignored Range) → the whole body. */
function parseContentRange(
  header: string | undefined,
  length: number | undefined,
): { start: number; end: number; total: number } | null {
  if (header === undefined) return length === undefined ? null : { start: 0, end: length - 1, total: length };
  const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header.trim());
  return match ? { start: Number(match[1]), end: Number(match[2]), total: Number(match[3]) } : null;
}

function failRead(body: Readable, message: string, detail: string): Error {
  body.destroy();
  return errors.storageUnavailable(message, new Error(detail));
}

/** The first `length` bytes of `body`; the rest is not read (the source is destroyed when done). */
function truncate(body: Readable, length: number): Readable {
  async function* take(): AsyncGenerator<Buffer> {
    let left = length;
    for await (const chunk of body) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      yield buf.length > left ? buf.subarray(0, left) : buf;
      left -= Math.min(buf.length, left);
      if (left === 0) return;
    }
  }
  return Readable.from(take(), { objectMode: false });
}
