import { TOTAL_KEYS, unpackTotals, type Snapshot, type Totals } from './state.js';

/** How many snapshots (sorted by step) are at or before `step`. */
export function countAtOrBefore(snapshots: readonly Snapshot[], step: number): number {
  let lo = 0;
  let hi = snapshots.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (snapshots[mid].step <= step) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Totals at `step` by linear interpolation between snapshots (zero at step 0, flat past the last). */
export function totalsAt(snapshots: readonly Snapshot[], step: number): Totals {
  const lo = countAtOrBefore(snapshots, step);
  const before = snapshots[lo - 1];
  const after = snapshots[lo];
  if (!after) return before ? unpackTotals(before.totals) : unpackTotals([]);
  const b0 = before ? before.totals : [];
  const s0 = before ? before.step : 0;
  const f = after.step === s0 ? 1 : (step - s0) / (after.step - s0);
  return unpackTotals(after.totals.map((v, i) => (b0[i] ?? 0) + f * (v - (b0[i] ?? 0))));
}

/** Totals at the last snapshot at or before `step` (the calibration sums as they stood then). */
export function totalsAtOrBefore(snapshots: readonly Snapshot[], step: number): Totals {
  const lo = countAtOrBefore(snapshots, step);
  return unpackTotals(snapshots[lo - 1]?.totals ?? []);
}

/** a − b, key by key: the sums accumulated between two steps. */
export function diff(a: Totals, b: Totals): Totals {
  const out = { ...a };
  for (const k of TOTAL_KEYS) out[k] = a[k] - b[k];
  return out;
}
