/**
 * Several gateway processes on one Postgres catalog and one blob store (an S3 server, then a shared local
 * directory): six clients upload one run round-robin across three replicas under a 5-checkpoint budget,
 * with concurrent pins, policy changes and metric batches; then every replica must tell the same story,
 * and a fresh single-gateway deployment fed the same uploads must keep the same set. Then one replica is
 * killed mid-upload: the others go on serving and nothing partial appears.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeSafetensors, type TensorData } from '@trajgate/sdk/wire/safetensors';
import request from 'supertest';
import { openCatalog } from '../src/catalog/factory.js';
import type { Estimate } from '../src/estimate/types.js';
import type { CheckpointListItem, MetricPoint } from '../src/model/records.js';
import { parseCheckpointKey, RUNS_PREFIX } from '../src/storage/keys.js';
import { createBlobStore } from '../src/storage/factory.js';
import { loadConfig } from '../src/config.js';
import { type GatewayProcess, startGatewayProcess } from '../scripts/lib/gateway-process.js';
import { mulberry32 } from '../scripts/lib/mnist-data.js';
import { createTestGateway } from './helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from './helpers/postgres.js';
import { type RunningS3rver, S3RVER_CREDENTIALS, startS3rver } from './helpers/s3rver.js';

const RUN = 'replicated';
const CHECKPOINTS = 36;
const STEP_EVERY = 100;
const CLIENTS = 6;
const BUDGET = 5;
/** Two budget-5 policies the run switches between; both keep the newest and have a long grace period. */
const TIGHT = { budget: { maxCheckpoints: BUDGET }, latest: 1, phase: { count: 3, perPhase: 1 }, change: { max: 1 } };
const TIGHT_B = { budget: { maxCheckpoints: BUDGET }, latest: 1, phase: { count: 2, perPhase: 1 }, change: { max: 2 } };
const METRIC_BATCHES = 12;

/** Checkpoint k of the run: a small model drifting along a fixed direction, with a jump at k = 20. */
function checkpointBody(k: number): Buffer {
  const rand = mulberry32(1000 + k);
  const base = mulberry32(7);
  const tensors: TensorData[] = [
    ['layer1.weight', [64, 32]],
    ['layer1.bias', [64]],
    ['layer2.weight', [10, 64]],
  ].map(([name, shape]) => {
    const dims = shape as number[];
    const values = new Float32Array(dims.reduce((a, b) => a * b, 1));
    const drift = k * 0.01 + (k >= 20 ? 0.5 : 0);
    for (let i = 0; i < values.length; i++) values[i] = base() - 0.5 + drift * Math.sin(i) + 0.001 * (rand() - 0.5);
    return { name: name as string, dtype: 'F32', shape: dims, data: new Uint8Array(values.buffer) };
  });
  return encodeSafetensors(tensors);
}

