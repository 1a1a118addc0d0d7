import { AppError } from '../errors.js';

/** Run ids and steps are checked before they reach storage keys or queries (docs/architecture.md §8). */
export const RUN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const STEP_PATTERN = /^(0|[1-9]\d{0,15})$/;

export function parseRunId(value: string): string {
  if (!RUN_ID_PATTERN.test(value) || value.includes('..')) {
    throw new AppError(
      'invalid_run_id',
      `run id '${value.slice(0, 140)}' is invalid: use 1-128 characters from [A-Za-z0-9._-], starting with a letter or digit, without '..'`,
      { run: value.slice(0, 140) },
    );
  }
  return value;
}

export function parseStep(value: string): number {
  const step = STEP_PATTERN.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(step)) {
    throw new AppError('invalid_step', `step '${value.slice(0, 40)}' is invalid: use a non-negative integer`, {
      step: value.slice(0, 40),
    });
  }
  return step;
}
