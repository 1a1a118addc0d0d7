import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import type http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import request from 'supertest';
import { encodeSafetensors, type TensorData } from '@trajgate/sdk/wire/safetensors';
import type { Indicators } from '@trajgate/sdk/contract';
import { collectDiscarded } from '../src/retention/collector.js';
import { reconcile } from '../src/retention/reconcile.js';
import { expireStagedShards } from '../src/retention/shard-expiry.js';
import { loadConfig } from '../src/config.js';
import { ShardIngest } from '../src/runs/shard-ingest.js';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { TrajgateClient } from '@trajgate/sdk';
import os from 'node:os';
import path from 'node:path';
import { type GatewayProcess, startGatewayProcess } from '../scripts/lib/gateway-process.js';
import { createTestGateway, listAllBlobs, startTestServer, type TestGateway } from './helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';
import { type RunningS3rver, S3RVER_CREDENTIALS, startS3rver } from './helpers/s3rver.js';
import { assertMatchesSpec } from './helpers/openapi.js';

const SAFETENSORS = 'application/vnd.safetensors';
const COUNT = 'x-trajgate-shard-count';
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Tensors with per-tensor sketches (≥ 64 elements), exact per-tensor values (< 64) and an integer step counter. */
function weights(seed: number): TensorData[] {
  const f32 = (n: number, k: number) =>
    new Uint8Array(
      new Float32Array(Array.from({ length: n }, (_, i) => Math.sin(seed * 0.37 * (k + 1) + i * 0.011 * (k + 2))))
        .buffer,
    );
  const tensors: TensorData[] = [];
  for (let k = 0; k < 8; k++) {
    const n = k % 2 === 0 ? 3000 + 257 * k : 16 + k;
    tensors.push({ name: `layers.${k}.weight`, dtype: 'F32', shape: [n], data: f32(n, k) });
  }
  tensors.push({
    name: 'step',
    dtype: 'I64',
    shape: [1],
    data: new Uint8Array(new BigInt64Array([BigInt(seed)]).buffer),
  });
  return tensors;
}

/** The same weights as 4 files of 2 or 3 tensors, Hugging Face style. */
function shardsOf(tensors: TensorData[]): { file: string; bytes: Buffer; names: string[] }[] {
  const groups = [tensors.slice(0, 2), tensors.slice(2, 4), tensors.slice(4, 6), tensors.slice(6)];
  return groups.map((g, i) => ({
    file: `model-0000${i + 1}-of-00004.safetensors`,
    bytes: encodeSafetensors(g, { format: 'pt' }),
    names: g.map((t) => t.name),
  }));
}

function putShard(gw: TestGateway, run: string, step: number, file: string, body: Uint8Array, count = 4) {
  return request(gw.app)
    .put(`/v1/runs/${run}/checkpoints/${step}/shards/${file}`)
    .set('content-type', SAFETENSORS)
    .set(COUNT, String(count))
    .send(Buffer.from(body));
}

function binaryParser(res: request.Response, callback: (err: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  const stream = res as unknown as http.IncomingMessage;
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => callback(null, Buffer.concat(chunks)));
}

function relDiff(a: number, b: number): number {
  return a === b ? 0 : Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b));
}

/** Every number of two indicator records, pairwise, within `tol` relative difference. */
function assertIndicatorsClose(sharded: Indicators, single: Indicators, tol: number): number {
  let worst = 0;
  for (const key of [
    'updateNorm',
    'updateNormPerStep',
    'relativeChange',
    'distanceFromStart',
    'pathLength',
    'cosinePrev',
  ] as const) {
    const a = sharded[key];
    const b = single[key];
    assert.equal(a === null, b === null, key);
    if (a !== null && b !== null) worst = Math.max(worst, relDiff(a, b));
  }
  assert.deepEqual(
    sharded.topTensors.map((t) => t.name),
    single.topTensors.map((t) => t.name),
  );
  sharded.topTensors.forEach((t, i) => {
    worst = Math.max(worst, relDiff(t.updateNorm, single.topTensors[i].updateNorm));
  });
  assert.ok(worst <= tol, `largest relative difference ${worst}`);
  return worst;
}

