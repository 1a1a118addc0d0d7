/**
 * Ingest throughput: uploads a generated safetensors checkpoint through a gateway child process over a
 * real socket, and separately writes the same bytes straight into the same kind of store (the floor any
 * gateway pays). Prints both throughputs, their ratio and the gateway's peak RSS (VmHWM), per size.
 *
 *   npx tsx scripts/bench-ingest.ts [--size-mb 512[,2048]] [--repeat 2] [--env KEY=VALUE ...]
 *     [--replicas N] [--catalog-url URL] [--postgres-url postgres://postgres@127.0.0.1:5432/postgres]
 *
 * With --replicas N > 1: N gateway processes share one Postgres catalog (a fresh database on the server
 * --postgres-url names, dropped at the end, unless --catalog-url names one) and one blob directory. Per size,
 * after one small warm-up upload per replica, each repeat runs in turn: N uploads at once, one per replica
 * (each to a run of its own); N uploads at once to replica 0 alone (the others idle); one upload to replica
 * 0; N raw store writers at once. Aggregate throughput = N × checkpoint size ÷ the wall time from the first
 * upload's start to the last one's end; best of --repeat. With one replica, --catalog-url points its catalog
 * elsewhere than its data directory.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { LocalBlobStore } from '../src/storage/local-blob-store.js';
import { encodeSafetensorsHeader, type TensorSpec } from '@trajgate/sdk/wire/safetensors';
import { type ScratchDatabase, createScratchDatabase, machineLine } from './lib/bench-env.js';
import { type GatewayProcess, startGatewayProcess } from './lib/gateway-process.js';

const MiB = 1024 * 1024;
const { values } = parseArgs({
  options: {
    'size-mb': { type: 'string', default: '512' },
    repeat: { type: 'string', default: '2' },
    env: { type: 'string', multiple: true, default: [] },
    replicas: { type: 'string', default: '1' },
    'catalog-url': { type: 'string' },
    'postgres-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
  },
});
const sizes = values['size-mb'].split(',').map(Number);
const repeat = Number(values.repeat);
const replicas = Number(values.replicas);
if (!Number.isInteger(replicas) || replicas < 1) throw new Error(`--replicas must be a whole number ≥ 1`);
const extraEnv = Object.fromEntries(values.env.map((kv) => kv.split('=', 2) as [string, string]));
/** TRAJGATE_ settings of this shell reach the gateway as before (the process helper passes none by itself). */
/** In run names, so runs never collide with an earlier invocation's in a catalog given by --catalog-url. */
const TAG = Date.now().toString(36);
const shellEnv = Object.fromEntries(
  Object.entries(process.env).filter((e): e is [string, string] => e[0].startsWith('TRAJGATE_') && e[1] !== undefined),
);

/** Writes a safetensors file of about `sizeMb` MiB: F32 tensors of 16M elements with weight-like values. */
async function generateCheckpoint(file: string, sizeMb: number): Promise<number> {
  const totalElements = Math.floor((sizeMb * MiB) / 4);
  const perTensor = 16 * MiB;
  const tensors: TensorSpec[] = [];
  for (let i = 0, left = totalElements; left > 0; i++, left -= perTensor) {
    tensors.push({
      name: `layers.${String(i).padStart(4, '0')}.weight`,
      dtype: 'F32',
      shape: [Math.min(perTensor, left)],
    });
  }
  const handle = await open(file, 'w');
  try {
    const header = encodeSafetensorsHeader(tensors);
    await handle.write(header);
    const block = new Float32Array(MiB);
    let seed = 12345;
    for (let i = 0; i < block.length; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      block[i] = (seed / 2 ** 32 - 0.5) * 0.2;
    }
    const bytes = new Uint8Array(block.buffer);
    let left = totalElements * 4;
    while (left > 0) {
      const n = Math.min(left, bytes.length);
      await handle.write(bytes, 0, n);
      left -= n;
    }
    return header.length + totalElements * 4;
  } finally {
    await handle.close();
  }
}

function startGateway(env: Record<string, string>): Promise<GatewayProcess> {
  return startGatewayProcess({ ...shellEnv, ...env, ...extraEnv });
}

async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /VmHWM:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) / 1024 : NaN;
}

