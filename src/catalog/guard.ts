import { errors, isAppError } from '../errors.js';

/** Runs `fn`, turning any non-AppError (driver, constraint, corrupt JSON) into `catalog_unavailable`. */
export async function guard<T>(operation: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isAppError(err)) throw err;
    throw errors.catalogUnavailable(`catalog ${operation} failed`, err);
  }
}