describe('sharded steps', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(() => gw.close());

  it('commits a 4-file step sent in parallel once, with the indicators of the same weights sent as one file', async () => {
    let worst = 0;
    for (const step of [10, 20, 30]) {
      const tensors = weights(step);
      const single = await request(gw.app)
        .put(`/v1/runs/whole/checkpoints/${step}`)
        .set('content-type', SAFETENSORS)
        .send(encodeSafetensors(tensors, { format: 'pt' }))
        .expect(201);
      const answers = await Promise.all(shardsOf(tensors).map((s) => putShard(gw, 'split', step, s.file, s.bytes)));
      for (const a of answers) assertMatchesSpec(a, 'PUT', '/v1/runs/{run}/checkpoints/{step}/shards/{file}');
      const statuses = answers.map((a) => a.status).sort();
      assert.deepEqual(statuses, [201, 202, 202, 202], JSON.stringify(answers.map((a) => a.body)));
      const committed = answers.find((a) => a.status === 201)?.body;
      assert.equal(committed.status, 'committed');
      assert.equal(committed.shardsReceived, 4);
      assert.equal(committed.checkpoint.step, step);
      assert.ok(committed.checkpoint.decision, 'the commit decides retention');
      assert.equal(committed.checkpoint.shards.length, 4);
      assert.equal(
        committed.checkpoint.bytes,
        shardsOf(tensors).reduce((n, s) => n + s.bytes.byteLength, 0),
      );
      assert.equal(committed.checkpoint.tensors.length, tensors.length);
      const sharded = committed.checkpoint.indicators as Indicators;
      worst = Math.max(worst, assertIndicatorsClose(sharded, single.body.indicators as Indicators, 1e-9));
      // The tensor statistics are the single file's, exactly.
      const byName = new Map(single.body.tensors.map((t: { name: string }) => [t.name, t]));
      for (const t of committed.checkpoint.tensors) assert.deepEqual(t, byName.get(t.name));
    }
    console.log(`sharded vs single-file indicators: largest relative difference ${worst.toExponential(3)}`);
    const list = await request(gw.app).get('/v1/runs/split/checkpoints').expect(200);
    assert.deepEqual(
      list.body.items.map((c: { step: number }) => c.step),
      [10, 20, 30],
    );
    const trajectory = await request(gw.app).get('/v1/runs/split/trajectory').expect(200);
    const wholeTrajectory = await request(gw.app).get('/v1/runs/whole/trajectory').expect(200);
    assert.equal(trajectory.body.totals.checkpoints, 3);
    assert.ok(relDiff(trajectory.body.totals.pathLength, wholeTrajectory.body.totals.pathLength) <= 1e-9);
  });

  it('is invisible until the last file arrives, and a retried file changes nothing', async () => {
    const shards = shardsOf(weights(7));
    for (const s of shards.slice(0, 3)) await putShard(gw, 'wait', 5, s.file, s.bytes).expect(202);
    await request(gw.app).get('/v1/runs/wait/checkpoints/5').expect(404);
    // Staged files alone do not create the run (its first commit does, as for single-file uploads).
    await request(gw.app).get('/v1/runs/wait/checkpoints').expect(404);
    const again = await putShard(gw, 'wait', 5, shards[0].file, shards[0].bytes).expect(200);
    assert.equal(again.body.status, 'unchanged');
    assert.equal(again.body.shardsReceived, 3);
    await putShard(gw, 'wait', 5, shards[3].file, shards[3].bytes).expect(201);
    const after = await putShard(gw, 'wait', 5, shards[1].file, shards[1].bytes).expect(200);
    assert.equal(after.body.status, 'unchanged');
    assert.equal(after.body.checkpoint.step, 5);
    const other = await putShard(gw, 'wait', 5, shards[1].file, shards[2].bytes).expect(409);
    assert.equal(other.body.error.code, 'checkpoint_conflict');
    const extra = await putShard(gw, 'wait', 5, 'model-00005-of-00004.safetensors', shards[2].bytes).expect(409);
    assert.match(extra.body.error.message, /not one of them/);
    // A single-file upload of a committed sharded step is a conflict.
    const single = await request(gw.app)
      .put('/v1/runs/wait/checkpoints/5')
      .set('content-type', SAFETENSORS)
      .send(encodeSafetensors(weights(7)))
      .expect(409);
    assert.equal(single.body.error.code, 'checkpoint_conflict');
  });

  it('a step whose last file was staged but not committed (a crash between) commits when any file is sent again', async () => {
    const shards = shardsOf(weights(9));
    for (const s of shards.slice(0, 3)) await putShard(gw, 'cut', 9, s.file, s.bytes).expect(202);
    // The 4th file stored and staged the way the gateway does, then the process "dies" before the commit.
    const ingest = new ShardIngest(
      gw.context.blobs,
      gw.context.catalog,
      loadConfig({}).limits,
      pino({ level: 'silent' }),
    );
    const last = shards[3];
    const streamed = await ingest.stream({
      run: 'cut',
      step: 9,
      file: last.file,
      shardCount: 4,
      body: (async function* () {
        yield last.bytes;
      })(),
      contentType: SAFETENSORS,
    });
    await gw.context.catalog.stageShard({
      run: 'cut',
      step: 9,
      file: last.file,
      shardCount: 4,
      uploadId: streamed.uploadId,
      sha256: streamed.sha256,
      bytes: streamed.bytes,
      format: streamed.format,
      blobKey: streamed.blobKey,
      tensors: streamed.analysed.tensors,
      metadata: streamed.analysed.layout.metadata,
      summary: streamed.analysed.summary,
    });
    await request(gw.app).get('/v1/runs/cut/checkpoints/9').expect(404);
    const retried = await putShard(gw, 'cut', 9, shards[0].file, shards[0].bytes).expect(201);
    assert.equal(retried.body.status, 'committed');
    assert.ok(retried.body.checkpoint.indicators, 'indicators computed');
    assert.ok(retried.body.checkpoint.decision, 'retention decided');
    const again = await putShard(gw, 'cut', 9, shards[0].file, shards[0].bytes).expect(200);
    assert.equal(again.body.status, 'unchanged');
  });

  it('a file that fails validation keeps the step from committing; the valid file completes it', async () => {
    const shards = shardsOf(weights(3));
    for (const s of shards.slice(0, 3)) await putShard(gw, 'bad', 1, s.file, s.bytes).expect(202);
    const cut = await putShard(gw, 'bad', 1, shards[3].file, shards[3].bytes.subarray(0, shards[3].bytes.length - 5));
    assert.equal(cut.status, 400);
    assert.equal(cut.body.error.code, 'length_mismatch');
    const nan = weights(3).slice(6);
    new Float32Array(nan[0].data.buffer)[0] = Number.NaN;
    const poisoned = await putShard(gw, 'bad', 1, shards[3].file, encodeSafetensors(nan, { format: 'pt' })).expect(422);
    assert.equal(poisoned.body.error.code, 'non_finite_weights');
    await request(gw.app).get('/v1/runs/bad/checkpoints/1').expect(404);
    // Nothing of the refused files stays in storage.
    const keys = await listAllBlobs(gw.context);
    assert.equal(keys.filter((k) => k.startsWith('runs/bad/')).length, 3);
    await putShard(gw, 'bad', 1, shards[3].file, shards[3].bytes).expect(201);
    await request(gw.app).get('/v1/runs/bad/checkpoints/1').expect(200);
  });

  it('refuses a tensor name in two files, naming it, and disagreeing shard counts', async () => {
    const shards = shardsOf(weights(4));
    await putShard(gw, 'dup', 2, shards[0].file, shards[0].bytes).expect(202);
    const twice = await putShard(gw, 'dup', 2, 'copy.safetensors', shards[0].bytes).expect(409);
    assertMatchesSpec(twice, 'PUT', '/v1/runs/{run}/checkpoints/{step}/shards/{file}');
    assert.equal(twice.body.error.code, 'checkpoint_conflict');
    assert.match(twice.body.error.message, /tensor 'layers\.0\.weight' is in two files/);
    assert.deepEqual(twice.body.error.details.files, [shards[0].file, 'copy.safetensors']);
    const count = await putShard(gw, 'dup', 2, shards[1].file, shards[1].bytes, 3).expect(409);
    assert.match(count.body.error.message, /declares 3 shards .* declared 4/);
    const missing = await request(gw.app)
      .put(`/v1/runs/dup/checkpoints/3/shards/${shards[1].file}`)
      .set('content-type', SAFETENSORS)
      .send(shards[1].bytes)
      .expect(400);
    assert.match(missing.body.error.message, /x-trajgate-shard-count/);
    const badName = await putShard(gw, 'dup', 2, '..hidden', shards[1].bytes).expect(400);
    assert.equal(badName.body.error.code, 'invalid_request');
  });

  it('an uploaded model.safetensors.index.json declares the files: no count needed, and it is checked', async () => {
    const tensors = weights(12);
    const shards = shardsOf(tensors);
    const map: [string, string][] = shards.flatMap((s) => s.names.map((n): [string, string] => [n, s.file]));
    map.sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const total = tensors.reduce((n, t) => n + t.data.byteLength, 0);
    const hfIndex = `${JSON.stringify({ metadata: { total_size: total }, weight_map: Object.fromEntries(map) }, null, 2)}\n`;
    const putIndex = (step: number, body: string) =>
      request(gw.app)
        .put(`/v1/runs/idx/checkpoints/${step}/shards/model.safetensors.index.json`)
        .set('content-type', 'application/json')
        .send(body);
    const noCount = (step: number, file: string, body: Uint8Array) =>
      request(gw.app)
        .put(`/v1/runs/idx/checkpoints/${step}/shards/${file}`)
        .set('content-type', SAFETENSORS)
        .send(Buffer.from(body));
    // One file first (with its count), then the index, then the rest without a count.
    await putShard(gw, 'idx', 1, shards[2].file, shards[2].bytes).expect(202);
    const declared = await putIndex(1, hfIndex).expect(202);
    assertMatchesSpec(declared, 'PUT', '/v1/runs/{run}/checkpoints/{step}/shards/{file}');
    assert.equal(declared.body.shardCount, 4);
    assert.equal(declared.body.shardsReceived, 1);
    await putIndex(1, hfIndex).expect(200);
    const answers = await Promise.all([shards[0], shards[1], shards[3]].map((s) => noCount(1, s.file, s.bytes)));
    assert.deepEqual(answers.map((a) => a.status).sort(), [201, 202, 202]);
    const record = await request(gw.app).get('/v1/runs/idx/checkpoints/1').expect(200);
    assert.deepEqual(
      record.body.shards.map((s: { file: string }) => s.file),
      shards.map((s) => s.file),
    );
    const served = await request(gw.app)
      .get('/v1/runs/idx/checkpoints/1/shards/model.safetensors.index.json')
      .expect(200);
    assert.equal(served.text, hfIndex);
    await putIndex(1, hfIndex).expect(200);

    // The index is checked against the files: a tensor in a file it does not put there, a file it does not name.
    const moved = { ...Object.fromEntries(map), 'layers.0.weight': shards[1].file };
    await putIndex(2, JSON.stringify({ metadata: { total_size: total }, weight_map: moved })).expect(202);
    const wrong = await noCount(2, shards[0].file, shards[0].bytes).expect(409);
    assert.match(
      wrong.body.error.message,
      /tensor 'layers\.0\.weight' is in file 'model-00001-of-00004\.safetensors', but the model\.safetensors\.index\.json .* puts it in 'model-00002-of-00004\.safetensors'/,
    );
    const stranger = await noCount(2, 'extra.safetensors', shards[0].bytes).expect(409);
    assert.match(stranger.body.error.message, /not one of the files/);
    const disagree = await putShard(gw, 'idx', 2, shards[2].file, shards[2].bytes, 3).expect(409);
    assert.match(disagree.body.error.message, /declares 3 shards/);
    const notJson = await putIndex(3, '{"weight_map": 5}').expect(400);
    assert.equal(notJson.body.error.code, 'invalid_request');
    const noFile = await noCount(4, shards[0].file, shards[0].bytes).expect(400);
    assert.match(noFile.body.error.message, /x-trajgate-shard-count is missing/);
  });

  it('serves each file with Range, and the index in Hugging Face format', async () => {
    const tensors = weights(40);
    const shards = shardsOf(tensors);
    await Promise.all(shards.map((s) => putShard(gw, 'dl', 40, s.file, s.bytes)));
    const record = await request(gw.app).get('/v1/runs/dl/checkpoints/40').expect(200);
    assertMatchesSpec(record, 'GET', '/v1/runs/{run}/checkpoints/{step}');
    assert.deepEqual(
      record.body.shards,
      shards.map((s) => ({
        file: s.file,
        bytes: s.bytes.byteLength,
        sha256: sha256(s.bytes),
        tensors: s.names.length,
      })),
    );
    const listing = shards.map((s) => `${sha256(s.bytes)}  ${s.file}\n`).join('');
    assert.equal(
      record.body.sha256,
      sha256(Buffer.from(listing)),
      'the sha256 of the step is that of its sha256sum listing',
    );
    for (const s of shards) {
      const whole = await request(gw.app)
        .get(`/v1/runs/dl/checkpoints/40/shards/${s.file}`)
        .buffer(true)
        .parse(binaryParser)
        .expect(200);
      assertMatchesSpec(whole, 'GET', '/v1/runs/{run}/checkpoints/{step}/shards/{file}');
      assert.equal(whole.headers.etag, `"${sha256(s.bytes)}"`);
      assert.ok(Buffer.compare(whole.body as Buffer, s.bytes) === 0);
      const part = await request(gw.app)
        .get(`/v1/runs/dl/checkpoints/40/shards/${s.file}`)
        .set('range', 'bytes=100-')
        .buffer(true)
        .parse(binaryParser)
        .expect(206);
      assert.equal(part.headers['content-range'], `bytes 100-${s.bytes.length - 1}/${s.bytes.length}`);
      assert.ok(Buffer.compare(part.body as Buffer, s.bytes.subarray(100)) === 0);
    }
    const index = await request(gw.app)
      .get('/v1/runs/dl/checkpoints/40/shards/model.safetensors.index.json')
      .expect(200);
    const expectedMap: Record<string, string> = {};
    for (const s of shards) for (const n of s.names) expectedMap[n] = s.file;
    assert.deepEqual(index.body.weight_map, expectedMap);
    assert.equal(
      index.body.metadata.total_size,
      tensors.reduce((n, t) => n + t.data.byteLength, 0),
    );
    const content = await request(gw.app).get('/v1/runs/dl/checkpoints/40/content').expect(404);
    assert.match(content.body.error.message, /is sharded/);
    await request(gw.app).get('/v1/runs/dl/checkpoints/40/shards/nope.safetensors').expect(404);
  });

  it('retention discards a step with all its files, and abandoned staged files are dropped', async () => {
    await request(gw.app)
      .put('/v1/runs/keep/policy')
      .send({ policy: { budget: { maxCheckpoints: 2 }, graceSeconds: 1 } })
      .expect(200);
    for (const step of [1, 2, 3, 4, 5]) {
      await Promise.all(shardsOf(weights(step)).map((s) => putShard(gw, 'keep', step, s.file, s.bytes)));
    }
    const items = (await request(gw.app).get('/v1/runs/keep/checkpoints').expect(200)).body.items as {
      step: number;
      status: string;
      deleteAfter: string | null;
    }[];
    const now = new Date(Date.now() + 5000);
    // Discarded steps whose grace ended (early decisions may hold some longer: docs/architecture.md §6).
    const discarded = items
      .filter((c) => c.status === 'discarded' && c.deleteAfter !== null && Date.parse(c.deleteAfter) <= now.getTime())
      .map((c) => c.step);
    assert.ok(discarded.length >= 1, JSON.stringify(items));
    const logger = pino({ level: 'silent' });
    const deleted = await collectDiscarded(gw.context.catalog, gw.context.blobs, logger, now);
    assert.equal(deleted, discarded.length);
    const keys = await listAllBlobs(gw.context);
    for (const step of discarded) {
      const prefix = `runs/keep/checkpoints/${String(step).padStart(10, '0')}-`;
      assert.deepEqual(
        keys.filter((k) => k.startsWith(prefix)),
        [],
        `step ${step} left files`,
      );
    }
    const kept = items.filter((c) => !discarded.includes(c.step)).map((c) => c.step);
    for (const step of kept) {
      const prefix = `runs/keep/checkpoints/${String(step).padStart(10, '0')}-`;
      assert.equal(keys.filter((k) => k.startsWith(prefix)).length, 4 + 2, `step ${step}: 4 files, index, manifest`);
      const gone = await request(gw.app).get(`/v1/runs/keep/checkpoints/${step}/shards/model.safetensors.index.json`);
      assert.equal(gone.status, items.find((c) => c.step === step)?.status === 'kept' ? 200 : 410);
    }
    // Reconciliation long after keeps every live file, staged or committed.
    const staged = shardsOf(weights(99));
    await putShard(gw, 'keep', 99, staged[0].file, staged[0].bytes).expect(202);
    const found = await reconcile(gw.context.catalog, gw.context.blobs, logger, 0, new Date(Date.now() + 60_000));
    assert.equal(found.orphans, 0);
    assert.equal(
      (await listAllBlobs(gw.context)).filter((k) => k.startsWith('runs/keep/checkpoints/0000000099-')).length,
      1,
    );
    // A step whose other files never come is dropped with its bytes once its files are older than the TTL.
    assert.equal(await expireStagedShards(gw.context.catalog, gw.context.blobs, logger, 60_000), 0);
    // (This drops the staged file left by the duplicate-tensor test too.)
    assert.ok(
      (await expireStagedShards(gw.context.catalog, gw.context.blobs, logger, 0, new Date(Date.now() + 1000))) >= 1,
    );
    assert.equal(
      (await listAllBlobs(gw.context)).filter((k) => k.startsWith('runs/keep/checkpoints/0000000099-')).length,
      0,
    );
  });
});

