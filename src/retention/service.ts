import type { Catalog, RetentionOutcome } from '../catalog/catalog.js';
import type { CheckpointIndicators, CheckpointListItem, CheckpointRecord, RunRecord } from '../model/records.js';
import { segmentRun, type PhaseAssignment } from '../trajectory/phase-segmentation.js';
import { SKETCH_COVERAGE_MAX_CHECKPOINTS, decideRetentionWithHolds, type RetentionDecision } from './engine.js';
import type { NewAuditEntry } from '../model/access.js';
import { DEFAULT_HOLD, type Policy } from '../model/policy.js';

/** What a decision is made on: the run's analysed checkpoints by step, their training loss and phases. */
export interface DecisionBasis {
  run: RunRecord;
  policy: Policy;
  checkpoints: readonly (CheckpointListItem & { indicators: CheckpointIndicators })[];
  /** Per checkpoint: mean trainLoss since the previous checkpoint, or null. */
  trainLoss: readonly (number | null)[];
  /** The run's phase segmentation under `policy`. */
  phases: PhaseAssignment;
}

/**
 * Applies retention policies to runs: loads the rest of what the engine needs (the `best` metric, sketches
 * of small runs), decides, and writes the outcome (soft deletes with a grace period; the collector deletes
 * bytes later). Callers hold the run's lock around `apply`.
 */
export class RetentionService {
  constructor(private readonly catalog: Catalog) {}

  /** The decision `policy` (default: the run's own) would make now, without writing anything. */
  async decide(basis: DecisionBasis, policy: Policy = basis.policy): Promise<RetentionDecision> {
    return (await this.decideWithHolds(basis, policy)).decision;
  }

  /** `decide`, with the steps whose bytes the decision holds back (engine.ts decideRetentionWithHolds). */
  private async decideWithHolds(
    basis: DecisionBasis,
    policy: Policy,
  ): Promise<{ decision: RetentionDecision; held: number[] }> {
    const { run, checkpoints, trainLoss } = basis;
    const steps = checkpoints.map((c) => c.step);
    const phases =
      policy.phase.count === basis.policy.phase.count && policy.phase.by === basis.policy.phase.by
        ? basis.phases
        : segmentRun(
            {
              steps,
              updateNormPerStep: checkpoints.map((c) => c.indicators.updateNormPerStep),
              trainLoss,
              plannedSteps: run.plannedSteps,
            },
            policy.phase,
          );
    // Small runs are covered in sketch space (exact-ish distances); larger ones along the path, sketch-free.
    const [metric, summaries] = await Promise.all([
      policy.best ? this.catalog.metricAtCheckpoints(run.id, policy.best.metric, 'last') : Promise.resolve([]),
      checkpoints.length <= SKETCH_COVERAGE_MAX_CHECKPOINTS
        ? this.catalog.getSummaries(run.id, steps)
        : Promise.resolve([]),
    ]);
    const summaryByStep = new Map(summaries.map((s) => [s.step, s]));
    const metricAt = valuesAt(steps, metric);
    return decideRetentionWithHolds({
      checkpoints: checkpoints.map((c, i) => ({
        step: c.step,
        bytes: c.bytes,
        pinned: c.pinned,
        available: c.contentAvailable,
        indicators: c.indicators,
        summary: summaryByStep.get(c.step),
        trainLoss: trainLoss[i],
        metric: policy.best && metricAt[i] !== null ? { [policy.best.metric]: metricAt[i]! } : {},
      })),
      policy,
      plannedSteps: run.plannedSteps,
      phases,
    });
  }

