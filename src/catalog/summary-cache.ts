import type { CheckpointSummary } from '../model/summary.js';

/**
 * Parsed trajectory summaries of recently used runs, bounded by bytes. A summary never changes once its
 * checkpoint is committed ((run, step) is written once), so a cached one is valid on every replica for
 * as long as it is kept: a retention decision after each upload reads only the new checkpoint's summary
 * instead of the whole run (about 170 KB a checkpoint: tens of MB for a long run).
 *
 * Whole runs are evicted, least recently used first. Entries are shared with callers, who must not mutate
 * them (no caller does: the trajectory and retention read summaries only).
 */
export class SummaryCache {
  private readonly runs = new Map<string, Map<number, CheckpointSummary>>();
  private readonly runBytes = new Map<string, number>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** The run's cached summaries at `steps` (all cached ones when absent); marks the run recently used. */
  get(run: string, steps?: readonly number[]): Map<number, CheckpointSummary> {
    const cached = this.runs.get(run);
    if (!cached) return new Map();
    this.runs.delete(run);
    this.runs.set(run, cached);
    if (!steps) return new Map(cached);
    const found = new Map<number, CheckpointSummary>();
    for (const step of steps) {
      const summary = cached.get(step);
      if (summary) found.set(step, summary);
    }
    return found;
  }

  add(run: string, summaries: readonly CheckpointSummary[]): void {
    let cached = this.runs.get(run);
    if (!cached) {
      cached = new Map();
      this.runs.set(run, cached);
    }
    let added = 0;
    for (const summary of summaries) {
      if (cached.has(summary.step)) continue;
      cached.set(summary.step, summary);
      added += sizeOf(summary);
    }
    this.runBytes.set(run, (this.runBytes.get(run) ?? 0) + added);
    this.bytes += added;
    this.evict(run);
  }

  /** Drops least recently used runs until within budget; `current` goes last (and only if alone too big). */
  private evict(current: string): void {
    for (const run of this.runs.keys()) {
      if (this.bytes <= this.maxBytes) return;
      if (run !== current) this.drop(run);
    }
    if (this.bytes > this.maxBytes) this.drop(current);
  }

  private drop(run: string): void {
    this.bytes -= this.runBytes.get(run) ?? 0;
    this.runBytes.delete(run);
    this.runs.delete(run);
  }
}

function sizeOf(summary: CheckpointSummary): number {
  let bytes = summary.sketch.byteLength + 200 * summary.tensors.length;
  for (const values of summary.tensorSketches) bytes += values.byteLength;
  return bytes;
}
