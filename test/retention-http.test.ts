import assert from 'node:assert/strict';
import { prng as rng } from './helpers/checkpoints.js';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { collectDiscarded } from '../src/retention/collector.js';
import { encodeSafetensors, type TensorData } from '@trajgate/sdk/wire/safetensors';
import { createTestGateway, listAllBlobs, type TestGateway } from './helpers/gateway.js';
import { assertMatchesSpec } from './helpers/openapi.js';

const SAFETENSORS = 'application/vnd.safetensors';

/**
 * A synthetic training run: a random walk whose steps shrink like a decaying learning rate, with one
 * large jump (an injected event) at `jumpAt`. Checkpoint i is at step 10·i.
 */
function syntheticRun(count: number, jumpAt: number, seed = 1): { step: number; body: Buffer }[] {
  const random = rng(seed);
  const w = Float32Array.from({ length: 1500 }, () => random() - 0.5);
  const b = Float32Array.from({ length: 16 }, () => random() - 0.5);
  const out: { step: number; body: Buffer }[] = [];
  for (let i = 0; i < count; i++) {
    const scale = (i === jumpAt ? 0.8 : 0.05) / Math.sqrt(1 + i / 10);
    if (i > 0) for (const v of [w, b]) for (let j = 0; j < v.length; j++) v[j] += (random() - 0.5) * scale;
    const tensors: TensorData[] = [
      { name: 'layer.weight', dtype: 'F32', shape: [50, 30], data: new Uint8Array(w.slice().buffer) },
      { name: 'layer.bias', dtype: 'F32', shape: [16], data: new Uint8Array(b.slice().buffer) },
    ];
    out.push({ step: i * 10, body: encodeSafetensors(tensors) });
  }
  return out;
}

interface Record {
  step: number;
  status: string;
  classes: string[];
  reasons: string[];
}

async function keptSteps(gw: TestGateway, run: string): Promise<number[]> {
  const res = await request(gw.app).get(`/v1/runs/${run}/checkpoints?status=kept`);
  return res.body.items.map((c: Record) => c.step);
}

const upload = (gw: TestGateway, run: string, c: { step: number; body: Buffer }, query = '') =>
  request(gw.app).put(`/v1/runs/${run}/checkpoints/${c.step}${query}`).set('content-type', SAFETENSORS).send(c.body);

