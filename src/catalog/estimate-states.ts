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

/** Stores the run's state, replacing any earlier one. */
export async function putEstimateState(db: Kysely<Database>, run: string, state: unknown): Promise<void> {
  const text = JSON.stringify(state);
  const now = new Date().toISOString();
  await db
    .insertInto('estimate_states')
    .values({ run_id: run, state: text, updated_at: now })
    .onConflict((oc) => oc.column('run_id').doUpdateSet({ state: text, updated_at: now }))
    .execute();
}
