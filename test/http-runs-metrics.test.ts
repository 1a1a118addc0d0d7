import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pack } from 'msgpackr';
import request from 'supertest';
import { createTestGateway, type TestGateway } from './helpers/gateway.js';
import { assertMatchesSpec } from './helpers/openapi.js';

describe('runs', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(() => gw.close());

  it('creates with PUT, updates only the given fields, and lists', async () => {
    const created = await request(gw.app)
      .put('/v1/runs/alpha')
      .send({ plannedSteps: 1000, tags: { team: 'x' } });
    assertMatchesSpec(created, 'PUT', '/v1/runs/{run}');
    assert.equal(created.status, 201);
    assert.equal(created.body.plannedSteps, 1000);
    assert.equal(created.body.allowShapeChange, false);

    const updated = await request(gw.app).put('/v1/runs/alpha').send({ trainSize: 5000 });
    assertMatchesSpec(updated, 'PUT', '/v1/runs/{run}');
    assert.equal(updated.status, 200);
    assert.equal(updated.body.plannedSteps, 1000, 'absent fields keep their values');
    assert.equal(updated.body.trainSize, 5000);
    assert.deepEqual(updated.body.tags, { team: 'x' });

    const empty = await request(gw.app).put('/v1/runs/beta').set('content-type', 'application/json').send('{}');
    assert.equal(empty.status, 201);
    const noBody = await request(gw.app).put('/v1/runs/gamma');
    assert.equal(noBody.status, 201, 'no body is the same as {}');

    const page1 = await request(gw.app).get('/v1/runs?limit=2');
    assertMatchesSpec(page1, 'GET', '/v1/runs');
    assert.deepEqual(
      page1.body.items.map((r: { id: string }) => r.id),
      ['alpha', 'beta'],
    );
    const page2 = await request(gw.app).get(`/v1/runs?limit=2&after=${page1.body.next}`);
    assert.deepEqual(
      page2.body.items.map((r: { id: string }) => r.id),
      ['gamma'],
    );
    assert.equal(page2.body.next, null);

    const summary = await request(gw.app).get('/v1/runs/alpha');
    assertMatchesSpec(summary, 'GET', '/v1/runs/{run}');
    assert.deepEqual(summary.body.checkpoints, { count: 0, kept: 0, latestStep: null, bytesUploaded: 0, bytesKept: 0 });
  });

  it('rejects invalid bodies and queries with the problems listed', async () => {
    const cases: [string, string | object, string][] = [
      ['/v1/runs/r1', { plannedSteps: -3 }, 'plannedSteps'],
      ['/v1/runs/r1', { unknownField: 1 }, 'unknownField'],
      ['/v1/runs/r1', '{"plannedSteps": 1', 'JSON'],
    ];
    for (const [url, body, mentions] of cases) {
      const res = await request(gw.app).put(url).set('content-type', 'application/json').send(body);
      assertMatchesSpec(res, 'PUT', '/v1/runs/{run}');
      assert.equal(res.status, 400);
      assert.equal(res.body.error.code, 'invalid_request');
      assert.match(res.body.error.message, new RegExp(mentions));
    }
    const badLimit = await request(gw.app).get('/v1/runs?limit=0');
    assertMatchesSpec(badLimit, 'GET', '/v1/runs');
    assert.equal(badLimit.body.error.code, 'invalid_request');
    const badId = await request(gw.app).put('/v1/runs/..').send({});
    assertMatchesSpec(badId, 'PUT', '/v1/runs/{run}');
    assert.equal(badId.body.error.code, 'invalid_run_id');
  });

  it('answers 400, not 500, to malformed percent-encoding in the path and to __proto__ keys', async () => {
    for (const path of ['/v1/runs/%', '/v1/runs/%zz', '/v1/runs/%/checkpoints/1', '/v1/runs/a%E0%A4%A/trajectory']) {
      const res = await request(gw.app).get(path);
      assert.equal(res.status, 400, path);
      assert.equal(res.body.error.code, 'invalid_request', path);
    }
    for (const body of ['{"__proto__": {"latest": 0}}', '{"budget": {"__proto__": {"maxCheckpoints": 1}}}']) {
      const res = await request(gw.app).put('/v1/policies/proto').set('content-type', 'application/json').send(body);
      assert.equal(res.status, 400, body);
      assert.match(res.body.error.message, /__proto__/);
    }
  });

  it('refuses a body that is not JSON instead of ignoring it, and unknown list parameters', async () => {
    for (const [url, method] of [
      ['/v1/runs/r2', 'PUT'],
      ['/v1/policies/p2', 'PUT'],
      ['/v1/runs/r2/policy', 'PUT'],
    ] as const) {
      const res = await request(gw.app)
        .put(url)
        .set('content-type', 'text/plain')
        .send('{"budget": {"maxCheckpoints": 1}}');
      assert.equal(res.status, 415, `${method} ${url}`);
      assert.equal(res.body.error.code, 'unsupported_media_type');
    }
    assert.equal((await request(gw.app).get('/v1/runs/r2')).status, 404, 'nothing was created');
    assert.equal((await request(gw.app).get('/v1/policies/p2')).status, 404, 'nothing was stored');
    const unknown = await request(gw.app).get('/v1/runs?limt=2');
    assertMatchesSpec(unknown, 'GET', '/v1/runs');
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error.message, /limt/);
  });
});

