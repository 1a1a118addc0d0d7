import { type ChangeKind, type ChangeScore, EVENT_Z } from '../trajectory/change-detection.js';
import type { Selection } from './selection.js';
import type { RetentionCandidate } from './types.js';
import { budgetText, formatBytes, times } from './wording.js';

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

  // A stall scores 0 and is a near-duplicate of its neighbour: never a `change`, whatever the threshold.
  const changed = available
    .filter((i) => scores[i].kind !== 'stall' && scores[i].changeScore >= policy.change.zThreshold)
    .sort((a, b) => scores[b].changeScore - scores[a].changeScore || a - b)
    .slice(0, policy.change.max);
  for (const i of changed) {
    const score = scores[i];
    const why = `${KIND_WORDS[score.kind ?? 'unusual']} at step ${checkpoints[i].step}: high-change score ${score.changeScore.toFixed(1)} ≥ ${policy.change.zThreshold} (${describeChange(checkpoints, i, score)})`;
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

const KIND_WORDS: Record<ChangeKind | 'unusual', string> = {
  restart: 'learning-rate restart or schedule change',
  divergence: 'divergence',
  spike: 'spike',
  jump: 'jump',
  reversal: 'reversal',
  stall: 'stall',
  unusual: 'unusual update',
};

const LASTED: Record<ChangeKind | 'unusual', string> = {
  restart: ' and stayed up',
  divergence: ' and stayed up',
  spike: ' for this checkpoint only',
  jump: ', the newest checkpoint: whether it lasts, the next one will tell',
  reversal: '',
  stall: '',
  unusual: '',
};

/** What made checkpoint t's change score high, in numbers. */
function describeChange(checkpoints: readonly RetentionCandidate[], t: number, score: ChangeScore): string {
  const { update, loss, reversal } = score.components;
  const lasted = LASTED[score.kind ?? 'unusual'];
  const rose = (what: string, ratio: number | null, z: number) =>
    `${what} rose${ratio === null ? ' above' : ` to ${times(ratio)}`} its recent trend (robust z ${z.toFixed(1)})${lasted}`;
  const parts: string[] = [];
  if (update > 0 && (update >= loss || update >= EVENT_Z))
    parts.push(rose('the per-step update norm', score.trendRatio.update, update));
  const lossCounts = loss > 0 && (loss > update || loss >= EVENT_Z);
  if (lossCounts) {
    const l = checkpoints[t].trainLoss;
    parts.push(rose(`the training loss${l === null ? '' : ` (${l.toPrecision(3)})`}`, score.trendRatio.loss, loss));
  } else if (score.kind === 'divergence') parts.push('the training loss was rising above its trend as well');
  if (reversal > 0)
    parts.push(
      `the update turned back on the previous one (cosine ${checkpoints[t].indicators.cosinePrev?.toFixed(2)})`,
    );
  return parts.join('; ') || 'an unusual update';
}
