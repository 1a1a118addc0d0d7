import { createHash } from 'node:crypto';
import type pg from 'pg';
import { errors } from '../errors.js';
import { type CatalogLocks, ProcessLocks } from './locks.js';

/**
 * The advisory-lock id of a catalog lock key: the first 8 bytes of SHA-256('trajgate:' + key) as a signed
 * 64-bit integer, in decimal (bound as `$1::bigint`). Every process computes the same id for a key.
 */
export function advisoryLockId(key: string): string {
  return createHash('sha256').update(`trajgate:${key}`).digest().readBigInt64BE(0).toString();
}

interface Held {
  client: pg.PoolClient;
  id: string;
  onError: (err: Error) => void;
  /** Set when the connection failed while the lock was held: the session, and the lock with it, is gone. */
  failure: Error | undefined;
}

/**
 * Catalog locks across every process sharing a Postgres database. A key is first taken in this process
 * (`ProcessLocks`: arrival order, at most one database lock per key per process), then as a session-level
 * advisory lock on a connection of `pool`, held until the work ends. `pool` serves locks only: a holder
 * never waits for a query connection that other holders occupy, so locks cannot starve queries into a
 * deadlock. A process that dies loses its sessions, and so its locks.
 *
 * Each key held (or waited for in the database) occupies one connection of `pool`, so its size bounds the
 * keys this process holds at once; more wait for a connection, up to the pool's connection timeout, and then
 * fail with catalog_unavailable (tryExclusive too: it never waits for the lock, but may for a connection).
 * Work that takes a second key under a first holds two.
 *
 * If a lock's connection fails while the work runs, the lock is gone (another process may take it); the
 * work is not interrupted, and its connection is destroyed when it ends.
 */
export class AdvisoryLocks implements CatalogLocks {
  private readonly local = new ProcessLocks();
  private closing: Promise<void> | undefined;

  constructor(private readonly pool: pg.Pool) {}

  exclusive<T>(key: string, work: () => Promise<T>): Promise<T> {
    return this.local.exclusive(key, async () => this.holding(await this.lock(key), work));
  }

  async tryExclusive<T>(key: string, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    const outcome = await this.local.tryExclusive(key, async (): Promise<{ ran: true; value: T } | { ran: false }> => {
      const held = await this.tryLock(key);
      if (!held) return { ran: false };
      return { ran: true, value: await this.holding(held, work) };
    });
    return outcome.ran ? outcome.value : { ran: false };
  }

  /** Ends the lock pool once its held keys are released; closing again waits for the same end. */
  close(): Promise<void> {
    this.closing ??= this.pool.end();
    return this.closing;
  }

  /** Waits for the key's advisory lock on a lock connection. */
  private async lock(key: string): Promise<Held> {
    const held = await this.connect(key);
    try {
      await held.client.query('select pg_advisory_lock($1::bigint)', [held.id]);
    } catch (err) {
      throw this.failed(held, key, err);
    }
    return held;
  }

  /** The key's advisory lock if it is free right now, else null (and the connection goes back). */
  private async tryLock(key: string): Promise<Held | null> {
    const held = await this.connect(key);
    let locked: boolean;
    try {
      const res = await held.client.query<{ locked: boolean }>('select pg_try_advisory_lock($1::bigint) as locked', [
        held.id,
      ]);
      locked = res.rows[0]?.locked === true;
    } catch (err) {
      throw this.failed(held, key, err);
    }
    if (locked) return held;
    held.client.removeListener('error', held.onError);
    held.client.release();
    return null;
  }

  private async connect(key: string): Promise<Held> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw errors.catalogUnavailable(`catalog lock '${key}': no lock connection`, err);
    }
    const held: Held = {
      client,
      id: advisoryLockId(key),
      failure: undefined,
      onError: (err) => {
        held.failure ??= err;
      },
    };
    // A checked-out pg client that loses its connection emits 'error'; unheard, that ends the process.
    client.on('error', held.onError);
    return held;
  }

  /** Destroys the connection of a lock that could not be taken; the error to throw. */
  private failed(held: Held, key: string, err: unknown): Error {
    held.client.removeListener('error', held.onError);
    held.client.release(err instanceof Error ? err : new Error(String(err)));
    return errors.catalogUnavailable(`catalog lock '${key}' failed`, err);
  }

  /** Runs `work`, then unlocks; a connection that cannot unlock is destroyed, which ends its lock too. */
  private async holding<T>(held: Held, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } finally {
      await this.release(held);
    }
  }

  private async release(held: Held): Promise<void> {
    const { client } = held;
    if (held.failure === undefined) {
      try {
        const res = await client.query<{ unlocked: boolean }>('select pg_advisory_unlock($1::bigint) as unlocked', [
          held.id,
        ]);
        if (res.rows[0]?.unlocked !== true) held.failure = new Error(`advisory lock ${held.id} was not held`);
      } catch (err) {
        held.failure = err instanceof Error ? err : new Error(String(err));
      }
    }
    client.removeListener('error', held.onError);
    client.release(held.failure);
  }
}
