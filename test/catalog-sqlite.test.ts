import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { type Kysely as KyselyType, Kysely, type Migration, SqliteDialect } from 'kysely';
import { openCatalog, parseCatalogUrl, parsePostgresUrl } from '../src/catalog/factory.js';
import { migrationProvider, runMigrations } from '../src/catalog/migrations.js';
import type { Database } from '../src/catalog/schema.js';
import { describeCatalogContract } from './helpers/catalog-contract.js';

/** A port on 127.0.0.1 where nothing listens (one that was free a moment ago). */
async function closedPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const address = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  assert.ok(address && typeof address === 'object');
  return address.port;
}

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'trajgate-catalog-'));
}

describeCatalogContract('sqlite file', async () => {
  const dir = await tempDir();
  const url = `sqlite://${path.join(dir, 'nested', 'catalog.db')}`;
  return {
    catalog: await openCatalog(url),
    reopen: () => openCatalog(url),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describeCatalogContract('sqlite memory', async () => ({
  catalog: await openCatalog('sqlite::memory:'),
  cleanup: async () => {},
}));

describe('parseCatalogUrl', () => {
  it('reads sqlite URLs, :memory: and plain paths', () => {
    assert.deepEqual(parseCatalogUrl('sqlite:///var/lib/tg/catalog.db'), {
      kind: 'sqlite',
      file: '/var/lib/tg/catalog.db',
    });
    assert.deepEqual(parseCatalogUrl('sqlite::memory:'), { kind: 'sqlite', file: ':memory:' });
    assert.deepEqual(parseCatalogUrl('sqlite://:memory:'), { kind: 'sqlite', file: ':memory:' });
    assert.deepEqual(parseCatalogUrl('/tmp/x.db'), { kind: 'sqlite', file: '/tmp/x.db' });
    assert.deepEqual(parseCatalogUrl('data/x.db'), { kind: 'sqlite', file: path.resolve('data/x.db') });
  });

  it('recognises postgres and rejects other schemes, listing the supported ones', () => {
    assert.equal(parseCatalogUrl('postgres://u:p@db:5432/tg').kind, 'postgres');
    assert.equal(parseCatalogUrl('postgresql://db/tg').kind, 'postgres');
    assert.throws(() => parseCatalogUrl('mysql://db/tg'), /unsupported catalog URL scheme 'mysql:'.*sqlite::memory:/);
    assert.throws(() => parseCatalogUrl('sqlite://'), /no file path/);
    assert.throws(() => parseCatalogUrl(' '), /empty catalog URL/);
  });
});

describe('parsePostgresUrl', () => {
  it('reads the pool settings, strips them from the driver URL and redacts the password', () => {
    const target = parsePostgresUrl(
      'postgresql://tg:pw@db.internal:6543/catalog?sslmode=require&pool_max=4&lock_pool_max=2&connect_timeout=3',
    );
    assert.deepEqual(target, {
      connectionString: 'postgresql://tg:pw@db.internal:6543/catalog?sslmode=require',
      display: 'postgresql://tg:***@db.internal:6543/catalog',
      poolMax: 4,
      lockPoolMax: 2,
      connectTimeoutMs: 3000,
    });
    assert.deepEqual(parsePostgresUrl('postgres://db/tg'), {
      connectionString: 'postgres://db/tg',
      display: 'postgres://db/tg',
      poolMax: 10,
      lockPoolMax: 10,
      connectTimeoutMs: 10_000,
    });
    assert.equal(parsePostgresUrl('postgres://u@db/tg?connect_timeout=0').connectTimeoutMs, 0);
  });

  it('refuses bad settings and unparsable URLs without echoing the password', () => {
    assert.throws(
      () => parsePostgresUrl('postgres://u:pw@db/tg?pool_max=0'),
      /pool_max must be a whole number of at least 1, not '0'/,
    );
    assert.throws(() => parsePostgresUrl('postgres://u:pw@db/tg?lock_pool_max=2.5'), /lock_pool_max/);
    assert.throws(() => parsePostgresUrl('postgres://u:pw@db/tg?connect_timeout=-1'), /connect_timeout/);
    assert.throws(
      () => parsePostgresUrl('postgres://u:pw@db:notaport/tg'),
      (err: unknown) =>
        err instanceof Error && /invalid Postgres catalog URL/.test(err.message) && !err.message.includes('pw'),
    );
  });
});

describe('openCatalog', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('names the Postgres database it cannot reach, without the password', async () => {
    const port = await closedPort();
    await assert.rejects(openCatalog(`postgres://tg:s3cret@127.0.0.1:${port}/catalog`), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.match(
        err.message,
        new RegExp(
          `^cannot connect to the Postgres catalog postgres://tg:\\*\\*\\*@127\\.0\\.0\\.1:${port}/catalog: .*ECONNREFUSED`,
        ),
      );
      assert.ok(!err.message.includes('s3cret'));
      return true;
    });
  });

  it('creates the parent directory and puts a file database in WAL mode', async () => {
    const file = path.join(dir, 'a', 'b', 'catalog.db');
    const catalog = await openCatalog(file);
    try {
      assert.ok(existsSync(file));
      await catalog.ensureRun('r');
      const probe = new BetterSqlite3(file, { readonly: true });
      try {
        assert.equal(probe.pragma('journal_mode', { simple: true }), 'wal');
        const tables = probe
          .prepare("select name from sqlite_master where type = 'table' order by name")
          .all()
          .map((r) => (r as { name: string }).name);
        for (const t of ['runs', 'checkpoints', 'checkpoint_summaries', 'metric_points', 'kysely_migration'])
          assert.ok(tables.includes(t), t);
        const applied = probe.prepare('select name from kysely_migration').all() as { name: string }[];
        assert.deepEqual(
          applied.map((r) => r.name),
          Object.keys(await migrationProvider('sqlite').getMigrations()).sort(),
        );
      } finally {
        probe.close();
      }
    } finally {
      await catalog.close();
    }
  });

  it('concurrent opens of a new file all succeed (migrations run once)', async () => {
    const file = path.join(dir, 'race', 'catalog.db');
    const catalogs = await Promise.all(Array.from({ length: 4 }, () => openCatalog(file)));
    try {
      await Promise.all(catalogs.map((c, i) => c.ensureRun(`r${i}`)));
      assert.equal((await catalogs[0].listRuns({ limit: 10 })).length, 4);
    } finally {
      for (const c of catalogs) await c.close();
    }
  });

  it('refuses a catalog migrated by a newer build, saying so', async () => {
    const file = path.join(dir, 'newer.db');
    await (await openCatalog(file)).close();
    const probe = new BetterSqlite3(file);
    probe.prepare("insert into kysely_migration (name, timestamp) values ('0999_from_the_future', '2030')").run();
    probe.close();
    await assert.rejects(openCatalog(file), /migrated by a newer trajgate \(it has migration 0999_from_the_future/);
  });

  it('a migration that fails leaves the schema as it was', async () => {
    const sqlite = new BetterSqlite3(path.join(dir, 'broken.db'));
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
    try {
      await runMigrations(db, 'sqlite');
      const broken: Migration = {
        async up(trx: KyselyType<unknown>) {
          await trx.schema.alterTable('runs').addColumn('half_done', 'text').execute();
          throw new Error('boom');
        },
      };
      const base = await migrationProvider('sqlite').getMigrations();
      const provider = { getMigrations: async () => ({ ...base, '9999_broken': broken }) };
      await assert.rejects(runMigrations(db, 'sqlite', provider), /catalog migration 9999_broken failed: boom/);
      const columns = (sqlite.prepare('pragma table_info(runs)').all() as { name: string }[]).map((c) => c.name);
      assert.ok(!columns.includes('half_done'), 'the partial change is rolled back');
      const applied = sqlite.prepare('select name from kysely_migration').all() as { name: string }[];
      assert.deepEqual(
        applied.map((r) => r.name),
        Object.keys(base).sort(),
      );
      await runMigrations(db, 'sqlite'); // still usable afterwards
    } finally {
      await db.destroy();
    }
  });

  it('reports a file that is not a database instead of migrating it', async () => {
    const file = path.join(dir, 'junk.db');
    await (await import('node:fs/promises')).writeFile(file, 'this is not sqlite, just text padding '.repeat(200));
    await assert.rejects(openCatalog(file), /cannot open SQLite catalog|not a database/);
  });
});
