import { KeyedLock } from '../util/keyed-lock.js';

/** The lock half of the Catalog contract (`Catalog.exclusive`, `Catalog.tryExclusive`). */
export interface CatalogLocks {
  exclusive<T>(key: string, work: () => Promise<T>): Promise<T>;
  tryExclusive<T>(key: string, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }>;
  close(): Promise<void>;
}

/**
 * Locks within one process: enough for SQLite, whose catalog one gateway process serves. Also the fast
 * path the Postgres locks put in front of their advisory locks, so a process holds one database lock per
 * key at a time.
 */
export class ProcessLocks implements CatalogLocks {
  private readonly queue = new KeyedLock();

  exclusive<T>(key: string, work: () => Promise<T>): Promise<T> {
    return this.queue.run(key, work);
  }

  async tryExclusive<T>(key: string, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    if (this.queue.isHeld(key)) return { ran: false };
    return { ran: true, value: await this.queue.run(key, work) };
  }

  async close(): Promise<void> {}
}
