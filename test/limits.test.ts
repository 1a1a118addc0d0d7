import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import express, { type Express } from 'express';
import { Packr, pack } from 'msgpackr';
import { pino } from 'pino';
import request from 'supertest';
import { loadConfig } from '../src/config.js';
import { EstimateAccumulator } from '../src/estimate/accumulator.js';
import { errorHandler } from '../src/http/error-handler.js';
import { rateLimit, type RateLimitOptions } from '../src/http/rate-limit.js';
import { MetricPoint } from '../src/model/records.js';
import { createTestGateway, type TestGateway } from './helpers/gateway.js';

/**
 * The limits of docs/architecture.md §2's HTTP layer: each refused with its code and status (422
 * `limit_exceeded`, or 429 `rate_limited` with `Retry-After`), the limit and its variable named, nothing
 * stored; and large batches, read a chunk at a time, stored completely and in order.
 */

type Point = Record<string, unknown>;

const tags = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));
const extra = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`m${i}`, i]));

/** `n` points; steps repeat (two points a step) so the series' order shows the arrival order. */
function points(n: number, from = 0): Point[] {
  return Array.from({ length: n }, (_, i) => ({ step: Math.floor((from + i) / 2), trainLoss: from + i, lr: 0.01 }));
}

function assertRefused(
  res: request.Response,
  status: number,
  code: string,
  limit: string,
  setting: string,
  details?: Record<string, unknown>,
): void {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.body.error.code, code);
  assert.match(res.body.error.message, new RegExp(setting));
  assert.equal(res.body.error.details.limit, limit);
  for (const [key, value] of Object.entries(details ?? {})) assert.equal(res.body.error.details[key], value, key);
  if (status === 429) {
    const retryAfter = Number(res.headers['retry-after']);
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After ${res.headers['retry-after']}`);
  } else {
    assert.equal(res.headers['retry-after'], undefined);
  }
}

async function postJson(app: Express, run: string, body: unknown): Promise<request.Response> {
  return request(app)
    .post(`/v1/runs/${run}/metrics`)
    .set('content-type', 'application/json')
    .send(JSON.stringify(body));
}

async function postMsgpack(app: Express, run: string, body: unknown): Promise<request.Response> {
  return request(app).post(`/v1/runs/${run}/metrics`).set('content-type', 'application/msgpack').send(pack(body));
}

async function series(app: Express, run: string): Promise<request.Response> {
  return request(app).get(`/v1/runs/${run}/metrics?limit=100000`);
}

describe('limits: configuration', () => {
  it('has defaults and reads every limit from its variable', () => {
    const defaults = loadConfig({}).limits;
    assert.equal(defaults.rateLimitRps, 200);
    assert.equal(defaults.rateLimitBurst, 400);
    assert.equal(defaults.maxTags, 256);
    assert.equal(defaults.maxExtraKeys, 64);
    assert.equal(defaults.maxPointsPerBatch, 100_000);
    assert.equal(defaults.maxPointsPerMinute, 1_000_000);
    const set = loadConfig({
      TRAJGATE_RATE_LIMIT_RPS: '0',
      TRAJGATE_RATE_LIMIT_BURST: '5',
      TRAJGATE_MAX_TAGS: '7',
      TRAJGATE_MAX_EXTRA_KEYS: '8',
      TRAJGATE_MAX_POINTS_PER_BATCH: '9',
      TRAJGATE_MAX_POINTS_PER_MINUTE: '10',
    }).limits;
    assert.deepEqual(
      [
        set.rateLimitRps,
        set.rateLimitBurst,
        set.maxTags,
        set.maxExtraKeys,
        set.maxPointsPerBatch,
        set.maxPointsPerMinute,
      ],
      [0, 5, 7, 8, 9, 10],
    );
    assert.throws(() => loadConfig({ TRAJGATE_MAX_POINTS_PER_BATCH: '0' }), /TRAJGATE_MAX_POINTS_PER_BATCH/);
  });
});

describe('limits: request rate per caller', () => {
  function limitedApp(options: RateLimitOptions): Express {
    const app = express();
    app.use(rateLimit(options, (req) => req.get('x-caller') ?? 'nobody'));
    app.get('/ping', (_req, res) => {
      res.json({ ok: true });
    });
    app.use(errorHandler(pino({ level: 'silent' })));
    return app;
  }

  /** `n` requests at once as `caller`: the responses, accepted first. */
  async function burst(app: Express, caller: string, n: number): Promise<request.Response[]> {
    const all = await Promise.all(Array.from({ length: n }, () => request(app).get('/ping').set('x-caller', caller)));
    return all.sort((a, b) => a.status - b.status);
  }

  it('refuses a caller past its rate with 429, Retry-After and the limit named; other callers go on', async () => {
    const app = limitedApp({ pointsPerSecond: 3 });
    const answers = await burst(app, 'alice', 5);
    assert.deepEqual(
      answers.map((r) => r.status),
      [200, 200, 200, 429, 429],
    );
    assertRefused(answers[3], 429, 'rate_limited', 'requests per second', 'TRAJGATE_RATE_LIMIT_RPS', { max: 3 });
    assert.match(answers[3].body.error.message, /3 requests per second per caller/);
    assert.equal((await request(app).get('/ping').set('x-caller', 'bob')).status, 200);
  });

  it('allows a burst beyond the rate, then refuses naming both settings', async () => {
    const app = limitedApp({ pointsPerSecond: 2, burst: 3 });
    const answers = await burst(app, 'carol', 7);
    assert.deepEqual(
      answers.map((r) => r.status),
      [200, 200, 200, 200, 200, 429, 429],
    );
    assertRefused(answers[5], 429, 'rate_limited', 'requests per second', 'TRAJGATE_RATE_LIMIT_BURST');
    assert.match(answers[5].body.error.message, /TRAJGATE_RATE_LIMIT_RPS/);
  });

  it('is off at 0 requests per second', async () => {
    const answers = await burst(limitedApp({ pointsPerSecond: 0, burst: 0 }), 'dave', 50);
    assert.ok(answers.every((r) => r.status === 200));
  });
});

describe('limits: tags per run', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway({ TRAJGATE_MAX_TAGS: '3' });
  });
  after(() => gw.close());

  it('refuses a run with more tags than allowed, creating and changing nothing', async () => {
    const refused = await request(gw.app)
      .put('/v1/runs/tagged')
      .send({ plannedSteps: 10, tags: tags(4) });
    assertRefused(refused, 422, 'limit_exceeded', 'tags per run', 'TRAJGATE_MAX_TAGS', { max: 3, value: 4 });
    assert.deepEqual(refused.body.error.details, { limit: 'tags per run', max: 3, value: 4 });
    assert.equal((await request(gw.app).get('/v1/runs/tagged')).status, 404, 'not created');

    assert.equal(
      (
        await request(gw.app)
          .put('/v1/runs/tagged')
          .send({ plannedSteps: 10, tags: tags(3) })
      ).status,
      201,
    );
    const update = await request(gw.app)
      .put('/v1/runs/tagged')
      .send({ plannedSteps: 20, tags: tags(5) });
    assertRefused(update, 422, 'limit_exceeded', 'tags per run', 'TRAJGATE_MAX_TAGS', { value: 5 });
    const run = await request(gw.app).get('/v1/runs/tagged');
    assert.deepEqual(run.body.tags, tags(3), 'tags unchanged');
    assert.equal(run.body.plannedSteps, 10, 'nothing of the refused update applied');
  });

  it('refuses the outside probe (50,000 tags) at the default limit', async () => {
    const open = await createTestGateway();
    try {
      const refused = await request(open.app)
        .put('/v1/runs/probe')
        .send({ tags: tags(50_000) });
      assertRefused(refused, 422, 'limit_exceeded', 'tags per run', 'TRAJGATE_MAX_TAGS', { max: 256, value: 50_000 });
      assert.equal((await request(open.app).get('/v1/runs/probe')).status, 404);
    } finally {
      await open.close();
    }
  });
});

describe('limits: metric batches', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway({ TRAJGATE_MAX_EXTRA_KEYS: '4', TRAJGATE_MAX_POINTS_PER_BATCH: '50' });
  });
  after(() => gw.close());

  it('refuses a point with too many extra keys, in JSON and msgpack, storing nothing', async () => {
    const batch = [
      { step: 1, extra: extra(4) },
      { step: 2, extra: extra(5) },
    ];
    for (const res of [
      await postJson(gw.app, 'extra', { points: batch }),
      await postJson(gw.app, 'extra', batch),
      await postMsgpack(gw.app, 'extra', { points: batch }),
    ]) {
      assertRefused(res, 422, 'limit_exceeded', 'extra keys per metric point', 'TRAJGATE_MAX_EXTRA_KEYS', {
        max: 4,
        value: 5,
        point: 1,
      });
    }
    assert.equal((await series(gw.app, 'extra')).status, 404, 'the run was not even created');
    assert.equal((await postJson(gw.app, 'extra', { points: batch.slice(0, 1) })).status, 200);
  });

  it('refuses a batch of more points than allowed, storing nothing', async () => {
    for (const res of [
      await postJson(gw.app, 'many', { points: points(51) }),
      await postJson(gw.app, 'many', points(51)),
      await postMsgpack(gw.app, 'many', points(51)),
    ]) {
      assertRefused(res, 422, 'limit_exceeded', 'points per batch', 'TRAJGATE_MAX_POINTS_PER_BATCH', {
        max: 50,
        value: 51,
      });
    }
    assert.equal((await series(gw.app, 'many')).status, 404);
    const ok = await postJson(gw.app, 'many', points(50));
    assert.equal(ok.body.accepted, 50);
  });
});

describe('limits: metric points per run per minute', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway({ TRAJGATE_MAX_POINTS_PER_MINUTE: '100' });
  });
  after(() => gw.close());

  it('refuses points past the budget with 429 and Retry-After; a refusal takes nothing from it', async () => {
    assert.equal((await postJson(gw.app, 'busy', points(60))).body.accepted, 60);
    const refused = await postMsgpack(gw.app, 'busy', points(50, 60));
    assertRefused(refused, 429, 'rate_limited', 'metric points per run per minute', 'TRAJGATE_MAX_POINTS_PER_MINUTE', {
      max: 100,
      value: 110,
    });
    assert.ok(Number(refused.headers['retry-after']) <= 60);
    assert.equal((await series(gw.app, 'busy')).body.items.length, 60, 'nothing of the refused batch stored');
    assert.equal((await postJson(gw.app, 'busy', points(40, 60))).body.accepted, 40, 'the rest of the budget');
    assert.equal((await postJson(gw.app, 'other', points(100))).body.accepted, 100, 'each run has its own');
  });

  it('refuses a batch larger than the whole budget as 422: it could never be accepted', async () => {
    const res = await postJson(gw.app, 'huge', points(101));
    assertRefused(res, 422, 'limit_exceeded', 'metric points per run per minute', 'TRAJGATE_MAX_POINTS_PER_MINUTE');
    assert.equal((await series(gw.app, 'huge')).status, 404);
  });
});

describe('limits: large batches (read a chunk at a time)', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(() => gw.close());

  it('stores the largest allowed batch completely and in order, JSON and msgpack', async () => {
    const batch = points(100_000);
    const json = await postJson(gw.app, 'big-json', { points: batch });
    assert.equal(json.status, 200, JSON.stringify(json.body));
    assert.equal(json.body.accepted, 100_000);
    const packed = await postMsgpack(gw.app, 'big-msgpack', batch.slice(0, 60_000));
    assert.equal(packed.body.accepted, 60_000);
    for (const [run, n] of [
      ['big-json', 100_000],
      ['big-msgpack', 60_000],
    ] as const) {
      const items = (await series(gw.app, run)).body.items as Point[];
      assert.equal(items.length, n, run);
      for (let i = 0; i < n; i++) {
        if (items[i].trainLoss !== i || items[i].step !== Math.floor(i / 2)) {
          assert.fail(`${run}: point ${i} is ${JSON.stringify(items[i])}`);
        }
      }
    }
  });

  it('folds a large batch into the estimate exactly as one pass over it', async () => {
    const batch = Array.from({ length: 30_000 }, (_, i) => ({
      step: i + 1,
      trainLoss: 2 / (1 + i / 1000),
      lr: 0.05,
      batchSize: 32,
      gradNorm: 1 + Math.sin(i / 9),
      gradVariance: 40,
      ...(i % 500 === 0 ? { valLoss: 2.5 / (1 + i / 1000), extra: { trainEvalLoss: 2 / (1 + i / 1000) } } : {}),
    }));
    assert.equal((await postJson(gw.app, 'folded', { points: batch })).status, 200);
    const expected = EstimateAccumulator.create()
      .add(batch.map((p) => MetricPoint.parse(p)))
      .toJSON();
    assert.deepEqual((await gw.context.catalog.getEstimateState('folded'))?.state, expected);
  });

  it('refuses the outside probes: 150,000 extra keys, and a batch one point over the limit', async () => {
    const wide = { step: 1, extra: extra(150_000) };
    for (const res of [
      await postJson(gw.app, 'probe', { points: [{ step: 0 }, wide] }),
      await request(gw.app)
        .post('/v1/runs/probe/metrics')
        .set('content-type', 'application/msgpack')
        .send(new Packr({ variableMapSize: true, useRecords: false }).pack([{ step: 0 }, wide])),
    ]) {
      assertRefused(res, 422, 'limit_exceeded', 'extra keys per metric point', 'TRAJGATE_MAX_EXTRA_KEYS', {
        max: 64,
        value: 150_000,
        point: 1,
      });
    }
    const tooMany = points(100_001);
    for (const res of [
      await postJson(gw.app, 'probe', tooMany),
      await postMsgpack(gw.app, 'probe', { points: tooMany }),
    ]) {
      assertRefused(res, 422, 'limit_exceeded', 'points per batch', 'TRAJGATE_MAX_POINTS_PER_BATCH', {
        max: 100_000,
        value: 100_001,
      });
    }
    // A point no valid one comes near in size (a number of 200,000 digits) is refused before it is parsed.
    const huge = `${JSON.stringify(points(40_000)).slice(0, -1)},{"step":1,"lr":0.${'1'.repeat(200_000)}}]`;
    const res = await request(gw.app).post('/v1/runs/probe/metrics').set('content-type', 'application/json').send(huge);
    assertRefused(res, 422, 'limit_exceeded', 'bytes per metric point', 'TRAJGATE_MAX_EXTRA_KEYS', { point: 40_000 });
    assert.equal((await series(gw.app, 'probe')).status, 404, 'nothing stored');
  });

  it('reads strings with escapes, brackets and commas, and answers bad large bodies with 400', async () => {
    const keys = ['a,b', 'c]d', 'e}f', 'g"h', 'i\\', '\\"j', 'k:l', 'ü€😀', '[{'];
    const tricky = points(20_000).map((p, i) => (i % 97 === 0 ? { ...p, extra: { [keys[i % keys.length]]: i } } : p));
    assert.equal((await postJson(gw.app, 'tricky', tricky)).status, 200);
    assert.deepEqual((await series(gw.app, 'tricky')).body.items, tricky);

    const text = JSON.stringify({ points: points(40_000) });
    const packed = pack(points(60_000));
    assert.ok(text.length > 1.1 * 2 ** 20 && packed.length > 1.1 * 2 ** 20, 'bodies read a chunk at a time');
    const bad: [string, string | Buffer, RegExp][] = [
      ['cut off', text.slice(0, -1000), /not valid JSON/],
      ['trailing', `${text} x`, /points/],
      ['another key', `${text.slice(0, -1)}, "more": 1}`, /points/],
      ['trailing comma', `${text.slice(0, -2)},]}`, /not valid JSON/],
      ['bad token', text.replace('"step":15000,', '"step":15000,,'), /not valid JSON/],
      ['bad point', text.replace('"step":10000,', '"step":-1,'), /points\.20000\.step/],
      ['msgpack cut off', packed.subarray(0, packed.length - 1000), /not valid msgpack/],
      ['msgpack trailing', Buffer.concat([packed, Buffer.from([1])]), /not valid msgpack/],
    ];
    for (const [what, body, message] of bad) {
      const type = Buffer.isBuffer(body) ? 'application/msgpack' : 'application/json';
      const res = await request(gw.app).post('/v1/runs/bad/metrics').set('content-type', type).send(body);
      assert.equal(res.status, 400, `${what}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, 'invalid_request', what);
      assert.match(res.body.error.message, message, what);
    }
    assert.equal((await series(gw.app, 'bad')).status, 404, 'nothing stored');
  });
});