function upload(url: string, run: string, step: number, file: string, bytes: number): Promise<number> {
  const target = new URL(`/v1/runs/${run}/checkpoints/${step}`, url);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(target, {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.safetensors', 'content-length': bytes },
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c));
      res.on('end', () => {
        if (res.statusCode !== 201) reject(new Error(`upload answered ${res.statusCode}: ${body}`));
        else resolve((performance.now() - started) / 1000);
      });
    });
    req.on('error', reject);
    createReadStream(file, { highWaterMark: MiB }).pipe(req);
  });
}

async function rawWrite(dir: string, key: string, file: string): Promise<number> {
  const store = new LocalBlobStore(dir);
  const started = performance.now();
  const writer = store.createWriter(key);
  await pipeline(createReadStream(file, { highWaterMark: MiB }), async (source: AsyncIterable<Uint8Array>) => {
    for await (const chunk of source) await writer.write(chunk);
  });
  await writer.commit();
  const seconds = (performance.now() - started) / 1000;
  await store.close();
  return seconds;
}

/** Wall seconds for all of `jobs` started at once. */
async function together(jobs: (() => Promise<unknown>)[]): Promise<number> {
  const started = performance.now();
  await Promise.all(jobs.map((job) => job()));
  return (performance.now() - started) / 1000;
}

async function singleReplica(work: string): Promise<void> {
  for (const sizeMb of sizes) {
    const file = path.join(work, `ckpt-${sizeMb}.safetensors`);
    const bytes = await generateCheckpoint(file, sizeMb);
    const dataDir = path.join(work, `data-${sizeMb}`);
    const gateway = await startGateway({
      TRAJGATE_DATA_DIR: dataDir,
      ...(values['catalog-url'] ? { TRAJGATE_CATALOG_URL: values['catalog-url'] } : {}),
    });
    let gatewayBest = Infinity;
    let rawBest = Infinity;
    try {
      for (let i = 0; i < repeat; i++) {
        // Alternate so page cache and disk state favour neither side.
        gatewayBest = Math.min(gatewayBest, await upload(gateway.url, `bench-${TAG}-${sizeMb}`, i, file, bytes));
        rawBest = Math.min(rawBest, await rawWrite(path.join(work, `raw-${sizeMb}`), `raw/${i}`, file));
      }
      const peak = await peakRssMb(gateway.child.pid!);
      const gatewayMBs = bytes / MiB / gatewayBest;
      const rawMBs = bytes / MiB / rawBest;
      console.log(
        `size ${sizeMb} MiB: gateway ${gatewayMBs.toFixed(0)} MiB/s, raw store write ${rawMBs.toFixed(0)} MiB/s, ` +
          `ratio ${(gatewayMBs / rawMBs).toFixed(2)}, gateway peak RSS ${peak.toFixed(0)} MiB`,
      );
    } finally {
      await gateway.stop();
      await rm(dataDir, { recursive: true, force: true });
      await rm(path.join(work, `raw-${sizeMb}`), { recursive: true, force: true });
      await rm(file, { force: true });
    }
  }
}

