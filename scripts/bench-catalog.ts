/**
 * Catalog at scale, per dialect (SQLite file, Postgres): fills --runs runs × --checkpoints checkpoints ×
 * --tensors tensors (+ --points metric points spread over the runs) through the Catalog contract, then
 * times, over --samples runs picked at random (seeded), the gateway's read paths through the real
 * services (a RunService built by `openContext`, as the server builds it) and prints p50/p99 of each, the
 * fill's rates, and the catalog's bytes per checkpoint.
 *
 *   npx tsx scripts/bench-catalog.ts [--runs 1000] [--checkpoints 100] [--tensors 200] [--points 1000000]
 *     [--samples 200] [--dialect sqlite,postgres] [--postgres-url postgres://postgres@127.0.0.1:5432/postgres]
 *     [--interval 100] [--concurrency 8] [--bulk-points 100000] [--progress-every 50] [--seed 1]
 *
 * What goes in, per run (scripts/lib/bench-catalog-data.ts): a run record (plannedSteps, trainSize, tags);
 * one `insertCheckpoint` per checkpoint, as the ingest calls it: a TinyLlama-like tensor table (BF16, exact
 * statistics per tensor) and a CheckpointSummary of the gateway's sketch spec (DEFAULT_SKETCH_SPEC: k = 8192)
 * with per-tensor sketches as planTensorSketches plans them, so each summary has a real one's size (the sketch
 * values are simulated: see the data module); indicators computed from those summaries by the real
 * `computeIndicators` and stored with one `setIndicators` per run; the run's metric points in one
 * `appendMetrics` batch, folded into the stored estimate state by the real RunEstimates; and one retention
 * decision (`RunService.setPolicy` to the default policy: decide and write). Postgres gets a fresh database
 * on the server --postgres-url names, dropped at the end; SQLite a file in a temp directory.
 *
 * Reads (ms; each op over every sampled run in turn, after 3 warm-up calls): a checkpoint page of 100 without
 * and with tensor tables, one checkpoint record, a page of 1,000 metric points, the trajectory, the estimate
 * (the first read of the run in this process: the stored state is parsed), every summary of the run
 * (`Catalog.getSummaries`, which a decision on a run of up to 200 checkpoints reads), a retention decision
 * without writing (`simulate`) and one that writes (`setPolicy`). `--concurrency` insertCheckpoint calls of
 * a run are in flight at once (the Postgres pool holds 10 connections; SQLite runs them one at a time). The old bench-catalog measurement follows: one
 * `appendMetrics` call of --bulk-points points into a fresh run and one `listMetrics` reading them back.
 */
import { statSync } from 'node:fs';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import { pino } from 'pino';
import type { NewCheckpoint } from '../src/catalog/catalog.js';
import { encodeTensorSketches } from '../src/catalog/summary-codec.js';
import { loadConfig } from '../src/config.js';
import { RunEstimates } from '../src/estimate/run-estimates.js';
import type { MetricPoint } from '../src/model/records.js';
import { type GatewayContext, closeContext, openContext } from '../src/server.js';
import { computeIndicators } from '../src/trajectory/run-indicators.js';
import { type RunShape, SyntheticRun, llamaLikeTable, runMetrics, spread } from './lib/bench-catalog-data.js';
import { type ScratchDatabase, createScratchDatabase, formatSeconds, machineLine, quantile } from './lib/bench-env.js';
import { deriveSeed, mulberry32 } from './lib/mnist-data.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000' },
    checkpoints: { type: 'string', default: '100' },
    tensors: { type: 'string', default: '200' },
    points: { type: 'string', default: '1000000' },
    samples: { type: 'string', default: '200' },
    dialect: { type: 'string', default: 'sqlite,postgres' },
    'postgres-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
    interval: { type: 'string', default: '100' },
    concurrency: { type: 'string', default: '8' },
    'bulk-points': { type: 'string', default: '100000' },
    'progress-every': { type: 'string', default: '50' },
    seed: { type: 'string', default: '1' },
  },
});

function count(name: keyof typeof values, min: number): number {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`--${name} must be a whole number ≥ ${min}, got ${values[name]}`);
  return n;
}

