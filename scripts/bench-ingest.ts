/**
 * Ingest throughput: uploads a generated safetensors checkpoint through a gateway child process over a
 * real socket, and separately writes the same bytes straight into the same kind of store (the floor any
 * gateway pays). Prints both throughputs, their ratio and the gateway's peak RSS (VmHWM), per size.
 *
 *   npx tsx scripts/bench-ingest.ts [--size-mb 512[,2048]] [--repeat 2] [--env KEY=VALUE ...]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { LocalBlobStore } from '../src/storage/local-blob-store.js';
import { encodeSafetensorsHeader, type TensorSpec } from '@trajgate/sdk/wire/safetensors';

const MiB = 1024 * 1024;
const { values } = parseArgs({
  options: {
    'size-mb': { type: 'string', default: '512' },
    repeat: { type: 'string', default: '2' },
    env: { type: 'string', multiple: true, default: [] },
  },
});
const sizes = values['size-mb'].split(',').map(Number);
const repeat = Number(values.repeat);
const extraEnv = Object.fromEntries(values.env.map((kv) => kv.split('=', 2) as [string, string]));

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

async function startGateway(dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: {
      ...process.env,
      TRAJGATE_DATA_DIR: dataDir,
      PORT: '0',
      HOST: '127.0.0.1',
      TRAJGATE_LOG_LEVEL: 'info',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const match = /"url":"(http:[^"]+)"/.exec(buffered);
      if (match) resolve(match[1]);
    });
    child.on('exit', (code) => reject(new Error(`gateway exited with ${code}`)));
  });
  child.stdout!.resume();
  return { child, url };
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

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'trajgate-bench-'));
  console.log(
    `bench-ingest: sizes ${sizes.join(', ')} MiB, best of ${repeat}, env ${JSON.stringify(extraEnv)}, ${os.cpus().length} cores`,
  );
  try {
    for (const sizeMb of sizes) {
      const file = path.join(work, `ckpt-${sizeMb}.safetensors`);
      const bytes = await generateCheckpoint(file, sizeMb);
      const dataDir = path.join(work, `data-${sizeMb}`);
      const { child, url } = await startGateway(dataDir);
      let gatewayBest = Infinity;
      let rawBest = Infinity;
      try {
        for (let i = 0; i < repeat; i++) {
          // Alternate so page cache and disk state favour neither side.
          gatewayBest = Math.min(gatewayBest, await upload(url, 'bench', i, file, bytes));
          rawBest = Math.min(rawBest, await rawWrite(path.join(work, `raw-${sizeMb}`), `raw/${i}`, file));
        }
        const peak = await peakRssMb(child.pid!);
        const gatewayMBs = bytes / MiB / gatewayBest;
        const rawMBs = bytes / MiB / rawBest;
        console.log(
          `size ${sizeMb} MiB: gateway ${gatewayMBs.toFixed(0)} MiB/s, raw store write ${rawMBs.toFixed(0)} MiB/s, ` +
            `ratio ${(gatewayMBs / rawMBs).toFixed(2)}, gateway peak RSS ${peak.toFixed(0)} MiB`,
        );
      } finally {
        child.kill('SIGTERM');
        await rm(dataDir, { recursive: true, force: true });
        await rm(path.join(work, `raw-${sizeMb}`), { recursive: true, force: true });
        await rm(file, { force: true });
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
