import type { Catalog, RetentionOutcome } from '../catalog/catalog.js';
import type { CheckpointRecord, RunRecord } from '../model/records.js';
import { AppError, errors } from '../errors.js';
import { SKETCH_COVERAGE_MAX_CHECKPOINTS, decideRetention, type RetentionDecision } from './engine.js';
import { DEFAULT_POLICY, PolicyInput, resolvePolicy, type Policy } from './policy.js';

/**
 * Applies retention policies to runs: loads what the engine needs from the catalog, decides, and writes
 * the outcome (soft deletes with a grace period; the collector deletes bytes later). Callers hold the
 * run's lock around `apply`.
 */
export class RetentionService {
  constructor(private readonly catalog: Catalog) {}

  /** The policy in force for a run: its named or inline policy, else the built-in default. */
  async policyFor(run: RunRecord): Promise<Policy> {
    if (!run.policy) return DEFAULT_POLICY;
    if ('policy' in run.policy) return resolvePolicy(PolicyInput.parse(run.policy.policy));
    const named = await this.catalog.getPolicy(run.policy.name);
    if (!named) {
      throw new AppError('policy_not_found', `run '${run.id}' uses policy '${run.policy.name}', which does not exist`, {
        policy: run.policy.name,
      });
    }
    return resolvePolicy(PolicyInput.parse(named.policy));
  }

  /** The decision `policy` would make for the run now, without writing anything. */
  async decide(
    runId: string,
    policy?: Policy,
  ): Promise<{ decision: RetentionDecision; checkpoints: CheckpointRecord[] }> {
    const run = await this.catalog.getRun(runId);
    if (!run) throw errors.runNotFound(runId);
    return this.decideFor(run, policy ?? (await this.policyFor(run)));
  }

  private async decideFor(
    run: RunRecord,
    effective: Policy,
  ): Promise<{ decision: RetentionDecision; checkpoints: CheckpointRecord[] }> {
    const runId = run.id;
    const checkpoints = (await this.catalog.listCheckpoints(runId)).filter((c) => c.indicators !== null);
    const steps = checkpoints.map((c) => c.step);
    // Small runs are covered in sketch space (exact-ish distances); larger ones along the path, sketch-free.
    const [trainLoss, metric, summaries] = await Promise.all([
      this.catalog.metricAtCheckpoints(runId, 'trainLoss', 'mean'),
      effective.best ? this.catalog.metricAtCheckpoints(runId, effective.best.metric, 'last') : Promise.resolve([]),
      checkpoints.length <= SKETCH_COVERAGE_MAX_CHECKPOINTS
        ? this.catalog.getSummaries(runId, steps)
        : Promise.resolve([]),
    ]);
    const summaryByStep = new Map(summaries.map((s) => [s.step, s]));
    const lossAt = valuesAt(steps, trainLoss);
    const metricAt = valuesAt(steps, metric);
    const decision = decideRetention({
      checkpoints: checkpoints.map((c, i) => ({
        step: c.step,
        bytes: c.bytes,
        pinned: c.pinned,
        available: c.contentAvailable,
        indicators: c.indicators!,
        summary: summaryByStep.get(c.step),
        trainLoss: lossAt[i],
        metric: effective.best && metricAt[i] !== null ? { [effective.best.metric]: metricAt[i]! } : {},
      })),
      policy: effective,
      plannedSteps: run.plannedSteps,
    });
    return { decision, checkpoints };
  }

  /** Decides with the run's policy and records the outcome; returns the decision. */
  async apply(runId: string, now = new Date()): Promise<RetentionDecision> {
    const run = await this.catalog.getRun(runId);
    if (!run) throw errors.runNotFound(runId);
    const policy = await this.policyFor(run);
    const { decision, checkpoints } = await this.decideFor(run, policy);
    const byStep = new Map(checkpoints.map((c) => [c.step, c]));
    const deleteAfter = new Date(now.getTime() + policy.graceSeconds * 1000).toISOString();
    const outcomes: RetentionOutcome[] = decision.checkpoints.map((d) => {
      const current = byStep.get(d.step)!;
      if (d.keep)
        return {
          step: d.step,
          status: 'kept',
          classes: d.classes,
          reasons: d.reasons,
          discardedAt: null,
          deleteAfter: null,
        };
      const alreadyDiscarded = current.status === 'discarded';
      return {
        step: d.step,
        status: 'discarded',
        classes: [],
        reasons: alreadyDiscarded ? current.reasons : d.reasons,
        discardedAt: alreadyDiscarded ? current.discardedAt : now.toISOString(),
        deleteAfter: alreadyDiscarded ? current.deleteAfter : deleteAfter,
      };
    });
    await this.catalog.applyRetention(runId, outcomes);
    return decision;
  }
}

/** The values for `steps` (checkpoints with indicators) out of the per-checkpoint series. */
function valuesAt(
  steps: readonly number[],
  series: readonly { step: number; value: number | null }[],
): (number | null)[] {
  const byStep = new Map(series.map((s) => [s.step, s.value]));
  return steps.map((step) => byStep.get(step) ?? null);
}
