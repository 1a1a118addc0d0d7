/**
 * The policies table: named retention policies stored as given (JSON text), and the queries behind the
 * Catalog's policy methods. Each takes the database and is wrapped in `guard` by the catalog class.
 */
import type { Kysely, Selectable } from 'kysely';
import type { PolicyRecord } from './catalog.js';
import { inserted } from './rows.js';
import type { Database, PoliciesTable } from './schema.js';

/** Creates or replaces a named policy. */
export function putPolicy(
  db: Kysely<Database>,
  name: string,
  policy: Record<string, unknown>,
): Promise<{ created: boolean; record: PolicyRecord }> {
  return db.transaction().execute(async (trx) => {
    const now = new Date().toISOString();
    const text = JSON.stringify(policy);
    const res = await trx
      .insertInto('policies')
      .values({ name, policy: text, created_at: now, updated_at: now })
      .onConflict((oc) => oc.column('name').doNothing())
      .executeTakeFirst();
    const created = inserted(res.numInsertedOrUpdatedRows);
    if (!created)
      await trx.updateTable('policies').set({ policy: text, updated_at: now }).where('name', '=', name).execute();
    const row = await trx.selectFrom('policies').selectAll().where('name', '=', name).executeTakeFirstOrThrow();
    return { created, record: toPolicyRecord(row) };
  });
}

export async function getPolicy(db: Kysely<Database>, name: string): Promise<PolicyRecord | null> {
  const row = await db.selectFrom('policies').selectAll().where('name', '=', name).executeTakeFirst();
  return row ? toPolicyRecord(row) : null;
}

/** All policies, ordered by name. */
export async function listPolicies(db: Kysely<Database>): Promise<PolicyRecord[]> {
  return (await db.selectFrom('policies').selectAll().orderBy('name').execute()).map(toPolicyRecord);
}

function toPolicyRecord(row: Selectable<PoliciesTable>): PolicyRecord {
  return {
    name: row.name,
    policy: JSON.parse(row.policy) as Record<string, unknown>,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
