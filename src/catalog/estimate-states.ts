/**
 * The estimate_states table: one opaque JSON state per run, and the queries behind the Catalog's estimate
 * state methods. Each takes the database and is wrapped in `guard` by the catalog class.
 */
import type { Kysely } from 'kysely';
import { num } from './rows.js';
import type { Database } from './schema.js';

/** The run's stored state, parsed, and its version; or null. */
export async function getEstimateState(
  db: Kysely<Database>,
  run: string,
): Promise<{ state: unknown; version: number } | null> {
  const row = await db
    .selectFrom('estimate_states')
    .select(['state', 'version'])
    .where('run_id', '=', run)
    .executeTakeFirst();
  return row ? { state: JSON.parse(row.state) as unknown, version: num(row.version) } : null;
}

export async function estimateStateVersion(db: Kysely<Database>, run: string): Promise<number | null> {
  const row = await db.selectFrom('estimate_states').select('version').where('run_id', '=', run).executeTakeFirst();
  return row ? num(row.version) : null;
}

/**
 * Stores the run's state, replacing any earlier one, and returns its new version (one more than the last);
 * with `folded`, records in the same transaction that this idempotent batch is now part of the state (so a
 * retry neither stores nor folds it again).
 */
export async function putEstimateState(
  db: Kysely<Database>,
  run: string,
  state: unknown,
  folded?: { key: string; points: number },
): Promise<number> {
  const text = JSON.stringify(state);
  const now = new Date().toISOString();
  return db.transaction().execute(async (trx) => {
    await trx
      .insertInto('estimate_states')
      .values({ run_id: run, state: text, updated_at: now, version: 1 })
      .onConflict((oc) =>
        oc.column('run_id').doUpdateSet((eb) => ({
          state: text,
          updated_at: now,
          version: eb('estimate_states.version', '+', 1),
        })),
      )
      .execute();
    if (folded) {
      await trx
        .insertInto('metric_batches')
        .values({ run_id: run, batch_key: folded.key, points: folded.points, created_at: now })
        .onConflict((oc) => oc.columns(['run_id', 'batch_key']).doNothing())
        .execute();
    }
    const row = await trx
      .selectFrom('estimate_states')
      .select('version')
      .where('run_id', '=', run)
      .executeTakeFirstOrThrow();
    return num(row.version);
  });
}
