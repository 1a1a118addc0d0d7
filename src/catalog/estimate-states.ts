/**
 * The estimate_states table: one opaque JSON state per run, and the queries behind the Catalog's estimate
 * state methods. Each takes the database and is wrapped in `guard` by the catalog class.
 */
import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

/** The run's stored state, parsed, or null. */
export async function getEstimateState(db: Kysely<Database>, run: string): Promise<unknown> {
  const row = await db.selectFrom('estimate_states').select('state').where('run_id', '=', run).executeTakeFirst();
  return row ? (JSON.parse(row.state) as unknown) : null;
}

/**
 * Stores the run's state, replacing any earlier one; with `folded`, records in the same transaction that
 * this idempotent batch is now part of the state (so a retry neither stores nor folds it again).
 */
export async function putEstimateState(
  db: Kysely<Database>,
  run: string,
  state: unknown,
  folded?: { key: string; points: number },
): Promise<void> {
  const text = JSON.stringify(state);
  const now = new Date().toISOString();
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('estimate_states')
      .values({ run_id: run, state: text, updated_at: now })
      .onConflict((oc) => oc.column('run_id').doUpdateSet({ state: text, updated_at: now }))
      .execute();
    if (folded) {
      await trx
        .insertInto('metric_batches')
        .values({ run_id: run, batch_key: folded.key, points: folded.points, created_at: now })
        .onConflict((oc) => oc.columns(['run_id', 'batch_key']).doNothing())
        .execute();
    }
  });
}
