/**
 * The tokens and audit tables, and the queries behind the Catalog's access-control methods. Each takes the
 * database (or a transaction) and is wrapped in `guard` by the catalog class.
 */
import { type Kysely, type RawBuilder, type Selectable, type Transaction, sql } from 'kysely';
import type { AuditAction, AuditRecord, NewAuditEntry, Role, TokenRecord } from '../model/access.js';
import type { AuditQuery, NewToken } from './catalog.js';
import { num, numOrNull } from './rows.js';
import type { AuditTable, Database, TokensTable } from './schema.js';

export async function insertToken(db: Kysely<Database>, token: NewToken): Promise<TokenRecord> {
  const row = {
    id: token.id,
    name: token.name,
    role: token.role,
    runs: JSON.stringify(token.runs),
    secret_hash: token.secretHash,
    expires_at: token.expiresAt,
    created_at: token.createdAt,
    created_by: token.createdBy,
    revoked_at: null,
  };
  await db.transaction().execute(async (trx) => {
    await trx.insertInto('tokens').values(row).execute();
    await appendAudit(trx, [
      {
        actor: token.createdBy,
        action: 'token.create',
        details: { id: token.id, name: token.name, role: token.role, runs: token.runs, expiresAt: token.expiresAt },
      },
    ]);
  });
  return toToken(row);
}

export async function tokenBySecretHash(
  db: Kysely<Database>,
  hash: string,
): Promise<(TokenRecord & { secretHash: string }) | null> {
  const row = await db.selectFrom('tokens').selectAll().where('secret_hash', '=', hash).executeTakeFirst();
  return row ? { ...toToken(row), secretHash: row.secret_hash } : null;
}

export async function listTokens(db: Kysely<Database>): Promise<TokenRecord[]> {
  return (await db.selectFrom('tokens').selectAll().orderBy('created_at').orderBy('id').execute()).map(toToken);
}

/** Marks the token revoked (once); null when there is no such token. */
export function revokeToken(db: Kysely<Database>, id: string, actor: string): Promise<TokenRecord | null> {
  return db.transaction().execute(async (trx) => {
    const row = await trx.selectFrom('tokens').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) return null;
    if (row.revoked_at !== null) return toToken(row);
    const revokedAt = new Date().toISOString();
    await trx.updateTable('tokens').set({ revoked_at: revokedAt }).where('id', '=', id).execute();
    await appendAudit(trx, [{ actor, action: 'token.revoke', details: { id, name: row.name } }]);
    return toToken({ ...row, revoked_at: revokedAt });
  });
}

/**
 * Rows per audit INSERT: rows x 6 columns stay far under the bound-parameter limits (SQLite 32766, Postgres
 * 65535), however many checkpoints one retention decision discards.
 */
const AUDIT_CHUNK_ROWS = 1000;

/** Appends entries in order; more than one INSERT's worth go in one transaction (the caller's, if it is one). */
export async function appendAudit(
  db: Kysely<Database> | Transaction<Database>,
  entries: readonly NewAuditEntry[],
): Promise<void> {
  if (entries.length === 0) return;
  if (entries.length > AUDIT_CHUNK_ROWS && !db.isTransaction) {
    return db.transaction().execute((trx) => appendAudit(trx, entries));
  }
  const at = new Date().toISOString();
  for (let i = 0; i < entries.length; i += AUDIT_CHUNK_ROWS) {
    await db
      .insertInto('audit')
      .values(
        entries.slice(i, i + AUDIT_CHUNK_ROWS).map((e) => ({
          at,
          actor: e.actor,
          action: e.action,
          run_id: e.run ?? null,
          step: e.step ?? null,
          details: JSON.stringify(e.details ?? {}),
        })),
      )
      .execute();
  }
}

/** Entries in id order, filtered by run (or runs within a scope) and time, after the id `after`. */
export async function listAudit(db: Kysely<Database>, query: AuditQuery): Promise<AuditRecord[]> {
  let q = db.selectFrom('audit').selectAll().orderBy('id').limit(query.limit);
  if (query.after !== undefined) q = q.where('id', '>', query.after);
  if (query.since !== undefined) q = q.where('at', '>=', query.since);
  if (query.run !== undefined) q = q.where('run_id', '=', query.run);
  if (query.scope) q = q.where('run_id', 'is not', null).where(withinScope('run_id', query.scope));
  return (await q.execute()).map(toAudit);
}

/**
 * `column` within a run scope: an exact id, or a prefix compared with substr (not LIKE, whose `_` and `%`
 * are also run id characters). Portable SQL.
 */
export function withinScope(column: 'id' | 'run_id', scope: readonly string[]): RawBuilder<boolean> {
  if (scope.includes('*')) return sql<boolean>`1 = 1`;
  const parts = scope.map((p) =>
    p.endsWith('*')
      ? sql`substr(${sql.ref(column)}, 1, ${p.length - 1}) = ${p.slice(0, -1)}`
      : sql`${sql.ref(column)} = ${p}`,
  );
  return sql<boolean>`(${sql.join(parts, sql` or `)})`;
}

function toToken(row: Selectable<TokensTable>): TokenRecord {
  return {
    id: row.id,
    name: row.name,
    role: row.role as Role,
    runs: JSON.parse(row.runs) as string[],
    expiresAt: row.expires_at,
    createdAt: row.created_at,
    createdBy: row.created_by,
    revokedAt: row.revoked_at,
  };
}

function toAudit(row: Selectable<AuditTable>): AuditRecord {
  return {
    id: num(row.id),
    at: row.at,
    actor: row.actor,
    action: row.action as AuditAction,
    run: row.run_id,
    step: numOrNull(row.step),
    details: JSON.parse(row.details) as Record<string, unknown>,
  };
}
