import { randomUUID } from 'node:crypto';
import { createReadStream, type Dirent, type Stats } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { BlobInfo, BlobReadResult, BlobStore, BlobWriter, ByteRange } from './blob-store.js';
import { describeKey, describePrefix } from './keys.js';
import { errnoCode, errnoReason, mapReadErrors, storageFailure } from './storage-errors.js';

/**
 * A directory of blobs: `<root>/<key>`. Writes stage into `<root>/.staging/<random>` and are renamed into
 * place on commit (after fsync), so a key is either absent or whole. Anything left in `.staging` by a crash
 * is removed by `collectStaging`.
 *
 * Errors: a missing file is a null result; any other OS error becomes `storage_unavailable` whose message
 * names the operation and the key in the API's terms, never the file path or the OS message (that is the
 * error's `cause`, for the server log).
 */
const STAGING_DIR = '.staging';
/** Reads of 1 MiB: a sixteenth of the syscalls and stream hand-offs of the 64 KiB default. */
const READ_CHUNK_BYTES = 1024 * 1024;

export class LocalBlobStore implements BlobStore {
  readonly description: string;
  private readonly root: string;
  private readonly stagingDir: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.stagingDir = path.join(this.root, STAGING_DIR);
    this.description = `local:${this.root}`;
  }

  createWriter(key: string): BlobWriter {
    return new LocalBlobWriter(key, this.pathFor(key), this.stagingDir);
  }

  async putSmall(key: string, body: Uint8Array | string): Promise<void> {
    const target = this.pathFor(key);
    const staged = await this.stagingPath();
    try {
      const handle = await open(staged, 'w');
      try {
        await handle.writeFile(body);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await mkdir(path.dirname(target), { recursive: true });
      await rename(staged, target);
    } catch (err) {
      await rm(staged, { force: true }).catch(() => undefined);
      throw storageError(`could not store ${describeKey(key)}`, err);
    }
  }

  async get(key: string, range?: ByteRange): Promise<BlobReadResult | null> {
    const file = this.pathFor(key);
    const info = await this.statFile(file, key);
    if (!info) return null;
    // Wait for the open so a vanished file or an I/O error surfaces here, not mid-stream.
    const body = createReadStream(file, {
      highWaterMark: READ_CHUNK_BYTES,
      ...(range ? { start: range.start, end: range.end } : {}),
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error) => reject(err);
        body.once('error', onError);
        body.once('open', () => {
          body.off('error', onError);
          resolve();
        });
      });
    } catch (err) {
      body.destroy();
      if (errnoCode(err) === 'ENOENT') return null;
      throw storageError(`could not read ${describeKey(key)}`, err);
    }
    const mapped = mapReadErrors(body, (err) => storageError(`could not read ${describeKey(key)}`, err));
    return range ? { body: mapped, size: info.size, range } : { body: mapped, size: info.size };
  }

  async head(key: string): Promise<BlobInfo | null> {
    const info = await this.statFile(this.pathFor(key), key);
    return info ? { key, size: info.size, lastModified: info.mtime } : null;
  }

  async delete(key: string): Promise<void> {
    try {
      await rm(this.pathFor(key), { force: true });
    } catch (err) {
      throw storageError(`could not delete ${describeKey(key)}`, err);
    }
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    try {
      yield* this.walk('', prefix);
    } catch (err) {
      throw storageError(`could not list ${describePrefix(prefix)}`, err);
    }
  }

  async ping(): Promise<void> {
    try {
      await mkdir(this.root, { recursive: true });
      const info = await stat(this.root);
      if (!info.isDirectory()) {
        throw Object.assign(new Error(`${this.root} is not a directory`), { code: 'ENOTDIR' });
      }
    } catch (err) {
      throw storageError('the blob directory is unavailable', err);
    }
  }

  async collectStaging(olderThanMs: number): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    let names: string[];
    try {
      names = await readdir(this.stagingDir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return 0;
      throw storageError('could not clean up unfinished uploads', err);
    }
    let removed = 0;
    for (const name of names) {
      const file = path.join(this.stagingDir, name);
      const info = await stat(file).catch(() => null);
      if (!info || info.mtimeMs >= cutoff) continue;
      try {
        await rm(file, { force: true, recursive: true });
      } catch (err) {
        throw storageError('could not clean up unfinished uploads', err);
      }
      removed += 1;
    }
    return removed;
  }

  async close(): Promise<void> {}

  /** Maps a key to its path; throws on keys that could leave the root (keys are validated upstream). */
  private pathFor(key: string): string {
    const segments = key.split('/');
    if (
      key === '' ||
      path.isAbsolute(key) ||
      key.includes('\\') ||
      key.includes('\0') ||
      segments.some((s) => s === '' || s === '.' || s === '..') ||
      segments[0] === STAGING_DIR
    ) {
      throw new Error(`invalid blob key: ${JSON.stringify(key)}`);
    }
    return path.join(this.root, ...segments);
  }

  private async stagingPath(): Promise<string> {
    await mkdir(this.stagingDir, { recursive: true });
    return path.join(this.stagingDir, randomUUID());
  }

  private async statFile(file: string, key: string): Promise<Stats | null> {
    try {
      const info = await stat(file);
      return info.isFile() ? info : null;
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw storageError(`could not look up ${describeKey(key)}`, err);
    }
  }

  /**
   * Yields files under the directory `rel` (a '/'-terminated key prefix, '' for the root) whose key starts
   * with `prefix`, in lexicographic key order. Directories are entered only when they can hold a match.
   */
  private async *walk(rel: string, prefix: string): AsyncGenerator<BlobInfo> {
    let entries: Dirent[];
    try {
      entries = await readdir(path.join(this.root, rel), { withFileTypes: true });
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return;
      throw err;
    }
    // Sort by the key each entry produces: a directory `a` sorts as `a/`, so `a/1` comes before `a0`.
    const items = entries
      .filter((e) => !(rel === '' && e.name === STAGING_DIR))
      .filter((e) => e.isDirectory() || e.isFile())
      .map((e) => ({ dir: e.isDirectory(), key: `${rel}${e.name}${e.isDirectory() ? '/' : ''}` }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const item of items) {
      if (item.dir) {
        if (item.key.startsWith(prefix) || prefix.startsWith(item.key)) yield* this.walk(item.key, prefix);
      } else if (item.key.startsWith(prefix)) {
        const info = await stat(path.join(this.root, item.key)).catch(() => null);
        if (info) yield { key: item.key, size: info.size, lastModified: info.mtime };
      }
    }
  }
}