describe('sharded steps on 2 replicas (one Postgres catalog, one S3 bucket)', () => {
  let s3: RunningS3rver;
  let db: TestDatabase;
  let gateways: GatewayProcess[] = [];
  const dirs: string[] = [];
  before(async () => {
    s3 = await startS3rver('shards');
    db = await createTestDatabase();
    for (let i = 0; i < 2; i++) dirs.push(await mkdtemp(path.join(os.tmpdir(), 'trajgate-shards-')));
    gateways = await Promise.all(
      dirs.map((dir) =>
        startGatewayProcess({
          TRAJGATE_BLOB_URL: 's3://shards/blobs',
          TRAJGATE_S3_ENDPOINT: s3.endpoint,
          TRAJGATE_S3_FORCE_PATH_STYLE: 'true',
          AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
          AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
          TRAJGATE_CATALOG_URL: db.url,
          TRAJGATE_DATA_DIR: dir,
        }),
      ),
    );
  });
  after(async () => {
    await Promise.all(gateways.map((g) => g.kill()));
    await db?.drop();
    await s3?.close();
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('files of each step sent in parallel to both replicas commit it once, with the single-file indicators', async () => {
    const single = await createTestGateway();
    try {
      let worst = 0;
      for (const step of [100, 200, 300]) {
        const tensors = weights(step);
        const whole = await request(single.app)
          .put(`/v1/runs/r/checkpoints/${step}`)
          .set('content-type', SAFETENSORS)
          .send(encodeSafetensors(tensors, { format: 'pt' }))
          .expect(201);
        const answers = await Promise.all(
          shardsOf(tensors).map(async (s, i) => {
            const res = await fetch(`${gateways[i % 2].url}/v1/runs/r/checkpoints/${step}/shards/${s.file}`, {
              method: 'PUT',
              headers: { 'content-type': SAFETENSORS, [COUNT]: '4' },
              body: s.bytes,
            });
            return {
              status: res.status,
              body: (await res.json()) as { checkpoint: { indicators: Indicators } | null },
            };
          }),
        );
        assert.deepEqual(
          answers.map((a) => a.status).sort(),
          [201, 202, 202, 202],
          JSON.stringify(answers.map((a) => a.body)),
        );
        const committed = answers.find((a) => a.status === 201)?.body.checkpoint;
        assert.ok(committed);
        worst = Math.max(worst, assertIndicatorsClose(committed.indicators, whole.body.indicators as Indicators, 1e-9));
      }
      console.log(
        `2 replicas: sharded vs single-file indicators, largest relative difference ${worst.toExponential(3)}`,
      );
      for (const g of gateways) {
        const list = (await (await fetch(`${g.url}/v1/runs/r/checkpoints`)).json()) as { items: { step: number }[] };
        assert.deepEqual(
          list.items.map((c) => c.step),
          [100, 200, 300],
        );
      }
      // Each file back from the other replica, byte for byte, and the index.
      const shards = shardsOf(weights(300));
      for (const [i, s] of shards.entries()) {
        const res = await fetch(`${gateways[(i + 1) % 2].url}/v1/runs/r/checkpoints/300/shards/${s.file}`);
        assert.equal(res.status, 200);
        assert.ok(Buffer.compare(Buffer.from(await res.arrayBuffer()), s.bytes) === 0);
      }
      const index = (await (
        await fetch(`${gateways[1].url}/v1/runs/r/checkpoints/300/shards/model.safetensors.index.json`)
      ).json()) as { weight_map: Record<string, string> };
      assert.equal(Object.keys(index.weight_map).length, weights(300).length);
      for (const g of gateways) assert.deepEqual(g.errors, [], g.tail());
    } finally {
      await single.close();
    }
  });
});

describe('the SDK: uploadCheckpointDir and a sharded downloadCheckpoint', () => {
  it('uploads a Hugging Face directory in parallel and writes it back with its index', async () => {
    const server = await startTestServer();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-shard-dir-'));
    try {
      const tensors = weights(11);
      const shards = shardsOf(tensors);
      const src = path.join(dir, 'src');
      const out = path.join(dir, 'out');
      await mkdir(src, { recursive: true });
      for (const s of shards) await writeFile(path.join(src, s.file), s.bytes);
      // The index as transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n".
      const map: [string, string][] = shards.flatMap((s) => s.names.map((n): [string, string] => [n, s.file]));
      map.sort((a, b) => (a[0] < b[0] ? -1 : 1));
      const hfIndex = `${JSON.stringify(
        {
          metadata: { total_size: tensors.reduce((n, t) => n + t.data.byteLength, 0) },
          weight_map: Object.fromEntries(map),
        },
        null,
        2,
      )}\n`;
      await writeFile(path.join(src, 'model.safetensors.index.json'), hfIndex);
      await writeFile(path.join(src, 'README.md'), 'not a shard');
      const client = new TrajgateClient({ url: server.url, retry: { baseDelayMs: 10 } });
      const progress: number[] = [];
      const committed = await client.uploadCheckpointDir('sdk', 7, src, {
        concurrency: 3,
        onProgress: (sent) => progress.push(sent),
      });
      assert.equal(committed.step, 7);
      assert.equal(committed.shards?.length, 4);
      assert.equal(
        progress.at(-1),
        shards.reduce((n, s) => n + s.bytes.byteLength, 0),
      );
      // Again: every file is stored already; the answer is the committed step.
      const again = await client.uploadCheckpointDir('sdk', 7, src);
      assert.equal(again.sha256, committed.sha256);
      const record = await client.downloadCheckpoint('sdk', 7, out);
      assert.equal(record.shards?.length, 4);
      assert.deepEqual(
        (await readdir(out)).sort(),
        [...shards.map((s) => s.file), 'model.safetensors.index.json'].sort(),
      );
      for (const s of shards) assert.ok(Buffer.compare(await readFile(path.join(out, s.file)), s.bytes) === 0);
      assert.equal(await readFile(path.join(out, 'model.safetensors.index.json'), 'utf8'), hfIndex);

      // The command: `trajgate checkpoints upload RUN STEP DIR/` and `download` into a directory.
      const up = await trajgate(['--url', server.url, 'checkpoints', 'upload', 'cli', '3', `${src}/`, '--pin']);
      assert.equal(up.code, 0, up.stderr);
      assert.match(up.stdout, /step 3 in 4 files: kept/);
      const cliOut = path.join(dir, 'cli-out');
      const down = await trajgate(['--url', server.url, 'checkpoints', 'download', 'cli', '3', cliOut]);
      assert.equal(down.code, 0, down.stderr);
      assert.match(down.stdout, /4 files and model\.safetensors\.index\.json/);
      for (const s of shards) assert.ok(Buffer.compare(await readFile(path.join(cliOut, s.file)), s.bytes) === 0);
      assert.equal(await readFile(path.join(cliOut, 'model.safetensors.index.json'), 'utf8'), hfIndex);
      assert.equal((await client.getCheckpoint('cli', 3)).pinned, true);
    } finally {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** Runs `bin/trajgate.js` (the TypeScript sources through tsx), as `npx trajgate` does in a checkout. */
function trajgate(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.TRAJGATE_TOKEN;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [new URL('../bin/trajgate.js', import.meta.url).pathname, ...args],
      { env, timeout: 60_000, cwd: os.tmpdir() },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      },
    );
  });
}
