import type { z } from 'zod';
import { AppError } from '../errors.js';

/** Parses `value` with `schema`, or throws `invalid_request` listing every problem with its path. */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.slice(0, 20).map((i) => ({ path: i.path.join('.'), message: i.message }));
  const summary = problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)).join('; ');
  throw new AppError('invalid_request', `invalid ${what}: ${summary}`, { problems });
}
