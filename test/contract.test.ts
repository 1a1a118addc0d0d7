import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type * as wire from '@trajgate/sdk/contract';
import { ERROR_CODES } from '@trajgate/sdk/contract';
import { DTYPES } from '@trajgate/sdk/wire/dtypes';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import request from 'supertest';
import { z } from 'zod';
import type { CreatedToken } from '../src/auth/tokens.js';
import type { Estimate, HistoryEntry } from '../src/estimate/types.js';
import { AUDIT_ACTIONS, type AuditRecord, ROLES, type Role, TokenInput, TokenRecord } from '../src/model/access.js';
import { type Policy, PolicyInput } from '../src/model/policy.js';
import {
  CheckpointIndicators,
  CheckpointListItem,
  CheckpointPage,
  CheckpointRecord,
  CheckpointStatus,
  MetricPoint,
  MetricPointPage,
  RunInput,
  RunRecord,
  TensorEntry,
} from '../src/model/records.js';
import type { RetentionDecision } from '../src/retention/types.js';
import type { PolicyView } from '../src/runs/policy-book.js';
import type { RunSummary, UploadOutcome } from '../src/runs/run-service.js';
import type { RunTrajectory } from '../src/trajectory/run-analysis.js';
import { createTestGateway, type TestGateway } from './helpers/gateway.js';
import { assertMatchesSpec, spec } from './helpers/openapi.js';

/**
 * One wire contract (docs/architecture.md §8): the types in @trajgate/sdk/contract, which the SDK
 * re-exports; the server's zod schemas and response types, checked against them at compile time (this file
 * is type-checked by test/typecheck.test.ts); and openapi/trajgate.yaml, checked against the server's
 * schemas and real responses here.
 */

// ---- compile time: the server's schemas and response types are the contract's types

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const same = <T extends true>(): T | undefined => undefined;

same<Same<z.infer<typeof RunInput>, wire.RunInput>>();
same<Same<z.infer<typeof RunRecord>, wire.Run>>();
same<Same<z.infer<typeof TensorEntry>, wire.TensorSummary>>();
same<Same<z.infer<typeof CheckpointIndicators>, wire.Indicators>>();
same<Same<z.infer<typeof CheckpointRecord>, wire.Checkpoint>>();
same<Same<z.infer<typeof CheckpointListItem>, wire.CheckpointListItem>>();
same<Same<z.infer<typeof CheckpointPage>, wire.CheckpointPage>>();
same<Same<z.infer<typeof CheckpointStatus>, wire.CheckpointStatus>>();
same<Same<z.infer<typeof MetricPoint>, wire.MetricPoint>>();
same<Same<z.infer<typeof MetricPointPage>, wire.MetricPointPage>>();
same<Same<PolicyInput, wire.Policy>>();
same<Same<Policy, wire.ResolvedPolicy>>();
same<Same<PolicyView, wire.PolicyRecord>>();
same<Same<RunSummary, wire.RunSummary>>();
same<Same<RunTrajectory, wire.Trajectory>>();
same<Same<RetentionDecision, wire.RetentionDecision>>();
same<Same<Estimate, wire.Estimate>>();
same<Same<HistoryEntry, wire.EstimateHistoryEntry>>();
same<Same<UploadOutcome['checkpoint'], wire.Checkpoint>>();
same<Same<Role, wire.Role>>();
same<Same<z.infer<typeof TokenInput>, wire.TokenInput>>();
same<Same<z.infer<typeof TokenRecord>, wire.Token>>();
same<Same<CreatedToken, wire.CreatedToken>>();
same<Same<AuditRecord, wire.AuditEntry>>();

// ---- the OpenAPI file

type Schema = {
  $ref?: string;
  allOf?: Schema[];
  properties?: Record<string, Schema>;
  required?: string[];
  enum?: unknown[];
};
const components = (spec.components as { schemas: Record<string, Schema> }).schemas;