class LocalBlobWriter implements BlobWriter {
  private handle: Promise<FileHandle> | null = null;
  private stagedPath: string | null = null;
  private size = 0;
  private done = false;

  constructor(
    private readonly key: string,
    private readonly target: string,
    private readonly stagingDir: string,
  ) {}

  async write(data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    if (this.done) throw new Error('write after commit or abort');
    try {
      const handle = await this.open();
      // One writev for all buffers; a short write (rare: signals, quotas) continues where it stopped.
      let pending = (Array.isArray(data) ? data : [data]) as Uint8Array[];
      while (pending.length > 0) {
        const { bytesWritten } = await handle.writev(pending);
        this.size += bytesWritten;
        pending = remainder(pending, bytesWritten);
      }
    } catch (err) {
      throw storageError(`could not store ${describeKey(this.key)}`, err);
    }
  }

  async commit(): Promise<BlobInfo> {
    if (this.done) throw new Error('commit after commit or abort');
    this.done = true;
    try {
      const handle = await this.open();
      await handle.sync();
      await handle.close();
      this.handle = null;
      await mkdir(path.dirname(this.target), { recursive: true });
      await rename(this.stagedFile(), this.target);
      this.stagedPath = null;
      const info = await stat(this.target);
      return { key: this.key, size: this.size, lastModified: info.mtime };
    } catch (err) {
      await this.discard();
      throw storageError(`could not store ${describeKey(this.key)}`, err);
    }
  }

  async abort(): Promise<void> {
    this.done = true;
    await this.discard();
  }

  private open(): Promise<FileHandle> {
    if (!this.handle) {
      this.stagedPath = path.join(this.stagingDir, randomUUID());
      const file = this.stagedPath;
      this.handle = mkdir(this.stagingDir, { recursive: true }).then(() => open(file, 'wx'));
      // A failed open is reported by the awaiting caller; the stored promise must not be unhandled.
      this.handle.catch(() => undefined);
    }
    return this.handle;
  }

  private stagedFile(): string {
    if (!this.stagedPath) throw new Error('no staged file');
    return this.stagedPath;
  }

  private async discard(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    if (handle) await handle.then((h) => h.close()).catch(() => undefined);
    if (this.stagedPath) await unlink(this.stagedPath).catch(() => undefined);
    this.stagedPath = null;
  }
}

/** What is left of `buffers` after the first `written` bytes. */
function remainder(buffers: Uint8Array[], written: number): Uint8Array[] {
  let skip = written;
  let i = 0;
  while (i < buffers.length && skip >= buffers[i].byteLength) skip -= buffers[i++].byteLength;
  if (i === buffers.length) return [];
  return [buffers[i].subarray(skip), ...buffers.slice(i + 1)];
}

/** `storage_unavailable` for `what`, with a reason from the OS error code; the OS error is the cause. */
function storageError(what: string, cause: unknown): Error {
  return storageFailure(what, cause, errnoReason(cause));
}