describe('the request-rate limit as the gateway mounts it', () => {
  it('counts per token: one token over its rate gets 429 with Retry-After, another token does not', async () => {
    const admin = 'r'.repeat(40);
    const gw = await createTestGateway({
      TRAJGATE_AUTH: 'tokens',
      TRAJGATE_ADMIN_TOKEN: admin,
      TRAJGATE_RATE_LIMIT_RPS: '3',
      TRAJGATE_RATE_LIMIT_BURST: '0',
    });
    try {
      const created = await request(gw.app)
        .post('/v1/tokens')
        .set('authorization', `Bearer ${admin}`)
        .send({ name: 'reader', role: 'reader', runs: ['*'] })
        .expect(201);
      const statuses: number[] = [];
      let refused: request.Response | undefined;
      for (let i = 0; i < 6; i++) {
        const res = await request(gw.app).get('/v1/runs').set('authorization', `Bearer ${admin}`);
        statuses.push(res.status);
        if (res.status === 429) refused ??= res;
      }
      assert.ok(refused, `the admin token was never limited: ${statuses.join(' ')}`);
      assert.equal(refused.body.error.code, 'rate_limited');
      assert.ok(Number(refused.headers['retry-after']) >= 1);
      assert.match(refused.body.error.message, /TRAJGATE_RATE_LIMIT_RPS/);
      const other = await request(gw.app).get('/v1/runs').set('authorization', `Bearer ${created.body.token}`);
      assert.equal(other.status, 200, 'another token has its own budget');
    } finally {
      await gw.close();
    }
  });
});