/** A component's properties and required names, through $ref and allOf. */
function shapeOf(schema: Schema): { properties: Set<string>; required: Set<string> } {
  if (schema.$ref) return shapeOf(components[schema.$ref.replace('#/components/schemas/', '')]);
  const properties = new Set(Object.keys(schema.properties ?? {}));
  const required = new Set(schema.required ?? []);
  for (const part of schema.allOf ?? []) {
    const inner = shapeOf(part);
    for (const p of inner.properties) properties.add(p);
    for (const r of inner.required) required.add(r);
  }
  return { properties, required };
}

const sorted = (values: Iterable<string>) => [...values].sort();

describe('the OpenAPI file agrees with the server', () => {
  it('lists the error catalogue, dtypes and statuses of the contract', () => {
    assert.deepEqual(sorted(components.ErrorCode.enum as string[]), sorted(ERROR_CODES));
    assert.deepEqual(sorted(components.Dtype.enum as string[]), sorted(DTYPES));
    assert.deepEqual(sorted(components.CheckpointStatus.enum as string[]), sorted(CheckpointStatus.options));
    assert.deepEqual(sorted(components.Role.enum as string[]), sorted(ROLES));
    assert.deepEqual(sorted(components.AuditAction.enum as string[]), sorted(AUDIT_ACTIONS));
  });

  const pairs: [string, z.ZodType][] = [
    ['RunInput', RunInput],
    ['Run', RunRecord],
    ['Tensor', TensorEntry],
    ['Indicators', CheckpointIndicators],
    ['Checkpoint', CheckpointRecord],
    ['CheckpointListItem', CheckpointListItem],
    ['CheckpointPage', CheckpointPage],
    ['MetricPoint', MetricPoint],
    ['MetricPointPage', MetricPointPage],
    ['Policy', PolicyInput],
    ['TokenInput', TokenInput],
    ['Token', TokenRecord],
  ];
  for (const [name, schema] of pairs) {
    it(`${name}: the same fields, the same required ones, as the server's schema`, () => {
      const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Schema;
      const server = shapeOf(json);
      const documented = shapeOf(components[name]);
      assert.deepEqual(sorted(documented.properties), sorted(server.properties), `${name} properties`);
      assert.deepEqual(sorted(documented.required), sorted(server.required), `${name} required`);
    });
  }
});

