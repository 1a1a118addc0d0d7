/**
 * The upload_sessions table: resumable (tus) uploads in progress (docs/architecture.md §3). The offset here
 * is what the last PATCH left; the process that holds the live stream knows a fresher one. Each query takes
 * the database and is wrapped in `guard` by the catalog class.
 */
import type { Kysely, Selectable } from 'kysely';
import type { NewUploadSession, UploadSessionRecord } from './catalog.js';
import { num } from './rows.js';
import type { Database, UploadSessionsTable } from './schema.js';

export async function createUploadSession(db: Kysely<Database>, session: NewUploadSession): Promise<void> {
  await db
    .insertInto('upload_sessions')
    .values({
      id: session.id,
      run_id: session.run,
      step: session.step,
      length: session.length,
      upload_offset: 0,
      metadata: JSON.stringify(session.metadata),
      expires_at: session.expiresAt,
      created_at: session.createdAt,
    })
    .execute();
}

export async function getUploadSession(db: Kysely<Database>, id: string): Promise<UploadSessionRecord | null> {
  const row = await db.selectFrom('upload_sessions').selectAll().where('id', '=', id).executeTakeFirst();
  return row ? toRecord(row) : null;
}

/** Sets the offset and expiry; with `expectOffset`, only when the stored offset is that. True when a row changed. */
export async function updateUploadSession(
  db: Kysely<Database>,
  id: string,
  change: { offset: number; expiresAt: string; expectOffset?: number },
): Promise<boolean> {
  let query = db
    .updateTable('upload_sessions')
    .set({ upload_offset: change.offset, expires_at: change.expiresAt })
    .where('id', '=', id);
  if (change.expectOffset !== undefined) query = query.where('upload_offset', '=', change.expectOffset);
  const res = await query.executeTakeFirst();
  return res.numUpdatedRows > 0n;
}

export async function deleteUploadSession(db: Kysely<Database>, id: string): Promise<boolean> {
  const res = await db.deleteFrom('upload_sessions').where('id', '=', id).executeTakeFirst();
  return res.numDeletedRows > 0n;
}

/** Deletes sessions that expired before `now` (ISO-8601), at most `limit`; returns their ids. */
export async function expireUploadSessions(db: Kysely<Database>, now: string, limit: number): Promise<string[]> {
  const rows = await db
    .selectFrom('upload_sessions')
    .select('id')
    .where('expires_at', '<', now)
    .orderBy('expires_at')
    .limit(limit)
    .execute();
  const ids = rows.map((r) => r.id);
  if (ids.length > 0) await db.deleteFrom('upload_sessions').where('id', 'in', ids).execute();
  return ids;
}

function toRecord(row: Selectable<UploadSessionsTable>): UploadSessionRecord {
  return {
    id: row.id,
    run: row.run_id,
    step: num(row.step),
    length: num(row.length),
    offset: num(row.upload_offset),
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    expiresAt: row.expires_at,
    createdAt: row.created_at,
  };
}
