import type { Catalog } from '../catalog/catalog.js';
import type { MetricPoint } from '../model/records.js';
import { errors } from '../errors.js';
import { assignPhases } from '../trajectory/phase-segmentation.js';
import { EstimateAccumulator } from './accumulator.js';
import { currentEstimate } from './estimate.js';
import { estimateHistory } from './history.js';
import type { Estimate, HistoryEntry } from './types.js';

/**
 * The generalization estimate of each run, kept up to date as metric batches and checkpoints arrive: the
 * accumulator's state is stored per run, so reading the estimate never rescans the metric points. Writers
 * hold the run's lock (RunCoordinator).
 */
export class RunEstimates {
  /**
   * Parsed accumulators of recently used runs, so reads skip parsing the stored state. Every write in this
   * process goes through here; a second gateway writing the same run would need a version check.
   */
  private readonly cache = new Map<string, EstimateAccumulator>();
  private static readonly CACHE_RUNS = 64;

  constructor(private readonly catalog: Catalog) {}

  async addMetrics(run: string, points: readonly MetricPoint[]): Promise<void> {
    const acc = await this.load(run);
    acc.add(points);
    await this.catalog.putEstimateState(run, acc.toJSON());
  }

  /** Feeds the gateway's own update norm for a committed checkpoint (used when clients log none). */
  async addCheckpoint(run: string, step: number): Promise<void> {
    const checkpoint = await this.catalog.getCheckpoint(run, step);
    if (!checkpoint?.indicators) return;
    const acc = await this.load(run);
    const nonFinite = checkpoint.tensors.reduce((n, t) => n + t.nanCount + t.infCount, 0);
    acc.addCheckpoints([
      { step, updateNormPerStep: checkpoint.indicators.updateNormPerStep, nonFiniteCount: nonFinite },
    ]);
    await this.catalog.putEstimateState(run, acc.toJSON());
  }

  /** @param calibrateUntilStep calibrate only on evaluation points up to this step (a forecast from the past). */
  async current(runId: string, calibrateUntilStep?: number): Promise<Estimate> {
    const run = await this.catalog.getRun(runId);
    if (!run) throw errors.runNotFound(runId);
    const [acc, phases] = await Promise.all([this.load(runId), this.phaseSpans(runId, run.plannedSteps)]);
    return currentEstimate(acc, { trainSize: run.trainSize, phases, calibrateUntilStep });
  }

  async history(runId: string): Promise<HistoryEntry[]> {
    const run = await this.catalog.getRun(runId);
    if (!run) throw errors.runNotFound(runId);
    return estimateHistory(await this.load(runId), { trainSize: run.trainSize });
  }

  private async load(run: string): Promise<EstimateAccumulator> {
    const cached = this.cache.get(run);
    if (cached) {
      this.cache.delete(run);
      this.cache.set(run, cached);
      return cached;
    }
    const state = await this.catalog.getEstimateState(run);
    const acc = state === null ? EstimateAccumulator.create() : EstimateAccumulator.fromJSON(state);
    this.cache.set(run, acc);
    if (this.cache.size > RunEstimates.CACHE_RUNS) this.cache.delete(this.cache.keys().next().value!);
    return acc;
  }

  /** The run's phases as step spans (from checkpoint dynamics, or plannedSteps when set). */
  private async phaseSpans(
    run: string,
    plannedSteps: number | null,
  ): Promise<{ name: string; fromStep: number; toStep: number }[]> {
    const checkpoints = (await this.catalog.listCheckpoints(run)).filter((c) => c.indicators !== null);
    if (checkpoints.length === 0) return [];
    const { names, phaseOf } = assignPhases({
      steps: checkpoints.map((c) => c.step),
      updateNormPerStep: checkpoints.map((c) => c.indicators!.updateNormPerStep),
      plannedSteps,
    });
    const spans: { name: string; fromStep: number; toStep: number }[] = [];
    let from = -1;
    checkpoints.forEach((c, i) => {
      const last = i === checkpoints.length - 1 || phaseOf[i + 1] !== phaseOf[i];
      if (last) {
        // The last phase also holds the steps logged after the newest checkpoint.
        spans.push({
          name: names[phaseOf[i]],
          fromStep: from,
          toStep: i === checkpoints.length - 1 ? Number.MAX_SAFE_INTEGER : c.step,
        });
        from = c.step;
      }
    });
    return spans;
  }
}