describe('metrics', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(() => gw.close());

  it('stores a batch sent again with the same Idempotency-Key once, also after a cut-off attempt', async () => {
    const points = Array.from({ length: 50 }, (_, i) => ({ step: i + 1, trainLoss: 1 / (i + 1) }));
    const post = (run: string, key: string) =>
      request(gw.app).post(`/v1/runs/${run}/metrics`).set('idempotency-key', key).send({ points });
    const count = async (run: string) =>
      (await request(gw.app).get(`/v1/runs/${run}/metrics`).expect(200)).body.items.length as number;
    const folded = async (run: string) =>
      (await request(gw.app).get(`/v1/runs/${run}/estimate`).expect(200)).body.counts.points as number;

    const first = await post('idem', 'batch-0001-aaaa').expect(200);
    assert.equal(first.body.accepted, 50);
    assert.equal(first.headers['idempotency-replayed'], undefined);
    const again = await post('idem', 'batch-0001-aaaa').expect(200);
    assertMatchesSpec(again, 'POST', '/v1/runs/{run}/metrics');
    assert.equal(again.body.accepted, 50);
    assert.equal(again.headers['idempotency-replayed'], 'true');
    assert.equal(await count('idem'), 50);
    assert.equal(await folded('idem'), 50, 'folded into the estimate once');
    await post('idem', 'batch-0002-bbbb').expect(200);
    assert.equal(await count('idem'), 100, 'another key is another batch');

    // A first attempt cut part-way left some of its points; the retry stores each point once.
    await request(gw.app).put('/v1/runs/idem-cut').send({}).expect(201);
    await gw.context.catalog.appendMetrics('idem-cut', points.slice(0, 20), 'batch-cut-0001');
    assert.equal((await post('idem-cut', 'batch-cut-0001').expect(200)).body.accepted, 50);
    assert.equal(await count('idem-cut'), 50);
    assert.equal(await folded('idem-cut'), 50);

    // Stored whole but cut before it was folded: the retry folds it, stores nothing more.
    await request(gw.app).put('/v1/runs/idem-fold').send({}).expect(201);
    await gw.context.catalog.appendMetrics('idem-fold', points, 'batch-fold-0001');
    await post('idem-fold', 'batch-fold-0001').expect(200);
    assert.equal(await count('idem-fold'), 50);
    assert.equal(await folded('idem-fold'), 50);

    const bad = await post('idem', 'short').expect(400);
    assert.match(bad.body.error.message, /Idempotency-Key/);
  });

  it('appends JSON and msgpack batches and returns the series in step order', async () => {
    const json = await request(gw.app)
      .post('/v1/runs/m1/metrics')
      .send({
        points: [
          { step: 2, trainLoss: 0.5, lr: 0.1 },
          { step: 1, trainLoss: 0.9, extra: { acc: 0.7 } },
        ],
      });
    assertMatchesSpec(json, 'POST', '/v1/runs/{run}/metrics');
    assert.equal(json.status, 200);
    assert.equal(json.body.accepted, 2);

    const bare = await request(gw.app)
      .post('/v1/runs/m1/metrics')
      .send([{ step: 3, valLoss: 0.4 }]);
    assert.equal(bare.body.accepted, 1);

    const packed = await request(gw.app)
      .post('/v1/runs/m1/metrics')
      .set('content-type', 'application/msgpack')
      .send(pack({ points: [{ step: 4, gradNorm: 1.5, gradVariance: 2.5, updateNorm: 0.01, batchSize: 32 }] }));
    assertMatchesSpec(packed, 'POST', '/v1/runs/{run}/metrics');
    assert.equal(packed.body.accepted, 1);

    const series = await request(gw.app).get('/v1/runs/m1/metrics');
    assertMatchesSpec(series, 'GET', '/v1/runs/{run}/metrics');
    assert.deepEqual(series.body.items, [
      { step: 1, trainLoss: 0.9, extra: { acc: 0.7 } },
      { step: 2, trainLoss: 0.5, lr: 0.1 },
      { step: 3, valLoss: 0.4 },
      { step: 4, gradNorm: 1.5, gradVariance: 2.5, updateNorm: 0.01, batchSize: 32 },
    ]);
    assert.equal(series.body.next, null);
    const window = await request(gw.app).get('/v1/runs/m1/metrics?fromStep=2&toStep=3');
    assert.deepEqual(
      window.body.items.map((p: { step: number }) => p.step),
      [2, 3],
    );
  });

  describe('pages of the series', () => {
    type Point = { step: number; trainLoss?: number; valLoss?: number };
    type Page = { items: Point[]; next: string | null };
    // Three batches: steps 1-20, then 5-10 again, then 20 twice: pages end inside runs of one step.
    const batches: Point[][] = [
      Array.from({ length: 20 }, (_, i) => ({ step: i + 1, trainLoss: i })),
      Array.from({ length: 6 }, (_, i) => ({ step: i + 5, valLoss: i })),
      [
        { step: 20, trainLoss: 100 },
        { step: 20, trainLoss: 101 },
      ],
    ];
    let all: Point[] = [];
    before(async () => {
      for (const points of batches) await request(gw.app).post('/v1/runs/paged/metrics').send({ points }).expect(200);
      all = (await request(gw.app).get('/v1/runs/paged/metrics?limit=1000').expect(200)).body.items;
      assert.equal(all.length, 28);
    });

    /** Follows `next` from the first page of `query`; returns the pages. */
    async function pages(query: string, between?: (page: Page) => Promise<void>): Promise<Page[]> {
      const out: Page[] = [];
      let after: string | null = null;
      do {
        const cursor: string = after === null ? '' : `&after=${encodeURIComponent(after)}`;
        const res = await request(gw.app).get(`/v1/runs/paged/metrics?${query}${cursor}`);
        assertMatchesSpec(res, 'GET', '/v1/runs/{run}/metrics');
        assert.equal(res.status, 200, JSON.stringify(res.body));
        out.push(res.body);
        await between?.(res.body);
        after = res.body.next;
        assert.ok(out.length <= 30, 'paging does not end');
      } while (after !== null);
      return out;
    }

    it('reads every point once, in order, across pages that end inside a step', async () => {
      assert.deepEqual(
        all.map((p) => p.step),
        [1, 2, 3, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 20, 20],
      );
      for (const limit of [1, 3, 5, 7, 27]) {
        const got = await pages(`limit=${limit}`);
        assert.deepEqual(
          got.flatMap((p) => p.items),
          all,
          `limit=${limit}`,
        );
        const full = Math.floor(all.length / limit);
        assert.equal(got.length, full + 1, `limit=${limit}: full pages, then the last (maybe empty) one`);
        for (const page of got.slice(0, -1)) {
          assert.equal(page.items.length, limit);
          assert.match(page.next ?? '', /^[A-Za-z0-9_-]{1,48}$/, 'a short opaque cursor');
        }
        assert.equal(got.at(-1)?.next, null);
      }
      const exact = await pages('limit=14');
      assert.deepEqual(
        exact.map((p) => p.items.length),
        [14, 14, 0],
        'a full last page is followed by an empty one',
      );
    });

    it('pages within fromStep and toStep', async () => {
      const got = await pages('fromStep=6&toStep=19&limit=4');
      assert.deepEqual(
        got.flatMap((p) => p.items),
        all.filter((p) => p.step >= 6 && p.step <= 19),
      );
    });

    it('includes points appended between pages at later steps', async () => {
      await request(gw.app).put('/v1/runs/growing').send({}).expect(201);
      await request(gw.app)
        .post('/v1/runs/growing/metrics')
        .send({ points: [{ step: 1 }, { step: 2 }, { step: 3 }] })
        .expect(200);
      let appended = false;
      const read: number[] = [];
      let after: string | null = null;
      do {
        const query: string = after === null ? 'limit=2' : `limit=2&after=${after}`;
        const page: Page = (await request(gw.app).get(`/v1/runs/growing/metrics?${query}`).expect(200)).body;
        read.push(...page.items.map((p) => p.step));
        if (!appended) {
          appended = true;
          await request(gw.app)
            .post('/v1/runs/growing/metrics')
            .send({ points: [{ step: 2 }, { step: 9 }] })
            .expect(200);
        }
        after = page.next;
      } while (after !== null);
      assert.deepEqual(read, [1, 2, 2, 3, 9]);
    });

    it('answers an empty last page after the last point', async () => {
      const [first] = await pages('limit=28');
      assert.ok(first.next);
      const res = await request(gw.app).get(`/v1/runs/paged/metrics?after=${first.next}`);
      assertMatchesSpec(res, 'GET', '/v1/runs/{run}/metrics');
      assert.deepEqual(res.body, { items: [], next: null });
    });

    it('refuses a malformed cursor or limit with 400 naming the parameter', async () => {
      const [first] = await pages('limit=3');
      const cursor = first.next ?? '';
      const cases: [string, string][] = [
        ['after=', 'after'],
        ['after=not%20a%20cursor', 'after'],
        [`after=${cursor}.`, 'after'],
        [`after=${cursor}=`, 'after'],
        [`after=${Buffer.from('1.x').toString('base64url')}`, 'after'],
        [`after=${Buffer.from('-1.2').toString('base64url')}`, 'after'],
        [`after=${Buffer.from('01.2').toString('base64url')}`, 'after'],
        [`after=${Buffer.from('99999999999999999.1').toString('base64url')}`, 'after'],
        [`after=${cursor}&after=${cursor}`, 'after'],
        [`after=${'A'.repeat(49)}`, 'after'],
        ['limit=0', 'limit'],
        ['limit=100001', 'limit'],
        ['limit=many', 'limit'],
        ['cursor=abc', 'cursor'],
      ];
      for (const [query, names] of cases) {
        const res = await request(gw.app).get(`/v1/runs/paged/metrics?${query}`);
        assertMatchesSpec(res, 'GET', '/v1/runs/{run}/metrics');
        assert.equal(res.status, 400, query);
        assert.equal(res.body.error.code, 'invalid_request', query);
        assert.match(res.body.error.message, new RegExp(`\\b${names}\\b`), query);
      }
    });
  });

  it('rejects bad points, NaN, bad msgpack and other media types', async () => {
    const cases: [string, string | Buffer, string, number][] = [
      ['application/json', JSON.stringify({ points: [{ step: -1 }] }), 'invalid_request', 400],
      ['application/json', JSON.stringify({ points: [{ step: 1, trainLoss: 'low' }] }), 'invalid_request', 400],
      ['application/json', JSON.stringify({ points: [{ step: 1, bogus: 1 }] }), 'invalid_request', 400],
      ['application/msgpack', pack({ points: [{ step: 1, trainLoss: Number.NaN }] }), 'invalid_request', 400],
      ['application/msgpack', Buffer.from([0xc1, 0xff]), 'invalid_request', 400],
      ['text/csv', 'step,loss\n1,2', 'unsupported_media_type', 415],
    ];
    for (const [type, body, code, status] of cases) {
      const res = await request(gw.app).post('/v1/runs/m2/metrics').set('content-type', type).send(body);
      assertMatchesSpec(res, 'POST', '/v1/runs/{run}/metrics');
      assert.equal(res.status, status, `${type} ${String(body).slice(0, 40)}`);
      assert.equal(res.body.error.code, code);
    }
    const missing = await request(gw.app).get('/v1/runs/never/metrics');
    assertMatchesSpec(missing, 'GET', '/v1/runs/{run}/metrics');
    assert.equal(missing.body.error.code, 'run_not_found');
  });
});

describe('health', () => {
  it('answers /healthz and /readyz', async () => {
    const gw = await createTestGateway();
    try {
      const live = await request(gw.app).get('/healthz');
      assertMatchesSpec(live, 'GET', '/healthz');
      const ready = await request(gw.app).get('/readyz');
      assertMatchesSpec(ready, 'GET', '/readyz');
      assert.deepEqual(ready.body, { status: 'ready', checks: { catalog: 'ok', storage: 'ok' } });
    } finally {
      await gw.close();
    }
  });
});
