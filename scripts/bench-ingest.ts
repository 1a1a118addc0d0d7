/**
 * Ingest throughput against a bare server: uploads a generated F32 safetensors checkpoint over a real socket
 * to a gateway child process and to a bare Node HTTP server (scripts/lib/bare-server.ts: streams the body to
 * a file in the same work directory and fsyncs it before answering), alternating the two in one run, so
 * both see the same disk, page cache and machine load. Per store and size it prints every round, the median
 * ratio gateway/bare, and the gateway's peak RSS (VmHWM):
 *
 *   - single upload: one upload at a time;
 *   - N uploads at once (--concurrent, default 4): aggregate throughput, N × size ÷ wall time;
 *   - downloads (GET …/content, whole and the second half by Range) against the bare server's GET.
 *
 * The gateway runs as deployed, compiled (`node dist/main.js`; the script runs `npm run build` first), unless
 * --gateway sources runs it under tsx (which loads the TypeScript loader into the gateway and each of its worker
 * threads: about 60 MiB more).
 *
 * With --store s3 the gateway writes to s3rver (a child process on 127.0.0.1) and is compared twice: with the
 * bare server, which still writes to the local disk (what S3 through s3rver costs in all), and with the same
 * transfer sent straight to s3rver by the AWS SDK (lib-storage multipart upload, the gateway's default part
 * size and queue; GetObject for downloads): what the gateway adds on top of the server.
 *
 *   npx tsx scripts/bench-ingest.ts [--size-mb 1024[,4096]] [--rounds 3] [--concurrent 4] [--store local[,s3]]
 *     [--no-download] [--gateway compiled|sources] [--cpu-prof-dir DIR] [--env KEY=VALUE ...] [--replicas N] [--repeat 2] [--catalog-url URL]
 *     [--postgres-url postgres://postgres@127.0.0.1:5432/postgres]
 *
 * Gateway blobs of finished rounds are deleted through the blob store between rounds (outside the timing),
 * so a 4 GiB run needs about (2 + concurrent) × 4 GiB of free space in the temp directory.
 *
 * With --replicas N > 1: N gateway processes share one Postgres catalog (a fresh database on the server
 * --postgres-url names, dropped at the end, unless --catalog-url names one) and one blob directory. Per size,
 * after one small warm-up upload per replica, each repeat runs in turn: N uploads at once, one per replica
 * (each to a run of its own); N uploads at once to replica 0 alone (the others idle); one upload to replica
 * 0; N raw store writers at once. Aggregate throughput = N × checkpoint size ÷ the wall time from the first
 * upload's start to the last one's end; best of --repeat. With one replica, --catalog-url points its catalog
 * elsewhere than its data directory.
 */
