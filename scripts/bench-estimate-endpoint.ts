/**
 * GET /v1/runs/{run}/estimate latency over a real socket for a run with 1,000,000 metric points (posted
 * through the API in batches, as the SDK sends them), with 40 checkpoints' worth of phases. Prints p50,
 * p99 and max over repeated reads, and the first read after a restart (state parsed from the catalog).
 *
 *   npx tsx scripts/bench-estimate-endpoint.ts [--points 1000000] [--reads 500]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pack } from 'msgpackr';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/server.js';

const { values } = parseArgs({
  options: { points: { type: 'string', default: '1000000' }, reads: { type: 'string', default: '500' } },
});
const total = Number(values.points);
const reads = Number(values.reads);
const BATCH = 10_000;

function batch(from: number): Record<string, number | Record<string, number>>[] {
  return Array.from({ length: BATCH }, (_, i) => {
    const step = from + i + 1;
    const lr = 0.05;
    const gradNorm = 1 + 0.3 * Math.sin(step / 7);
    const p: Record<string, number | Record<string, number>> = {
      step,
      lr,
      batchSize: 64,
      trainLoss: 2 / (1 + step / 1e4),
      gradNorm,
      gradVariance: 40 / Math.sqrt(1 + step / 1000),
      updateNorm: lr * gradNorm,
    };
    if (step % 1000 === 0) {
      p.valLoss = (2 / (1 + step / 1e4)) * 1.2;
      p.extra = { trainEvalLoss: 2 / (1 + step / 1e4) };
    }
    return p;
  });
}

async function timeReads(url: string, n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const res = await fetch(`${url}/v1/runs/bench/estimate`);
    await res.json();
    times.push(performance.now() - t);
  }
  return times.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-bench-estimate-'));
  const config = loadConfig({ TRAJGATE_DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1' });
  try {
    let server = await startServer(config, pino({ level: 'warn' }));
    await fetch(`${server.url}/v1/runs/bench`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ trainSize: 50_000 }),
    });
    const started = performance.now();
    for (let from = 0; from < total; from += BATCH) {
      const res = await fetch(`${server.url}/v1/runs/bench/metrics`, {
        method: 'POST',
        headers: { 'content-type': 'application/msgpack' },
        body: pack({ points: batch(from) }),
      });
      if (!res.ok) throw new Error(`POST metrics: ${res.status} ${await res.text()}`);
    }
    console.log(
      `bench-estimate-endpoint: posted ${total} metric points in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    await timeReads(server.url, 20);
    const times = await timeReads(server.url, reads);
    const pct = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))].toFixed(2);
    console.log(
      `GET /estimate, ${reads} reads: p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${times[times.length - 1].toFixed(2)} ms`,
    );
    await server.close();
    server = await startServer(config, pino({ level: 'warn' }));
    const [cold] = await timeReads(server.url, 1);
    console.log(`first read after a restart (state parsed from the catalog): ${cold.toFixed(1)} ms`);
    await server.close();
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
