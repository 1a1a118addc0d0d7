import type { Catalog, MetricCursor } from '../catalog/catalog.js';
import type { CheckpointRecord, MetricPoint } from '../model/records.js';
import { EstimateAccumulator, type CheckpointUpdate } from './accumulator.js';

/** The catalog reads a rebuild needs. */
export type RebuildSource = Pick<Catalog, 'listCheckpoints' | 'listMetrics'>;

/** Metric points read per catalog query during a rebuild. */
export const REBUILD_PAGE = 10_000;

/** The update a committed checkpoint feeds the estimate: its update norm per step and its NaN/Inf weights. */
export function checkpointUpdate(checkpoint: CheckpointRecord): CheckpointUpdate | null {
  if (!checkpoint.indicators) return null;
  return {
    step: checkpoint.step,
    updateNormPerStep: checkpoint.indicators.updateNormPerStep,
    nonFiniteCount: checkpoint.tensors.reduce((n, t) => n + t.nanCount + t.infCount, 0),
  };
}

/**
 * A run's estimate state rebuilt from the catalog: the update norms of every checkpoint with indicators
 * (step order), then every stored metric point in step order (arrival order within a step). The result
 * equals the state of a run fed the same data in step order. It differs from the live state only where
 * arrival order mattered to the live fold: points that arrived after their step was folded (dropped live),
 * records folded past holdLimit with a provisional checkpoint norm, checkpoints uploaded below a later one.
 */
export async function rebuildAccumulator(
  catalog: RebuildSource,
  run: string,
  pageSize: number = REBUILD_PAGE,
): Promise<EstimateAccumulator> {
  const acc = EstimateAccumulator.create();
  const updates = (await catalog.listCheckpoints(run, { tensors: true })).map(checkpointUpdate);
  acc.addCheckpoints(updates.filter((u): u is CheckpointUpdate => u !== null));
  for await (const page of metricPages(catalog, run, pageSize)) acc.add(page);
  return acc;
}

/** The run's points in (step, arrival) order, in pages of `pageSize`, following the catalog's cursor. */
async function* metricPages(catalog: RebuildSource, run: string, pageSize: number): AsyncGenerator<MetricPoint[]> {
  let after: MetricCursor | undefined;
  for (;;) {
    const page = await catalog.listMetrics(run, { after, limit: pageSize });
    if (page.items.length > 0) yield page.items;
    if (page.next === null) return;
    after = page.next;
  }
}