import { spawn, spawnSync } from 'node:child_process';
import { DeleteObjectCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import type { BlobStore } from '../src/storage/blob-store.js';
import { checkpointPrefix, isManifestKey, parseCheckpointKey } from '../src/storage/keys.js';
import { LocalBlobStore } from '../src/storage/local-blob-store.js';
import { S3BlobStore } from '../src/storage/s3-blob-store.js';
import { encodeSafetensorsHeader, type TensorSpec } from '@trajgate/sdk/wire/safetensors';
import { type ScratchDatabase, createScratchDatabase, machineLine } from './lib/bench-env.js';
import { type GatewayProcess, startGatewayProcess } from './lib/gateway-process.js';

const MiB = 1024 * 1024;
const { values } = parseArgs({
  options: {
    'size-mb': { type: 'string', default: '1024' },
    rounds: { type: 'string', default: '3' },
    concurrent: { type: 'string', default: '4' },
    store: { type: 'string', default: 'local' },
    'no-download': { type: 'boolean', default: false },
    gateway: { type: 'string', default: 'compiled' },
    'cpu-prof-dir': { type: 'string' },
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
const rounds = Number(values.rounds);
const concurrent = Number(values.concurrent);
const download = !values['no-download'];
const stores = values.store.split(',');
if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be a whole number ≥ 1');
if (!Number.isInteger(concurrent) || concurrent < 1) throw new Error('--concurrent must be a whole number ≥ 1');
if (stores.some((s) => s !== 'local' && s !== 's3')) throw new Error('--store takes local and/or s3');
if (values.gateway !== 'compiled' && values.gateway !== 'sources')
  throw new Error('--gateway takes compiled or sources');
const compiled = values.gateway === 'compiled';
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

/** With --cpu-prof-dir, each gateway writes a V8 CPU profile there when it stops (scripts/profile-summary.ts reads it). */
const profileArgs = values['cpu-prof-dir']
  ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(values['cpu-prof-dir'])}`]
  : [];

function startGateway(env: Record<string, string>): Promise<GatewayProcess> {
  return startGatewayProcess({ ...shellEnv, ...env, ...extraEnv }, { nodeArgs: profileArgs, compiled });
}

async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /VmHWM:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) / 1024 : NaN;
}

/** PUTs `file` as checkpoint `step` of `run` at the gateway `url`; the seconds until its 201. */
function upload(url: string, run: string, step: number, file: string, bytes: number): Promise<number> {
  return put(new URL(`/v1/runs/${run}/checkpoints/${step}`, url), file, bytes, 201);
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

/** A baseline child process (scripts/lib/bare-server.ts) and the URL it listens on. */
async function startBaseline(args: string[]): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(import.meta.dirname, 'lib/bare-server.ts'), ...args],
    {
      env: { ...process.env, NODE_OPTIONS: '' },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      const match = /listening (http:\S+)/.exec(out);
      if (match) resolve(match[1]);
    });
    child.once('exit', (code) => reject(new Error(`${args[0]} exited (${code}) before listening`)));
  });
  const exited = once(child, 'exit');
  return {
    url,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** PUTs `file` to `target`; resolves with the seconds from the first byte sent to the answer. */
function put(target: URL, file: string, bytes: number, expected: number): Promise<number> {
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
        if (res.statusCode !== expected) reject(new Error(`${target} answered ${res.statusCode}: ${body}`));
        else resolve((performance.now() - started) / 1000);
      });
    });
    req.on('error', reject);
    createReadStream(file, { highWaterMark: MiB }).pipe(req);
  });
}

/** GETs `target` (with `range`, a `bytes=a-b` header) and discards the body; resolves with the seconds and bytes. */
function fetchBody(target: URL, range?: string): Promise<{ seconds: number; bytes: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get(target, { headers: range ? { range } : {} }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => {
        if (res.statusCode !== (range ? 206 : 200)) reject(new Error(`${target} answered ${res.statusCode}`));
        else resolve({ seconds: (performance.now() - started) / 1000, bytes });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** What the gateway is compared with: a name and a function that times the same transfer against it. */
type Baseline = { name: string; time: () => Promise<number> };

/**
 * Alternates `gateway` and the baselines (the gateway goes first in odd rounds, last in even ones), printing
 * each round's throughputs and the ratio gateway/baseline for each; `cleanup` runs after each round, outside
 * the timing. Returns the ratios against the first baseline.
 */
async function alternate(
  label: string,
  mib: number,
  gateway: () => Promise<number>,
  baselines: Baseline[],
  cleanup: () => Promise<void> = async () => {},
): Promise<number[]> {
  const ratios: number[][] = baselines.map(() => []);
  for (let r = 0; r < rounds; r++) {
    let tg = 0;
    const tb: number[] = [];
    if (r % 2 === 0) tg = await gateway();
    for (const b of baselines) tb.push(await b.time());
    if (r % 2 === 1) tg = await gateway();
    await cleanup();
    const parts = baselines.map((b, i) => {
      ratios[i].push(tb[i] / tg);
      return `${b.name} ${(mib / tb[i]).toFixed(0)} MiB/s (ratio ${(tb[i] / tg).toFixed(2)})`;
    });
    console.log(`  ${label} round ${r + 1}: gateway ${(mib / tg).toFixed(0)} MiB/s, ${parts.join(', ')}`);
  }
  console.log(
    `  ${label}: median ratio ${baselines.map((b, i) => `${median(ratios[i]).toFixed(2)} (vs ${b.name})`).join(', ')}`,
  );
  return ratios[0];
}

/** A plain AWS SDK client of s3rver: the S3 baseline. */
class DirectS3 {
  private readonly client: S3Client;

  constructor(endpoint: string) {
    this.client = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  /** Seconds to upload `file` as `key` (multipart, the gateway's default part size and queue). */
  async upload(key: string, file: string): Promise<number> {
    const started = performance.now();
    const body = createReadStream(file, { highWaterMark: MiB });
    await new Upload({
      client: this.client,
      params: { Bucket: 'bench', Key: key, Body: body },
      partSize: 8 * MiB,
      queueSize: 4,
    }).done();
    return (performance.now() - started) / 1000;
  }

  /** Seconds to read `key` (or `range` of it) to the end. */
  async download(key: string, range?: string): Promise<number> {
    const started = performance.now();
    const { Body } = await this.client.send(new GetObjectCommand({ Bucket: 'bench', Key: key, Range: range }));
    for await (const _ of Body as AsyncIterable<Uint8Array>) {
      // drained
    }
    return (performance.now() - started) / 1000;
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: 'bench', Key: key }));
  }

  close(): void {
    this.client.destroy();
  }
}

/** Deletes the data objects of `run` except step `keep`'s, through the store the gateway writes to. */
async function reclaim(store: BlobStore, run: string, keep: number): Promise<void> {
  const doomed: string[] = [];
  for await (const blob of store.list(checkpointPrefix(run))) {
    const parsed = parseCheckpointKey(blob.key);
    if (parsed && parsed.step !== keep && !isManifestKey(blob.key)) doomed.push(blob.key);
  }
  for (const key of doomed) await store.delete(key);
}

async function singleReplica(work: string): Promise<void> {
  for (const store of stores) {
    for (const sizeMb of sizes) {
      const file = path.join(work, `ckpt-${sizeMb}.safetensors`);
      const bytes = await generateCheckpoint(file, sizeMb);
      const mib = bytes / MiB;
      const dataDir = path.join(work, `data-${sizeMb}`);
      const bareDir = path.join(work, `bare-${sizeMb}`);
      await mkdir(bareDir, { recursive: true });
      const s3Dir = path.join(work, `s3-${sizeMb}`);
      const s3 = store === 's3' ? await startBaseline(['s3rver', s3Dir, 'bench']) : null;
      const gateway = await startGateway({
        TRAJGATE_DATA_DIR: dataDir,
        ...(values['catalog-url'] ? { TRAJGATE_CATALOG_URL: values['catalog-url'] } : {}),
        ...(s3
          ? {
              TRAJGATE_BLOB_URL: 's3://bench/ckpt',
              TRAJGATE_S3_ENDPOINT: s3.url,
              TRAJGATE_S3_FORCE_PATH_STYLE: 'true',
              AWS_ACCESS_KEY_ID: 'S3RVER',
              AWS_SECRET_ACCESS_KEY: 'S3RVER',
            }
          : {}),
      });
      const bare = await startBaseline(['bare', bareDir]);
      const run = `bench-${TAG}-${store}-${sizeMb}`;
      const blobs: BlobStore = s3
        ? new S3BlobStore({
            bucket: 'bench',
            prefix: 'ckpt/',
            endpoint: s3.url,
            region: 'us-east-1',
            forcePathStyle: true,
            credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
            partSizeBytes: 8 * MiB,
          })
        : new LocalBlobStore(path.join(dataDir, 'blobs'));
      let step = 0;
      const gatewayUpload = () => upload(gateway.url, run, ++step, file, bytes);
      let bareCount = 0;
      const cleanup = async () => {
        await reclaim(blobs, run, 1); // step 1 stays for the download rounds
        for (; bareCount > 0; bareCount--) await rm(path.join(bareDir, `b${bareCount}`), { force: true });
      };
      // With S3, a second baseline: the same file sent straight to s3rver by the AWS SDK (lib-storage, the
      // gateway's part size and queue), so the ratio says what the gateway adds on top of the server.
      const direct = s3 ? new DirectS3(s3.url) : null;
      let directCount = 0;
      const uploads: Baseline[] = [
        { name: 'bare', time: () => put(new URL(`/b${++bareCount}`, bare.url), file, bytes, 201) },
      ];
      if (direct) uploads.push({ name: 's3rver direct', time: () => direct.upload(`direct/${++directCount}`, file) });
      const many = (one: () => Promise<number>) => () => together(Array.from({ length: concurrent }, () => one));
      const cleanupAll = async () => {
        await cleanup();
        for (; directCount > 0; directCount--) await direct?.delete(`direct/${directCount}`);
      };
      console.log(`${store} store, ${sizeMb} MiB (${bytes} bytes):`);
      try {
        // JIT warm-up on every side, and the copies the download rounds read (gateway step 1, 'keep').
        await gatewayUpload();
        await put(new URL('/keep', bare.url), file, bytes, 201);
        await direct?.upload('keep', file);
        await alternate('single upload', mib, gatewayUpload, uploads, cleanupAll);
        if (concurrent > 1) {
          await alternate(
            `${concurrent} uploads at once (aggregate)`,
            concurrent * mib,
            many(gatewayUpload),
            uploads.map((b) => ({ name: b.name, time: many(b.time) })),
            cleanupAll,
          );
        }
        if (download) {
          const content = new URL(`/v1/runs/${run}/checkpoints/1/content`, gateway.url);
          const kept = new URL('/keep', bare.url);
          const half = Math.floor(bytes / 2);
          const range = `bytes=${half}-${bytes - 1}`;
          const reads = (r?: string): Baseline[] => [
            { name: 'bare', time: async () => (await fetchBody(kept, r)).seconds },
            ...(direct ? [{ name: 's3rver direct', time: () => direct.download('keep', r) }] : []),
          ];
          await alternate('download', mib, async () => (await fetchBody(content)).seconds, reads());
          await alternate(
            `download Range ${range}`,
            (bytes - half) / MiB,
            async () => (await fetchBody(content, range)).seconds,
            reads(range),
          );
        }
        const peak = await peakRssMb(gateway.child.pid!);
        console.log(`  gateway peak RSS ${peak.toFixed(0)} MiB`);
        if (gateway.errors.length > 0) console.log(`  gateway errors logged:\n${gateway.errors.join('\n')}`);
      } finally {
        await gateway.stop();
        await bare.stop();
        await blobs.close();
        direct?.close();
        await s3?.stop();
        for (const dir of [dataDir, bareDir, s3Dir]) await rm(dir, { recursive: true, force: true });
        await rm(file, { force: true });
      }
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
  if (compiled) {
    const build = spawnSync('npm', ['run', 'build'], { cwd: path.join(import.meta.dirname, '..'), stdio: 'ignore' });
    if (build.status !== 0) throw new Error('npm run build failed: run it to see why');
  }
  const work = await mkdtemp(path.join(os.tmpdir(), 'trajgate-bench-'));
  console.log(
    `bench-ingest: sizes ${sizes.join(', ')} MiB, ` +
      (replicas > 1
        ? `best of ${repeat}, ${replicas} replicas`
        : `${rounds} rounds, ${concurrent} concurrent, stores ${stores.join(', ')}`) +
      `, gateway ${values.gateway}` +
      `, env ${JSON.stringify(extraEnv)}, work dir ${work}`,
  );
  console.log(machineLine());
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
