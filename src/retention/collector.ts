import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog.js';
import type { BlobStore } from '../storage/blob-store.js';
import { manifestKeyFor } from '../storage/keys.js';

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
  let deleted = 0;
  for (;;) {
    const due = await catalog.listDueDeletions(now.toISOString(), BATCH);
    let progressed = 0;
    for (const { run, step, blobKey } of due) {
      try {
        await blobs.delete(blobKey);
        await blobs.delete(manifestKeyFor(blobKey));
        await catalog.markBlobDeleted(run, step, [{ actor: 'collector', action: 'checkpoint.delete', run, step }]);
        deleted++;
        progressed++;
      } catch (err) {
        logger.warn({ err, run, step }, 'could not delete a discarded checkpoint; will retry');
      }
    }
    if (due.length < BATCH || progressed === 0) return deleted;
  }
}

/** Runs `collectDiscarded` now and then every `intervalMs`, until `stop()`. */
export function startCollector(
  catalog: Catalog,
  blobs: BlobStore,
  logger: Logger,
  intervalMs: number,
): { stop(): Promise<void> } {
  let running: Promise<unknown> = Promise.resolve();
  const tick = () => {
    running = collectDiscarded(catalog, blobs, logger).then(
      (n) => {
        if (n > 0) logger.info({ deleted: n }, 'deleted discarded checkpoints after their grace period');
      },
      (err: unknown) => logger.error({ err }, 'discarded-checkpoint collector failed'),
    );
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
