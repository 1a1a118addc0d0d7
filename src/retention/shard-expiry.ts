import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog.js';
import type { BlobStore } from '../storage/blob-store.js';

/**
 * Staged files of a sharded step that received no file for this long are dropped with their bytes: its
 * other files never came. Long, because a step's files may be sent one after another over a slow link.
 */
export const SHARD_STAGE_TTL_MS = 24 * 3600 * 1000;

/** Drops the staged files of steps that received none for `ttlMs`, with their bytes; returns how many files. */
export async function expireStagedShards(
  catalog: Catalog,
  blobs: BlobStore,
  logger: Logger,
  ttlMs = SHARD_STAGE_TTL_MS,
  now = new Date(),
): Promise<number> {
  const steps = await catalog.abandonedShardSteps(new Date(now.getTime() - ttlMs).toISOString(), 500);
  let files = 0;
  for (const { run, step } of steps) {
    const keys = await catalog.dropStagedShards(run, step);
    files += keys.length;
    logger.info({ run, step, files: keys.length }, 'dropped the staged files of an abandoned sharded step');
    await deleteQuietly(blobs, keys, logger);
  }
  return files;
}

/** The bytes of a sharded step's files (after its checkpoint's index and manifest were claimed for deletion). */
export async function deleteShardFiles(
  catalog: Catalog,
  blobs: BlobStore,
  logger: Logger,
  run: string,
  step: number,
): Promise<void> {
  const keys = (await catalog.listShards(run, step)).filter((s) => s.checkpointUploadId !== null).map((s) => s.blobKey);
  await deleteQuietly(blobs, keys, logger);
}

async function deleteQuietly(blobs: BlobStore, keys: readonly string[], logger: Logger): Promise<void> {
  for (const key of keys) {
    try {
      await blobs.delete(key);
    } catch (err) {
      logger.warn({ err, key }, 'could not delete a shard file; reconciliation will');
    }
  }
}
