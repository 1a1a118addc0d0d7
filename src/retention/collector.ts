import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog.js';
import type { BlobStore } from '../storage/blob-store.js';
import { manifestKeyFor } from '../storage/keys.js';
import type { Telemetry } from '../observability/telemetry.js';
import { isShardIndexKey } from '../storage/shard-keys.js';
import { reconcile } from './reconcile.js';
import { deleteShardFiles, expireStagedShards } from './shard-expiry.js';

const BATCH = 500;

/**
 * Deletes the bytes (and manifest) of discarded checkpoints whose grace period has ended. The catalog
 * keeps their statistics, sketches and indicators, so the trajectory still sees the whole run. A failed
 * delete is left for the next pass. Each deletion is audited (actor `collector`). Returns how many
 * checkpoints' bytes were deleted.
 */
export async function collectDiscarded(
  catalog: Catalog,
  blobs: BlobStore,
  logger: Logger,
  now = new Date(),
): Promise<number> {
  return (await collectDiscardedBytes(catalog, blobs, logger, now)).deleted;
}

/** `collectDiscarded`, also counting the bytes deleted. */
async function collectDiscardedBytes(
  catalog: Catalog,
  blobs: BlobStore,
  logger: Logger,
  now: Date,
): Promise<{ deleted: number; bytes: number }> {
  let deleted = 0;
  let bytes = 0;
  for (;;) {
    const due = await catalog.listDueDeletions(now.toISOString(), BATCH);
    let progressed = 0;
    for (const { run, step, blobKey, bytes: size } of due) {
      try {
        // Claim first: a checkpoint kept again meanwhile is skipped, and a crash after the claim leaves bytes
        // that reconciliation removes — never a kept checkpoint without its bytes.
        const audit = [{ actor: 'collector', action: 'checkpoint.delete' as const, run, step }];
        if (!(await catalog.markBlobDeleted(run, step, audit))) continue;
        await blobs.delete(blobKey);
        await blobs.delete(manifestKeyFor(blobKey));
        // A sharded step goes with all its files.
        if (isShardIndexKey(blobKey)) await deleteShardFiles(catalog, blobs, logger, run, step);
        deleted++;
        bytes += size;
        progressed++;
      } catch (err) {
        logger.warn({ err, run, step }, 'could not delete the bytes of a discarded checkpoint; reconciliation will');
      }
    }
    if (due.length < BATCH || progressed === 0) return { deleted, bytes };
  }
}

/** The catalog lock whose holder runs the collector and reconciliation: one replica at a time. */
export const COLLECTOR_LEASE = 'collector';

/**
 * Runs `collectDiscarded` now and then every `intervalMs`, and `reconcile` now and then every `staleMs`,
 * until `stop()`. Passes never overlap, here or across gateways sharing the catalog: a pass runs only while
 * it holds the catalog's `collector` lock, and a gateway that finds it held skips that pass (both duties
 * are idempotent, so whichever replica runs next picks up where the last left off).
 */
export function startCollector(
  catalog: Catalog,
  blobs: BlobStore,
  logger: Logger,
  options: { intervalMs: number; staleMs: number; telemetry: Telemetry },
): { stop(): Promise<void> } {
  let running: Promise<unknown> = Promise.resolve();
  let lastReconcile = Number.NEGATIVE_INFINITY;
  const { telemetry } = options;
  const pass = async () => {
    const leased = await catalog.tryExclusive(COLLECTOR_LEASE, duties);
    if (!leased.ran) logger.debug('collector pass skipped: another gateway holds the collector lease');
  };
  const duties = async () => {
    const { deleted, bytes } = await collectDiscardedBytes(catalog, blobs, logger, new Date());
    telemetry.collectorPass(true, deleted, bytes);
    if (deleted > 0) logger.info({ deleted }, 'deleted discarded checkpoints after their grace period');
    if (Date.now() - lastReconcile >= options.staleMs) {
      lastReconcile = Date.now();
      const expired = await expireStagedShards(catalog, blobs, logger);
      if (expired > 0) logger.info({ expired }, 'dropped the staged files of abandoned sharded steps');
      // Expired resumable uploads: the row goes here; a live stream's staged bytes were aborted when it sat
      // idle (TRAJGATE_UPLOAD_IDLE_S), and those of a process that died are staged writes reconcile removes.
      const sessions = await catalog.expireUploadSessions(new Date().toISOString(), 1000);
      if (sessions.length > 0) logger.info({ sessions: sessions.length }, 'dropped expired resumable uploads');
      const found = await reconcile(catalog, blobs, logger, options.staleMs);
      telemetry.reconciled(found.orphans, found.staged);
      if (found.orphans + found.staged > 0) logger.info(found, 'reconciled storage with the catalog');
    }
  };
  const tick = () => {
    running = running.then(pass).catch((err: unknown) => {
      telemetry.collectorPass(false, 0, 0);
      logger.error({ err }, 'collector pass failed');
    });
  };
  tick();
  const timer = setInterval(tick, options.intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
