import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TrajgateClient, TrajgateError } from '../src/sdk/index.js';
import { encodeNative } from '../src/wire/native-format.js';
import { encodeSafetensors, type TensorData } from '../src/wire/safetensors.js';
import { startTestServer } from './helpers/gateway.js';

type Server = Awaited<ReturnType<typeof startTestServer>>;

function tensors(seed: number, size = 4096): TensorData[] {
  const w = Float32Array.from({ length: size }, (_, i) => Math.sin(seed + i * 0.01));
  return [
    { name: 'dense.kernel', dtype: 'F32', shape: [size / 16, 16], data: new Uint8Array(w.buffer) },
    { name: 'dense.bias', dtype: 'F32', shape: [16], data: new Uint8Array(new Float32Array(16).fill(seed).buffer) },
  ];
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A TCP proxy in front of the gateway that cuts its first `cuts` connections after `afterBytes` bytes. */
async function cuttingProxy(target: string, afterBytes: number, cuts: number): Promise<{ url: string; connections: () => number; close(): Promise<void> }> {
  const { hostname, port } = new URL(target);
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    const cut = connections++ < cuts;
    const upstream = net.connect(Number(port), hostname);
    let forwarded = 0;
    client.on('data', (chunk: Buffer) => {
      forwarded += chunk.length;
      if (cut && forwarded > afterBytes) {
        upstream.destroy();
        client.destroy();
        return;
      }
      upstream.write(chunk);
    });
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
    connections: () => connections,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('SDK against a real gateway', () => {
  let server: Server;
  let dir: string;
  let client: TrajgateClient;
  before(async () => {
    server = await startTestServer();
    dir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-sdk-'));
    client = new TrajgateClient({ url: server.url, retry: { baseDelayMs: 10 } });
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('uploads from tensors, a file and a stream, and downloads them byte-exact', async () => {
    const progress: number[] = [];
    const fromTensors = await client.uploadCheckpoint('sdk', 0, { tensors: tensors(1) }, { onProgress: (sent) => progress.push(sent) });
    assert.equal(fromTensors.format, 'native');
    assert.equal(fromTensors.sha256, sha(encodeNative(tensors(1))));
    assert.ok(progress.length > 0 && progress[progress.length - 1] === fromTensors.bytes, 'upload progress reaches the total');

    const file = path.join(dir, 'model.safetensors');
    await writeFile(file, encodeSafetensors(tensors(2)));
    const fromFile = await client.uploadCheckpoint('sdk', 10, { file });
    assert.equal(fromFile.format, 'safetensors');

    const streamed = encodeSafetensors(tensors(3));
    const fromStream = await client.uploadCheckpoint('sdk', 20, {
      stream: async function* () {
        for (let i = 0; i < streamed.length; i += 1000) yield streamed.subarray(i, i + 1000);
      },
      contentType: 'application/vnd.safetensors',
    });
    assert.equal(fromStream.sha256, sha(streamed));

    for (const [step, expected] of [
      [0, encodeNative(tensors(1))],
      [10, await readFile(file)],
      [20, streamed],
    ] as const) {
      const out = path.join(dir, `out-${step}`);
      const seen: number[] = [];
      await client.downloadCheckpoint('sdk', step, out, { onProgress: (got) => seen.push(got) });
      assert.equal(sha(await readFile(out)), sha(expected));
      assert.equal(seen[seen.length - 1], expected.length);
    }
  });

  it('resumes a download from a partial file with a Range request', async () => {
    const ranges: string[] = [];
    const watching = new TrajgateClient({
      url: server.url,
      fetch: (input, init) => {
        const range = new Headers(init?.headers).get('range');
        if (range) ranges.push(range);
        return fetch(input, init);
      },
    });
    const full = encodeSafetensors(tensors(4, 65536));
    await client.uploadCheckpoint('sdk-big', 30, { stream: async function* () { yield full; }, contentType: 'application/vnd.safetensors' });
    const out = path.join(dir, 'resumed.safetensors');
    await writeFile(`${out}.partial`, full.subarray(0, 100_000));
    await watching.downloadCheckpoint('sdk-big', 30, out);
    assert.deepEqual(ranges, ['bytes=100000-']);
    assert.equal(sha(await readFile(out)), sha(full));
  });

  it('retries an upload cut mid-stream and ends with exactly one checkpoint for the step', async () => {
    const proxy = await cuttingProxy(server.url, 50_000, 2);
    try {
      const viaProxy = new TrajgateClient({ url: proxy.url, retry: { baseDelayMs: 10 } });
      const result = await viaProxy.uploadCheckpoint('cut', 5, { tensors: tensors(5, 65536) });
      assert.equal(result.step, 5);
      assert.ok(proxy.connections() >= 3, `retried: ${proxy.connections()} connections`);
      const items = await client.listCheckpoints('cut');
      assert.deepEqual(items.map((c) => c.step), [5]);
      assert.equal(items[0].sha256, sha(encodeNative(tensors(5, 65536))));
    } finally {
      await proxy.close();
    }
  });

  it('logs 100,000 points from a tight loop, complete and in order, without blocking the loop', async () => {
    const run = client.run('metrics', { run: { trainSize: 1000 }, batchSize: 2000, metricCapacity: 4 });
    let slowest = 0;
    const started = performance.now();
    for (let step = 1; step <= 100_000; step++) {
      const t = performance.now();
      await run.log({ step, trainLoss: 1 / step, lr: 0.1 });
      slowest = Math.max(slowest, performance.now() - t);
    }
    const loopMs = performance.now() - started;
    await run.close();
    const points = await client.getMetrics('metrics', { limit: 100_000 });
    assert.equal(points.length, 100_000);
    points.forEach((p, i) => assert.equal(p.step, i + 1));
    // With 4 batches of 2000 in flight, a log() call waits at most for one batch to be sent.
    assert.ok(slowest < 2000, `slowest log() call ${slowest.toFixed(0)} ms (loop ${loopMs.toFixed(0)} ms)`);
  });

  it('surfaces server errors as typed errors with the catalogue code, without retrying 4xx', async () => {
    let requests = 0;
    const counting = new TrajgateClient({
      url: server.url,
      fetch: (input, init) => {
        requests++;
        return fetch(input, init);
      },
    });
    await assert.rejects(counting.putRun('bad$run'), (err: unknown) => {
      assert.ok(err instanceof TrajgateError);
      assert.equal(err.code, 'invalid_run_id');
      assert.equal(err.status, 400);
      return true;
    });
    assert.equal(requests, 1);
  });
});
