import { decideRetentionWithHolds } from '../../src/retention/engine.js';
import { retentionOutcomes, type RetentionState } from '../../src/retention/service.js';
import type { Policy } from '../../src/model/policy.js';
import type { CheckpointSummary } from '../../src/model/summary.js';
import { candidates, type RecordedRun } from './retention-runs.js';

export interface ReplayOptions {
  policy: Policy;
  /** Pass the summaries to the engine (what the gateway does for runs of up to SKETCH_COVERAGE_MAX_CHECKPOINTS). */
  sketches: boolean;
  /** Seconds between two uploads on the replay's clock. */
  uploadIntervalSeconds: number;
}

export interface ReplayResult {
  /** Checkpoint indices kept after the last upload's decision. */
  kept: number[];
  /** The most checkpoints whose bytes were stored at once (kept, or discarded and not yet collected). */
  peakStored: number;
  /** Checkpoints whose bytes the collector deleted during the run. */
  deleted: number;
}

interface Row extends RetentionState {
  /** False once the collector deleted the bytes (the catalog's contentAvailable). */
  available: boolean;
}

/**
 * The gateway's retention as a run uploads, replayed on a recorded run: after upload t the engine decides
 * on checkpoints 0..t (with each one's availability), the decision is applied with the gateway's own
 * retentionOutcomes (discarded checkpoints get deleteAfter = now + grace), and before each upload the
 * collector deletes the bytes of discarded checkpoints whose grace has ended, after which no decision can
 * keep them again (src/retention/collector.ts, the catalog's markBlobDeleted). Upload t happens at
 * t × uploadIntervalSeconds on the replay's clock.
 */
export function replayOnline(
  run: RecordedRun,
  summaries: readonly CheckpointSummary[],
  options: ReplayOptions,
): ReplayResult {
  const n = run.steps.length;
  const rows: Row[] = [];
  const epoch = Date.UTC(2025, 0, 1);
  let peakStored = 0;
  let deleted = 0;
  for (let t = 0; t < n; t++) {
    const now = new Date(epoch + t * options.uploadIntervalSeconds * 1000);
    for (const r of rows) {
      if (
        r.available &&
        r.status === 'discarded' &&
        r.deleteAfter !== null &&
        Date.parse(r.deleteAfter) <= now.getTime()
      ) {
        r.available = false;
        deleted++;
      }
    }
    rows.push({
      step: run.steps[t],
      status: 'kept',
      reasons: [],
      discardedAt: null,
      deleteAfter: null,
      available: true,
    });
    const checkpoints = candidates(run, summaries, options.sketches, t + 1).map((c, i) => ({
      ...c,
      available: rows[i].available,
    }));
    const { decision, held } = decideRetentionWithHolds({ checkpoints, policy: options.policy });
    const outcomes = retentionOutcomes(decision, rows, options.policy, now, held);
    outcomes.forEach((o, i) => {
      Object.assign(rows[i], {
        status: o.status,
        reasons: o.reasons,
        discardedAt: o.discardedAt,
        deleteAfter: o.deleteAfter,
      });
    });
    peakStored = Math.max(peakStored, rows.filter((r) => r.available).length);
  }
  return { kept: rows.flatMap((r, i) => (r.status === 'kept' ? [i] : [])), peakStored, deleted };
}
