import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { AuditEntry, CreatedToken, Role, Token } from '@trajgate/sdk/contract';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import request from 'supertest';
import { createTestGateway, type TestGateway } from './helpers/gateway.js';
import { assertMatchesSpec, spec } from './helpers/openapi.js';
import { waitFor } from './helpers/wait.js';

/**
 * Access control, derived from openapi/trajgate.yaml: every operation that declares `x-trajgate-role` is
 * called for real without a token (401), with each role below the one it needs (403 naming that role),
 * with the role it needs (success), and, when it names a run, on a run outside the token's scope (403 for
 * every role but admin). Every answer is checked against the spec. The spec must give every operation but
 * the public probes a role, and must document every route the app serves.
 */

const ADMIN_SECRET = 'bootstrap-admin-token-0123456789abcdefgh'; // 40 characters
const SAFETENSORS = 'application/vnd.safetensors';
const RUN = 'team-a-run';
const OTHER_TEAM_RUN = 'team-b-run';
const SCOPE = ['team-a-*'];
const STEPS = [0, 10, 20];
/** The step that path templates' `{step}` become. */
const STEP = 10;
/** A sharded step of one file, which `{step}` of the shard operations becomes, and that file (`{file}`). */
const SHARD_STEP = 30;
const SHARD_FILE = 'model-00001-of-00001.safetensors';
const POLICY = 'team-policy';
/** Keeps every fixture checkpoint, so pins, unpins and policy changes leave every step readable. */
const POLICY_BODY = { latest: 10, graceSeconds: 3600 };

// ---- the spec's operations

interface Operation {
  method: string;
  /** The spec's path template, e.g. `/v1/runs/{run}`. */
  path: string;
  operationId: string;
  role?: Role;
  /** `global`: needs the role with the run scope `*`. */
  scope?: string;
  security?: unknown[];
  requestBodyRequired: boolean;
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

function specOperations(): Operation[] {
  const out: Operation[] = [];
  for (const [path, item] of Object.entries(spec.paths as Record<string, Record<string, unknown>>)) {
    for (const method of METHODS) {
      const op = item[method] as Record<string, unknown> | undefined;
      if (!op) continue;
      const body = op.requestBody as { required?: boolean } | undefined;
      out.push({
        method: method.toUpperCase(),
        path,
        operationId: String(op.operationId),
        role: op['x-trajgate-role'] as Role | undefined,
        scope: op['x-trajgate-scope'] as string | undefined,
        security: op.security as unknown[] | undefined,
        requestBodyRequired: body?.required === true,
      });
    }
  }
  return out;
}

const operations = specOperations();
const guarded = operations.filter((op) => op.role !== undefined);
/** The roles in order, from the spec (each includes the ones before it). */
const ROLES = (spec.components as { schemas: Record<string, { enum: Role[] }> }).schemas.Role.enum;
const below = (role: Role): Role[] => ROLES.slice(0, ROLES.indexOf(role));
const runScoped = (op: Operation) => op.path.includes('{run}');

// ---- the app's routes

interface RouteLayer {
  route?: { path: string; methods: Record<string, boolean> };
  handle?: { stack?: RouteLayer[] };
}

/** `METHOD /path/{param}` for every route of the app (routers are mounted at the root). */
function appRoutes(gw: TestGateway): string[] {
  const out: string[] = [];
  const walk = (stack: readonly RouteLayer[]) => {
    for (const layer of stack) {
      if (layer.route) {
        const path = layer.route.path.replace(/:(\w+)/g, '{$1}');
        // The run pages are HTML for a browser, not operations of the REST API (test/ui.test.ts has them).
        if (path === '/ui' || path.startsWith('/ui/')) continue;
        for (const method of Object.keys(layer.route.methods)) out.push(`${method.toUpperCase()} ${path}`);
      } else if (layer.handle?.stack) {
        walk(layer.handle.stack);
      }
    }
  };
  walk((gw.app as unknown as { router: { stack: RouteLayer[] } }).router.stack);
  return out.sort();
}

// ---- samples

function checkpointBody(step: number): Buffer {
  const w = new Float32Array(64).map((_, i) => Math.sin(i * (step + 1)));
  return Buffer.from(encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [64], data: new Uint8Array(w.buffer) }]));
}

