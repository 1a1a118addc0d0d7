/**
 * Uploads a recorded run (the directory scripts/train-mnist.ts writes: checkpoints/*.safetensors and
 * metrics.jsonl) to a gateway over HTTP and prints the run's trajectory as the gateway sees it.
 * Without --url it starts a gateway on embedded defaults in a temporary directory.
 *
 *   npx tsx scripts/upload-run.ts --dir /tmp/run1 [--run NAME] [--url http://localhost:8080]
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/server.js';

const { values } = parseArgs({
  options: { dir: { type: 'string' }, run: { type: 'string' }, url: { type: 'string' } },
});
if (!values.dir) {
  console.error('usage: upload-run.ts --dir RUN_DIR [--run NAME] [--url URL]');
  process.exit(2);
}
const dir = values.dir;
const run = values.run ?? path.basename(dir);

async function request(url: string, init?: RequestInit): Promise<unknown> {
  const res = await fetch(url, init);
  const body = await res.json();
  if (!res.ok) throw new Error(`${init?.method ?? 'GET'} ${url}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

async function upload(base: string): Promise<void> {
  const lines = (await readFile(path.join(dir, 'metrics.jsonl'), 'utf8')).split('\n').filter(Boolean);
  const points = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  for (let i = 0; i < points.length; i += 10_000) {
    await request(`${base}/v1/runs/${run}/metrics`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ points: points.slice(i, i + 10_000) }),
    });
  }
  const files = (await readdir(path.join(dir, 'checkpoints'))).filter((f) => f.endsWith('.safetensors')).sort();
  for (const file of files) {
    const step = Number(path.basename(file, '.safetensors'));
    await request(`${base}/v1/runs/${run}/checkpoints/${step}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.safetensors' },
      body: await readFile(path.join(dir, 'checkpoints', file)),
    });
  }
  console.log(`uploaded ${files.length} checkpoints and ${points.length} metric points to ${base}/v1/runs/${run}`);
}

interface TrajectoryItem {
  step: number;
  phase: string;
  updateNorm: number | null;
  relativeChange: number | null;
  distanceFromStart: number;
  pathLength: number;
  cosinePrev: number | null;
  changeScore: number;
  trainLoss: number | null;
  topTensors: { name: string }[];
}

function fmt(v: number | null, digits = 4): string {
  return v === null ? '-' : v.toPrecision(digits);
}

async function printTrajectory(base: string): Promise<void> {
  const t = (await request(`${base}/v1/runs/${run}/trajectory`)) as {
    items: TrajectoryItem[];
    phases: { method: string };
    totals: Record<string, number>;
  };
  console.log(`phases by ${t.phases.method}; totals ${JSON.stringify(t.totals)}`);
  console.log('step   phase  updateNorm  relChange  distStart  pathLength  cosPrev  change  trainLoss  top tensor');
  for (const i of t.items) {
    console.log(
      [
        String(i.step).padStart(5),
        i.phase.padStart(6),
        fmt(i.updateNorm).padStart(10),
        fmt(i.relativeChange, 3).padStart(10),
        fmt(i.distanceFromStart).padStart(10),
        fmt(i.pathLength).padStart(11),
        fmt(i.cosinePrev, 2).padStart(8),
        i.changeScore.toFixed(2).padStart(7),
        fmt(i.trainLoss).padStart(10),
        ` ${i.topTensors[0]?.name ?? '-'}`,
      ].join(' '),
    );
  }
}

async function main(): Promise<void> {
  if (values.url) {
    await upload(values.url);
    await printTrajectory(values.url);
    return;
  }
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-upload-'));
  const server = await startServer(
    loadConfig({ TRAJGATE_DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1' }),
    pino({ level: 'warn' }),
  );
  try {
    await upload(server.url);
    await printTrajectory(server.url);
  } finally {
    await server.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