describe('real responses carry exactly the documented fields', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(() => gw.close());

  /** Fails on a field the server sends that the spec does not name, or a required one it leaves out. */
  function assertFields(body: Record<string, unknown>, component: string): void {
    const { properties, required } = shapeOf(components[component]);
    const sent = new Set(Object.keys(body));
    assert.deepEqual(
      sorted([...sent].filter((k) => !properties.has(k))),
      [],
      `${component}: fields the spec does not document`,
    );
    assert.deepEqual(
      sorted([...required].filter((k) => !sent.has(k))),
      [],
      `${component}: required fields missing from a real answer`,
    );
  }

  it('for runs, checkpoints, trajectory, retention, policies and the estimate', async () => {
    const app = gw.app;
    const run = await request(app).put('/v1/runs/contract').send({ plannedSteps: 40, trainSize: 100 }).expect(201);
    assertFields(run.body, 'Run');
    for (const step of [0, 10, 20, 30]) {
      const w = new Float32Array(64).map((_, i) => Math.sin(i * (step + 1)));
      const body = encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [64], data: new Uint8Array(w.buffer) }]);
      const upload = await request(app)
        .put(`/v1/runs/contract/checkpoints/${step}`)
        .set('content-type', 'application/vnd.safetensors')
        .send(Buffer.from(body))
        .expect(201);
      assertFields(upload.body, 'UploadResult');
    }
    await request(app)
      .post('/v1/runs/contract/metrics')
      .send({ points: [{ step: 10, trainLoss: 1, valLoss: 1.2, lr: 0.1, gradVariance: 2, updateNorm: 0.1 }] })
      .expect(200);
    assertFields((await request(app).get('/v1/runs/contract').expect(200)).body, 'RunSummary');
    assertFields((await request(app).get('/v1/runs/contract/checkpoints/10').expect(200)).body, 'Checkpoint');
    const trajectory = (await request(app).get('/v1/runs/contract/trajectory').expect(200)).body;
    assertFields(trajectory, 'Trajectory');
    assertFields(trajectory.items[1], 'TrajectoryItem');
    const decision = (await request(app).post('/v1/runs/contract/retention/simulate').send({}).expect(200)).body;
    assertFields(decision, 'RetentionDecision');
    assertFields((await request(app).get('/v1/policies/default').expect(200)).body, 'PolicyRecord');
    const estimate = (await request(app).get('/v1/runs/contract/estimate').expect(200)).body;
    assertFields(estimate, 'Estimate');
  });

  it('for pages of checkpoints and metric points: full, last, with and without tensor tables', async () => {
    const app = gw.app;
    for (const step of [0, 10, 20, 30]) {
      const w = new Float32Array(8).map((_, i) => Math.cos(i * (step + 1)));
      const body = encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [8], data: new Uint8Array(w.buffer) }]);
      await request(app)
        .put(`/v1/runs/contract-pages/checkpoints/${step}`)
        .set('content-type', 'application/vnd.safetensors')
        .send(Buffer.from(body))
        .expect(201);
    }
    const list = async (query: string) => {
      const res = await request(app).get(`/v1/runs/contract-pages/checkpoints?${query}`).expect(200);
      assertMatchesSpec(res, 'GET', '/v1/runs/{run}/checkpoints');
      assertFields(res.body, 'CheckpointPage');
      return res.body as { items: (Record<string, unknown> & { step: number })[]; next: number | null };
    };
    const full = await list('limit=3');
    assert.equal(full.next, 20);
    for (const item of full.items) {
      assertFields(item, 'CheckpointListItem');
      assert.equal('tensors' in item, false);
    }
    const last = await list(`limit=3&after=${full.next}`);
    assert.deepEqual([last.items.map((c) => c.step), last.next], [[30], null]);
    const withTensors = await list('limit=2&include=tensors');
    assert.equal(withTensors.next, 10);
    for (const item of withTensors.items) {
      assertFields(item, 'Checkpoint');
      assert.ok(Array.isArray(item.tensors) && item.tensors.length > 0, 'tensors are there when asked for');
    }

    const metrics = async (query: string) => {
      const res = await request(app).get(`/v1/runs/contract-pages/metrics?${query}`).expect(200);
      assertMatchesSpec(res, 'GET', '/v1/runs/{run}/metrics');
      assertFields(res.body, 'MetricPointPage');
      return res.body as wire.MetricPointPage;
    };
    await request(app)
      .post('/v1/runs/contract-pages/metrics')
      .send({
        points: [
          { step: 10, trainLoss: 1 },
          { step: 20, trainLoss: 0.9 },
        ],
      })
      .expect(200);
    const first = await metrics('limit=1');
    assert.equal(typeof first.next, 'string');
    const rest = await metrics(`limit=5&after=${first.next}`);
    assert.deepEqual([rest.items.map((p) => p.step), rest.next], [[20], null]);
  });
});

describe('real access-control answers carry exactly the documented fields', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(() => gw.close());

  it('for tokens and the audit trail', async () => {
    const app = gw.app;
    const created = await request(app)
      .post('/v1/tokens')
      .send({ name: 'contract', role: 'reader', runs: ['contract-*'], expiresAt: '2999-01-01T00:00:00Z' })
      .expect(201);
    assertShape(created.body, 'CreatedToken');
    const listed = await request(app).get('/v1/tokens').expect(200);
    assertShape(listed.body.items[0], 'Token');
    const revoked = await request(app).delete(`/v1/tokens/${created.body.id}`).expect(200);
    assertShape(revoked.body, 'Token');
    const audit = await request(app).get('/v1/audit').expect(200);
    assert.ok(audit.body.items.length >= 2, 'token.create and token.revoke are audited');
    for (const entry of audit.body.items) assertShape(entry, 'AuditEntry');
  });

  function assertShape(body: Record<string, unknown>, component: string): void {
    const { properties, required } = shapeOf(components[component]);
    const sent = new Set(Object.keys(body));
    assert.deepEqual(sorted([...sent].filter((k) => !properties.has(k))), [], `${component}: undocumented fields`);
    assert.deepEqual(sorted([...required].filter((k) => !sent.has(k))), [], `${component}: missing fields`);
  }
});
