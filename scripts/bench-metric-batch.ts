/**
 * Event-loop stalls from large metric batches. A gateway runs in a child process on a real socket; this
 * process posts the largest allowed batch (by default TRAJGATE_MAX_POINTS_PER_BATCH points, a few in a
 * row, to one run) while a second client polls `GET /healthz` (no I/O: its latency is the gateway's
 * event-loop stall) and `GET /readyz` (a catalog query: it also waits for the database) every ~5 ms.
 * Prints the pollers' worst and p99 latency (and, as the noise floor, /healthz polled for 2 s on the idle
 * gateway first), each batch's time and the throughput, and, measured in this process, how long one
 * synchronous `JSON.parse` / msgpack `unpack` of such a whole body takes.
 *
 *   npx tsx scripts/bench-metric-batch.ts [--points N] [--batches 3] [--format json|msgpack] [--extra 4]
 */
import { fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { pack, unpack } from 'msgpackr';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/server.js';

const { values } = parseArgs({
  options: {
    serve: { type: 'string' },
    points: { type: 'string' },
    batches: { type: 'string', default: '3' },
    format: { type: 'string', default: 'json' },
    extra: { type: 'string', default: '4' },
  },
});

type Point = Record<string, number | Record<string, number>>;

/** `n` points from `from + 1` on, with the fields training code logs every step and `extra` keys. */
function makeBatch(from: number, n: number, extraKeys: number): Point[] {
  return Array.from({ length: n }, (_, i) => {
    const step = from + i + 1;
    const p: Point = {
      step,
      trainLoss: 2 / (1 + step / 1e4) + Math.random() * 1e-3,
      lr: 0.05,
      gradNorm: 1 + 0.3 * Math.sin(step / 7),
      updateNorm: 0.05 * (1 + 0.3 * Math.sin(step / 7)),
    };
    if (extraKeys > 0) {
      const extra: Record<string, number> = {};
      for (let k = 0; k < extraKeys; k++) extra[`m${k}`] = Math.random();
      p.extra = extra;
    }
    return p;
  });
}

/** Polls `url` every ~5 ms until stopped; returns each request's latency in ms. */
function poll(url: string): { stop(): Promise<number[]> } {
  const times: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const t = performance.now();
      const res = await fetch(url);
      await res.arrayBuffer();
      times.push(performance.now() - t);
      await sleep(5);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return times;
    },
  };
}

function describe(name: string, times: number[]): string {
  const sorted = [...times].sort((a, b) => a - b);
  const p99 = sorted[Math.min(sorted.length - 1, Math.floor(0.99 * sorted.length))];
  return `${name}: ${sorted.length} polls, worst ${sorted[sorted.length - 1].toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`;
}

/** Child process: the gateway, which reports its URL and runs until told to stop. */
async function serve(dataDir: string): Promise<void> {
  const config = loadConfig({ ...process.env, TRAJGATE_DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1' });
  const server = await startServer(config, pino({ level: 'warn' }));
  process.send?.({ url: server.url, maxPointsPerBatch: config.limits.maxPointsPerBatch });
  process.once('message', async () => {
    await server.close();
    process.exit(0);
  });
}

async function main(): Promise<void> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-bench-batch-'));
  const child = fork(new URL(import.meta.url).pathname, ['--serve', dataDir], { stdio: 'inherit' });
  try {
    const { url, maxPointsPerBatch } = await new Promise<{ url: string; maxPointsPerBatch: number }>(
      (resolve, reject) => {
        child.once('message', (m) => resolve(m as { url: string; maxPointsPerBatch: number }));
        child.once('exit', (code) => reject(new Error(`gateway exited with ${code}`)));
      },
    );
    const n = values.points ? Number(values.points) : maxPointsPerBatch;
    const batches = Number(values.batches);
    const extraKeys = Number(values.extra);
    const format = values.format === 'msgpack' ? 'msgpack' : 'json';
    const bodies: Buffer[] = [];
    for (let b = 0; b < batches; b++) {
      const points = makeBatch(b * n, n, extraKeys);
      bodies.push(format === 'json' ? Buffer.from(JSON.stringify({ points })) : pack({ points }));
    }
    const mib = (bodies[0].length / 2 ** 20).toFixed(1);
    const parseTimes: number[] = [];
    for (const body of bodies) {
      const t = performance.now();
      if (format === 'json') JSON.parse(body.toString('utf8'));
      else unpack(body);
      parseTimes.push(performance.now() - t);
    }
    console.log(
      `bench-metric-batch: ${batches} × ${n} points (${extraKeys} extra keys each), ${format}, ${mib} MiB per body; ` +
        `${format === 'json' ? 'JSON.parse' : 'unpack'} of one body here: ` +
        `${parseTimes.map((t) => t.toFixed(0)).join(', ')} ms`,
    );

    await fetch(`${url}/v1/runs/bench`, { method: 'PUT' });
    // The noise floor: the same polling of an idle gateway (a busy machine delays the processes themselves).
    const idle = poll(`${url}/healthz`);
    await sleep(2000);
    const idleTimes = await idle.stop();
    const health = poll(`${url}/healthz`);
    const ready = poll(`${url}/readyz`);
    await sleep(200);
    const started = performance.now();
    const each: string[] = [];
    for (const body of bodies) {
      const t = performance.now();
      const res = await fetch(`${url}/v1/runs/bench/metrics`, {
        method: 'POST',
        headers: { 'content-type': format === 'json' ? 'application/json' : 'application/msgpack' },
        body,
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`POST metrics: ${res.status} ${text.slice(0, 300)}`);
      each.push(`${(performance.now() - t).toFixed(0)} ms`);
    }
    const elapsed = (performance.now() - started) / 1000;
    await sleep(200);
    const healthTimes = await health.stop();
    const readyTimes = await ready.stop();
    const stored = (await (await fetch(`${url}/v1/runs/bench/metrics?limit=1&fromStep=${batches * n}`)).json()) as {
      items: { step: number }[];
    };
    if (stored.items[0]?.step !== batches * n) throw new Error('the last point was not stored');
    console.log(
      `batches: ${each.join(', ')}; ${((batches * n) / elapsed).toFixed(0)} points/s, ` +
        `${((batches * bodies[0].length) / 2 ** 20 / elapsed).toFixed(1)} MiB/s`,
    );
    console.log(describe('GET /healthz, idle gateway (noise floor)', idleTimes));
    console.log(describe('GET /healthz', healthTimes));
    console.log(describe('GET /readyz ', readyTimes));
  } finally {
    child.send('stop');
    await new Promise((resolve) => child.once('exit', resolve));
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (values.serve) {
  serve(values.serve).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
