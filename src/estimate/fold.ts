import {
  packTotals,
  type Carry,
  type CheckpointNorm,
  type Counters,
  type Snapshot,
  type StepRecord,
  type Totals,
} from './state.js';

/**
 * Folding one step record into the running sums, and the buffer and snapshot rules around it: the
 * per-record rules of the contract in accumulator.ts.
 */

/** Records the reorder buffer may exceed its window by before a commit folds it back down. */
export function commitSlack(window: number): number {
  return Math.floor(window / 4);
}

/** Inserts by step; a record at a step already buffered merges into it, the newer fields winning. */
export function insertSorted(pending: StepRecord[], rec: StepRecord): void {
  let i = pending.length;
  while (i > 0 && pending[i - 1].step > rec.step) i--;
  const prev = pending[i - 1];
  if (prev && prev.step === rec.step) {
    for (const key of Object.keys(rec) as (keyof StepRecord)[]) {
      const v = rec[key];
      if (v !== undefined) prev[key] = v;
    }
  } else pending.splice(i, 0, rec);
}

/** ||Δw|| from the client (own fields first, then carried ones), or null. */
export function clientNorm(rec: StepRecord, carry: Carry): { value: number; lrGrad: boolean } | null {
  const lr = rec.lr ?? carry.lr;
  if (rec.updateNorm !== undefined) return { value: rec.updateNorm, lrGrad: false };
  if (rec.gradNorm !== undefined && lr !== null) return { value: Math.abs(lr) * rec.gradNorm, lrGrad: true };
  if (carry.updateNorm !== null) return { value: carry.updateNorm, lrGrad: false };
  if (carry.gradNorm !== null && lr !== null) return { value: Math.abs(lr) * carry.gradNorm, lrGrad: true };
  return null;
}

/**
 * The per-step norm of the checkpoint interval holding `step` (the first checkpoint at or after it);
 * provisional (the latest known norm, or null) when no checkpoint at or after the step is known yet.
 */
export function checkpointNorm(
  list: readonly CheckpointNorm[],
  step: number,
): { value: number | null; provisional: boolean } {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].step < step) lo = mid + 1;
    else hi = mid;
  }
  if (lo < list.length) return { value: list[lo].perStep, provisional: false };
  return { value: list.length > 0 ? list[list.length - 1].perStep : null, provisional: true };
}

/** The parts of the state a fold changes (the stored ones on commit, copies on a read). */
export interface FoldState {
  carry: Carry;
  totals: Totals;
  counters: Counters;
}

