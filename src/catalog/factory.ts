import { mkdirSync } from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import type { Catalog } from './catalog.js';
import { KyselyCatalog } from './kysely-catalog.js';
import { ProcessLocks } from './locks.js';
import { runMigrations } from './migrations.js';
import type { Database } from './schema.js';

/** Where a catalog URL points. */
export type CatalogTarget = { kind: 'sqlite'; file: string } | { kind: 'postgres'; url: string };

const SUPPORTED = "'sqlite:///abs/file.db', 'sqlite::memory:', or a plain file path";
const MEMORY = ':memory:';

/**
 * `sqlite://<path>` (so `sqlite:///abs/file.db`), `sqlite::memory:` / `sqlite://:memory:`, `postgres://` /
 * `postgresql://`, or a plain file path (no scheme). Relative SQLite paths resolve against the cwd.
 */
export function parseCatalogUrl(url: string): CatalogTarget {
  const trimmed = url.trim();
  if (trimmed === '') throw new Error(`empty catalog URL; supported: ${SUPPORTED}`);
  if (trimmed === 'sqlite::memory:' || trimmed === `sqlite://${MEMORY}`) return { kind: 'sqlite', file: MEMORY };
  if (trimmed.startsWith('sqlite://')) {
    const file = trimmed.slice('sqlite://'.length);
    if (file === '') throw new Error(`catalog URL '${url}' has no file path; supported: ${SUPPORTED}`);
    return { kind: 'sqlite', file: path.resolve(file) };
  }
  if (/^postgres(ql)?:\/\//i.test(trimmed)) return { kind: 'postgres', url: trimmed };
  // A scheme is two or more letters then ':' (a one-letter prefix would be a Windows drive).
  const scheme = /^([a-z][a-z0-9+.-]+):/i.exec(trimmed);
  if (scheme) throw new Error(`unsupported catalog URL scheme '${scheme[1]}:'; supported: ${SUPPORTED}`);
  return { kind: 'sqlite', file: path.resolve(trimmed) };
}

/** Opens the catalog a URL names and brings its schema up to date. */
export async function openCatalog(url: string): Promise<Catalog> {
  const target = parseCatalogUrl(url);
  if (target.kind === 'postgres') {
    throw new Error(`the Postgres catalog dialect is not built yet; use ${SUPPORTED}`);
  }
  const file = target.file;
  return oneAtATime(file, async () => {
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: openSqlite(file) }) });
    try {
      await runMigrations(db, 'sqlite');
    } catch (err) {
      await db.destroy();
      throw err;
    }
    return new KyselyCatalog(db, new ProcessLocks());
  });
}

const opening = new Map<string, Promise<unknown>>();

/**
 * Opens of one file within this process wait for each other. Migrations hold SQLite's write lock across
 * awaits, and better-sqlite3 waits for a lock synchronously (busy_timeout), so a second connection of the
 * same process would block the event loop the first one needs to finish, then fail. Other processes are
 * kept apart by the lock itself.
 */
async function oneAtATime<T>(file: string, open: () => Promise<T>): Promise<T> {
  if (file === MEMORY) return open();
  const previous = opening.get(file) ?? Promise.resolve();
  const mine = previous.catch(() => undefined).then(open);
  opening.set(file, mine);
  try {
    return await mine;
  } finally {
    if (opening.get(file) === mine) opening.delete(file);
  }
}

function openSqlite(file: string): BetterSqlite3.Database {
  if (file !== MEMORY) mkdirSync(path.dirname(file), { recursive: true });
  let sqlite: BetterSqlite3.Database | undefined;
  try {
    sqlite = new BetterSqlite3(file);
    // WAL lets readers run beside the single writer; NORMAL is durable across process crashes in WAL mode
    // (a power loss may drop the last transactions, never corrupt). An in-memory database stays 'memory'.
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = ON');
    return sqlite;
  } catch (err) {
    sqlite?.close();
    throw new Error(`cannot open SQLite catalog '${file}': ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
}
