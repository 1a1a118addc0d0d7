import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import {
  BackgroundQueue,
  TrajgateClient,
  TrajgateConnectionError,
  TrajgateError,
  withRetry,
  type MetricPoint,
} from '@trajgate/sdk';
import { encodeNative } from '@trajgate/sdk/wire/native-format';
import { encodeSafetensors, type TensorData } from '@trajgate/sdk/wire/safetensors';
import { startTestServer } from './helpers/gateway.js';
import { signal, within } from './helpers/wait.js';

type Server = Awaited<ReturnType<typeof startTestServer>>;

function tensors(seed: number, size = 4096): TensorData[] {
  const w = Float32Array.from({ length: size }, (_, i) => Math.sin(seed + i * 0.01));
  return [
    { name: 'dense.kernel', dtype: 'F32', shape: [size / 16, 16], data: new Uint8Array(w.buffer) },
    { name: 'dense.bias', dtype: 'F32', shape: [16], data: new Uint8Array(new Float32Array(16).fill(seed).buffer) },
  ];
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

interface Proxy {
  url: string;
  connections: () => number;
  close(): Promise<void>;
}

/**
 * A TCP proxy in front of the gateway that cuts each of its first `cuts` connections once `afterBytes`
 * bytes went one way: client → server (`request`, an upload cut mid-body) or back (`response`).
 */
async function cuttingProxy(
  target: string,
  options: { direction: 'request' | 'response'; afterBytes: number; cuts: number },
): Promise<Proxy> {
  const { hostname, port } = new URL(target);
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const cut = connections++ < options.cuts;
    const upstream = net.connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    const relay = (from: net.Socket, to: net.Socket, counted: boolean) => {
      let forwarded = 0;
      from.on('data', (chunk: Buffer) => {
        forwarded += chunk.length;
        if (cut && counted && forwarded > options.afterBytes) {
          to.write(chunk.subarray(0, chunk.length - (forwarded - options.afterBytes)));
          client.destroy();
          upstream.destroy();
          return;
        }
        to.write(chunk);
      });
      from.on('end', () => to.end());
      from.on('error', () => to.destroy());
    };
    relay(client, upstream, options.direction === 'request');
    relay(upstream, client, options.direction === 'response');
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

/** A fetch that records each request's method, path and headers before passing it on. */
function recordingFetch(
  log: { method: string; path: string; headers: Headers }[],
  inner: typeof fetch = fetch,
): typeof fetch {
  return (input, init) => {
    log.push({
      method: init?.method ?? 'GET',
      path: new URL(String(input)).pathname,
      headers: new Headers(init?.headers),
    });
    return inner(input, init);
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

  async function downloaded(run: string, step: number): Promise<Buffer> {
    const out = path.join(dir, `out-${run}-${step}`);
    const seen: number[] = [];
    const record = await client.downloadCheckpoint(run, step, out, { onProgress: (got) => seen.push(got) });
    assert.equal(seen.at(-1), record.bytes, 'download progress reaches the total');
    return readFile(out);
  }

  it('uploads from tensors, a tensor map, files and streams, and downloads them byte-exact', async () => {
    const requests: { method: string; path: string; headers: Headers }[] = [];
    const watched = new TrajgateClient({ url: server.url, fetch: recordingFetch(requests) });

    // This test is about transport: a policy that keeps every checkpoint, so retention discards none of them.
    const keepAll = await fetch(`${server.url}/v1/runs/rt/policy`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ policy: { latest: 1000 } }),
    });
    assert.equal(keepAll.status, 200, await keepAll.text());

    const progress: [number, number | null][] = [];
    const fromTensors = await watched.uploadCheckpoint('rt', 0, tensors(1), {
      onProgress: (sent, total) => progress.push([sent, total]),
    });
    const expected0 = encodeNative(tensors(1));
    assert.equal(fromTensors.format, 'native');
    assert.equal(fromTensors.sha256, sha(expected0));
    assert.deepEqual(progress.at(-1), [expected0.length, expected0.length], 'upload progress reaches the known total');
    assert.equal(
      requests.at(-1)!.headers.get('x-trajgate-sha256'),
      sha(expected0),
      'small tensor maps are hashed up front',
    );
    assert.equal(requests.at(-1)!.headers.get('content-type'), 'application/vnd.trajgate.checkpoint+msgpack');

    // A tensor map with typed arrays, hashed as it streams instead (hashFirstBytes: 0).
    const kernel = Float32Array.from({ length: 64 }, (_, i) => i / 7);
    const map = {
      'dense.kernel': { dtype: 'F32' as const, shape: [8, 8], data: kernel },
      step: { dtype: 'I32' as const, shape: [], data: Int32Array.of(5) },
    };
    const fromMap = await watched.uploadCheckpoint('rt-map', 0, map, { hashFirstBytes: 0 });
    assert.equal(requests.at(-1)!.headers.get('x-trajgate-sha256'), null);
    assert.deepEqual(
      fromMap.tensors.map((t) => [t.name, t.dtype, t.shape]),
      [
        ['dense.kernel', 'F32', [8, 8]],
        ['step', 'I32', []],
      ],
    );

    const file = path.join(dir, 'model.safetensors');
    await writeFile(file, encodeSafetensors(tensors(2)));
    const fromFile = await client.uploadCheckpoint('rt', 10, { file });
    assert.equal(fromFile.format, 'safetensors');
    const bare = path.join(dir, 'model.bin'); // no telling extension: sent as octet-stream, sniffed by the server
    await writeFile(bare, encodeNative(tensors(6)));
    assert.equal((await client.uploadCheckpoint('rt', 15, bare)).format, 'native');

    const streamed = encodeSafetensors(tensors(3));
    const chunks = async function* () {
      for (let i = 0; i < streamed.length; i += 1000) yield streamed.subarray(i, i + 1000);
    };
    const fromFactory = await client.uploadCheckpoint('rt', 20, {
      stream: chunks,
      contentType: 'application/vnd.safetensors',
    });
    assert.equal(fromFactory.sha256, sha(streamed));
    const oneShot = await client.uploadCheckpoint('rt', 25, Readable.from(chunks()));
    assert.equal(oneShot.format, 'safetensors');

    const mapBytes = encodeNative(
      Object.entries(map).map(([name, t]) => ({
        name,
        dtype: t.dtype,
        shape: t.shape,
        data: new Uint8Array(t.data.buffer),
      })),
    );
    assert.equal(sha(await downloaded('rt-map', 0)), sha(mapBytes), 'the tensor map round-trips');
    for (const [step, bytes] of [
      [0, expected0],
      [10, await readFile(file)],
      [15, await readFile(bare)],
      [20, streamed],
      [25, streamed],
    ] as const) {
      assert.equal(sha(await downloaded('rt', step)), sha(bytes), `step ${step} round-trips`);
    }

    const sink = new PassThrough();
    const received: Buffer[] = [];
    sink.on('data', (c: Buffer) => received.push(c));
    await client.downloadCheckpoint('rt', 20, sink);
    assert.equal(sha(Buffer.concat(received)), sha(streamed), 'download to a stream');
  });

  it('resumes a download from a partial file, and starts over when the partial bytes are wrong', async () => {
    const requests: { method: string; path: string; headers: Headers }[] = [];
    const watched = new TrajgateClient({ url: server.url, fetch: recordingFetch(requests) });
    const full = encodeSafetensors(tensors(4, 65536));
    const uploaded = await client.uploadCheckpoint('big', 30, {
      stream: () => Readable.from([full]),
      contentType: 'application/vnd.safetensors',
    });
    const content = () => requests.filter((r) => r.path.endsWith('/content'));

    const out = path.join(dir, 'resumed.safetensors');
    await writeFile(`${out}.partial`, full.subarray(0, 100_000));
    await watched.downloadCheckpoint('big', 30, out);
    assert.deepEqual(
      content().map((r) => [r.headers.get('range'), r.headers.get('if-range')]),
      [['bytes=100000-', `"${uploaded.sha256}"`]],
    );
    assert.equal(sha(await readFile(out)), sha(full));

    requests.length = 0;
    const corrupt = Buffer.from(full.subarray(0, 50_000));
    corrupt[10_000] ^= 0xff;
    await writeFile(`${out}.partial`, corrupt);
    await watched.downloadCheckpoint('big', 30, out);
    assert.deepEqual(
      content().map((r) => r.headers.get('range')),
      ['bytes=50000-', null],
      'a resumed file that fails the hash is fetched again whole',
    );
    assert.equal(sha(await readFile(out)), sha(full));
  });

  it('resumes downloads cut mid-body, to a file and to a stream', async () => {
    const full = encodeNative(tensors(7, 65536));
    await client.uploadCheckpoint('cut-down', 1, tensors(7, 65536));
    const proxy = await cuttingProxy(server.url, { direction: 'response', afterBytes: 120_000, cuts: 2 });
    try {
      const viaProxy = new TrajgateClient({ url: proxy.url, retry: { baseDelayMs: 5 } });
      const out = path.join(dir, 'cut-download');
      await viaProxy.downloadCheckpoint('cut-down', 1, out);
      assert.equal(sha(await readFile(out)), sha(full));
      const before = proxy.connections();
      assert.ok(before >= 3, `cut and retried: ${before} connections`);

      const proxy2 = await cuttingProxy(server.url, { direction: 'response', afterBytes: 120_000, cuts: 2 });
      try {
        const sink = new PassThrough();
        const received: Buffer[] = [];
        sink.on('data', (c: Buffer) => received.push(c));
        await new TrajgateClient({ url: proxy2.url, retry: { baseDelayMs: 5 } }).downloadCheckpoint(
          'cut-down',
          1,
          sink,
        );
        assert.equal(sha(Buffer.concat(received)), sha(full));
      } finally {
        await proxy2.close();
      }
    } finally {
      await proxy.close();
    }
  });

  it('retries a metric batch whose answer was lost, and the batch is stored once', async () => {
    // The answer is cut after its first bytes: the gateway stored the batch, the client never heard.
    const proxy = await cuttingProxy(server.url, { direction: 'response', afterBytes: 5, cuts: 2 });
    try {
      const viaProxy = new TrajgateClient({ url: proxy.url, retry: { baseDelayMs: 5 } });
      const points = Array.from({ length: 200 }, (_, i) => ({ step: i + 1, trainLoss: 2 - i / 200 }));
      assert.equal(await viaProxy.logMetrics('lost-answer', points), 200);
      assert.ok(proxy.connections() >= 3, `retried: ${proxy.connections()} connections`);
      const stored = await client.getMetrics('lost-answer');
      assert.equal(stored.length, 200, 'each point once');
      assert.deepEqual(
        stored.map((p) => p.step),
        points.map((p) => p.step),
      );
    } finally {
      await proxy.close();
    }
  });

  it('retries an upload cut mid-stream and ends with exactly one checkpoint for the step', async () => {
    const proxy = await cuttingProxy(server.url, { direction: 'request', afterBytes: 50_000, cuts: 2 });
    try {
      const viaProxy = new TrajgateClient({ url: proxy.url, retry: { baseDelayMs: 10 } });
      const result = await viaProxy.uploadCheckpoint('cut', 5, tensors(5, 65536));
      assert.equal(result.step, 5);
      assert.ok(proxy.connections() >= 3, `retried: ${proxy.connections()} connections`);
      const items = await client.listCheckpoints('cut');
      assert.deepEqual(
        items.map((c) => c.step),
        [5],
      );
      assert.equal(items[0].sha256, sha(encodeNative(tensors(5, 65536))));
      assert.equal((await client.getRun('cut')).checkpoints.count, 1);
    } finally {
      await proxy.close();
    }
  });

  it('does not resend a one-shot stream after a cut, and nothing is committed', async () => {
    const proxy = await cuttingProxy(server.url, { direction: 'request', afterBytes: 50_000, cuts: 1 });
    try {
      const viaProxy = new TrajgateClient({ url: proxy.url, retry: { baseDelayMs: 10 } });
      const bytes = encodeNative(tensors(8, 65536));
      await assert.rejects(
        viaProxy.uploadCheckpoint('cut', 6, Readable.from([bytes.subarray(0, 100_000), bytes.subarray(100_000)])),
        TrajgateConnectionError,
      );
      assert.equal(proxy.connections(), 1);
      await assert.rejects(
        client.getCheckpoint('cut', 6),
        (err: unknown) => err instanceof TrajgateError && err.code === 'checkpoint_not_found',
      );
    } finally {
      await proxy.close();
    }
  });

  it('logs 100,000 points from a tight loop, complete and in order, blocking only for back-pressure', async (t) => {
    const batchSize = 2000;
    const metricCapacity = 4;
    const logging = new TrajgateClient({ url: server.url, retry: { baseDelayMs: 10 } });
    // Instrument the call the background batches make: the batches sent and the points acknowledged.
    const send = logging.logMetrics.bind(logging);
    let batchesSent = 0;
    let acknowledged = 0;
    logging.logMetrics = async (
      run: string,
      points: readonly MetricPoint[],
      options?: { format?: 'msgpack' | 'json' },
    ) => {
      const accepted = await send(run, points, options);
      batchesSent++;
      acknowledged += accepted;
      return accepted;
    };
    const run = logging.run('metrics', { trainSize: 1000, batchSize, metricCapacity });
    let backlog = 0;
    let waited = 0;
    for (let step = 1; step <= 100_000; step++) {
      const sentBefore = batchesSent;
      await run.log({ step, trainLoss: 1 / step, lr: 0.1 });
      const sentDuring = batchesSent - sentBefore;
      // A log() that does not fill a batch never waits on the network; one that finds the queue full waits
      // for the batch in flight to finish, never for more.
      if (step % batchSize !== 0) assert.equal(sentDuring, 0, `log() of step ${step} waited for a batch`);
      assert.ok(sentDuring <= 1, `log() of step ${step} waited for ${sentDuring} batches`);
      waited += sentDuring;
      backlog = Math.max(backlog, step - acknowledged);
    }
    await run.close();
    const points = await client.getMetrics('metrics', { limit: 100_000 });
    assert.equal(points.length, 100_000);
    points.forEach((p, i) => {
      assert.equal(p.step, i + 1);
    });
    assert.equal((await client.getRun('metrics')).trainSize, 1000, 'the run was created with its fields first');
    t.diagnostic(`${waited} of ${100_000 / batchSize} batches made log() wait, backlog at most ${backlog} points`);
    // The loop only yields to the event loop when log() blocks, so the queue must have filled at least once.
    assert.ok(waited > 0, 'back-pressure was never exercised');
    // Points held in memory: the queue's batches plus the one being filled.
    assert.ok(backlog <= (metricCapacity + 1) * batchSize, `backlog ${backlog} points`);
  });

  it('log() resolves while every batch is held back from the network, until the metric queue is full', async () => {
    const batchSize = 10;
    const metricCapacity = 3;
    const logging = new TrajgateClient({ url: server.url, retry: { baseDelayMs: 10 } });
    // Hold each batch before it is sent, until the test releases it.
    const send = logging.logMetrics.bind(logging);
    const held: (() => void)[] = [];
    const firstHeld = signal();
    let holding = true;
    let sent = 0;
    logging.logMetrics = async (
      run: string,
      points: readonly MetricPoint[],
      options?: { format?: 'msgpack' | 'json' },
    ) => {
      if (holding) {
        await new Promise<void>((release) => {
          held.push(release);
          firstHeld.resolve();
        });
      }
      const accepted = await send(run, points, options);
      sent++;
      return accepted;
    };
    // No timed flush of a partial batch during the test: batches are cut by size only.
    const run = logging.run('held', { trainSize: 10, batchSize, metricCapacity, flushIntervalMs: 600_000 });
    const full = metricCapacity * batchSize;
    const logAll = async () => {
      for (let step = 1; step < full + batchSize; step++) await run.log({ step, trainLoss: 1 / step });
    };
    await within(logAll(), { what: 'log() to resolve while the batches are held back' });
    assert.equal(sent, 0, `${full + batchSize - 1} log() calls resolved before any batch was sent`);

    // This point completes a batch with `metricCapacity` batches queued: log() waits for one to be sent.
    let resolved = false;
    const blocked = run.log({ step: full + batchSize, trainLoss: 0 }).then(() => {
      resolved = true;
    });
    await within(firstHeld.promise, { what: 'the first batch to reach the network' });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(resolved, false, 'log() on a full queue waits');
    assert.equal(held.length, 1, 'batches are sent one at a time');
    held.shift()?.();
    await within(blocked, { what: 'log() to resolve once a batch was sent' });
    assert.equal(sent, 1, 'log() waited for exactly one batch');

    holding = false;
    for (let release = held.shift(); release; release = held.shift()) release();
    await within(run.close(), { what: 'the remaining batches to be sent' });
    const points = await client.getMetrics('held', { limit: 100 });
    assert.deepEqual(
      points.map((p) => p.step),
      Array.from({ length: full + batchSize }, (_, i) => i + 1),
    );
  });

  it('sends checkpoints and metrics through a RunLogger, and reports background failures', async () => {
    const uploaded: number[] = [];
    const run = client.run('logger', {
      plannedSteps: 100,
      trainSize: 500,
      batchSize: 10,
      onUploaded: (r) => uploaded.push(r.step),
    });
    const file = path.join(dir, 'logger.safetensors');
    await writeFile(file, encodeSafetensors(tensors(9)));
    await run.checkpoint(0, tensors(10));
    for (let step = 1; step <= 25; step++) await run.log({ step, trainLoss: 1 });
    await run.checkpoint(25, file);
    await run.close();
    assert.deepEqual(
      uploaded.sort((a, b) => a - b),
      [0, 25],
    );
    const summary = await client.getRun('logger');
    assert.equal(summary.plannedSteps, 100);
    assert.equal(summary.checkpoints.count, 2);
    assert.equal((await client.getMetrics('logger')).length, 25);
    await assert.rejects(run.log({ step: 26 }), /closed/);

    const errors: unknown[] = [];
    const failing = client.run('logger', { onError: (err) => errors.push(err) });
    await failing.checkpoint(25, tensors(11)); // other bytes for a committed step
    await assert.rejects(
      failing.close(),
      (err: unknown) => err instanceof TrajgateError && err.code === 'checkpoint_conflict' && err.status === 409,
    );
    assert.equal(errors.length, 1);
  });

  it('answers the policy, retention, trajectory and estimate endpoints', async () => {
    await client.putRun('thin', { plannedSteps: 30, trainSize: 100 });
    for (const step of [0, 10, 20, 30]) await client.uploadCheckpoint('thin', step, tensors(step + 20));
    await client.logMetrics('thin', [{ step: 1, trainLoss: 2, lr: 0.1, gradVariance: 3, updateNorm: 0.1 }], {
      format: 'json',
    });
    const policy = await client.putPolicy('tight', { latest: 1, budget: { maxCheckpoints: 2 } });
    assert.equal(policy.name, 'tight');
    assert.ok((await client.listPolicies()).some((p) => p.name === 'tight'));
    assert.equal((await client.getPolicy('tight')).policy.latest, 1);
    const simulated = await client.simulateRetention('thin', { name: 'tight' });
    assert.equal(simulated.checkpoints.length, 4);
    const attached = await client.setRunPolicy('thin', { policy: { latest: 2 } });
    assert.deepEqual(attached.run.policy, { policy: { latest: 2 } });
    assert.equal((await client.pin('thin', 0)).pinned, true);
    assert.equal((await client.unpin('thin', 0)).pinned, false);
    assert.deepEqual(
      (await client.getTrajectory('thin', { phases: 2 })).items.map((i) => i.step),
      [0, 10, 20, 30],
    );
    const estimate = await client.getEstimate('thin');
    assert.equal(estimate.trainSize, 100);
    assert.ok(Array.isArray(estimate.missing));
    assert.ok(Array.isArray(await client.getEstimateHistory('thin')));
    assert.ok((await client.listRuns()).some((r) => r.id === 'thin'));
  });

  it('lists checkpoints and metric points across pages, tensor tables only when asked', async () => {
    const urls: URL[] = [];
    const paging = new TrajgateClient({
      url: server.url,
      fetch: (input, init) => {
        urls.push(new URL(String(input)));
        return fetch(input, init);
      },
    });
    const steps = Array.from({ length: 30 }, (_, i) => i * 5);
    const small = (seed: number): TensorData[] => [
      { name: 'w', dtype: 'F32', shape: [4], data: new Uint8Array(new Float32Array([seed, 1, 2, 3]).buffer) },
    ];
    await client.putRun('paged', {});
    await client.setRunPolicy('paged', { policy: { latest: 3, budget: { maxCheckpoints: 8 } } });
    for (const step of steps) await client.uploadCheckpoint('paged', step, small(step));
    const listRequests = () => urls.filter((u) => u.pathname === '/v1/runs/paged/checkpoints');

    const lean = await paging.listCheckpoints('paged', { pageSize: 7 });
    assert.deepEqual(
      lean.map((c) => c.step),
      steps,
    );
    assert.ok(lean.every((c) => c.tensors === undefined));
    assert.deepEqual(
      listRequests().map((u) => [u.searchParams.get('after'), u.searchParams.get('limit')]),
      [null, '30', '65', '100', '135'].map((after) => [after, '7']),
      'four full pages of 7, then the last',
    );

    urls.length = 0;
    const full = await paging.listCheckpoints('paged', { tensors: true, pageSize: 12 });
    assert.deepEqual(
      full.map((c) => [c.step, c.tensors.map((t) => t.name)]),
      steps.map((step) => [step, ['w']]),
    );
    assert.equal(listRequests().length, 3);
    assert.ok(listRequests().every((u) => u.searchParams.get('include') === 'tensors'));

    // The call shape of old: a status alone.
    const kept = await paging.listCheckpoints('paged', 'kept');
    assert.deepEqual(
      kept.map((c) => c.step),
      lean.filter((c) => c.status === 'kept').map((c) => c.step),
    );
    assert.ok(kept.length > 0 && kept.length < steps.length, `${kept.length} kept`);
    const discarded = await paging.listCheckpoints('paged', { status: 'discarded', pageSize: 4 });
    assert.equal(discarded.length + kept.length, steps.length);

    // The iterator fetches a page only when the previous one is used up, and can resume after a step.
    urls.length = 0;
    const seen: number[] = [];
    for await (const c of paging.checkpoints('paged', { pageSize: 10, after: 20 })) {
      seen.push(c.step);
      if (seen.length === 10) break;
    }
    assert.deepEqual(seen, steps.slice(5, 15));
    assert.equal(listRequests().length, 1, 'one page was enough');
    const page = await paging.getCheckpointPage('paged', { limit: 2, after: 140 });
    assert.deepEqual([page.items.map((c) => c.step), page.next], [[145], null]);

    const points = steps.flatMap((step) => [
      { step, trainLoss: 1 / (step + 1) },
      { step, valLoss: step },
    ]);
    await client.logMetrics('paged', points);
    urls.length = 0;
    assert.deepEqual(await paging.listMetrics('paged', { pageSize: 7 }), points);
    const metricRequests = urls.filter((u) => u.pathname === '/v1/runs/paged/metrics');
    assert.equal(metricRequests.length, Math.ceil((points.length + 1) / 7));
    assert.deepEqual(
      await paging.listMetrics('paged', { fromStep: 50, toStep: 60, pageSize: 3 }),
      points.filter((p) => p.step >= 50 && p.step <= 60),
    );
    // Resuming from a page's cursor.
    const first = await paging.getMetricPage('paged', { limit: 25 });
    assert.equal(first.items.length, 25);
    assert.ok(first.next);
    const rest: MetricPoint[] = [];
    for await (const p of paging.metrics('paged', { after: first.next, pageSize: 16 })) rest.push(p);
    assert.deepEqual([...first.items, ...rest], points);
    assert.equal((await paging.getMetrics('paged', { limit: 10 })).length, 10, 'getMetrics reads one page');
    await assert.rejects(
      paging.getMetricPage('paged', { after: 'not a cursor' }),
      (err: unknown) => err instanceof TrajgateError && err.code === 'invalid_request' && /after/.test(err.message),
    );
  });

  it('surfaces server errors as typed errors with the catalogue code, without retrying 4xx', async () => {
    const requests: { method: string; path: string; headers: Headers }[] = [];
    const counting = new TrajgateClient({ url: server.url, fetch: recordingFetch(requests) });
    await assert.rejects(counting.putRun('bad$run'), (err: unknown) => {
      assert.ok(err instanceof TrajgateError);
      assert.equal(err.code, 'invalid_run_id');
      assert.equal(err.status, 400);
      return true;
    });
    await assert.rejects(
      counting.getCheckpoint('rt', 999),
      (err: unknown) => err instanceof TrajgateError && err.code === 'checkpoint_not_found',
    );
    await assert.rejects(
      counting.uploadCheckpoint('bad$run', 1, tensors(1)),
      (err: unknown) => err instanceof TrajgateError && err.code === 'invalid_run_id',
    );
    assert.equal(requests.length, 3, 'one request each');
  });

  it('retries 5xx and 429, honouring Retry-After, and gives up on a dead server', async () => {
    let calls = 0;
    const flaky = new TrajgateClient({
      url: server.url,
      retry: { baseDelayMs: 1 },
      fetch: async (input, init) => {
        calls++;
        if (calls === 1)
          return new Response('{"error":{"code":"storage_unavailable","message":"down"}}', { status: 503 });
        if (calls === 2) return new Response('slow down', { status: 429, headers: { 'retry-after': '0' } });
        return fetch(input, init);
      },
    });
    assert.equal((await flaky.putRun('flaky')).id, 'flaky');
    assert.equal(calls, 3);

    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as net.AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const dead = new TrajgateClient({ url: `http://127.0.0.1:${port}`, retry: { retries: 2, baseDelayMs: 1 } });
    await assert.rejects(
      dead.listRuns(),
      (err: unknown) => err instanceof TrajgateConnectionError && /ECONNREFUSED/.test(err.message),
    );
  });
});

