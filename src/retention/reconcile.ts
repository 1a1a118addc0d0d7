import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog.js';
import type { BlobStore } from '../storage/blob-store.js';
import { RUNS_PREFIX, parseCheckpointKey } from '../storage/keys.js';
import { parseShardKey } from '../storage/shard-keys.js';

export interface ReconcileResult {
  /** Committed blobs (data or manifest) that no catalog row references, removed. */
  orphans: number;
  /** Staged writes that took no byte for the stale age, removed. */
  staged: number;
  /** Keys looked at. */
  scanned: number;
}

/**
 * Makes storage agree with the catalog after a crash (docs/architecture.md §4). An upload commits in order:
 * staged bytes → blob (rename / multipart complete) → manifest → catalog row. A crash before the row leaves
 * either a staged write or a committed blob and manifest that no row references: an orphan. Here:
 *
 * - a data or manifest key whose (run, step, upload id) is not the catalog's committed checkpoint is an
 *   orphan once it is older than `staleMs` — younger ones may belong to an upload between its blob commit
 *   and its row, here or on another replica;
 * - staged writes that took no byte for `staleMs` are abandoned (a live writer keeps writing, or is cut
 *   by the upload idle timeout first).
 *
 * Safe to run at any time and repeatedly; a failure on one key is logged and left for the next pass.
 */
export async function reconcile(
  catalog: Catalog,
  blobs: BlobStore,
  logger: Logger,
  staleMs: number,
  now = new Date(),
): Promise<ReconcileResult> {
  const cutoff = now.getTime() - staleMs;
  const result: ReconcileResult = { orphans: 0, staged: 0, scanned: 0 };
  let run: string | null = null;
  let committed = new Map<number, string>();
  let shardRun: string | null = null;
  let liveShards = new Set<string>();
  for await (const blob of blobs.list(RUNS_PREFIX)) {
    result.scanned++;
    if (blob.lastModified.getTime() >= cutoff) continue;
    const shard = parseShardKey(blob.key);
    const parsed = shard ?? parseCheckpointKey(blob.key);
    if (!parsed) continue;
    if (shard) {
      // A file of a sharded step stays while staged or while its committed step keeps its bytes.
      if (shard.run !== shardRun) {
        shardRun = shard.run;
        liveShards = await catalog.liveShardUploads(shardRun);
      }
      if (liveShards.has(`${shard.step}/${shard.uploadId}`)) continue;
    } else {
      if (parsed.run !== run) {
        run = parsed.run;
        committed = await catalog.uploadIds(run);
      }
      if (committed.get(parsed.step) === parsed.uploadId) continue;
    }
    try {
      await blobs.delete(blob.key);
      result.orphans++;
      logger.info({ run: parsed.run, step: parsed.step, uploadId: parsed.uploadId }, 'removed an orphaned blob');
    } catch (err) {
      logger.warn({ err, run: parsed.run, step: parsed.step }, 'could not remove an orphaned blob; will retry');
    }
  }
  result.staged = await blobs.collectStaging(staleMs);
  return result;
}

/**
 * How long a blob without a catalog row, or a staged write without progress, is left alone: twice the
 * upload idle timeout (a live upload never pauses that long), at least two minutes; an hour when uploads
 * may idle forever.
 */
export function staleAge(uploadIdleMs: number): number {
  return uploadIdleMs > 0 ? Math.max(2 * uploadIdleMs, 120_000) : 3_600_000;
}
