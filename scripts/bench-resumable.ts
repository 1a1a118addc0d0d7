/**
 * Resumable (tus) upload vs a one-request upload of the same checkpoint, against a gateway child process
 * (local store, SQLite) in a temporary directory. The tus upload goes with the unmodified tus-js-client
 * through a proxy that cuts its connection `--cuts` times; the one-request upload is a plain PUT. Rounds
 * alternate the two, each to a new step; prints each round's MB/s and the ratio tus/PUT.
 *
 *   node --import tsx scripts/bench-resumable.ts [--mib 1024] [--cuts 3] [--rounds 1]
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import * as tus from 'tus-js-client';
import { cuttingProxy } from './lib/cutting-proxy.js';
import { startGatewayProcess } from './lib/gateway-process.js';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '1024' },
    cuts: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '1' },
  },
});
const mib = Number(values.mib);
const cuts = Number(values.cuts);
const rounds = Number(values.rounds);

const n = (mib * 1024 * 1024) / 4;
const w = new Float32Array(n);
for (let i = 0; i < n; i++) w[i] = Math.sin(i * 1e-3) * 0.1;
const body = Buffer.from(
  encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [n / 256, 256], data: new Uint8Array(w.buffer) }]),
);
const sha256 = createHash('sha256').update(body).digest('hex');
const mb = body.length / 1e6;

const dir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-bench-resumable-'));
const gateway = await startGatewayProcess({ TRAJGATE_DATA_DIR: dir });
try {
  const ratios: number[] = [];
  for (let round = 0; round < rounds; round++) {
    let t = performance.now();
    const put = await fetch(`${gateway.url}/v1/runs/bench/checkpoints/${2 * round}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.safetensors' },
      body,
    });
    if (put.status !== 201) throw new Error(`PUT ${put.status} ${await put.text()}`);
    const putS = (performance.now() - t) / 1000;

    const proxy = await cuttingProxy(gateway.url, { afterBytes: Math.floor(body.length / (cuts + 1)), cuts });
    t = performance.now();
    await new Promise<void>((resolve, reject) => {
      new tus.Upload(body, {
        endpoint: `${proxy.url}/v1/runs/bench/checkpoints/${2 * round + 1}/uploads`,
        metadata: { filetype: 'application/vnd.safetensors' },
        retryDelays: [0, 200, 1000, 2000, 5000],
        onError: reject,
        onSuccess: () => resolve(),
      }).start();
    });
    const tusS = (performance.now() - t) / 1000;
    const cut = proxy.cuts();
    await proxy.close();
    const got = (await (await fetch(`${gateway.url}/v1/runs/bench/checkpoints/${2 * round + 1}`)).json()) as {
      sha256: string;
    };
    if (got.sha256 !== sha256) throw new Error(`tus upload stored ${got.sha256}, expected ${sha256}`);
    ratios.push(mb / tusS / (mb / putS));
    console.log(
      `round ${round + 1}: ${mb.toFixed(0)} MB  PUT ${(mb / putS).toFixed(1)} MB/s (${putS.toFixed(2)} s)  ` +
        `tus with ${cut} cuts ${(mb / tusS).toFixed(1)} MB/s (${tusS.toFixed(2)} s)  tus/PUT ${(mb / tusS / (mb / putS)).toFixed(2)}  byte-exact`,
    );
  }
  ratios.sort((a, b) => a - b);
  console.log(
    `median throughput ratio tus/PUT over ${rounds} round(s): ${ratios[Math.floor(ratios.length / 2)].toFixed(2)}`,
  );
} finally {
  await gateway.stop();
  await rm(dir, { recursive: true, force: true });
}
