import type { Policy } from '../model/policy.js';

/** Shared wording of retention reasons. */

/** A fraction as a percentage with two significant digits: 0.0081 → "0.81%". */
export function percent(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  if (x === 0) return '0%';
  return `${(x * 100).toPrecision(2)}%`;
}

export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toPrecision(3)} ${units[unit]}`;
}

/** "12 checkpoints", "1.86 GiB", "12 checkpoints and 1.86 GiB". */
export function budgetText(budget: Policy['budget']): string {
  const parts: string[] = [];
  if (budget.maxCheckpoints !== null)
    parts.push(`${budget.maxCheckpoints} checkpoint${budget.maxCheckpoints === 1 ? '' : 's'}`);
  if (budget.maxBytes !== null) parts.push(formatBytes(budget.maxBytes));
  return parts.join(' and ');
}

export function stepRange(first: number, last: number): string {
  return first === last ? `step ${first}` : `steps ${first}–${last}`;
}

/** A ratio as "4.8×", "13×", "1100×". */
export function times(ratio: number): string {
  return `${ratio >= 10 ? ratio.toFixed(0) : ratio.toPrecision(2)}×`;
}
