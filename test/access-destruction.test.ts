import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { AuditEntry, Checkpoint, CreatedToken, PolicyRecord, Run } from '@trajgate/sdk/contract';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import request from 'supertest';
import { collectDiscarded } from '../src/retention/collector.js';
import { createTestGateway, listAllBlobs, type TestGateway } from './helpers/gateway.js';
import { assertMatchesSpec } from './helpers/openapi.js';

/**
 * The probe's "anonymous destruction", replayed with access control on: unpin the checkpoint someone
 * pinned, then attach a policy that keeps one checkpoint with no grace period, so the collector deletes the
 * rest at its next pass. Anonymous callers and another team's operator are refused and change nothing; the
 * run's own operator may do it, and every step of it is in the audit trail under its token.
 */

const ADMIN_SECRET = 'bootstrap-admin-token-destruction-000000'; // 40 characters
const SAFETENSORS = 'application/vnd.safetensors';
const RUN = 'team-a-run';
const STEPS = [0, 10, 20, 30, 40];
const PINNED = 10;
const SHARED_POLICY = 'shared';
const DESTRUCTIVE = { budget: { maxCheckpoints: 1 }, latest: 0, graceSeconds: 0 };

function checkpointBody(step: number): Buffer {
  const w = new Float32Array(256).map((_, i) => Math.sin(i * (step + 1) * 0.01) + step / 100);
  return Buffer.from(encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [256], data: new Uint8Array(w.buffer) }]));
}

