import type { Readable } from 'node:stream';

/**
 * The storage contract every blob backend implements (local directory, S3). Keys are '/'-separated
 * relative paths made by `storage/keys.ts`; a backend never interprets them beyond mapping them to its own
 * namespace (a directory or a bucket prefix).
 *
 * Visibility rule: a blob written through `createWriter` is invisible to `get`, `head` and `list` until
 * `commit()` resolves, and never becomes visible if `abort()` is called or the process dies first. Local
 * stores stage into a temporary file and rename it; S3 stages in a multipart upload that is only
 * completed on commit. Backend failures surface as `AppError('storage_unavailable')`.
 */
export interface BlobStore {
  /** Human-readable description for logs and /readyz, e.g. `local:/data/blobs` or `s3://bucket/prefix`. */
  readonly description: string;

  /** Starts a staged write of `key`. Bytes go in through `write`; nothing is visible until `commit`. */
  createWriter(key: string): BlobWriter;

  /** Writes a small object (a manifest) in one call; visible atomically when the promise resolves. */
  putSmall(key: string, body: Uint8Array | string, contentType?: string): Promise<void>;

  /**
   * Reads `key`, or the inclusive byte range `[range.start, range.end]` of it. Resolves to null when the key
   * does not exist. Callers resolve suffix and open-ended ranges to absolute ones before calling (the size
   * is in the catalog), and check the range against the size.
   */
  get(key: string, range?: ByteRange): Promise<BlobReadResult | null>;

  /** Size and last modification of `key`, or null when it does not exist. */
  head(key: string): Promise<BlobInfo | null>;

  /** Deletes `key`; deleting a missing key is not an error. */
  delete(key: string): Promise<void>;

  /** Every committed key under `prefix` (a plain string prefix), in lexicographic order. */
  list(prefix: string): AsyncIterable<BlobInfo>;

  /** Throws `storage_unavailable` when the backend cannot be reached. Used by /readyz. */
  ping(): Promise<void>;

  /**
   * Removes leftovers of writes that were neither committed nor aborted (a crash): staged writes that took
   * no byte for `olderThanMs`. A live writer — of this process or another replica — keeps writing (an idle
   * upload is abandoned after TRAJGATE_UPLOAD_IDLE_S), so it is never touched. Returns how many were removed.
   */
  collectStaging(olderThanMs: number): Promise<number>;

  close(): Promise<void>;
}

export interface BlobWriter {
  /**
   * Appends bytes: one buffer, or several in order (written together, without concatenating them). Resolves
   * once the writer can take more (back-pressure); rejects on backend failure. Calls must not overlap: the
   * next `write` waits for this one. The buffers must stay untouched until the promise settles.
   */
  write(data: Uint8Array | readonly Uint8Array[]): Promise<void>;
  /** Makes the blob visible at its key with exactly the bytes written. Rejects if the write failed. */
  commit(): Promise<BlobInfo>;
  /** Discards everything written; safe to call after a failure and more than once. */
  abort(): Promise<void>;
}

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

export interface BlobInfo {
  key: string;
  size: number;
  lastModified: Date;
}

export interface BlobReadResult {
  body: Readable;
  /** Size of the whole blob, not of the range. */
  size: number;
  range?: ByteRange;
}
