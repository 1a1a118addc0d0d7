import { mkdirSync } from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import { AdvisoryLocks } from './advisory-locks.js';
import type { Catalog } from './catalog.js';
import { KyselyCatalog } from './kysely-catalog.js';
import { ProcessLocks } from './locks.js';
import { runMigrations } from './migrations.js';
import type { Database } from './schema.js';

/** Where a catalog URL points. */
export type CatalogTarget = { kind: 'sqlite'; file: string } | { kind: 'postgres'; url: string };

const SUPPORTED =
  "'sqlite:///abs/file.db', 'sqlite::memory:', a plain file path, or 'postgres://user:password@host:5432/database'";
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

/**
 * Opens the catalog a URL names and brings its schema up to date. A Postgres URL takes these optional query
 * parameters besides the driver's own (`sslmode`, `application_name`, ...):
 *
 * - `pool_max` (default 10): connections for queries;
 * - `lock_pool_max` (default 10): connections for catalog locks (`exclusive`/`tryExclusive`), a separate
 *   pool: each key held by this process occupies one for as long as its work runs;
 * - `connect_timeout` (seconds, default 10; 0 waits forever): how long to wait for a connection, new or
 *   from a full pool, before the operation fails with catalog_unavailable.
 *
 * Throws, naming the database (password redacted), when it cannot be reached or migrated.
 */
export async function openCatalog(url: string): Promise<Catalog> {
  const target = parseCatalogUrl(url);
  if (target.kind === 'postgres') return openPostgres(parsePostgresUrl(target.url));
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

/** A Postgres catalog URL, read: what the driver gets, what messages show, and the pools' settings. */
export interface PostgresTarget {
  /** The URL without trajgate's own query parameters. */
  connectionString: string;
  /** scheme://user:***@host:port/database, for messages. */
  display: string;
  poolMax: number;
  lockPoolMax: number;
  /** 0: no limit. */
  connectTimeoutMs: number;
}

const POSTGRES_DEFAULTS = { pool_max: 10, lock_pool_max: 10, connect_timeout: 10 };

export function parsePostgresUrl(url: string): PostgresTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // The URL may hold a password: say what is wrong without repeating it.
    throw new Error(`invalid Postgres catalog URL '${url.replace(/\/\/[^@/]*@/, '//***@')}'`);
  }
  const display = `${parsed.protocol}//${parsed.username}${parsed.password ? ':***' : ''}${parsed.username ? '@' : ''}${parsed.host}${parsed.pathname}`;
  const setting = (name: keyof typeof POSTGRES_DEFAULTS, min: number): number => {
    const raw = parsed.searchParams.get(name);
    if (raw === null) return POSTGRES_DEFAULTS[name];
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min) {
      throw new Error(
        `Postgres catalog URL ${display}: ${name} must be a whole number of at least ${min}, not '${raw}'`,
      );
    }
    return value;
  };
  const target = {
    display,
    poolMax: setting('pool_max', 1),
    lockPoolMax: setting('lock_pool_max', 1),
    connectTimeoutMs: setting('connect_timeout', 0) * 1000,
  };
  const ours = Object.keys(POSTGRES_DEFAULTS).filter((name) => parsed.searchParams.has(name));
  if (ours.length === 0) return { ...target, connectionString: url };
  for (const name of ours) parsed.searchParams.delete(name);
  return { ...target, connectionString: parsed.toString() };
}

async function openPostgres(target: PostgresTarget): Promise<Catalog> {
  // Loaded here, not at the top: a gateway on SQLite never pays the driver's memory.
  const { default: pg } = await import('pg');
  const pool = (max: number, applicationName: string) => {
    const p = new pg.Pool({
      connectionString: target.connectionString,
      max,
      connectionTimeoutMillis: target.connectTimeoutMs,
      application_name: applicationName,
    });
    // An idle connection that fails is dropped by the pool (the next query opens another); pg emits the
    // failure on the pool, and an unheard 'error' event would end the process.
    p.on('error', () => {});
    return p;
  };
  const queries = pool(target.poolMax, 'trajgate');
  // Kysely's connections are checked out only around queries and transactions, but one can still fail
  // between two statements of a transaction: the statement after fails, the connection is not reused.
  queries.on('connect', (client) => client.on('error', () => {}));
  const locks = pool(target.lockPoolMax, 'trajgate-locks');
  const fail = async (what: string, err: unknown): Promise<never> => {
    await Promise.allSettled([queries.end(), locks.end()]);
    throw new Error(`${what} the Postgres catalog ${target.display}: ${describeError(err)}`, { cause: err });
  };

  try {
    await queries.query('select 1');
  } catch (err) {
    return fail('cannot connect to', err);
  }
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: queries }) });
  try {
    await runMigrations(db, 'postgres');
  } catch (err) {
    return fail('cannot migrate', err);
  }
  return new KyselyCatalog(db, new AdvisoryLocks(locks));
}

/** A driver error's message; Node reports a refused connection to every address of a name as an AggregateError without one. */
function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.message === '') {
    return err.errors.map((e: unknown) => (e instanceof Error ? e.message : String(e))).join('; ');
  }
  if (err instanceof Error) return err.message || (err as NodeJS.ErrnoException).code || err.name;
  return String(err);
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