describe('anonymous destruction, replayed with access control on', () => {
  let gw: TestGateway;
  let server: http.Server;
  let admin: CreatedToken;
  let teamA: CreatedToken;
  let teamB: CreatedToken;

  const call = () => request(server);
  const bearer = (secret: string) => ({ Authorization: `Bearer ${secret}` });

  async function createToken(name: string, role: string, runs: string[]): Promise<CreatedToken> {
    const res = await call().post('/v1/tokens').set(bearer(ADMIN_SECRET)).send({ name, role, runs });
    assertMatchesSpec(res, 'POST', '/v1/tokens');
    assert.equal(res.status, 201);
    return res.body as CreatedToken;
  }

  /** What an attack could change: the run's checkpoints and policy, the shared policy, the run's audit. */
  async function state() {
    const as = bearer(admin.token);
    const checkpoints = (await call().get(`/v1/runs/${RUN}/checkpoints`).set(as).expect(200)).body
      .items as Checkpoint[];
    const run = (await call().get(`/v1/runs/${RUN}`).set(as).expect(200)).body as Run;
    const shared = (await call().get(`/v1/policies/${SHARED_POLICY}`).set(as).expect(200)).body as PolicyRecord;
    return {
      checkpoints,
      policy: run.policy,
      shared,
      audit: await audit(),
      blobs: (await listAllBlobs(gw.context)).sort(),
    };
  }

  /** The run's audit entries, read as admin. */
  async function audit(): Promise<AuditEntry[]> {
    const res = await call().get('/v1/audit').query({ run: RUN, limit: '1000' }).set(bearer(admin.token));
    assertMatchesSpec(res, 'GET', '/v1/audit');
    assert.equal(res.status, 200);
    return res.body.items as AuditEntry[];
  }

  const unpin = () => call().post(`/v1/runs/${RUN}/checkpoints/${PINNED}/unpin`);
  const attachDestructive = () => call().put(`/v1/runs/${RUN}/policy`).send({ policy: DESTRUCTIVE });
  const replaceShared = () => call().put(`/v1/policies/${SHARED_POLICY}`).send(DESTRUCTIVE);

  before(async () => {
    gw = await createTestGateway({ TRAJGATE_AUTH: 'tokens', TRAJGATE_ADMIN_TOKEN: ADMIN_SECRET });
    server = http.createServer(gw.app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    admin = await createToken('admin', 'admin', ['*']);
    teamA = await createToken('team-a operator', 'operator', ['team-a-*']);
    teamB = await createToken('team-b operator', 'operator', ['team-b-*']);
    const as = bearer(admin.token);
    await call().put(`/v1/runs/${RUN}`).set(as).send({ plannedSteps: 50, trainSize: 1000 }).expect(201);
    await call().put(`/v1/policies/${SHARED_POLICY}`).set(as).send({ latest: 10, graceSeconds: 3600 }).expect(201);
    for (const step of STEPS) {
      await call()
        .put(`/v1/runs/${RUN}/checkpoints/${step}${step === PINNED ? '?pin=true' : ''}`)
        .set(as)
        .set('content-type', SAFETENSORS)
        .send(checkpointBody(step))
        .expect(201);
    }
  });

  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await gw.close();
  });

  it('(a) anonymous: unpin and the destructive policy are 401; nothing changes', async () => {
    const initial = await state();
    assert.equal(initial.checkpoints.find((c) => c.step === PINNED)?.pinned, true);
    assert.ok(initial.checkpoints.every((c) => c.status === 'kept'));

    const unpinned = await unpin();
    assertMatchesSpec(unpinned, 'POST', '/v1/runs/{run}/checkpoints/{step}/unpin');
    assert.equal(unpinned.status, 401);
    assert.equal(unpinned.headers['www-authenticate'], 'Bearer realm="trajgate"');
    const policy = await attachDestructive();
    assertMatchesSpec(policy, 'PUT', '/v1/runs/{run}/policy');
    assert.equal(policy.status, 401);
    assert.equal(policy.headers['www-authenticate'], 'Bearer realm="trajgate"');

    assert.deepEqual(await state(), initial);
  });

  it("(b) another team's operator: 403 on both; an operator without scope *: 403 on a named policy", async () => {
    const initial = await state();

    const unpinned = await unpin().set(bearer(teamB.token));
    assertMatchesSpec(unpinned, 'POST', '/v1/runs/{run}/checkpoints/{step}/unpin');
    assert.equal(unpinned.status, 403);
    assert.match(unpinned.body.error.message, /outside the token's scope/);
    const policy = await attachDestructive().set(bearer(teamB.token));
    assertMatchesSpec(policy, 'PUT', '/v1/runs/{run}/policy');
    assert.equal(policy.status, 403);
    assert.match(policy.body.error.message, /outside the token's scope/);

    for (const operator of [teamA, teamB]) {
      const shared = await replaceShared().set(bearer(operator.token));
      assertMatchesSpec(shared, 'PUT', '/v1/policies/{name}');
      assert.equal(shared.status, 403, operator.name);
      assert.match(shared.body.error.message, /scope \*/);
    }

    assert.deepEqual(await state(), initial);
  });

  it("(c) the run's own operator may; the audit trail names it, then the collector", async (t) => {
    const initial = await state();
    const keptBefore = initial.checkpoints.filter((c) => c.status === 'kept').map((c) => c.step);
    const lastSeen = initial.audit.at(-1)?.id ?? 0;

    const unpinned = await unpin().set(bearer(teamA.token));
    assertMatchesSpec(unpinned, 'POST', '/v1/runs/{run}/checkpoints/{step}/unpin');
    assert.equal(unpinned.status, 200);
    assert.equal((unpinned.body as Checkpoint).pinned, false);
    const policy = await attachDestructive().set(bearer(teamA.token));
    assertMatchesSpec(policy, 'PUT', '/v1/runs/{run}/policy');
    assert.equal(policy.status, 200);

    const changed = await state();
    const keptAfter = changed.checkpoints.filter((c) => c.status === 'kept').map((c) => c.step);
    assert.equal(keptAfter.length, 1, 'the policy keeps one checkpoint');
    const evicted = keptBefore.filter((step) => !keptAfter.includes(step));
    assert.equal(evicted.length, STEPS.length - 1);

    const entries = changed.audit.filter((e) => e.id > lastSeen);
    for (const e of entries) t.diagnostic(`audit ${JSON.stringify(e)}`);
    const byOperator = entries.filter((e) => e.actor === teamA.id);
    assert.deepEqual(byOperator, entries, 'every new entry is by the operator');
    const unpinEntry = entries.find((e) => e.action === 'checkpoint.unpin');
    assert.equal(unpinEntry?.step, PINNED);
    const policyEntry = entries.find((e) => e.action === 'run.policy');
    assert.ok(policyEntry, 'run.policy is audited');
    assert.deepEqual(policyEntry.details, { before: null, after: { policy: DESTRUCTIVE } });
    const discards = entries.filter((e) => e.action === 'checkpoint.discard');
    assert.deepEqual(discards.map((e) => e.step).sort(byNumber), [...evicted].sort(byNumber));
    for (const e of discards) {
      assert.equal(e.run, RUN);
      assert.ok(Array.isArray(e.details.reasons) && e.details.reasons.length > 0, `reasons of step ${e.step}`);
      assert.equal(e.details.after, 'discarded');
    }
    assert.ok(
      entries.findIndex((e) => e.action === 'checkpoint.unpin') < entries.findIndex((e) => e.action === 'run.policy'),
    );
    assert.ok(policyEntry.id < Math.min(...discards.map((e) => e.id)), 'the evictions follow the policy change');

    // No grace period: the collector deletes the evicted checkpoints' bytes at its next pass.
    const deleted = await collectDiscarded(gw.context.catalog, gw.context.blobs, gw.context.logger);
    assert.equal(deleted, evicted.length);
    const collected = (await audit()).filter((e) => e.id > (changed.audit.at(-1)?.id ?? 0));
    for (const e of collected) t.diagnostic(`audit ${JSON.stringify(e)}`);
    assert.deepEqual(
      collected.map((e) => [e.actor, e.action]),
      evicted.map(() => ['collector', 'checkpoint.delete']),
    );
    assert.deepEqual(collected.map((e) => e.step).sort(byNumber), [...evicted].sort(byNumber));
    const finalCheckpoints = (await state()).checkpoints;
    for (const step of evicted) {
      assert.equal(finalCheckpoints.find((c) => c.step === step)?.contentAvailable, false, `step ${step} is gone`);
    }
  });
});

const byNumber = (a: number | null, b: number | null) => (a ?? -1) - (b ?? -1);