function metricBatch(b: number): MetricPoint[] {
  const per = (CHECKPOINTS * STEP_EVERY) / METRIC_BATCHES;
  return Array.from({ length: 50 }, (_, i) => {
    const step = Math.floor(b * per + (i * per) / 50);
    return { step, trainLoss: 2 / (1 + step / 300), valLoss: 2.1 / (1 + step / 320), lr: 1e-3, batchSize: 64 };
  });
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

async function call(
  base: string,
  method: string,
  url: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(base + url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

/** The JSON answer of a request that must succeed (typed by the caller: the spec tests check shapes). */
async function ok<T = unknown>(base: string, method: string, url: string, body?: unknown): Promise<T> {
  const res = await call(base, method, url, body);
  assert.ok(res.status < 300, `${method} ${url} on ${base}: ${res.status} ${JSON.stringify(res.json)}`);
  return res.json as T;
}

async function upload(base: string, k: number): Promise<void> {
  const res = await fetch(`${base}/v1/runs/${RUN}/checkpoints/${k * STEP_EVERY}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream' },
    body: checkpointBody(k),
  });
  assert.ok(res.status === 201 || res.status === 200, `upload ${k} to ${base}: ${res.status} ${await res.text()}`);
}

async function listAll(base: string): Promise<CheckpointListItem[]> {
  const items: CheckpointListItem[] = [];
  let after: number | null = null;
  for (;;) {
    const page: { items: CheckpointListItem[]; next: number | null } = await ok(
      base,
      'GET',
      `/v1/runs/${RUN}/checkpoints?limit=7${after === null ? '' : `&after=${after}`}`,
    );
    items.push(...page.items);
    if (page.next === null) return items;
    after = page.next;
  }
}

interface Deployment {
  gateways: GatewayProcess[];
  catalogUrl: string;
  blobEnv: Record<string, string>;
}

describe('3 gateway replicas on one Postgres catalog', () => {
  let s3: RunningS3rver;
  let sharedDir: string;
  before(async () => {
    s3 = await startS3rver('replicas');
    sharedDir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-replicas-'));
  });
  after(async () => {
    await s3.close();
    await rm(sharedDir, { recursive: true, force: true });
  });

  const stores = {
    'an S3 server': () => ({
      TRAJGATE_BLOB_URL: 's3://replicas/blobs',
      TRAJGATE_S3_ENDPOINT: s3.endpoint,
      TRAJGATE_S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    }),
    'a shared local directory': () => ({ TRAJGATE_BLOB_URL: path.join(sharedDir, 'blobs') }),
  };

  for (const [storeName, blobEnvOf] of Object.entries(stores)) {
    describe(`and ${storeName}`, () => {
      let db: TestDatabase;
      let deployment: Deployment;
      const dataDirs: string[] = [];
      before(async () => {
        db = await createTestDatabase();
        const blobEnv = blobEnvOf();
        for (let i = 0; i < 3; i++) dataDirs.push(await mkdtemp(path.join(os.tmpdir(), 'trajgate-replica-')));
        const gateways = await Promise.all(
          dataDirs.map((dir) =>
            startGatewayProcess({
              ...blobEnv,
              TRAJGATE_CATALOG_URL: db.url,
              TRAJGATE_DATA_DIR: dir,
              TRAJGATE_COLLECT_INTERVAL_S: '1',
              TRAJGATE_UPLOAD_IDLE_S: '5',
            }),
          ),
        );
        deployment = { gateways, catalogUrl: db.url, blobEnv };
      });
      after(async () => {
        await Promise.all(deployment?.gateways.map((g) => g.kill()) ?? []);
        await db?.drop();
        await Promise.all(dataDirs.map((d) => rm(d, { recursive: true, force: true })));
      });

      it('six clients round-robin across replicas: one consistent run, the same as a single gateway keeps', async (t) => {
        const urls = deployment.gateways.map((g) => g.url);
        const at = (i: number) => urls[i % urls.length];
        await ok(at(0), 'PUT', '/v1/policies/tight', TIGHT);
        await ok(at(1), 'PUT', '/v1/policies/tight-b', TIGHT_B);
        await ok(at(2), 'PUT', `/v1/runs/${RUN}`, { plannedSteps: CHECKPOINTS * STEP_EVERY });
        await ok(at(0), 'PUT', `/v1/runs/${RUN}/policy`, { name: 'tight' });

        const uploaded = new Set<number>();
        let uploadsDone = false;
        const clients = Array.from({ length: CLIENTS }, async (_, c) => {
          for (let k = c; k < CHECKPOINTS; k += CLIENTS) {
            await upload(at(k), k);
            uploaded.add(k);
          }
        });
        // Three writers at once, each batch to another replica: folds of one run's estimate race.
        const metrics = Array.from({ length: 3 }, async (_, w) => {
          for (let b = w; b < METRIC_BATCHES; b += 3) {
            const res = await fetch(`${at(b + w)}/v1/runs/${RUN}/metrics`, {
              method: 'POST',
              headers: { 'content-type': 'application/json', 'idempotency-key': `replicated-batch-${b}` },
              body: JSON.stringify({ points: metricBatch(b) }),
            });
            assert.equal(res.status, 200, await res.text());
          }
        });
        // Pins and unpins of uploaded steps, ending with steps 4 and 9 pinned (if uploaded by then: repeated below).
        const pinning = (async () => {
          const rand = mulberry32(3);
          for (let i = 0; !uploadsDone || i < 4; i++) {
            const done = [...uploaded];
            if (done.length > 0) {
              const k = done[Math.floor(rand() * done.length)];
              const action = rand() < 0.5 ? 'pin' : 'unpin';
              await ok(at(i + 1), 'POST', `/v1/runs/${RUN}/checkpoints/${k * STEP_EVERY}/${action}`);
            }
            await sleep(15);
          }
        })();
        const switching = (async () => {
          for (let i = 0; !uploadsDone; i++) {
            await ok(at(i + 2), 'PUT', `/v1/runs/${RUN}/policy`, { name: i % 2 === 0 ? 'tight-b' : 'tight' });
            await sleep(40);
          }
        })();
        try {
          await Promise.all([...clients, ...metrics]);
        } finally {
          uploadsDone = true;
          await Promise.allSettled([pinning, switching]);
        }
        await Promise.all([pinning, switching]);

        // The final state: exactly steps 4 and 9 pinned, then the last change, the policy, on a third replica.
        for (const item of await listAll(at(0))) {
          const want = item.step === 4 * STEP_EVERY || item.step === 9 * STEP_EVERY;
          if (item.pinned !== want)
            await ok(at(1), 'POST', `/v1/runs/${RUN}/checkpoints/${item.step}/${want ? 'pin' : 'unpin'}`);
        }
        await ok(at(2), 'PUT', `/v1/runs/${RUN}/policy`, { name: 'tight' });

        const lists = await Promise.all(urls.map(listAll));
        for (const list of lists.slice(1)) assert.deepEqual(list, lists[0], 'every replica lists the same checkpoints');
        const list = lists[0];
        const steps = list.map((c) => c.step);
        assert.equal(new Set(steps).size, steps.length, 'no duplicate rows');
        assert.equal(steps.length, CHECKPOINTS, 'every upload stored once');
        const kept = list.filter((c) => c.status === 'kept');
        const pinned = list.filter((c) => c.pinned);
        assert.deepEqual(
          pinned.map((c) => c.step),
          [4 * STEP_EVERY, 9 * STEP_EVERY],
        );
        assert.ok(
          kept.length <= BUDGET + pinned.length,
          `kept ${kept.length} > budget ${BUDGET} + pinned ${pinned.length}`,
        );
        assert.ok(
          kept.some((c) => c.step === (CHECKPOINTS - 1) * STEP_EVERY),
          'the latest is kept',
        );
        for (const c of list) assert.ok(c.indicators !== null, `step ${c.step} has its indicators`);

        for (const base of urls) {
          for (const c of list) {
            const res = await fetch(`${base}/v1/runs/${RUN}/checkpoints/${c.step}/content`);
            const bytes = new Uint8Array(await res.arrayBuffer());
            if (c.status === 'kept') {
              assert.equal(res.status, 200, `step ${c.step} from ${base}`);
              assert.equal(
                sha256(bytes),
                sha256(checkpointBody(c.step / STEP_EVERY)),
                `step ${c.step} whole from ${base}`,
              );
            } else {
              assert.equal(res.status, 410, `discarded step ${c.step} from ${base}`);
            }
          }
        }

        const estimates = await Promise.all(urls.map((base) => ok<Estimate>(base, 'GET', `/v1/runs/${RUN}/estimate`)));
        for (const e of estimates.slice(1)) assert.deepEqual(e, estimates[0], 'every replica gives the same estimate');
        assert.equal(estimates[0].counts.points, METRIC_BATCHES * 50, 'every batch folded into the estimate once');
        const metricPoints = await ok<{ items: MetricPoint[] }>(urls[1], 'GET', `/v1/runs/${RUN}/metrics?limit=10000`);
        assert.equal(metricPoints.items.length, METRIC_BATCHES * 50, 'each batch stored once');

        // A fresh single-gateway deployment fed the same final inputs keeps the same set.
        const fresh = await createTestGateway();
        try {
          await request(fresh.app).put('/v1/policies/tight').send(TIGHT).expect(201);
          await request(fresh.app)
            .put(`/v1/runs/${RUN}`)
            .send({ plannedSteps: CHECKPOINTS * STEP_EVERY })
            .expect(201);
          for (let k = 0; k < CHECKPOINTS; k++) {
            await request(fresh.app)
              .put(`/v1/runs/${RUN}/checkpoints/${k * STEP_EVERY}`)
              .set('content-type', 'application/octet-stream')
              .send(checkpointBody(k))
              .expect(201);
          }
          for (let b = 0; b < METRIC_BATCHES; b++) {
            await request(fresh.app)
              .post(`/v1/runs/${RUN}/metrics`)
              .send({ points: metricBatch(b) })
              .expect(200);
          }
          for (const step of [4, 9]) {
            await request(fresh.app)
              .post(`/v1/runs/${RUN}/checkpoints/${step * STEP_EVERY}/pin`)
              .expect(200);
          }
          await request(fresh.app).put(`/v1/runs/${RUN}/policy`).send({ name: 'tight' }).expect(200);
          const freshList = await fresh.context.catalog.listCheckpoints(RUN);
          for (const [i, c] of freshList.entries()) {
            assert.deepEqual(list[i].indicators, c.indicators, `step ${c.step}: the same indicators as one gateway's`);
          }
          const replayed = freshList.filter((c) => c.status === 'kept').map((c) => c.step);
          assert.deepEqual(
            kept.map((c) => c.step),
            replayed,
            'the replicas keep what one gateway fed the same uploads keeps',
          );
        } finally {
          await fresh.close();
        }
        for (const g of deployment.gateways) assert.deepEqual(g.errors, [], `no errors logged by ${g.url}`);
        t.diagnostic(
          `${storeName}: ${steps.length} checkpoints from ${CLIENTS} clients over ${urls.length} replicas, ` +
            `kept ${kept.length} (budget ${BUDGET}, pinned ${pinned.length}), discarded ${steps.length - kept.length}; ` +
            `${urls.length * steps.length} downloads checked; estimate from ${estimates[0].counts.points} points on every ` +
            'replica; replay kept the same set',
        );
      });

      it('a replica killed mid-upload: the others keep serving, nothing partial appears', async () => {
        const [first, second, victim] = deployment.gateways;
        const step = 99_000;
        const body = checkpointBody(99);
        const sent = new Promise<void>((resolve) => {
          const req = http.request(`${victim.url}/v1/runs/${RUN}/checkpoints/${step}`, {
            method: 'PUT',
            headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) },
          });
          req.on('error', () => resolve());
          req.on('response', () => resolve());
          req.write(body.subarray(0, body.length >> 1), () => {
            void victim.kill();
          });
        });
        await sent;
        await victim.exited;
        // The others answer reads and take writes to the same run: the killed replica held no lock for long.
        await upload(first.url, 37);
        await ok(second.url, 'POST', `/v1/runs/${RUN}/checkpoints/${37 * STEP_EVERY}/pin`);
        const list = await listAll(second.url);
        assert.equal(
          list.find((c) => c.step === step),
          undefined,
          'the cut upload left no row',
        );
        assert.ok(list.find((c) => c.step === 37 * STEP_EVERY)?.pinned);
        assert.equal((await call(first.url, 'GET', `/v1/runs/${RUN}/checkpoints/${step}`)).status, 404);
        const blobs = await createBlobStore(loadConfig({ ...deployment.blobEnv, TRAJGATE_DATA_DIR: os.tmpdir() }));
        try {
          for await (const blob of blobs.list(RUNS_PREFIX)) {
            assert.notEqual(
              parseCheckpointKey(blob.key)?.step,
              step,
              `no committed blob of the cut upload: ${blob.key}`,
            );
          }
        } finally {
          await blobs.close();
        }
        const catalog = await openCatalog(deployment.catalogUrl);
        try {
          assert.equal(await catalog.getCheckpoint(RUN, step), null);
        } finally {
          await catalog.close();
        }
      });
    });
  }
});