const RUNS = count('runs', 1);
const CHECKPOINTS = count('checkpoints', 1);
const TENSORS = count('tensors', 1);
const POINTS = count('points', 0);
const SAMPLES = Math.min(count('samples', 1), RUNS);
const INTERVAL = count('interval', 1);
const CONCURRENCY = count('concurrency', 1);
const BULK_POINTS = count('bulk-points', 0);
const PROGRESS_EVERY = count('progress-every', 1);
const SEED = count('seed', 0);
const DIALECTS = values.dialect.split(',').map((d) => d.trim());
for (const d of DIALECTS) if (d !== 'sqlite' && d !== 'postgres') throw new Error(`unknown --dialect '${d}'`);
const PAGE = 100;
const WARMUP = 3;

const CALLER = { actor: 'bench', scope: ['*'] };
const TABLE = llamaLikeTable(TENSORS);
const MB = 1e6;

const runId = (r: number) => `bench-run-${String(r).padStart(5, '0')}`;
const runSeed = (r: number) => deriveSeed(SEED, r);
const shapeOf = (r: number): RunShape => ({
  checkpoints: CHECKPOINTS,
  interval: INTERVAL,
  points: spread(POINTS, RUNS, r),
});

/** Bytes one checkpoint hands the catalog: tensor table (JSON), whole-vector sketch, per-tensor sketches. */
function payloadBytes(c: NewCheckpoint): { tensors: number; sketch: number; tensorSketches: number } {
  return {
    tensors: Buffer.byteLength(JSON.stringify(c.tensors)),
    sketch: c.summary.sketch.byteLength,
    tensorSketches: encodeTensorSketches(c.summary.tensorSketches).byteLength,
  };
}

interface FillReport {
  seconds: number;
  generate: number;
  putRun: number;
  insert: number;
  indicatorsCompute: number;
  setIndicators: number;
  appendMetrics: number;
  estimateFold: number;
  decisions: number[];
  payloadPerCheckpoint: number;
}

async function fill(label: string, context: GatewayContext): Promise<FillReport> {
  const { catalog, runs } = context;
  // The fold the run service does after storing a batch (RunService.appendMetrics), timed on its own.
  const estimates = new RunEstimates(catalog);
  const report: FillReport = {
    seconds: 0,
    generate: 0,
    putRun: 0,
    insert: 0,
    indicatorsCompute: 0,
    setIndicators: 0,
    appendMetrics: 0,
    estimateFold: 0,
    decisions: [],
    payloadPerCheckpoint: 0,
  };
  const started = performance.now();
  let payload = 0;
  let lastProgress = started;
  let lastProgressRuns = 0;
  const time = async <T>(
    key: keyof Omit<FillReport, 'decisions' | 'seconds' | 'payloadPerCheckpoint'>,
    work: () => Promise<T> | T,
  ) => {
    const mark = performance.now();
    const value = await work();
    report[key] += (performance.now() - mark) / 1000;
    return value;
  };
  for (let r = 0; r < RUNS; r++) {
    const id = runId(r);
    const shape = shapeOf(r);
    await time('putRun', () =>
      catalog.putRun(id, {
        plannedSteps: CHECKPOINTS * INTERVAL,
        trainSize: 1_000_000,
        tags: { model: 'tinyllama-like', dataset: 'bench', seed: String(runSeed(r)) },
      }),
    );
    const rows = await time('generate', () => {
      const gen = new SyntheticRun(id, TABLE, shape, runSeed(r));
      return Array.from({ length: CHECKPOINTS }, () => gen.next());
    });
    if (r === 0) {
      const p = payloadBytes(rows[0]);
      payload = p.tensors + p.sketch + p.tensorSketches;
      console.log(
        `[${label}] per checkpoint the catalog is handed ${payload} B: tensor table ${p.tensors} B (JSON), ` +
          `sketch ${p.sketch} B, per-tensor sketches ${p.tensorSketches} B`,
      );
    }
    await time('insert', async () => {
      let next = 0;
      const worker = async () => {
        while (next < rows.length) {
          const row = rows[next++];
          const res = await catalog.insertCheckpoint(row);
          if (!res.inserted) throw new Error(`${id}/${row.step} was already in the catalog`);
        }
      };
      await Promise.all(Array.from({ length: Math.min(CONCURRENCY, rows.length) }, worker));
    });
    const summaries = rows.map((row) => row.summary);
    rows.length = 0;
    const indicators = await time('indicatorsCompute', () => computeIndicators(summaries));
    await time('setIndicators', () =>
      catalog.setIndicators(
        id,
        summaries.map((s, i) => ({ step: s.step, indicators: indicators[i] })),
      ),
    );
    summaries.length = 0;
    const points = runMetrics(shape, runSeed(r));
    if (points.length > 0) {
      const stored = await time('appendMetrics', () => catalog.appendMetrics(id, points));
      if (stored !== points.length) throw new Error(`${id}: stored ${stored} of ${points.length} points`);
      await time('estimateFold', () => estimates.addMetrics(id, points));
    }
    const t = performance.now();
    await runs.setPolicy(id, { name: 'default' }, CALLER);
    report.decisions.push(performance.now() - t);

    const done = r + 1;
    if (done % PROGRESS_EVERY === 0 || done === RUNS) {
      const now = performance.now();
      const elapsed = (now - started) / 1000;
      const recent = (done - lastProgressRuns) / ((now - lastProgress) / 1000);
      console.log(
        `[${label}] fill ${done}/${RUNS} runs (${done * CHECKPOINTS} checkpoints) in ${formatSeconds(elapsed)}: ` +
          `${(recent * CHECKPOINTS).toFixed(0)} checkpoints/s lately, insert ${((done * CHECKPOINTS * payload) / MB / report.insert).toFixed(1)} MB/s, ` +
          `ETA ${formatSeconds((RUNS - done) / recent)}`,
      );
      lastProgress = now;
      lastProgressRuns = done;
    }
  }
  report.seconds = (performance.now() - started) / 1000;
  report.payloadPerCheckpoint = payload;
  return report;
}

