import type { Catalog } from '../catalog/catalog.js';
import type { CheckpointRecord, MetricPoint } from '../model/records.js';
import type { RunEstimates } from '../estimate/run-estimates.js';
import { AppError, errors } from '../errors.js';
import type { TrajectoryRecorder } from '../ingest/trajectory-recorder.js';
import type { RetentionDecision } from '../retention/engine.js';
import type { RetentionService } from '../retention/service.js';
import { KeyedLock } from '../util/keyed-lock.js';

/**
 * Everything that changes a run's derived state happens here, one run at a time (a per-run lock):
 * indicators at commit, the generalization estimate's state, then the retention decision; metric batches; pins, unpins, restores and policy changes, each
 * followed by a fresh decision. Decisions are deterministic functions of the catalog, so replaying the
 * same uploads gives the same kept set.
 */
export class RunCoordinator {
  private readonly lock = new KeyedLock();

  constructor(
    private readonly catalog: Catalog,
    private readonly trajectory: TrajectoryRecorder,
    private readonly retention: RetentionService,
    private readonly estimates: RunEstimates,
  ) {}

  /** Stores a metric batch and folds it into the run's estimate. */
  appendMetrics(run: string, points: readonly MetricPoint[]): Promise<number> {
    return this.lock.run(run, async () => {
      await this.catalog.ensureRun(run);
      const accepted = await this.catalog.appendMetrics(run, points);
      await this.estimates.addMetrics(run, points);
      return accepted;
    });
  }

  /** After a new checkpoint's row is written: indicators, the pin asked for at upload, retention. */
  onCommitted(run: string, step: number, options: { pin?: boolean } = {}): Promise<RetentionDecision> {
    return this.lock.run(run, async () => {
      await this.trajectory.record(run, step);
      await this.estimates.addCheckpoint(run, step);
      if (options.pin) await this.catalog.setPinned(run, step, true);
      return this.retention.apply(run);
    });
  }

  applyRetention(run: string): Promise<RetentionDecision> {
    return this.lock.run(run, () => this.retention.apply(run));
  }

  setPinned(run: string, step: number, pinned: boolean): Promise<CheckpointRecord> {
    return this.lock.run(run, async () => {
      await this.requireCheckpoint(run, step);
      await this.catalog.setPinned(run, step, pinned);
      await this.retention.apply(run);
      return this.requireCheckpoint(run, step);
    });
  }

  /**
   * Brings a discarded checkpoint back while its bytes still exist, and pins it so the next decision
   * does not discard it again.
   */
  restore(run: string, step: number): Promise<CheckpointRecord> {
    return this.lock.run(run, async () => {
      const checkpoint = await this.requireCheckpoint(run, step);
      if (checkpoint.status === 'kept') return checkpoint;
      if (!checkpoint.contentAvailable) {
        throw new AppError(
          'checkpoint_not_restorable',
          `step ${step} of run '${run}' can no longer be restored: its bytes were deleted after the grace period`,
          {
            run,
            step,
            discardedAt: checkpoint.discardedAt,
          },
        );
      }
      await this.catalog.setPinned(run, step, true);
      await this.retention.apply(run);
      return this.requireCheckpoint(run, step);
    });
  }

  private async requireCheckpoint(run: string, step: number): Promise<CheckpointRecord> {
    const checkpoint = await this.catalog.getCheckpoint(run, step);
    if (checkpoint) return checkpoint;
    if (!(await this.catalog.getRun(run))) throw errors.runNotFound(run);
    throw errors.checkpointNotFound(run, step);
  }
}