describe('retention policies over REST', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(() => gw.close());

  it('stores, lists and validates policies', async () => {
    const put = await request(gw.app)
      .put('/v1/policies/tight')
      .send({ budget: { maxCheckpoints: 12 }, graceSeconds: 60 });
    assertMatchesSpec(put, 'PUT', '/v1/policies/{name}');
    assert.equal(put.status, 201);
    assert.equal(put.body.resolved.budget.maxCheckpoints, 12);
    assert.equal(typeof put.body.resolved.latest, 'number', 'defaults are filled in');
    const list = await request(gw.app).get('/v1/policies');
    assertMatchesSpec(list, 'GET', '/v1/policies');
    assert.deepEqual(
      list.body.items.map((p: { name: string }) => p.name),
      ['default', 'tight'],
    );
    const bad = await request(gw.app).put('/v1/policies/bad').send({ latest: -1, bogus: true });
    assertMatchesSpec(bad, 'PUT', '/v1/policies/{name}');
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /latest/);
    const missing = await request(gw.app).put('/v1/runs/r/policy').send({ name: 'nope' });
    assertMatchesSpec(missing, 'PUT', '/v1/runs/{run}/policy');
    assert.equal(missing.body.error.code, 'policy_not_found');
    const builtIn = await request(gw.app).put('/v1/policies/default').send({});
    assert.equal(builtIn.status, 400);
  });

  it('keeps ≤ 12 of 200 uploads: the latest, every phase, and the injected jump as `change`; replays identically', async () => {
    const uploads = syntheticRun(200, 120);
    await request(gw.app).put('/v1/runs/long').send({}).expect(201);
    await request(gw.app).put('/v1/runs/long/policy').send({ name: 'tight' }).expect(200);
    for (const c of uploads) {
      const res = await upload(gw, 'long', c);
      assert.equal(res.status, 201);
      assert.ok(res.body.decision.kept.length <= 12, `after step ${c.step}: ${res.body.decision.kept.length} kept`);
    }
    const last = await upload(gw, 'long', uploads[199]);
    assertMatchesSpec(last, 'PUT', '/v1/runs/{run}/checkpoints/{step}');
    const kept = await keptSteps(gw, 'long');
    assert.ok(kept.length <= 12 && kept.length >= 3, `kept ${kept.join(',')}`);
    assert.ok(kept.includes(1990), 'the latest is kept');
    const list = (await request(gw.app).get('/v1/runs/long/checkpoints?limit=1000')).body.items as Record[];
    const jump = list.find((c) => c.step === 1200)!;
    assert.equal(jump.status, 'kept', JSON.stringify(jump));
    assert.ok(jump.classes.includes('change'), `the jump is kept as change: ${jump.classes}`);
    for (const c of list)
      assert.ok(c.reasons.length > 0 && c.reasons.every((r) => r.length > 10), `step ${c.step} explains itself`);
    const trajectory = (await request(gw.app).get('/v1/runs/long/trajectory')).body.items as {
      step: number;
      phase: string;
    }[];
    const keptPhases = new Set(trajectory.filter((t) => kept.includes(t.step)).map((t) => t.phase));
    assert.deepEqual([...keptPhases].sort(), ['early', 'late', 'mid']);

    const fresh = await createTestGateway();
    try {
      await request(fresh.app)
        .put('/v1/policies/tight')
        .send({ budget: { maxCheckpoints: 12 }, graceSeconds: 60 })
        .expect(201);
      await request(fresh.app).put('/v1/runs/long/policy').send({ name: 'tight' }).expect(200);
      for (const c of uploads) await upload(fresh, 'long', c).expect(201);
      assert.deepEqual(await keptSteps(fresh, 'long'), kept);
    } finally {
      await fresh.close();
    }
  });

  it('simulates other policies without touching storage', async () => {
    const before = (await request(gw.app).get('/v1/runs/long/checkpoints?limit=1000')).body.items;
    const blobs = await listAllBlobs(gw.context);
    const sim = await request(gw.app)
      .post('/v1/runs/long/retention/simulate')
      .send({ policy: { budget: { maxCheckpoints: 4 } } });
    assertMatchesSpec(sim, 'POST', '/v1/runs/{run}/retention/simulate');
    assert.equal(sim.status, 200);
    assert.ok(sim.body.checkpoints.filter((c: { keep: boolean }) => c.keep).length <= 4);
    assert.deepEqual((await request(gw.app).get('/v1/runs/long/checkpoints?limit=1000')).body.items, before);
    assert.deepEqual(await listAllBlobs(gw.context), blobs);
  });

  it('never exceeds the budget nor loses the latest under concurrent uploads', async () => {
    await request(gw.app)
      .put('/v1/runs/busy/policy')
      .send({ policy: { budget: { maxCheckpoints: 5 } } })
      .expect(200);
    const uploads = syntheticRun(30, 15, 7);
    const queue = [...uploads];
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        for (let c = queue.shift(); c; c = queue.shift()) await upload(gw, 'busy', c).expect(201);
      }),
    );
    const kept = await keptSteps(gw, 'busy');
    assert.ok(kept.length <= 5, `kept ${kept}`);
    assert.ok(kept.includes(290), `the latest is kept: ${kept}`);
  });

  it('pins, unpins, answers 410 for discarded content, restores within grace, and deletes after it', async () => {
    await request(gw.app)
      .put('/v1/runs/grace/policy')
      .send({ policy: { budget: { maxCheckpoints: 3 }, graceSeconds: 3600 } })
      .expect(200);
    const uploads = syntheticRun(12, 6, 3);
    await upload(gw, 'grace', uploads[1], '?pin=true').expect(201);
    for (const c of uploads) await upload(gw, 'grace', c);
    const list = (await request(gw.app).get('/v1/runs/grace/checkpoints')).body.items as (Record & {
      pinned: boolean;
    })[];
    assert.ok(list.find((c) => c.step === 10)!.classes.includes('pinned'), 'a pinned checkpoint is never evicted');
    const discarded = list.find((c) => c.status === 'discarded')!;
    const gone = await request(gw.app).get(`/v1/runs/grace/checkpoints/${discarded.step}/content`);
    assertMatchesSpec(gone, 'GET', '/v1/runs/{run}/checkpoints/{step}/content');
    assert.equal(gone.status, 410);
    assert.equal(gone.body.error.code, 'checkpoint_discarded');
    assert.ok(gone.body.error.message.includes(discarded.reasons[0]));

    const restored = await request(gw.app).post(`/v1/runs/grace/checkpoints/${discarded.step}/restore`);
    assertMatchesSpec(restored, 'POST', '/v1/runs/{run}/checkpoints/{step}/restore');
    assert.equal(restored.body.status, 'kept');
    assert.equal(restored.body.pinned, true);
    const content = await request(gw.app).get(`/v1/runs/grace/checkpoints/${discarded.step}/content`);
    assert.equal(content.status, 200);

    const unpinned = await request(gw.app).post(`/v1/runs/grace/checkpoints/${discarded.step}/unpin`);
    assertMatchesSpec(unpinned, 'POST', '/v1/runs/{run}/checkpoints/{step}/unpin');
    assert.equal(unpinned.body.pinned, false);

    // Past the grace period the collector deletes the bytes; the record, stats and sketch stay.
    const victims = (await request(gw.app).get('/v1/runs/grace/checkpoints?status=discarded')).body.items as (Record & {
      deleteAfter: string;
    })[];
    assert.ok(victims.length > 0);
    const later = new Date(Date.parse(victims[0].deleteAfter) + 1000);
    const deleted = await collectDiscarded(gw.context.catalog, gw.context.blobs, gw.context.logger, later);
    assert.ok(deleted >= 1);
    const keys = await listAllBlobs(gw.context);
    assert.ok(
      !keys.some((k) => k.includes(`/${String(victims[0].step).padStart(10, '0')}-`)),
      'bytes gone from the store',
    );
    const record = (await request(gw.app).get(`/v1/runs/grace/checkpoints/${victims[0].step}`)).body;
    assert.equal(record.contentAvailable, false);
    assert.ok(record.tensors[0].norm > 0, 'statistics stay in the catalog');
    const tooLate = await request(gw.app).post(`/v1/runs/grace/checkpoints/${victims[0].step}/restore`);
    assert.equal(tooLate.status, 409);
    assert.equal(tooLate.body.error.code, 'checkpoint_not_restorable');
  });
});
