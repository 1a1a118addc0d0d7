import { type Kysely, type Migration, type MigrationProvider, type MigrationResultSet, Migrator, sql } from 'kysely';
import type { Database } from './schema.js';

/**
 * Schema migrations, in code, applied in name order at open (`runMigrations`). Never edit a migration that
 * has shipped: add `0002_...` (a new column is `alterTable(...).addColumn(...)` plus a field in `schema.ts`).
 * Migrations see `Kysely<unknown>`: they describe the schema as it was then, not today's `Database`.
 * Every migration writes portable DDL; the few dialect differences go through `dialectTypes`.
 */
export type SqlDialect = 'sqlite' | 'postgres';

/** The only place the dialects differ in DDL. */
function dialectTypes(dialect: SqlDialect) {
  return dialect === 'sqlite'
    ? {
        // INTEGER PRIMARY KEY AUTOINCREMENT is SQLite's rowid alias; ids never go back, even after deletes.
        addAutoId: (db: Kysely<unknown>, table: string) =>
          db.schema.createTable(table).addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement()),
        // Binary columns (sketches): BLOB here, BYTEA on Postgres; both drivers read and write Buffers.
        binary: 'blob' as const,
      }
    : {
        addAutoId: (db: Kysely<unknown>, table: string) =>
          db.schema.createTable(table).addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity()),
        binary: 'bytea' as const,
      };
}

