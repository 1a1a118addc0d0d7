/**
 * The calibration_scales table: each calibrated run's own scale, by calibration group, and the queries
 * behind the Catalog's sibling-calibration methods. Each takes the database and is wrapped in `guard`.
 */
import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

/** Records (or replaces) the run's own scale under `group`. */
export async function putCalibrationScale(
  db: Kysely<Database>,
  run: string,
  entry: { group: string; scale: number; points: number },
): Promise<void> {
  const now = new Date().toISOString();
  const values = { group_name: entry.group, scale: entry.scale, points: entry.points, updated_at: now };
  await db
    .insertInto('calibration_scales')
    .values({ run_id: run, ...values })
    .onConflict((oc) => oc.column('run_id').doUpdateSet(values))
    .execute();
}

/** The scales of the group's runs other than `except`, at most `limit`, most recently updated first. */
export async function siblingScales(
  db: Kysely<Database>,
  group: string,
  except: string,
  limit: number,
): Promise<number[]> {
  const rows = await db
    .selectFrom('calibration_scales')
    .select('scale')
    .where('group_name', '=', group)
    .where('run_id', '!=', except)
    .orderBy('updated_at', 'desc')
    .limit(limit)
    .execute();
  return rows.map((r) => r.scale);
}