async function severalReplicas(work: string): Promise<void> {
  const n = replicas;
  const given = values['catalog-url'];
  const scratch: ScratchDatabase | null = given
    ? null
    : await createScratchDatabase(values['postgres-url'], 'trajgate_bench_ingest');
  const catalogUrl = scratch ? scratch.url : given!;
  console.log(
    `catalog ${catalogUrl.replace(/\/\/([^:@/]+):[^@/]+@/, '//$1:***@')}${scratch ? ' (fresh, dropped at the end)' : ''}`,
  );
  try {
    for (const sizeMb of sizes) {
      const file = path.join(work, `ckpt-${sizeMb}.safetensors`);
      const bytes = await generateCheckpoint(file, sizeMb);
      const blobs = path.join(work, `blobs-${sizeMb}`);
      const raw = path.join(work, `raw-${sizeMb}`);
      const gateways = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          startGateway({
            TRAJGATE_DATA_DIR: path.join(work, `replica-${i}-${sizeMb}`),
            TRAJGATE_CATALOG_URL: catalogUrl,
            TRAJGATE_BLOB_URL: blobs,
          }),
        ),
      );
      const best = { replicas: Infinity, oneReplica: Infinity, single: Infinity, raw: Infinity };
      try {
        // One small upload per replica first, so no measurement pays a process's first-upload (JIT) costs.
        const warmFile = path.join(work, 'warm-up.safetensors');
        const warmBytes = await generateCheckpoint(warmFile, Math.min(16, sizeMb));
        for (const [i, g] of gateways.entries())
          await upload(g.url, `bench-${TAG}-warm-up-${i}`, sizeMb, warmFile, warmBytes);
        await rm(warmFile, { force: true });
        for (let r = 0; r < repeat; r++) {
          // Each upload goes to a run of its own: uploads of one run share the run's lock for their commit.
          best.replicas = Math.min(
            best.replicas,
            await together(
              gateways.map((g, i) => () => upload(g.url, `bench-${TAG}-${sizeMb}-rep${i}`, r, file, bytes)),
            ),
          );
          best.oneReplica = Math.min(
            best.oneReplica,
            await together(
              gateways.map((_, i) => () => upload(gateways[0].url, `bench-${TAG}-${sizeMb}-one${i}`, r, file, bytes)),
            ),
          );
          best.single = Math.min(
            best.single,
            await upload(gateways[0].url, `bench-${TAG}-${sizeMb}-single`, r, file, bytes),
          );
          best.raw = Math.min(
            best.raw,
            await together(gateways.map((_, i) => () => rawWrite(raw, `raw/${r}-${i}`, file))),
          );
          console.log(`  size ${sizeMb} MiB: repeat ${r + 1}/${repeat} done`);
        }
        const peaks = await Promise.all(gateways.map((g) => peakRssMb(g.child.pid!)));
        const aggregate = (seconds: number, uploads: number) => (uploads * bytes) / MiB / seconds;
        const repMBs = aggregate(best.replicas, n);
        const oneMBs = aggregate(best.oneReplica, n);
        const singleMBs = aggregate(best.single, 1);
        const rawMBs = aggregate(best.raw, n);
        const row = (what: string, mbs: number, extra = '') =>
          console.log(`  ${what.padEnd(40)} ${mbs.toFixed(0).padStart(6)} MiB/s${extra}`);
        console.log(`size ${sizeMb} MiB, ${n} concurrent uploads, best of ${repeat} (${os.cpus().length} cores):`);
        row(`${n} replicas, one upload each`, repMBs, `  (${(repMBs / n).toFixed(0)} per upload)`);
        row(`1 replica, ${n} uploads at once`, oneMBs, `  (${(oneMBs / n).toFixed(0)} per upload)`);
        row('1 replica, 1 upload', singleMBs);
        row(`raw store, ${n} writers at once`, rawMBs);
        console.log(
          `  ratios: ${n} replicas / 1 replica ${(repMBs / oneMBs).toFixed(2)}, ${n} replicas / raw ${(repMBs / rawMBs).toFixed(2)}, ` +
            `1 replica / raw ${(oneMBs / rawMBs).toFixed(2)}, 1 replica ${n} uploads / 1 upload ${(oneMBs / singleMBs).toFixed(2)}`,
        );
        console.log(`  gateway peak RSS ${peaks.map((p, i) => `replica ${i} ${p.toFixed(0)} MiB`).join(', ')}`);
        const errors = gateways.flatMap((g) => g.errors);
        if (errors.length > 0) console.log(`  gateway errors logged:\n${errors.join('\n')}`);
      } finally {
        await Promise.all(gateways.map((g) => g.stop()));
        for (const dir of [blobs, raw, ...gateways.map((_, i) => path.join(work, `replica-${i}-${sizeMb}`))]) {
          await rm(dir, { recursive: true, force: true });
        }
        await rm(file, { force: true });
      }
    }
  } finally {
    if (scratch) await scratch.drop();
  }
}

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'trajgate-bench-'));
  console.log(
    `bench-ingest: sizes ${sizes.join(', ')} MiB, best of ${repeat}, env ${JSON.stringify(extraEnv)}, ${os.cpus().length} cores` +
      (replicas > 1 ? `, ${replicas} replicas` : ''),
  );
  if (replicas > 1) console.log(machineLine());
  try {
    if (replicas > 1) await severalReplicas(work);
    else await singleReplica(work);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
