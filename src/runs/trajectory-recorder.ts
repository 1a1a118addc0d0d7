import type { Catalog } from '../catalog/catalog.js';
import { computeIndicators, indicatorsFor } from '../trajectory/run-indicators.js';

/**
 * Computes a new checkpoint's indicators at commit; the caller holds the run's lock. A checkpoint appended after
 * the run's last one needs only the summaries of the first, the previous two and itself; one that
 * arrives out of order changes its successors' indicators too, so the run is recomputed whole.
 */
export class TrajectoryRecorder {
  constructor(private readonly catalog: Catalog) {}

  async record(run: string, step: number): Promise<void> {
    const checkpoints = await this.catalog.listCheckpoints(run);
    const index = checkpoints.findIndex((c) => c.step === step);
    const prev = checkpoints[index - 1];
    const appendable = index === checkpoints.length - 1 && (index === 0 || prev.indicators !== null);
    if (!appendable) {
      const summaries = await this.catalog.getSummaries(run);
      const all = computeIndicators(summaries);
      await this.catalog.setIndicators(
        run,
        summaries.map((s, i) => ({ step: s.step, indicators: all[i] })),
      );
      return;
    }
    const wanted = [checkpoints[0], checkpoints[index - 2], prev, checkpoints[index]]
      .filter((c) => c !== undefined)
      .map((c) => c.step);
    const byStep = new Map((await this.catalog.getSummaries(run, [...new Set(wanted)])).map((s) => [s.step, s]));
    const at = (i: number) => (i >= 0 ? (byStep.get(checkpoints[i].step) ?? null) : null);
    const indicators = indicatorsFor(at(index)!, {
      first: at(0)!,
      prev: at(index - 1),
      prevPrev: at(index - 2),
      prevPathLength: prev?.indicators?.pathLength ?? 0,
    });
    await this.catalog.setIndicators(run, [{ step, indicators }]);
  }
}