  /**
   * Decides with the run's policy and records the outcome, with an audit entry (by `actor`) for every
   * checkpoint this decision evicts; returns the decision.
   */
  async apply(basis: DecisionBasis, options: { actor: string; now?: Date }): Promise<RetentionDecision> {
    const now = options.now ?? new Date();
    const { decision, held } = await this.decideWithHolds(basis, basis.policy);
    const outcomes = retentionOutcomes(decision, basis.checkpoints, basis.policy, now, held);
    const byStep = new Map(basis.checkpoints.map((c) => [c.step, c]));
    const evicted: NewAuditEntry[] = outcomes
      .filter((o) => o.status === 'discarded' && byStep.get(o.step)!.status === 'kept')
      .map((o) => ({
        actor: options.actor,
        action: 'checkpoint.discard',
        run: basis.run.id,
        step: o.step,
        details: { reasons: o.reasons, deleteAfter: o.deleteAfter, before: 'kept', after: 'discarded' },
      }));
    // Only what changes is written: after an upload most checkpoints keep their outcome word for word.
    const changed = outcomes.filter((o) => !sameOutcome(byStep.get(o.step)!, o));
    await this.catalog.applyRetention(basis.run.id, changed, evicted);
    return decision;
  }
}

function sameOutcome(current: CheckpointListItem, next: RetentionOutcome): boolean {
  const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  return (
    current.status === next.status &&
    current.discardedAt === next.discardedAt &&
    current.deleteAfter === next.deleteAfter &&
    same(current.classes, next.classes) &&
    same(current.reasons, next.reasons)
  );
}

/** What a checkpoint's current record says about its retention (the fields `retentionOutcomes` reads). */
export type RetentionState = Pick<CheckpointRecord, 'step' | 'status' | 'reasons' | 'discardedAt' | 'deleteAfter'>;

/**
 * What applying `decision` at `now` writes for each checkpoint (docs/architecture.md §6, "Applying a decision"):
 * a kept one is `kept` with its classes and reasons; an evicted one is `discarded`, with `discardedAt` = now
 * when it was kept until now (else as it was) and the reasons of the decision that discarded it. Its bytes
 * are deleted after `deleteAfter`:
 *
 * - held back (`held`, the steps the decision holds; policy.hold): at least hold.seconds from now, and
 *   never sooner than graceSeconds after it was discarded;
 * - otherwise: graceSeconds after it was discarded, and no later than graceSeconds from now (a checkpoint
 *   no longer held gets graceSeconds from the decision that released it).
 *
 * Pure: the gateway and scripts/eval-retention.ts's online replay apply decisions with it.
 */
export function retentionOutcomes(
  decision: RetentionDecision,
  current: readonly RetentionState[],
  policy: Policy,
  now: Date,
  held: readonly number[] = [],
): RetentionOutcome[] {
  const byStep = new Map(current.map((c) => [c.step, c]));
  const holding = new Set(held);
  const grace = policy.graceSeconds * 1000;
  return decision.checkpoints.map((d) => {
    const record = byStep.get(d.step)!;
    if (d.keep) {
      return {
        step: d.step,
        status: 'kept',
        classes: d.classes,
        reasons: d.reasons,
        discardedAt: null,
        deleteAfter: null,
      };
    }
    const alreadyDiscarded = record.status === 'discarded';
    const since = alreadyDiscarded && record.discardedAt !== null ? Date.parse(record.discardedAt) : now.getTime();
    const previous = alreadyDiscarded && record.deleteAfter !== null ? Date.parse(record.deleteAfter) : null;
    const deleteAfter = holding.has(d.step)
      ? Math.max(now.getTime() + (policy.hold ?? DEFAULT_HOLD).seconds * 1000, since + grace, previous ?? 0)
      : Math.min(previous ?? since + grace, now.getTime() + grace);
    return {
      step: d.step,
      status: 'discarded',
      classes: [],
      reasons: alreadyDiscarded ? record.reasons : d.reasons,
      discardedAt: alreadyDiscarded ? record.discardedAt : now.toISOString(),
      deleteAfter: deleteAfter === previous ? record.deleteAfter : new Date(deleteAfter).toISOString(),
    };
  });
}

/** The values for `steps` (checkpoints with indicators) out of the per-checkpoint series. */
function valuesAt(
  steps: readonly number[],
  series: readonly { step: number; value: number | null }[],
): (number | null)[] {
  const byStep = new Map(series.map((s) => [s.step, s.value]));
  return steps.map((step) => byStep.get(step) ?? null);
}