interface Op {
  name: string;
  /** Untimed, just before each timed call on the same run. */
  prepare?: (run: number) => Promise<unknown>;
  call: (run: number, rng: () => number) => Promise<unknown>;
}

function readOps(context: GatewayContext): Op[] {
  const { runs } = context;
  return [
    { name: `list ${PAGE} (no tensors)`, call: (r) => runs.listCheckpoints(runId(r), { limit: PAGE }) },
    { name: `list ${PAGE} (tensors)`, call: (r) => runs.listCheckpoints(runId(r), { limit: PAGE, tensors: true }) },
    {
      name: 'checkpoint record',
      call: (r, rng) => runs.checkpoint(runId(r), (1 + Math.floor(rng() * CHECKPOINTS)) * INTERVAL),
    },
    { name: 'metrics page (1000)', call: (r) => runs.listMetrics(runId(r), { limit: 1000 }) },
    { name: 'trajectory', call: (r) => runs.trajectory(runId(r)) },
    { name: 'estimate', call: (r) => runs.estimate(runId(r)) },
    // Most of a decision on a run of up to 200 checkpoints: it reads every summary (sketch coverage).
    { name: 'summaries, all (catalog)', call: (r) => context.catalog.getSummaries(runId(r)) },
    { name: 'retention simulate', call: (r) => runs.simulate(runId(r)) },
    { name: 'retention decision (writes)', call: (r) => runs.setPolicy(runId(r), { name: 'default' }, CALLER) },
    // What each upload's commit pays: the run was just decided on (its summaries are cached), decide again.
    {
      name: 'decision, run warm',
      prepare: (r) => runs.simulate(runId(r)),
      call: (r) => runs.setPolicy(runId(r), { name: 'default' }, CALLER),
    },
  ];
}

/** `n` distinct run indices, seeded. */
function sample(n: number, seed: number): number[] {
  const rng = mulberry32(seed);
  const all = Array.from({ length: RUNS }, (_, i) => i);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(rng() * (RUNS - i));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, n);
}

