import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import request from 'supertest';
import { collectDiscarded } from '../src/retention/collector.js';
import { createTestGateway, type TestGateway } from './helpers/gateway.js';

const ADMIN = 'm'.repeat(40);

/** Prometheus text format → series name with labels → value (comments and blank lines skipped). */
function parseExposition(text: string): Map<string, number> {
  const series = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)/.exec(line);
    assert.ok(match, `not an exposition line: ${line}`);
    series.set(match[1], Number(match[2]));
  }
  return series;
}

function body(seed: number): Buffer {
  const w = new Float32Array(512).map((_, i) => Math.cos(i * seed));
  return encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [512], data: new Uint8Array(w.buffer) }]);
}

describe('GET /metrics', () => {
  let gw: TestGateway;
  const auth = { authorization: `Bearer ${ADMIN}` };
  before(async () => {
    gw = await createTestGateway({
      TRAJGATE_AUTH: 'tokens',
      TRAJGATE_ADMIN_TOKEN: ADMIN,
      TRAJGATE_RATE_LIMIT_RPS: '0',
    });
  });
  after(() => gw.close());

  it('is protected like the API', async () => {
    const res = await request(gw.app).get('/metrics');
    assert.equal(res.status, 401);
  });

  it('counts uploads, downloads, decisions, discards, deletions, errors and estimate folds', async () => {
    const app = gw.app;
    await request(app)
      .put('/v1/runs/tm/policy')
      .set(auth)
      .send({ policy: { budget: { maxCheckpoints: 1 }, latest: 1, graceSeconds: 0 } })
      .expect(200);
    for (const step of [1, 2, 3]) {
      await request(app)
        .put(`/v1/runs/tm/checkpoints/${step}`)
        .set(auth)
        .set('content-type', 'application/vnd.safetensors')
        .send(body(step))
        .expect(201);
    }
    await request(app)
      .put('/v1/runs/tm/checkpoints/3')
      .set(auth)
      .set('content-type', 'application/vnd.safetensors')
      .send(body(3))
      .expect(200);
    await request(app).get('/v1/runs/tm/checkpoints/3/content').set(auth).expect(200);
    await request(app).get('/v1/runs/tm/checkpoints/3/content').set(auth).set('range', 'bytes=0-99').expect(206);
    await request(app).get('/v1/runs/nope').set(auth).expect(404);
    await request(app)
      .post('/v1/runs/tm/metrics')
      .set(auth)
      .send({
        points: [
          { step: 1, trainLoss: 1 },
          { step: 2, trainLoss: 0.9 },
        ],
      })
      .expect(200);
    const deleted = await collectDiscarded(gw.context.catalog, gw.context.blobs, gw.context.logger);
    assert.equal(deleted, 2);

    const res = await request(app).get('/metrics').set(auth).expect(200);
    assert.match(res.headers['content-type'], /^text\/plain/);
    const m = parseExposition(res.text);
    const size = body(1).byteLength;
    assert.equal(m.get('trajgate_uploads_total{format="safetensors",outcome="created"}'), 3);
    assert.equal(m.get('trajgate_uploads_total{format="safetensors",outcome="unchanged"}'), 1);
    assert.equal(m.get('trajgate_stored_bytes_total'), 3 * size);
    assert.equal(m.get('trajgate_upload_bytes_count{format="safetensors"}'), 3);
    assert.equal(m.get('trajgate_downloads_total{range="no"}'), 1);
    assert.equal(m.get('trajgate_downloads_total{range="yes"}'), 1);
    assert.equal(m.get('trajgate_download_bytes_total'), size + 100);
    assert.ok((m.get('trajgate_retention_decisions_total') ?? 0) >= 4);
    assert.equal(m.get('trajgate_retention_discards_total'), 2);
    assert.equal(m.get('trajgate_errors_total{code="run_not_found",status="404"}'), 1);
    assert.equal(m.get('trajgate_errors_total{code="unauthenticated",status="401"}'), 1);
    assert.equal(m.get('trajgate_estimate_folds_total{source="metric_points"}'), 2);
    assert.equal(m.get('trajgate_estimate_folds_total{source="checkpoints"}'), 3);
    assert.ok(m.has('trajgate_nodejs_eventloop_lag_seconds'), 'event-loop lag');
    assert.ok(m.has('trajgate_process_resident_memory_bytes'), 'resident memory');
  });
});