function migrations(dialect: SqlDialect): Record<string, Migration> {
  const types = dialectTypes(dialect);
  return {
    '0001_initial': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('runs')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('planned_steps', 'bigint')
          .addColumn('train_size', 'bigint')
          .addColumn('allow_shape_change', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('tags', 'text', (c) => c.notNull().defaultTo('{}'))
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();

        await db.schema
          .createTable('checkpoints')
          .addColumn('run_id', 'text', (c) => c.notNull())
          .addColumn('step', 'bigint', (c) => c.notNull())
          .addColumn('upload_id', 'text', (c) => c.notNull())
          .addColumn('sha256', 'text', (c) => c.notNull())
          .addColumn('bytes', 'bigint', (c) => c.notNull())
          .addColumn('format', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull().defaultTo('kept'))
          .addColumn('blob_key', 'text', (c) => c.notNull())
          .addColumn('tensors', 'text', (c) => c.notNull())
          .addColumn('metadata', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('checkpoints_pk', ['run_id', 'step'])
          .execute();
        await db.schema.createIndex('checkpoints_run_status').on('checkpoints').columns(['run_id', 'status']).execute();

        await types
          .addAutoId(db, 'metric_points')
          .addColumn('run_id', 'text', (c) => c.notNull())
          .addColumn('step', 'bigint', (c) => c.notNull())
          .addColumn('train_loss', 'double precision')
          .addColumn('val_loss', 'double precision')
          .addColumn('lr', 'double precision')
          .addColumn('batch_size', 'bigint')
          .addColumn('grad_norm', 'double precision')
          .addColumn('grad_variance', 'double precision')
          .addColumn('update_norm', 'double precision')
          .addColumn('gap_increment', 'double precision')
          .addColumn('extra', 'text')
          .execute();
        await db.schema
          .createIndex('metric_points_run_step')
          .on('metric_points')
          .columns(['run_id', 'step', 'id'])
          .execute();
      },
    },
    '0002_trajectory': {
      async up(db: Kysely<unknown>) {
        // What the trajectory engine keeps of each checkpoint's weights; apart from `checkpoints` so that
        // listings never load 64 KiB sketches.
        await db.schema
          .createTable('checkpoint_summaries')
          .addColumn('run_id', 'text', (c) => c.notNull())
          .addColumn('step', 'bigint', (c) => c.notNull())
          .addColumn('spec', 'text', (c) => c.notNull())
          .addColumn('weight_norm', 'double precision', (c) => c.notNull())
          .addColumn('sketch', types.binary, (c) => c.notNull())
          .addColumn('tensor_sketches', types.binary, (c) => c.notNull())
          .addPrimaryKeyConstraint('checkpoint_summaries_pk', ['run_id', 'step'])
          .execute();
        await db.schema.alterTable('checkpoints').addColumn('indicators', 'text').execute();
      },
    },
    '0003_retention': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('policies')
          .addColumn('name', 'text', (c) => c.primaryKey())
          .addColumn('policy', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.alterTable('runs').addColumn('policy', 'text').execute();
        for (const [column, type, fallback] of [
          ['classes', 'text', '[]'],
          ['reasons', 'text', '[]'],
          ['pinned', 'integer', 0],
          ['blob_deleted', 'integer', 0],
        ] as const) {
          await db.schema
            .alterTable('checkpoints')
            .addColumn(column, type, (c) => c.notNull().defaultTo(fallback))
            .execute();
        }
        await db.schema.alterTable('checkpoints').addColumn('discarded_at', 'text').execute();
        await db.schema.alterTable('checkpoints').addColumn('delete_after', 'text').execute();
        await db.schema
          .createIndex('checkpoints_due_deletion')
          .on('checkpoints')
          .columns(['status', 'blob_deleted', 'delete_after'])
          .execute();
      },
    },
    '0004_estimate': {
      async up(db: Kysely<unknown>) {
        // The generalization estimate's running state per run, updated as metric batches arrive.
        await db.schema
          .createTable('estimate_states')
          .addColumn('run_id', 'text', (c) => c.primaryKey())
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
      },
    },
    '0005_access': {
      async up(db: Kysely<unknown>) {
        // Bearer tokens, kept only as a hash of the secret, and the audit trail of who changed or deleted what.
        await db.schema
          .createTable('tokens')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('role', 'text', (c) => c.notNull())
          .addColumn('runs', 'text', (c) => c.notNull())
          .addColumn('secret_hash', 'text', (c) => c.notNull().unique())
          .addColumn('expires_at', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('revoked_at', 'text')
          .execute();
        await types
          .addAutoId(db, 'audit')
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('actor', 'text', (c) => c.notNull())
          .addColumn('action', 'text', (c) => c.notNull())
          .addColumn('run_id', 'text')
          .addColumn('step', 'bigint')
          .addColumn('details', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('audit_run').on('audit').columns(['run_id', 'id']).execute();
      },
    },
    '0006_idempotent_batches': {
      async up(db: Kysely<unknown>) {
        // A metric batch sent with an Idempotency-Key tags its points, and is recorded once folded.
        await db.schema.alterTable('metric_points').addColumn('batch_key', 'text').execute();
        await db.schema
          .createIndex('metric_points_batch')
          .on('metric_points')
          .columns(['run_id', 'batch_key'])
          .execute();
        await db.schema
          .createTable('metric_batches')
          .addColumn('run_id', 'text', (c) => c.notNull())
          .addColumn('batch_key', 'text', (c) => c.notNull())
          .addColumn('points', 'bigint', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('metric_batches_pk', ['run_id', 'batch_key'])
          .execute();
      },
    },
    '0007_estimate_version': {
      async up(db: Kysely<unknown>) {
        // Gateways sharing a catalog cache parsed estimate states; the version tells them when to re-read.
        await db.schema
          .alterTable('estimate_states')
          .addColumn('version', 'bigint', (c) => c.notNull().defaultTo(0))
          .execute();
      },
    },
    '0008_byte_order_text_keys': {
      async up(db: Kysely<unknown>) {
        // Ids and timestamps sort and compare byte-wise, as SQLite's BINARY collation does ('B' < 'a'), so
        // paging with `after` and time ranges give the same answers on both. A Postgres database's default
        // collation is often linguistic (en_US: 'a' < 'B', punctuation ignored at first); COLLATE "C" fixes
        // the columns that identify, order or range-compare. SQLite: nothing to do.
        if (dialect !== 'postgres') return;
        const columns: Record<string, readonly string[]> = {
          runs: ['id'],
          checkpoints: ['run_id', 'upload_id', 'discarded_at', 'delete_after', 'created_at'],
          checkpoint_summaries: ['run_id'],
          metric_points: ['run_id', 'batch_key'],
          metric_batches: ['run_id', 'batch_key'],
          policies: ['name', 'created_at', 'updated_at'],
          estimate_states: ['run_id'],
          tokens: ['id', 'secret_hash', 'created_at'],
          audit: ['run_id', 'at'],
        };
        for (const [table, names] of Object.entries(columns)) {
          const changes = names.map((c) => sql`alter column ${sql.ref(c)} type text collate "C"`);
          await sql`alter table ${sql.table(table)} ${sql.join(changes)}`.execute(db);
        }
      },
    },
    '0009_calibration_groups': {
      async up(db: Kysely<unknown>) {
        // Runs of one calibration group share what their own calibrations learned: each run's latest scale.
        await db.schema.alterTable('runs').addColumn('calibration_group', 'text').execute();
        await db.schema
          .createTable('calibration_scales')
          .addColumn('run_id', 'text', (c) => c.primaryKey())
          .addColumn('group_name', 'text', (c) => c.notNull())
          .addColumn('scale', 'double precision', (c) => c.notNull())
          .addColumn('points', 'bigint', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createIndex('calibration_scales_group')
          .on('calibration_scales')
          .columns(['group_name', 'run_id'])
          .execute();
      },
    },
    '0010_checkpoint_shards': {
      async up(db: Kysely<unknown>) {
        // The files of sharded steps: staged until every declared shard is stored, then the step's.
        await db.schema
          .createTable('checkpoint_shards')
          .addColumn('run_id', 'text', (c) => c.notNull())
          .addColumn('step', 'bigint', (c) => c.notNull())
          .addColumn('file', 'text', (c) => c.notNull())
          .addColumn('shard_count', 'bigint', (c) => c.notNull())
          .addColumn('upload_id', 'text', (c) => c.notNull())
          .addColumn('sha256', 'text', (c) => c.notNull())
          .addColumn('bytes', 'bigint', (c) => c.notNull())
          .addColumn('format', 'text', (c) => c.notNull())
          .addColumn('blob_key', 'text', (c) => c.notNull())
          .addColumn('tensors', 'text', (c) => c.notNull())
          .addColumn('metadata', 'text')
          .addColumn('spec', 'text', (c) => c.notNull())
          .addColumn('weight_norm', 'double precision', (c) => c.notNull())
          .addColumn('sketch', types.binary, (c) => c.notNull())
          .addColumn('tensor_sketches', types.binary, (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('checkpoint_upload_id', 'text')
          .addPrimaryKeyConstraint('checkpoint_shards_pk', ['run_id', 'step', 'file'])
          .execute();
        if (dialect === 'postgres') {
          const names = ['run_id', 'file', 'upload_id', 'created_at', 'checkpoint_upload_id'];
          const changes = names.map((c) => sql`alter column ${sql.ref(c)} type text collate "C"`);
          await sql`alter table checkpoint_shards ${sql.join(changes)}`.execute(db);
        }
      },
    },
    '0011_upload_sessions': {
      async up(db: Kysely<unknown>) {
        // Resumable (tus) uploads in progress: any replica answers HEAD from here.
        await db.schema
          .createTable('upload_sessions')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('run_id', 'text', (c) => c.notNull())
          .addColumn('step', 'bigint', (c) => c.notNull())
          .addColumn('length', 'bigint', (c) => c.notNull())
          .addColumn('upload_offset', 'bigint', (c) => c.notNull())
          .addColumn('metadata', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('upload_sessions_expires').on('upload_sessions').column('expires_at').execute();
      },
    },
  };
}

/** Exposed for tests and for `trajgate` tooling that wants to list what a database has applied. */
export function migrationProvider(dialect: SqlDialect): MigrationProvider {
  return { getMigrations: async () => migrations(dialect) };
}

/**
 * Brings the schema to the latest migration; a no-op when it is current. Throws on the first failure, leaving
 * the schema as it was before the call.
 */
export async function runMigrations(
  db: Kysely<Database>,
  dialect: SqlDialect,
  provider: MigrationProvider = migrationProvider(dialect),
): Promise<void> {
  const migrator = new Migrator({ db, provider });
  if (dialect !== 'sqlite') return check(await migrator.migrateToLatest());

  // Kysely runs SQLite migrations outside any transaction and takes no lock (its SqliteAdapter reports no
  // transactional DDL), so two processes opening a new file both run 0001 and one fails, and a migration
  // that fails halfway leaves a partial schema. SQLite does have transactional DDL: BEGIN IMMEDIATE takes
  // the write lock (other processes wait out busy_timeout, then find the schema current) and a failure
  // rolls everything back. The SQLite driver has one connection, so the migrator's statements run inside
  // this transaction. Postgres needs none of this: Kysely wraps it in a transaction under an advisory lock.
  await sql`begin immediate`.execute(db);
  let result: MigrationResultSet;
  try {
    result = await migrator.migrateToLatest();
  } catch (err) {
    await sql`rollback`.execute(db);
    throw err;
  }
  await sql.raw(result.error ? 'rollback' : 'commit').execute(db);
  check(result);
}

function check({ error, results }: MigrationResultSet): void {
  if (!error) return;
  const message = error instanceof Error ? error.message : String(error);
  // Kysely refuses a catalog whose applied migrations include one this build lacks: a newer build migrated it.
  const unknown = /previously executed migration (\S+) is missing/.exec(message)?.[1];
  if (unknown) {
    throw new Error(
      `the catalog was migrated by a newer trajgate (it has migration ${unknown}, which this build lacks); ` +
        'run the newer build, or restore a catalog backup taken before the upgrade',
      { cause: error },
    );
  }
  const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
  throw new Error(`catalog migration ${failed} failed: ${message}`, { cause: error });
}