interface Sample {
  query?: Record<string, string>;
  headers?: Record<string, string>;
  /** The operation acts on a resumable upload: `{id}` is a session created for it first. */
  session?: boolean;
  json?: object;
  raw?: { contentType: string; body: Buffer };
}

/** Request bodies by operationId; each leaves the fixtures as they were (or as the next call needs them). */
const SAMPLES: Record<string, Sample> = {
  putRun: { json: { plannedSteps: 100, trainSize: 1000 } },
  // The bytes already committed at STEP: 200, nothing rewritten.
  uploadCheckpoint: { raw: { contentType: SAFETENSORS, body: checkpointBody(STEP) } },
  // The file already committed at SHARD_STEP: 200, nothing rewritten.
  uploadShard: {
    headers: { 'x-trajgate-shard-count': '1' },
    raw: { contentType: SAFETENSORS, body: checkpointBody(SHARD_STEP) },
  },
  postMetrics: { json: { points: [{ step: 15, trainLoss: 0.9, lr: 0.1 }] } },
  putPolicy: { json: POLICY_BODY },
  setRunPolicy: { json: { name: POLICY } },
  simulateRetention: { json: {} },
  createToken: { json: { name: 'sample', role: 'reader', runs: SCOPE } },
  createResumableUpload: { headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': '1000' } },
  getResumableUpload: { session: true, headers: { 'Tus-Resumable': '1.0.0' } },
  terminateResumableUpload: { session: true, headers: { 'Tus-Resumable': '1.0.0' } },
  // The first 10 bytes of a 1000-byte upload: 204, the session waits for the rest.
  appendResumableUpload: {
    session: true,
    headers: { 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0' },
    raw: { contentType: 'application/offset+octet-stream', body: checkpointBody(STEP).subarray(0, 10) },
  },
};

// ---- the test

describe('access control, operation by operation from the OpenAPI file', () => {
  let gw: TestGateway;
  let server: http.Server;
  /** Team-a tokens per role (the admin's scope is `*`), and an operator with the scope `*`. */
  const tokens = {} as Record<Role, CreatedToken>;
  let globalOperator: CreatedToken;
  /** A token that the denied DELETE /v1/tokens/{id} calls aim at; it must stay unrevoked. */
  let victim: CreatedToken;
  /** Every secret the gateway showed, to look for elsewhere. */
  const secrets: string[] = [];

  const call = () => request(server);
  const bearer = (secret: string) => ({ Authorization: `Bearer ${secret}` });

  async function createToken(input: object, by = ADMIN_SECRET): Promise<CreatedToken> {
    const res = await call().post('/v1/tokens').set(bearer(by)).send(input);
    assertMatchesSpec(res, 'POST', '/v1/tokens');
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const created = res.body as CreatedToken;
    secrets.push(created.token);
    return created;
  }

  /** As the bootstrap admin; fails unless 2xx. */
  async function setup(method: 'put' | 'post', path: string, build: (t: request.Test) => request.Test) {
    const res = await build(call()[method](path).set(bearer(ADMIN_SECRET)));
    assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    return res;
  }

  async function createRun(run: string): Promise<void> {
    await setup('put', `/v1/runs/${run}`, (t) => t.send({ plannedSteps: 100, trainSize: 1000 }));
    await setup('put', `/v1/runs/${run}/policy`, (t) => t.send({ name: POLICY }));
    for (const step of STEPS) {
      await setup('put', `/v1/runs/${run}/checkpoints/${step}`, (t) =>
        t.set('content-type', SAFETENSORS).send(checkpointBody(step)),
      );
    }
    await setup('put', `/v1/runs/${run}/checkpoints/${SHARD_STEP}/shards/${SHARD_FILE}`, (t) =>
      t.set({ 'content-type': SAFETENSORS, 'x-trajgate-shard-count': '1' }).send(checkpointBody(SHARD_STEP)),
    );
    const points = STEPS.map((step) => ({ step, trainLoss: 2 - step / 20, valLoss: 2.2 - step / 25, lr: 0.1 }));
    await setup('post', `/v1/runs/${run}/metrics`, (t) => t.send({ points }));
  }

  before(async () => {
    gw = await createTestGateway({
      TRAJGATE_AUTH: 'tokens',
      TRAJGATE_ADMIN_TOKEN: ADMIN_SECRET,
      // Hundreds of requests from a few callers in a few seconds: the request rate limit is tested elsewhere.
      TRAJGATE_RATE_LIMIT_RPS: '0',
    });
    server = http.createServer(gw.app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    assert.ok((server.address() as AddressInfo).port > 0);

    for (const role of ROLES) {
      tokens[role] = await createToken({ name: `team-a ${role}`, role, runs: role === 'admin' ? ['*'] : SCOPE });
    }
    globalOperator = await createToken({ name: 'global operator', role: 'operator', runs: ['*'] });
    victim = await createToken({ name: 'victim', role: 'reader', runs: SCOPE });
    await setup('put', `/v1/policies/${POLICY}`, (t) => t.send(POLICY_BODY));
    for (const run of [RUN, 'team-a-other', OTHER_TEAM_RUN]) await createRun(run);
  });

  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await gw.close();
  });

  /** The path with its parameters filled in; `{id}` is `tokenId` (default: the victim). */
  function pathFor(op: Operation, run: string, tokenId = victim.id): string {
    return op.path
      .replace('{run}', run)
      .replace('{step}', String(op.path.includes('/shards/') ? SHARD_STEP : STEP))
      .replace('{file}', SHARD_FILE)
      .replace('{name}', POLICY)
      .replace('{id}', tokenId);
  }

  async function send(op: Operation, secret: string | undefined, run = RUN, tokenId?: string) {
    const sample = SAMPLES[op.operationId] ?? {};
    const method = op.method.toLowerCase() as 'get' | 'put' | 'post' | 'delete' | 'patch' | 'head' | 'options';
    let path = pathFor(op, run, tokenId);
    if (sample.session) {
      const created = await setup('post', path.replace(/\/[^/]+$/, ''), (t) =>
        t.set({ 'Tus-Resumable': '1.0.0', 'Upload-Length': '1000' }),
      );
      path = String(created.headers.location);
    }
    let req = call()[method](path);
    if (secret !== undefined) req = req.set(bearer(secret));
    if (sample.headers) req = req.set(sample.headers);
    if (sample.query) req = req.query(sample.query);
    if (sample.raw) req = req.set('content-type', sample.raw.contentType).send(sample.raw.body);
    else if (sample.json) req = req.send(sample.json);
    const res = await req;
    if (op.method !== 'HEAD') assertMatchesSpec(res, op.method, op.path);
    return res;
  }

  /** The token that has exactly what `op` needs (for a global operation: its role with the scope `*`). */
  const sufficient = (op: Operation): CreatedToken =>
    op.scope === 'global' && op.role !== 'admin' ? globalOperator : tokens[op.role as Role];

  it('gives every operation but the public probes a role, and documents every route of the app', () => {
    const unguarded = operations.filter((op) => op.role === undefined);
    for (const op of unguarded) {
      assert.deepEqual(op.security, [], `${op.method} ${op.path} has no x-trajgate-role and is not public`);
      assert.ok(!op.path.startsWith('/v1/'), `${op.method} ${op.path}: every /v1 operation needs a role`);
    }
    assert.deepEqual(unguarded.map((op) => op.operationId).sort(), ['getHealth', 'getReadiness']);
    for (const op of guarded) {
      assert.ok(ROLES.includes(op.role as Role), `${op.operationId}: x-trajgate-role ${op.role} is not a Role`);
      assert.equal(op.security, undefined, `${op.operationId} inherits the top-level bearer requirement`);
      const hasBody = SAMPLES[op.operationId]?.json !== undefined || SAMPLES[op.operationId]?.raw !== undefined;
      assert.ok(!op.requestBodyRequired || hasBody, `${op.operationId} needs a body: add a sample to SAMPLES`);
    }
    assert.deepEqual(spec.security, [{ bearerAuth: [] }]);
    const documented = operations.map((op) => `${op.method} ${op.path}`).sort();
    const served = appRoutes(gw);
    assert.deepEqual(
      served.filter((r) => !documented.includes(r)),
      [],
      'routes the app serves that the spec does not document',
    );
    assert.deepEqual(
      documented.filter((r) => !served.includes(r)),
      [],
      'operations the spec documents that the app does not serve',
    );
  });

  it('keeps the probes public', async () => {
    for (const op of operations.filter((o) => o.role === undefined)) {
      const res = await send(op, undefined);
      assert.equal(res.status, 200, `${op.method} ${op.path} without a token`);
    }
  });

  // A HEAD answer has no body to name the error: its statuses only.
  for (const op of guarded.filter((o) => o.method === 'HEAD')) {
    it(`${op.operationId} (${op.method} ${op.path}) needs ${op.role}, by status`, async () => {
      const role = op.role as Role;
      assert.equal((await send(op, undefined)).status, 401);
      for (const lower of below(role)) assert.equal((await send(op, tokens[lower].token)).status, 403, lower);
      const ok = await send(op, sufficient(op).token);
      assert.ok(ok.status >= 200 && ok.status < 400, `${role}: ${ok.status}`);
      for (const other of ROLES.filter((r) => r !== 'admin')) {
        assert.equal(
          (await send(op, tokens[other].token, OTHER_TEAM_RUN)).status,
          403,
          `${other} on ${OTHER_TEAM_RUN}`,
        );
      }
    });
  }

  for (const op of guarded.filter((o) => o.method !== 'HEAD')) {
    const scope = op.scope ? ` (scope ${op.scope})` : '';
    it(`${op.operationId} (${op.method} ${op.path}) needs ${op.role}${scope}`, async (t) => {
      const role = op.role as Role;

      // No token, a token that does not exist, a header that is not Bearer: 401 with a challenge.
      for (const [what, secret] of [
        ['no token', undefined],
        ['an unknown token', `tg_${randomBytes(32).toString('base64url')}`],
      ] as const) {
        const res = await send(op, secret);
        assert.equal(res.status, 401, `${what}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.error.code, 'unauthenticated');
        assert.equal(res.headers['www-authenticate'], 'Bearer realm="trajgate"', what);
      }

      // Each role below the one needed: 403 naming it.
      for (const lower of below(role)) {
        const res = await send(op, tokens[lower].token);
        assert.equal(res.status, 403, `${lower}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.error.code, 'forbidden');
        assert.match(res.body.error.message, new RegExp(`\\b${role}\\b`), `${lower}: the message names ${role}`);
        assert.equal(res.body.error.details?.needed, role);
      }

      // A global operation with its role but a narrower scope: 403 asking for the scope `*`.
      if (op.scope === 'global' && role !== 'admin') {
        const res = await send(op, tokens[role].token);
        assert.equal(res.status, 403, JSON.stringify(res.body));
        assert.match(res.body.error.message, /scope \*/);
      }

      // Denied calls changed nothing that the next steps rely on.
      if (op.operationId === 'revokeToken') {
        const listed = await call().get('/v1/tokens').set(bearer(ADMIN_SECRET)).expect(200);
        const still = (listed.body.items as Token[]).find((tok) => tok.id === victim.id);
        assert.equal(still?.revokedAt, null, 'denied revocations revoked nothing');
      }

      // The role it needs: success. DELETE /v1/tokens/{id} gets a fresh token to revoke.
      const fresh =
        op.operationId === 'revokeToken'
          ? (await createToken({ name: 'to revoke', role: 'reader', runs: SCOPE })).id
          : undefined;
      const ok = await send(op, sufficient(op).token, RUN, fresh);
      assert.ok(ok.status >= 200 && ok.status < 400, `${role}: ${ok.status} ${JSON.stringify(ok.body)}`);
      t.diagnostic(`${op.operationId}: none 401, ${below(role).join('/') || '-'} 403, ${role} ${ok.status}`);

      if (!runScoped(op)) return;
      // A run outside the scope: 403 for every team-a role, whatever its rank; admins reach every run.
      for (const other of ROLES.filter((r) => r !== 'admin')) {
        const res = await send(op, tokens[other].token, OTHER_TEAM_RUN);
        assert.equal(res.status, 403, `${other} on ${OTHER_TEAM_RUN}: ${JSON.stringify(res.body)}`);
        if (ROLES.indexOf(other) >= ROLES.indexOf(role)) {
          assert.match(res.body.error.message, /outside the token's scope/, `${other} on ${OTHER_TEAM_RUN}`);
          assert.equal(res.body.error.details?.run, OTHER_TEAM_RUN);
        }
      }
      const admin = await send(op, tokens.admin.token, OTHER_TEAM_RUN);
      assert.ok(admin.status >= 200 && admin.status < 400, `admin on ${OTHER_TEAM_RUN}: ${admin.status}`);
    });
  }

  it('keeps operators to their scope in the audit trail', async () => {
    const operator = tokens.operator.token;
    const outside = await call().get('/v1/audit').query({ run: OTHER_TEAM_RUN }).set(bearer(operator));
    assertMatchesSpec(outside, 'GET', '/v1/audit');
    assert.equal(outside.status, 403);
    const own = await call().get('/v1/audit').query({ limit: '1000' }).set(bearer(operator));
    assertMatchesSpec(own, 'GET', '/v1/audit');
    assert.equal(own.status, 200);
    const items = own.body.items as AuditEntry[];
    assert.ok(items.length > 0, 'the operator sees its own runs');
    for (const entry of items) assert.ok(entry.run?.startsWith('team-a-'), `${entry.action} about ${entry.run}`);
    const all = await call().get('/v1/audit').query({ limit: '1000' }).set(bearer(ADMIN_SECRET)).expect(200);
    const runs = new Set((all.body.items as AuditEntry[]).map((e) => e.run));
    assert.ok(runs.has(OTHER_TEAM_RUN) && runs.has(null), 'admins see every entry, token entries included');
  });

  it('lists only the runs in the scope', async () => {
    const reader = await call().get('/v1/runs').set(bearer(tokens.reader.token));
    assertMatchesSpec(reader, 'GET', '/v1/runs');
    assert.deepEqual(
      (reader.body.items as { id: string }[]).map((r) => r.id),
      ['team-a-other', RUN],
    );
    const admin = await call().get('/v1/runs').set(bearer(tokens.admin.token)).expect(200);
    assert.deepEqual(
      (admin.body.items as { id: string }[]).map((r) => r.id),
      ['team-a-other', RUN, OTHER_TEAM_RUN],
    );
  });

  it('refuses a revoked token from the next request on', async () => {
    const token = await createToken({ name: 'short-lived', role: 'reader', runs: SCOPE });
    await call().get(`/v1/runs/${RUN}`).set(bearer(token.token)).expect(200);
    const revoked = await call().delete(`/v1/tokens/${token.id}`).set(bearer(ADMIN_SECRET));
    assertMatchesSpec(revoked, 'DELETE', '/v1/tokens/{id}');
    assert.equal(revoked.status, 200);
    assert.ok(revoked.body.revokedAt, 'revokedAt is set');
    const refused = await call().get(`/v1/runs/${RUN}`).set(bearer(token.token));
    assertMatchesSpec(refused, 'GET', '/v1/runs/{run}');
    assert.equal(refused.status, 401);
    assert.equal(refused.headers['www-authenticate'], 'Bearer realm="trajgate"');
    const missing = await call().delete('/v1/tokens/tok_0000000000000000').set(bearer(ADMIN_SECRET));
    assertMatchesSpec(missing, 'DELETE', '/v1/tokens/{id}');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'token_not_found');
  });

  it('refuses an expired token', async () => {
    // Stored with an expiry already past (straight into the catalog: the API refuses a past expiresAt).
    const secret = `tg_${randomBytes(32).toString('base64url')}`;
    await gw.context.catalog.insertToken({
      id: `tok_${randomBytes(8).toString('hex')}`,
      name: 'expired',
      role: 'admin',
      runs: ['*'],
      secretHash: createHash('sha256').update(secret).digest('hex'),
      expiresAt: new Date(Date.now() - 60_000).toISOString(),
      createdAt: new Date(Date.now() - 120_000).toISOString(),
      createdBy: 'test',
    });
    const past = await call().get('/v1/runs').set(bearer(secret));
    assertMatchesSpec(past, 'GET', '/v1/runs');
    assert.equal(past.status, 401);

    // Created through the API to expire a moment from now: it works until then, and is refused after.
    const expiresAt = Date.now() + 1500;
    const token = await createToken({
      name: 'expiring',
      role: 'reader',
      runs: SCOPE,
      expiresAt: new Date(expiresAt).toISOString(),
    });
    const early = await call().get('/v1/runs').set(bearer(token.token));
    if (Date.now() < expiresAt) assert.equal(early.status, 200, 'the token works before it expires');
    const refused = await waitFor(
      async () => {
        const res = await call().get('/v1/runs').set(bearer(token.token));
        return res.status === 401 ? res : null;
      },
      { what: 'the token to expire', timeoutMs: 15_000, intervalMs: 50 },
    );
    assert.ok(Date.now() >= expiresAt, 'not refused before it expired');
    assertMatchesSpec(refused, 'GET', '/v1/runs');
    assert.equal(refused.headers['www-authenticate'], 'Bearer realm="trajgate"');
    const late = await call()
      .post('/v1/tokens')
      .set(bearer(ADMIN_SECRET))
      .send({
        name: 'born expired',
        role: 'reader',
        runs: SCOPE,
        expiresAt: new Date(Date.now() - 1000).toISOString(),
      });
    assertMatchesSpec(late, 'POST', '/v1/tokens');
    assert.equal(late.status, 400);
  });

  it('refuses a token name with control characters (Postgres text cannot hold NUL)', async () => {
    for (const name of ['nul\u0000name', 'line\nbreak', 'bell\u0007']) {
      const res = await call().post('/v1/tokens').set(bearer(ADMIN_SECRET)).send({ name, role: 'reader', runs: SCOPE });
      assertMatchesSpec(res, 'POST', '/v1/tokens');
      assert.equal(res.status, 400, JSON.stringify(name));
      assert.match(res.body.error.message, /name.*control characters/);
    }
  });

  it('shows a token secret only in the answer that created it', async () => {
    assert.ok(secrets.length >= ROLES.length + 2);
    for (const secret of secrets) assert.match(secret, /^tg_[A-Za-z0-9_-]{43}$/);
    const hashes = secrets.map((s) => createHash('sha256').update(s).digest('hex'));
    const listed = await call().get('/v1/tokens').set(bearer(ADMIN_SECRET));
    assertMatchesSpec(listed, 'GET', '/v1/tokens');
    const tokensText = JSON.stringify(listed.body);
    assert.ok((listed.body.items as Token[]).length >= secrets.length);
    for (const item of listed.body.items as Record<string, unknown>[]) assert.equal(item.token, undefined);

    let auditText = '';
    let cursor: number | null = 0;
    while (cursor !== null) {
      const page: request.Response = await call()
        .get('/v1/audit')
        .query({ after: String(cursor), limit: '1000' })
        .set(bearer(ADMIN_SECRET));
      assertMatchesSpec(page, 'GET', '/v1/audit');
      assert.equal(page.status, 200);
      auditText += JSON.stringify(page.body.items);
      cursor = page.body.next as number | null;
    }
    assert.match(auditText, /token\.create/);
    for (const [i, secret] of secrets.entries()) {
      assert.ok(!tokensText.includes(secret), 'GET /v1/tokens shows no secret');
      assert.ok(!tokensText.includes(hashes[i]), 'GET /v1/tokens shows no secret hash');
      assert.ok(!auditText.includes(secret), 'the audit trail holds no secret');
      assert.ok(!auditText.includes(hashes[i]), 'the audit trail holds no secret hash');
    }
    assert.ok(!auditText.includes(ADMIN_SECRET) && !tokensText.includes(ADMIN_SECRET));
  });
});
