/**
 * Shared pieces of the catalog and ingest benchmarks: percentiles, a line describing the machine, and
 * scratch Postgres databases (created fresh for one benchmark, dropped after).
 */
import os from 'node:os';
import pg from 'pg';

/** The q-quantile of ascending `sorted` (nearest rank). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Cores, CPU model, load averages, memory and Node version, for benchmark headers. */
export function machineLine(): string {
  const cpus = os.cpus();
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const gib = (b: number) => (b / 1024 ** 3).toFixed(1);
  return (
    `machine: ${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}), load ${load}, ` +
    `${gib(os.freemem())}/${gib(os.totalmem())} GiB free, node ${process.version} ${process.arch}`
  );
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 90) return `${s.toFixed(0)}s`;
  const m = Math.floor(s / 60);
  return m < 90 ? `${m}m${String(Math.round(s - 60 * m)).padStart(2, '0')}s` : `${(s / 3600).toFixed(1)}h`;
}

export interface ScratchDatabase {
  name: string;
  /** The URL of the new database (the admin URL with its database name replaced). */
  url: string;
  /** Runs SQL against the scratch database on a connection of its own. */
  query<R extends pg.QueryResultRow>(text: string): Promise<R[]>;
  /** Drops the database (disconnecting anything still connected). */
  drop(): Promise<void>;
}

/**
 * Creates an empty database `<prefix>_<pid>_<time>` on the server `adminUrl` points at (any database the
 * user may connect to; the user needs CREATEDB).
 */
export async function createScratchDatabase(adminUrl: string, prefix: string): Promise<ScratchDatabase> {
  const name = `${prefix}_${process.pid}_${Date.now().toString(36)}`;
  await withClient(adminUrl, (c) => c.query(`create database ${name}`));
  const target = new URL(adminUrl);
  target.pathname = `/${name}`;
  const url = target.toString();
  return {
    name,
    url,
    query: async <R extends pg.QueryResultRow>(text: string) =>
      withClient(url, async (c) => (await c.query<R>(text)).rows),
    drop: () => withClient(adminUrl, (c) => c.query(`drop database if exists ${name} with (force)`)).then(() => {}),
  };
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