/** Folds one training record (steps strictly increasing). */
export function foldRecord(f: FoldState, rec: StepRecord, checkpointPerStep: number | null): void {
  const { carry, totals: t, counters: c } = f;
  const span = rec.step - (carry.step ?? 0);
  t.steps += span;
  c.records++;
  const lr = rec.lr ?? carry.lr;
  const v = rec.gradVariance ?? carry.gradVariance;
  const m = rec.batchSize ?? carry.batchSize;
  if (rec.lr !== undefined) {
    if (rec.lr <= 0) c.nonPositiveLr++;
    else {
      c.minLr = c.minLr === null ? rec.lr : Math.min(c.minLr, rec.lr);
      c.maxLr = c.maxLr === null ? rec.lr : Math.max(c.maxLr, rec.lr);
    }
  }
  if (rec.batchSize !== undefined) {
    c.minBatchSize = c.minBatchSize === null ? rec.batchSize : Math.min(c.minBatchSize, rec.batchSize);
    c.maxBatchSize = c.maxBatchSize === null ? rec.batchSize : Math.max(c.maxBatchSize, rec.batchSize);
  }

  const client = clientNorm(rec, carry);
  const norm = client ? client.value : checkpointPerStep;
  if (client) client.lrGrad ? c.normLrGrad++ : c.normClient++;
  else if (norm !== null) c.normCheckpoint++;
  if (norm !== null && v !== null) {
    t.bSteps += span;
    t.bSum += span * norm * Math.sqrt(v);
  }
  if (lr !== null && v !== null) {
    t.eSteps += span;
    t.eSum += span * lr * v;
  }
  if (norm !== null) {
    t.soSteps += span;
    t.soSum += span * norm * norm;
  }
  // ||ḡ||² = ||∇F_S||² + Var(ḡ), Var(ḡ) ≈ tr Σ/m: the share of the step that is minibatch noise is
  // tr Σ/(m·||ḡ||²). The expected first-order gap increment of Δw = −P ḡ is tr(P Σ)/n: the client's
  // preconditionedVariance where logged (any diagonal preconditioner, e.g. Adam's η/(√v̂+ε)), else P taken as
  // the scalar ||Δw||/||ḡ|| (exact for SGD, where it is η).
  const g = rec.gradNorm ?? carry.gradNorm;
  const pv = rec.preconditionedVariance ?? carry.preconditionedVariance;
  if (pv !== null) {
    t.fSteps += span;
    t.fSum += span * pv;
  }
  if (norm !== null && v !== null && g !== null && g > 0) {
    if (pv === null) {
      t.fSteps += span;
      t.fSum += span * (norm / g) * v;
    }
    if (m !== null) {
      t.cSteps += span;
      t.cSum += span * norm * Math.sqrt(Math.max(0, 1 - v / (m * g * g))) * Math.sqrt(v);
    }
  }

  if (rec.gapIncrementFresh !== undefined || rec.gapIncrement !== undefined) {
    const w = rec.step - (carry.lastGapStep ?? 0);
    t.gSteps += w;
    if (rec.gapIncrementFresh !== undefined) {
      t.gDirect += w * rec.gapIncrementFresh;
      c.gapFresh++;
    } else if (rec.gapIncrement !== undefined && lr !== null && v !== null && m !== null) {
      // E[<∇F_val − ḡ, −η ḡ>] carries +η·Var(ḡ) = η·tr Σ·(1/m − 1/n) (batch drawn without replacement
      // from n rows, tr Σ the Bessel-corrected per-sample estimate): the self-fit term, subtracted at read.
      t.gRaw += w * rec.gapIncrement;
      t.gSelfFitM += (w * lr * v) / m;
      t.gSelfFitOne += w * lr * v;
      c.gapCorrected++;
    } else if (rec.gapIncrement !== undefined) {
      t.gDirect += w * rec.gapIncrement;
      c.gapUncorrectable++;
    }
    if (rec.gapIncrement !== undefined) t.gUncorrected += w * rec.gapIncrement;
    carry.lastGapStep = rec.step;
  }

  carry.step = rec.step;
  carry.lr = lr;
  carry.gradVariance = v;
  carry.batchSize = m;
  if (rec.updateNorm !== undefined) carry.updateNorm = rec.updateNorm;
  if (rec.gradNorm !== undefined) carry.gradNorm = rec.gradNorm;
  if (rec.trainLoss !== undefined) carry.trainLoss = rec.trainLoss;
  if (pv !== null) carry.preconditionedVariance = pv;
}

/**
 * A snapshot whenever `spacing` steps passed since the last one (training records only, so evaluation
 * points, whenever they arrive, do not change the grid). Past `max` snapshots every other one is dropped
 * (the latest kept) and the spacing doubles.
 */
export function snapshotRule(
  snapshots: Snapshot[],
  rule: { spacing: number; last: number | null },
  max: number,
  step: number,
  totals: Totals,
): void {
  if (rule.last !== null && step - rule.last < rule.spacing) return;
  snapshots.push({ step, totals: packTotals(totals) });
  rule.last = step;
  if (snapshots.length > max) {
    const last = snapshots.length - 1;
    const kept = snapshots.filter((_, i) => i % 2 === 0 || i === last);
    snapshots.splice(0, snapshots.length, ...kept);
    rule.spacing *= 2;
  }
}
