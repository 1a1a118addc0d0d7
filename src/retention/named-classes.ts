import type { ChangeScore } from '../trajectory/change-detection.js';
import type { Selection } from './selection.js';
import type { RetentionCandidate } from './types.js';
import { budgetText, formatBytes, times } from './wording.js';

/** The trailing window change-detection.ts scores against (its default). */
const CHANGE_WINDOW = 8;

/**
 * The classes that name their checkpoints outright, admitted in priority order: `latest` and `pinned`
 * (always, budget or not), then `change` (best score first), `best`, `every` (newest first) while they fit
 * the budget; a checkpoint that does not fit gets a refusal reason. Checkpoints whose bytes are gone are
 * skipped.
 */
export function admitNamedClasses(state: Selection, scores: readonly ChangeScore[]): void {
  const { checkpoints, policy } = state;
  const available: number[] = [];
  for (let i = 0; i < checkpoints.length; i++) if (state.available(i)) available.push(i);

  const newest = available.slice(Math.max(0, available.length - policy.latest)).reverse();
  newest.forEach((i, rank) => {
    state.add(
      i,
      'latest',
      rank === 0
        ? 'newest checkpoint, kept for resuming'
        : `one of the ${policy.latest} newest checkpoints, kept for resuming`,
      true,
    );
  });
  for (const i of available)
    if (checkpoints[i].pinned) state.add(i, 'pinned', 'pinned by a client or an operator; never evicted', true);
  if (state.overBudget()) {
    const note = `kept over the budget of ${budgetText(policy.budget)}: the latest and pinned checkpoints alone take ${state.count} checkpoints (${formatBytes(state.bytesKept)}), and neither class is ever evicted`;
    for (const i of available) if (state.coverage.isKept(i)) state.reasons[i]!.push(note);
  }

  const budget = budgetText(policy.budget);
  const refuse = (i: number, why: string) => {
    state.refusals[i] ??=
      `${why}, but the budget of ${budget} was taken by checkpoints of higher priority (latest, pinned, higher change scores)`;
  };

  const changed = available
    .filter((i) => scores[i].changeScore >= policy.change.zThreshold)
    .sort((a, b) => scores[b].changeScore - scores[a].changeScore || a - b)
    .slice(0, policy.change.max);
  for (const i of changed) {
    const why = `high-change score ${scores[i].changeScore.toFixed(1)} ≥ ${policy.change.zThreshold} (${describeChange(checkpoints, i, scores[i])})`;
    if (!state.add(i, 'change', why)) refuse(i, why);
  }

  const best = policy.best;
  if (best && best.count > 0) {
    const sign = best.mode === 'min' ? 1 : -1;
    const ranked = topBy(available, best.count, (i) => {
      const v = checkpoints[i].metric[best.metric];
      return Number.isFinite(v) ? sign * v : null;
    });
    ranked.forEach((i, rank) => {
      const value = checkpoints[i].metric[best.metric];
      const why = `${rank === 0 ? '' : `${ordinal(rank + 1)} `}${best.mode === 'min' ? 'lowest' : 'highest'} ${best.metric} of the run: ${value.toPrecision(4)}`;
      if (!state.add(i, 'best', why)) refuse(i, why);
    });
  }

  if (policy.every !== null) {
    const every = policy.every;
    for (let r = available.length - 1; r >= 0; r--) {
      const i = available[r];
      if (checkpoints[i].step % every !== 0) continue;
      const why = `on the every-${every}-steps grid`;
      if (!state.add(i, 'every', why)) refuse(i, why);
    }
  }
}

/**
 * The `count` indices with the least keys, ascending by key then index (null keys left out): O(n · count),
 * cheaper than sorting a long run for the usual count of 1.
 */
function topBy(indices: readonly number[], count: number, key: (i: number) => number | null): number[] {
  const top: { i: number; key: number }[] = [];
  if (count <= 0) return [];
  for (const i of indices) {
    const k = key(i);
    if (k === null) continue;
    if (top.length === count && k >= top[top.length - 1].key) continue;
    let at = top.length;
    while (at > 0 && top[at - 1].key > k) at--;
    top.splice(at, 0, { i, key: k });
    if (top.length > count) top.pop();
  }
  return top.map((t) => t.i);
}

function ordinal(k: number): string {
  const suffix = k % 100 >= 11 && k % 100 <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][k % 10] ?? 'th');
  return `${k}${suffix}`;
}

/** What made checkpoint t's change score high, in numbers. */
function describeChange(checkpoints: readonly RetentionCandidate[], t: number, score: ChangeScore): string {
  const { update, loss, reversal } = score.components;
  const parts: string[] = [];
  const u = checkpoints[t].indicators.updateNormPerStep;
  const uPrev = t > 0 ? checkpoints[t - 1].indicators.updateNormPerStep : null;
  if (update > 0 && update >= loss) {
    const ratio =
      u !== null && uPrev !== null && uPrev > 0 ? `${times(u / uPrev)} over the previous checkpoint's, ` : '';
    parts.push(
      `per-step update norm jumped ${ratio}robust z ${update.toFixed(1)} against the previous ${CHANGE_WINDOW} checkpoints`,
    );
  }
  if (loss > 0 && loss > update) {
    const l = checkpoints[t].trainLoss;
    const lPrev = t > 0 ? checkpoints[t - 1].trainLoss : null;
    const ratio =
      l !== null && lPrev !== null && lPrev > 0
        ? ` from ${lPrev.toPrecision(3)} to ${l.toPrecision(3)} (${times(l / lPrev)})`
        : '';
    parts.push(
      `training loss jumped${ratio}, robust z ${loss.toFixed(1)} against the previous ${CHANGE_WINDOW} checkpoints`,
    );
  }
  if (reversal > 0)
    parts.push(
      `the update turned back on the previous one (cosine ${checkpoints[t].indicators.cosinePrev?.toFixed(2)})`,
    );
  return parts.join('; ') || 'an unusual update';
}
