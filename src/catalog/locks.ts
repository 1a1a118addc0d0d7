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
  /**
   * Callers holding or waiting for each key. Counted down as each one's work ends, before its caller resumes:
   * KeyedLock forgets a key a few microtasks after the last work ends, so its `isHeld` would still answer
   * true to a tryExclusive made right after an exclusive returned.
   */
  private readonly holders = new Map<string, number>();

  exclusive<T>(key: string, work: () => Promise<T>): Promise<T> {
    this.holders.set(key, (this.holders.get(key) ?? 0) + 1);
    return this.queue.run(key, async () => {
      try {
        return await work();
      } finally {
        const left = (this.holders.get(key) ?? 1) - 1;
        if (left === 0) this.holders.delete(key);
        else this.holders.set(key, left);
      }
    });
  }

  async tryExclusive<T>(key: string, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    if (this.holders.has(key)) return { ran: false };
    return { ran: true, value: await this.exclusive(key, work) };
  }

  async close(): Promise<void> {}
}
