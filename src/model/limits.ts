import type { RunInput } from './records.js';

/**
 * The input limits on runs and metric batches (each set by an environment variable, see `config.ts`), as
 * pure checks: each returns the violation, or null, and the HTTP layer raises it as `limit_exceeded` (422).
 */
export interface InputLimits {
  /** Most tags a run may have (TRAJGATE_MAX_TAGS). */
  maxTags: number;
  /** Most `extra` keys in one metric point (TRAJGATE_MAX_EXTRA_KEYS). */
  maxExtraKeys: number;
  /** Most points in one metric batch (TRAJGATE_MAX_POINTS_PER_BATCH). */
  maxPointsPerBatch: number;
}

/** A refused input: which limit, its maximum and the value seen; `message` names the limit's variable. */
export interface LimitViolation {
  limit: string;
  max: number;
  value: number;
  /** The environment variable that sets the limit. */
  setting: string;
  message: string;
  /** For a limit on one metric point: its index in the batch. */
  point?: number;
}

/** Tags per run: a run's update replaces its tags, so the update's own tags are what the run is left with. */
export function checkRunInput(input: RunInput, limits: Pick<InputLimits, 'maxTags'>): LimitViolation | null {
  if (input.tags === undefined) return null;
  const value = Object.keys(input.tags).length;
  if (value <= limits.maxTags) return null;
  return violation('tags per run', limits.maxTags, value, 'TRAJGATE_MAX_TAGS', `a run with ${value} tags`);
}

/** Points per batch (for a count known before the points are read). */
export function checkBatchSize(count: number, limits: Pick<InputLimits, 'maxPointsPerBatch'>): LimitViolation | null {
  if (count <= limits.maxPointsPerBatch) return null;
  const max = limits.maxPointsPerBatch;
  return violation('points per batch', max, count, 'TRAJGATE_MAX_POINTS_PER_BATCH', `a batch of ${count} points`);
}

/** `extra` keys of one metric point as received (before it is validated), `index` its place in the batch. */
export function checkExtraKeys(
  point: unknown,
  index: number,
  limits: Pick<InputLimits, 'maxExtraKeys'>,
): LimitViolation | null {
  if (typeof point !== 'object' || point === null || !('extra' in point)) return null;
  const { extra } = point;
  if (typeof extra !== 'object' || extra === null) return null;
  let value = 0;
  for (const key in extra) if (Object.hasOwn(extra, key)) value++;
  return extraKeysViolation(value, index, limits);
}

/** The violation for a point `index` with `value` extra keys, or null within the limit. */
export function extraKeysViolation(
  value: number,
  index: number,
  limits: Pick<InputLimits, 'maxExtraKeys'>,
): LimitViolation | null {
  if (value <= limits.maxExtraKeys) return null;
  const max = limits.maxExtraKeys;
  const what = `metric point ${index} with ${value} extra keys`;
  return { ...violation('extra keys per metric point', max, value, 'TRAJGATE_MAX_EXTRA_KEYS', what), point: index };
}

/**
 * The most bytes one encoded metric point may take: its fields and `extra` keys (at most 128 characters
 * each, escaped or multi-byte at most 6 bytes a character) with generous room; larger points are refused
 * before they are decoded, so no single point costs a long synchronous parse.
 */
export function maxPointBytes(limits: Pick<InputLimits, 'maxExtraKeys'>): number {
  return 4096 + 1024 * limits.maxExtraKeys;
}

/** The violation for a point `index` encoded in `value` bytes, or null within the limit. */
export function pointBytesViolation(
  value: number,
  index: number,
  limits: Pick<InputLimits, 'maxExtraKeys'>,
): LimitViolation | null {
  const max = maxPointBytes(limits);
  if (value <= max) return null;
  const message =
    `metric point ${index} takes ${value} bytes; the limit is ${max} bytes per metric point ` +
    `(4 KiB + 1 KiB per extra key allowed by TRAJGATE_MAX_EXTRA_KEYS)`;
  return { limit: 'bytes per metric point', max, value, setting: 'TRAJGATE_MAX_EXTRA_KEYS', message, point: index };
}

function violation(limit: string, max: number, value: number, setting: string, what: string): LimitViolation {
  return { limit, max, value, setting, message: `${what} exceeds the limit of ${max} ${limit} (${setting})` };
}
