import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Catalog } from '../catalog/catalog.js';
import type { MetricPoint, RunRecord } from '../model/records.js';
import { EstimateAccumulator } from './accumulator.js';
import { currentEstimate, poolScales } from './estimate.js';
import { estimateHistory } from './history.js';
import { checkpointUpdate, rebuildAccumulator } from './rebuild.js';
import { STATE_VERSION } from './state.js';
import type { Estimate, HistoryEntry, PhaseSpan } from './types.js';

/** The catalog calls RunEstimates makes (a Catalog has them all). */
export type EstimateCatalog = Pick<
  Catalog,
  | 'getEstimateState'
  | 'estimateStateVersion'
  | 'putEstimateState'
  | 'getCheckpoint'
  | 'listCheckpoints'
  | 'listMetrics'
  | 'putCalibrationScale'
  | 'siblingScales'
>;

/** The most sibling scales pooled (the group's most recently calibrated runs). */
const SIBLINGS_MAX = 200;

/** A run's calibration group: its `calibrationGroup`, else its `family` tag, else none. */
export function calibrationGroupOf(run: RunRecord): string | null {
  return run.calibrationGroup ?? run.tags.family ?? null;
}

/** A parsed state and the stored version it equals. */
interface Cached {
  acc: EstimateAccumulator;
  version: number;
}

interface Loaded {
  acc: EstimateAccumulator;
  /** True for the call whose load rebuilt the state from the catalog (not for calls that joined it). */
  rebuilt: boolean;
}

/**
 * The generalization estimate of each run, kept up to date as metric batches and checkpoints arrive: the
 * accumulator's state is stored per run, so reading the estimate never rescans the metric points. Writers
 * hold the run's lock (the run service) and call in after the catalog holds what they report.
 *
 * Loading a stored state: the current version is used as stored; an older one is migrated (migration.ts)
 * and stored back; one that cannot be used (unknown, newer or corrupt) is rebuilt from the catalog
 * (rebuild.ts) and stored. A writer whose own load rebuilt skips its input, which the rebuild already read.
 * A read that rebuilds while a metric batch is between its catalog append and addMetrics folds that batch
 * twice: the sums stay the same (same-step records merge idempotently, folded steps drop the repeats), the
 * counts of points, fields seen and late points grow.
 *
 * Several gateways may share the catalog: each keeps its own parsed copies, and every use first compares
 * the copy's version with the stored one (one indexed read), re-reading the state when another gateway
 * wrote since. Callers hold the run's catalog-wide lock, so no write lands between that check and the use.
 */
export class RunEstimates {
  /** Parsed accumulators of recently used runs, so reads skip parsing the stored state while it is current. */
  private readonly cache = new Map<string, Cached>();
  /** Loads in progress, so concurrent calls for a run share one accumulator. */
  private readonly loading = new Map<string, Promise<Loaded>>();
  private static readonly CACHE_RUNS = 64;
  private static readonly ADD_CHUNK = 1000;

  constructor(private readonly catalog: EstimateCatalog) {}

  /**
   * Folds a metric batch in; call after the batch is stored in the catalog. Folds ADD_CHUNK points per
   * event-loop turn (any batching gives the same state), so a large batch does not hold other requests.
   */
  async addMetrics(run: string, points: readonly MetricPoint[], batchKey?: string): Promise<void> {
    const folded = batchKey === undefined ? undefined : { key: batchKey, points: points.length };
    const { acc, rebuilt } = await this.load(run);
    if (rebuilt) {
      // The rebuild replayed the catalog, this batch included; only the batch's record is missing.
      if (folded) await this.store(run, acc, folded);
      return;
    }
    for (let i = 0; i < points.length; i += RunEstimates.ADD_CHUNK) {
      if (i > 0) await nextTurn();
      acc.add(points.length <= RunEstimates.ADD_CHUNK ? points : points.slice(i, i + RunEstimates.ADD_CHUNK));
    }
    await this.store(run, acc, folded);
  }

  /** Feeds the gateway's own update norm for a committed checkpoint (used when clients log none). */
  async addCheckpoint(run: string, step: number): Promise<void> {
    const checkpoint = await this.catalog.getCheckpoint(run, step);
    const update = checkpoint ? checkpointUpdate(checkpoint) : null;
    if (!update) return;
    const { acc, rebuilt } = await this.load(run);
    if (rebuilt) return;
    acc.addCheckpoints([update]);
    await this.store(run, acc);
  }

  /** The caller has checked that the run exists and supplies its phase segmentation. */
  async current(
    run: RunRecord,
    options: { phases: readonly PhaseSpan[]; calibrateUntilStep?: number },
  ): Promise<Estimate> {
    const { acc } = await this.load(run.id);
    const group = calibrationGroupOf(run);
    const siblings = group === null ? null : poolScales(await this.catalog.siblingScales(group, run.id, SIBLINGS_MAX));
    const estimate = currentEstimate(acc, {
      trainSize: run.trainSize,
      phases: options.phases,
      calibrateUntilStep: options.calibrateUntilStep,
      group,
      siblings,
    });
    // The run's own calibration joins its group's pool (a forecast's partial fit does not).
    const own = estimate.calibration;
    if (group !== null && options.calibrateUntilStep === undefined && own?.source === 'own' && own.scale !== null) {
      await this.catalog.putCalibrationScale(run.id, { group, scale: own.scale, points: own.points });
    }
    return estimate;
  }

  async history(run: RunRecord): Promise<HistoryEntry[]> {
    const { acc } = await this.load(run.id);
    return estimateHistory(acc, { trainSize: run.trainSize });
  }

  private async load(run: string): Promise<Loaded> {
    const cached = this.cache.get(run);
    if (cached) {
      this.cache.delete(run);
      if (cached.version === (await this.catalog.estimateStateVersion(run))) {
        this.cache.set(run, cached);
        return { acc: cached.acc, rebuilt: false };
      }
    }
    const inFlight = this.loading.get(run);
    if (inFlight) return { acc: (await inFlight).acc, rebuilt: false };
    const loading = this.restore(run);
    this.loading.set(run, loading);
    try {
      return await loading;
    } finally {
      this.loading.delete(run);
    }
  }

  /** The stored state, migrated or rebuilt as needed (and then stored back), entered in the cache. */
  private async restore(run: string): Promise<Loaded> {
    const stored = await this.catalog.getEstimateState(run);
    const restored = stored === null ? EstimateAccumulator.create() : EstimateAccumulator.restore(stored.state);
    const rebuilt = restored === null;
    const acc = restored ?? (await rebuildAccumulator(this.catalog, run));
    if (rebuilt || (stored !== null && !isCurrentVersion(stored.state))) await this.store(run, acc);
    else this.remember(run, { acc, version: stored?.version ?? 0 });
    return { acc, rebuilt };
  }

  /** Stores the state and caches it at the version the catalog gave it. */
  private async store(run: string, acc: EstimateAccumulator, folded?: { key: string; points: number }): Promise<void> {
    this.cache.delete(run);
    const version = await this.catalog.putEstimateState(run, acc.toJSON(), folded);
    this.remember(run, { acc, version });
  }

  private remember(run: string, entry: Cached): void {
    this.cache.set(run, entry);
    if (this.cache.size > RunEstimates.CACHE_RUNS) this.cache.delete(this.cache.keys().next().value!);
  }
}

/** Whether a stored state needs no migration. */
function isCurrentVersion(state: unknown): boolean {
  return state !== null && typeof state === 'object' && 'version' in state && state.version === STATE_VERSION;
}