async function timeReads(label: string, context: GatewayContext): Promise<{ name: string; ms: number[] }[]> {
  const picked = sample(Math.min(RUNS, SAMPLES + WARMUP), deriveSeed(SEED, 0x5a3e));
  const measured = picked.slice(0, SAMPLES);
  const warm = picked.length > SAMPLES ? picked.slice(SAMPLES) : measured.slice(0, WARMUP);
  const out: { name: string; ms: number[] }[] = [];
  for (const op of readOps(context)) {
    const rng = mulberry32(deriveSeed(SEED, out.length + 1));
    for (const r of warm) await op.call(r, rng);
    const ms: number[] = [];
    const started = performance.now();
    for (const r of measured) {
      await op.prepare?.(r);
      const t = performance.now();
      await op.call(r, rng);
      ms.push(performance.now() - t);
    }
    console.log(
      `[${label}] timed ${op.name}: ${ms.length} calls in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    out.push({ name: op.name, ms: ms.sort((a, b) => a - b) });
  }
  return out;
}

/** The measurement bench-catalog made before: one appendMetrics call into a fresh run, one listMetrics back. */
async function bulkMetrics(context: GatewayContext): Promise<string> {
  const n = BULK_POINTS;
  const points: MetricPoint[] = Array.from({ length: n }, (_, i) => ({
    step: Math.floor(i / 2),
    trainLoss: 1 / (i + 1),
    lr: 1e-3,
    batchSize: 128,
    ...(i % 3 === 0 ? { gradNorm: 0.5 } : {}),
  }));
  const run = 'bench-bulk-metrics';
  await context.catalog.ensureRun(run);
  const t0 = performance.now();
  const stored = await context.catalog.appendMetrics(run, points);
  const t1 = performance.now();
  const back = (await context.catalog.listMetrics(run, { limit: n + 1 })).items;
  const t2 = performance.now();
  if (stored !== n || back.length !== n)
    throw new Error(`bulk metrics: stored ${stored}, read back ${back.length} of ${n}`);
  const rate = (ms: number) => `${((n / ms) * 1000).toFixed(0)} points/s`;
  return (
    `metric bulk (one call, fresh run): append ${n} points ${(t1 - t0).toFixed(0)} ms (${rate(t1 - t0)}), ` +
    `list back in one page ${(t2 - t1).toFixed(0)} ms (${rate(t2 - t1)})`
  );
}

interface Sizes {
  total: number;
  tables: { name: string; bytes: number; detail?: string }[];
  note: string;
}

/** SQLite: the file after a WAL checkpoint, and per table/index from dbstat. The catalog must be closed. */
function sqliteSizes(file: string): Sizes {
  const db = new BetterSqlite3(file);
  try {
    db.pragma('wal_checkpoint(TRUNCATE)');
    const wal = `${file}-wal`;
    const total = statSync(file).size + (statSync(wal, { throwIfNoEntry: false })?.size ?? 0);
    const t = performance.now();
    const rows = db.prepare('select name, sum(pgsize) as bytes from dbstat group by name order by 2 desc').all() as {
      name: string;
      bytes: number;
    }[];
    return {
      total,
      tables: rows.map((r) => ({ name: r.name, bytes: r.bytes })),
      note: `file size after wal_checkpoint(TRUNCATE); per b-tree from dbstat (${((performance.now() - t) / 1000).toFixed(1)} s)`,
    };
  } finally {
    db.close();
  }
}

async function postgresSizes(db: ScratchDatabase): Promise<Sizes> {
  const [{ size }] = await db.query<{ size: string }>('select pg_database_size(current_database()) as size');
  const rows = await db.query<{ name: string; total: string; heap: string; toast: string; indexes: string }>(
    `select c.relname as name, pg_total_relation_size(c.oid) as total, pg_relation_size(c.oid) as heap,
            coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) as toast, pg_indexes_size(c.oid) as indexes
       from pg_class c where c.relkind = 'r' and c.relnamespace = 'public'::regnamespace order by 2 desc`,
  );
  return {
    total: Number(size),
    tables: rows.map((r) => ({
      name: r.name,
      bytes: Number(r.total),
      detail: `heap ${mb(Number(r.heap))}, toast ${mb(Number(r.toast))}, indexes ${mb(Number(r.indexes))}`,
    })),
    note: 'pg_database_size after ANALYZE; per table pg_total_relation_size',
  };
}

const mb = (b: number) => `${(b / MB).toFixed(1)} MB`;
const fmtMs = (v: number) => (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0));

async function diskFree(dir: string): Promise<string> {
  const s = await statfs(dir);
  return `${((s.bavail * s.bsize) / 1024 ** 3).toFixed(1)} GiB free under ${dir}`;
}

async function benchDialect(dialect: 'sqlite' | 'postgres'): Promise<void> {
  const started = performance.now();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-bench-catalog-'));
  let scratch: ScratchDatabase | null = null;
  let context: GatewayContext | null = null;
  try {
    const file = path.join(dir, 'catalog.db');
    if (dialect === 'postgres') scratch = await createScratchDatabase(values['postgres-url'], 'trajgate_bench');
    const catalogUrl = scratch ? scratch.url : `sqlite://${file}`;
    const config = loadConfig({ TRAJGATE_DATA_DIR: dir, TRAJGATE_CATALOG_URL: catalogUrl, TRAJGATE_AUTH: 'none' });
    const logger = pino({ level: 'warn' });
    console.log(`\n== ${dialect}: ${catalogUrl} (${await diskFree(dialect === 'sqlite' ? dir : '/')})`);
    context = await openContext(config, logger);
    const filled = await fill(dialect, context);

    let sizes: Sizes;
    if (dialect === 'sqlite') {
      await closeContext(context);
      context = null;
      sizes = sqliteSizes(file);
      context = await openContext(config, logger);
    } else {
      const t = performance.now();
      await scratch!.query('analyze');
      console.log(`[postgres] ANALYZE in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      sizes = await postgresSizes(scratch!);
    }
    const reads = await timeReads(dialect, context);
    const bulk = BULK_POINTS > 0 ? await bulkMetrics(context) : null;

    const checkpoints = RUNS * CHECKPOINTS;
    const d = [...filled.decisions].sort((a, b) => a - b);
    const rate = (n: number, s: number, unit: string) => `${(n / s).toFixed(0)} ${unit}/s`;
    console.log(
      `\n${dialect}: ${RUNS} runs × ${CHECKPOINTS} checkpoints × ${TENSORS} tensors, ${POINTS} metric points`,
    );
    console.log(`  fill ${filled.seconds.toFixed(1)} s wall, of which:`);
    const line = (what: string, s: number, extra = '') =>
      console.log(`    ${what.padEnd(34)} ${s.toFixed(1).padStart(8)} s  ${extra}`);
    line('generate summaries (bench side)', filled.generate);
    line('putRun', filled.putRun);
    line(
      `insertCheckpoint (${CONCURRENCY} in flight)`,
      filled.insert,
      `${rate(checkpoints, filled.insert, 'checkpoints')}, ${((checkpoints * filled.payloadPerCheckpoint) / MB / filled.insert).toFixed(1)} MB/s`,
    );
    line('computeIndicators (bench side)', filled.indicatorsCompute);
    line(
      'setIndicators (one call per run)',
      filled.setIndicators,
      rate(checkpoints, filled.setIndicators, 'checkpoints'),
    );
    line(
      'appendMetrics (one batch per run)',
      filled.appendMetrics,
      POINTS ? rate(POINTS, filled.appendMetrics, 'points') : '',
    );
    line(
      'estimate fold (RunEstimates)',
      filled.estimateFold,
      POINTS ? rate(POINTS, filled.estimateFold, 'points') : '',
    );
    line(
      'retention decision per run',
      d.reduce((a, b) => a + b, 0) / 1000,
      `p50 ${fmtMs(quantile(d, 0.5))} ms, p99 ${fmtMs(quantile(d, 0.99))} ms`,
    );
    console.log(
      `  catalog bytes: ${mb(sizes.total)} total, ${(sizes.total / checkpoints).toFixed(0)} B per checkpoint ` +
        `(${filled.payloadPerCheckpoint} B handed in per checkpoint; ${sizes.note})`,
    );
    for (const t of sizes.tables.filter((t) => t.bytes >= sizes.total / 1000)) {
      console.log(
        `    ${t.name.padEnd(34)} ${mb(t.bytes).padStart(12)}  ${(t.bytes / checkpoints).toFixed(0).padStart(7)} B/checkpoint${t.detail ? `  (${t.detail})` : ''}`,
      );
    }
    console.log(`  reads over ${SAMPLES} sampled runs, ms:${''.padEnd(8)}p50       p99       max`);
    for (const { name, ms } of reads) {
      console.log(
        `    ${name.padEnd(32)} ${fmtMs(quantile(ms, 0.5)).padStart(8)}  ${fmtMs(quantile(ms, 0.99)).padStart(8)}  ${fmtMs(ms[ms.length - 1]).padStart(8)}`,
      );
    }
    if (bulk) console.log(`  ${bulk}`);
    console.log(`  ${dialect} total ${formatSeconds((performance.now() - started) / 1000)} wall; ${machineLine()}`);
  } finally {
    if (context) await closeContext(context);
    if (scratch) await scratch.drop();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  console.log(
    `bench-catalog: ${RUNS} runs × ${CHECKPOINTS} checkpoints (every ${INTERVAL} steps) × ${TENSORS} tensors, ` +
      `${POINTS} metric points (${spread(POINTS, RUNS, 0)} per run), ${SAMPLES} sampled runs, seed ${SEED}, ` +
      `dialects ${DIALECTS.join(', ')}`,
  );
  console.log(machineLine());
  for (const dialect of DIALECTS) await benchDialect(dialect as 'sqlite' | 'postgres');
  console.log(`\nbench-catalog done in ${formatSeconds((performance.now() - started) / 1000)}; ${machineLine()}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