describe('the SDK ships alone', () => {
  it('imports only its own modules and packages', async () => {
    const root = path.resolve(import.meta.dirname, '..');
    const pending = ['packages/sdk/src/index.ts', 'packages/sdk/src/tfjs.ts'];
    const seen = new Set<string>();
    while (pending.length > 0) {
      const file = pending.pop()!;
      if (seen.has(file)) continue;
      seen.add(file);
      assert.match(file, /^packages\/sdk\/src\//, `the SDK reaches ${file}`);
      const text = await readFile(path.join(root, file), 'utf8');
      for (const [, spec] of text.matchAll(/^(?:import|export)[^;]*?from '(\.[^']+)'/gms)) {
        pending.push(
          path.relative(root, path.resolve(path.dirname(path.join(root, file)), spec)).replace(/\.js$/, '.ts'),
        );
      }
    }
    assert.ok(
      seen.has('packages/sdk/src/wire/native-format.ts') && seen.has('packages/sdk/src/download.ts'),
      [...seen].join(', '),
    );
  });
});

describe('BackgroundQueue', () => {
  const tick = () => new Promise((resolve) => setImmediate(resolve));

  it('makes callers wait when full, admits them in order, and runs at most `concurrency` tasks', async () => {
    const queue = new BackgroundQueue({ concurrency: 2, capacity: 3 });
    const releases: (() => void)[] = [];
    const started: number[] = [];
    let running = 0;
    let peak = 0;
    const task = (id: number) => () =>
      new Promise<void>((resolve) => {
        started.push(id);
        peak = Math.max(peak, ++running);
        releases.push(() => {
          running--;
          resolve();
        });
      });
    for (let i = 0; i < 3; i++) await queue.enqueue(task(i));
    let admitted = false;
    const fourth = queue.enqueue(task(3)).then(() => (admitted = true));
    const fifth = queue.enqueue(task(4));
    await tick();
    assert.equal(admitted, false, 'a full queue holds the caller back');
    assert.equal(queue.blockedCallers, 2);
    releases.shift()!();
    await fourth;
    releases.shift()!();
    await fifth;
    while (releases.length > 0 || queue.size > 0) {
      releases.shift()?.();
      await tick();
    }
    await queue.close();
    assert.deepEqual(started, [0, 1, 2, 3, 4]);
    assert.equal(peak, 2);
  });

  it('keeps failures for flush and onError, and refuses work once closed', async () => {
    const seen: unknown[] = [];
    const queue = new BackgroundQueue({ onError: (err) => seen.push(err) });
    await queue.enqueue(async () => {
      throw new Error('one');
    });
    await queue.enqueue(async () => undefined);
    await queue.enqueue(async () => {
      throw new Error('two');
    });
    await assert.rejects(queue.flush(), (err: unknown) => err instanceof AggregateError && err.errors.length === 2);
    assert.equal(seen.length, 2);
    await queue.flush(); // reported once
    await queue.close();
    await assert.rejects(
      queue.enqueue(async () => undefined),
      /closed/,
    );
  });
});

describe('withRetry', () => {
  it('retries retryable errors up to `retries` times and never a 4xx', async () => {
    let n = 0;
    await assert.rejects(
      withRetry(
        async () => {
          n++;
          throw new TrajgateError(503, 'storage_unavailable', 'down');
        },
        { retries: 3, baseDelayMs: 1 },
      ),
      TrajgateError,
    );
    assert.equal(n, 4);
    n = 0;
    await assert.rejects(
      withRetry(
        async () => {
          n++;
          throw new TrajgateError(409, 'checkpoint_conflict', 'no');
        },
        { baseDelayMs: 1 },
      ),
    );
    assert.equal(n, 1);
  });
});
