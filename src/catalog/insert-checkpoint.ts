import type { Transaction } from 'kysely';
import type { CheckpointRecord } from '../model/records.js';
import type { NewCheckpoint } from './catalog.js';
import { inserted, toCheckpointRecord, toCheckpointRow, toSummaryRow } from './rows.js';
import type { Database } from './schema.js';

/**
 * Writes a checkpoint's row and its summary in `trx`. (run, step) is unique: when the step has a checkpoint
 * already nothing is written and that checkpoint comes back.
 */
export async function insertCheckpointRows(
  trx: Transaction<Database>,
  row: NewCheckpoint,
): Promise<{ inserted: true } | { inserted: false; existing: CheckpointRecord }> {
  const res = await trx
    .insertInto('checkpoints')
    .values(toCheckpointRow(row, new Date().toISOString()))
    .onConflict((oc) => oc.columns(['run_id', 'step']).doNothing())
    .executeTakeFirst();
  if (inserted(res.numInsertedOrUpdatedRows)) {
    await trx.insertInto('checkpoint_summaries').values(toSummaryRow(row.run, row.summary)).execute();
    return { inserted: true };
  }
  const existing = await trx
    .selectFrom('checkpoints')
    .selectAll()
    .where('run_id', '=', row.run)
    .where('step', '=', row.step)
    .executeTakeFirstOrThrow();
  return { inserted: false, existing: toCheckpointRecord(existing) };
}
