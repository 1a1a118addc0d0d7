/**
 * Catalog metric throughput: one `appendMetrics` call of --points points into a fresh run, then one
 * `listMetrics` reading them all back, on each embedded store (SQLite file, SQLite in memory). The same
 * bulk case the catalog contract tests check for correctness (test/helpers/catalog-contract.ts); best of
 * --repeat, each repeat into a new run.
 *
 *   npx tsx scripts/bench-catalog.ts [--points 100000] [--repeat 3]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openCatalog } from '../src/catalog/factory.js';
import type { MetricPoint } from '../src/model/records.js';

const { values } = parseArgs({
  options: { points: { type: 'string', default: '100000' }, repeat: { type: 'string', default: '3' } },
});
const n = Number(values.points);
const repeat = Number(values.repeat);

const points: MetricPoint[] = Array.from({ length: n }, (_, i) => ({
  step: Math.floor(i / 2),
  trainLoss: 1 / (i + 1),
  lr: 1e-3,
  batchSize: 128,
  ...(i % 3 === 0 ? { gradNorm: 0.5 } : {}),
}));

async function bench(label: string, url: string): Promise<void> {
  const catalog = await openCatalog(url);
  try {
    let append = Number.POSITIVE_INFINITY;
    let list = Number.POSITIVE_INFINITY;
    for (let r = 0; r < repeat; r++) {
      const run = `bench-${r}`;
      await catalog.ensureRun(run);
      const t0 = performance.now();
      const stored = await catalog.appendMetrics(run, points);
      const t1 = performance.now();
      const back = (await catalog.listMetrics(run, { limit: n + 1 })).items;
      const t2 = performance.now();
      if (stored !== n || back.length !== n) throw new Error(`stored ${stored}, read back ${back.length} of ${n}`);
      append = Math.min(append, t1 - t0);
      list = Math.min(list, t2 - t1);
    }
    const rate = (ms: number) => `${((n / ms) * 1000).toFixed(0).padStart(9)} points/s`;
    console.log(
      `${label.padEnd(12)} append ${append.toFixed(0).padStart(6)} ms (${rate(append)})   ` +
        `list ${list.toFixed(0).padStart(6)} ms (${rate(list)})`,
    );
  } finally {
    await catalog.close();
  }
}

async function main(): Promise<void> {
  console.log(`bench-catalog: ${n} metric points, best of ${repeat} (${process.version}, ${process.arch})`);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-bench-catalog-'));
  try {
    await bench('sqlite file', `sqlite://${path.join(dir, 'catalog.db')}`);
    await bench('sqlite mem', 'sqlite::memory:');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
