import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import type { MetricPoint } from '../src/model/records.js';
import { EstimateAccumulator } from '../src/estimate/accumulator.js';
import { currentEstimate } from '../src/estimate/estimate.js';
import { createTestGateway, type TestGateway } from './helpers/gateway.js';
import { assertMatchesSpec } from './helpers/openapi.js';

/** A plausible SGD run's metric points: decaying loss, gradient spread, evaluation points every 50 steps. */
function points(steps: number, lr: number, withVariance = true): MetricPoint[] {
  return Array.from({ length: steps }, (_, i) => {
    const step = i + 1;
    const gradNorm = 2 / Math.sqrt(step);
    const p: MetricPoint = {
      step,
      trainLoss: 2 / (1 + step / 100),
      lr,
      batchSize: 32,
      gradNorm,
      updateNorm: lr * gradNorm,
    };
    if (withVariance) p.gradVariance = 50 / Math.sqrt(step);
    if (step % 50 === 0) {
      p.valLoss = (2 / (1 + step / 100)) * (1 + step / 2000);
      p.extra = { trainEvalLoss: 2 / (1 + step / 100) };
    }
    return p;
  });
}

describe('generalization estimate over REST', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(() => gw.close());

  it('maintains the estimate incrementally; it equals a from-scratch computation', async () => {
    await request(gw.app).put('/v1/runs/est').send({ trainSize: 1000 }).expect(201);
    const all = points(600, 0.05);
    for (let i = 0; i < all.length; i += 97)
      await request(gw.app)
        .post('/v1/runs/est/metrics')
        .send({ points: all.slice(i, i + 97) })
        .expect(200);
    const res = await request(gw.app).get('/v1/runs/est/estimate');
    assertMatchesSpec(res, 'GET', '/v1/runs/{run}/estimate');
    const scratch = currentEstimate(EstimateAccumulator.create().add(all), { trainSize: 1000 });
    assert.equal(res.body.step, 600);
    assert.equal(res.body.trainSize, 1000);
    assert.ok(res.body.indicator > 0);
    assert.ok(Math.abs(res.body.indicator - scratch.indicator!) < 1e-9 * scratch.indicator!);
    assert.equal(res.body.calibrated, true);
    assert.ok(res.body.gap.low <= res.body.gap.estimate && res.body.gap.estimate <= res.body.gap.high);
    const history = await request(gw.app).get('/v1/runs/est/estimate/history');
    assertMatchesSpec(history, 'GET', '/v1/runs/{run}/estimate/history');
    assert.ok(history.body.items.length > 5);

    assert.notEqual(
      await gw.context.catalog.getEstimateState('est'),
      null,
      'the state is stored, so reads never rescan',
    );
  });

  it('says which inputs are missing instead of a number it cannot support', async () => {
    await request(gw.app).put('/v1/runs/no-var').send({ trainSize: 1000 }).expect(201);
    await request(gw.app)
      .post('/v1/runs/no-var/metrics')
      .send({ points: points(200, 0.05, false) })
      .expect(200);
    const res = await request(gw.app).get('/v1/runs/no-var/estimate');
    assertMatchesSpec(res, 'GET', '/v1/runs/{run}/estimate');
    assert.equal(res.body.indicator, null);
    assert.ok(res.body.missing.includes('gradVariance'), JSON.stringify(res.body.missing));
  });

  it('flags a large-learning-rate run', async () => {
    await request(gw.app).put('/v1/runs/hot').send({ trainSize: 1000 }).expect(201);
    await request(gw.app)
      .post('/v1/runs/hot/metrics')
      .send({ points: points(200, 5) })
      .expect(200);
    const res = await request(gw.app).get('/v1/runs/hot/estimate');
    const codes = res.body.warnings.map((w: { code: string }) => w.code);
    assert.ok(codes.includes('large_second_order') || codes.includes('extreme_learning_rate'), JSON.stringify(codes));
    const calm = await request(gw.app).get('/v1/runs/est/estimate');
    assert.ok(
      !calm.body.warnings.some(
        (w: { code: string }) => w.code === 'extreme_learning_rate' || w.code === 'large_second_order',
      ),
    );
  });
});

describe('calibration from sibling runs', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(() => gw.close());

  const post = async (run: string, all: MetricPoint[]) => {
    for (let i = 0; i < all.length; i += 200)
      await request(gw.app)
        .post(`/v1/runs/${run}/metrics`)
        .send({ points: all.slice(i, i + 200) })
        .expect(200);
  };
  const withoutEvaluations = (all: MetricPoint[]) =>
    all.map(({ valLoss: _v, extra: _e, ...training }) => training as MetricPoint);

  it('a run without evaluation points takes its group’s pooled scale, until its own take over', async () => {
    for (const [run, lr] of [
      ['sib-a', 0.05],
      ['sib-b', 0.08],
      ['sib-c', 0.03],
    ] as const) {
      await request(gw.app)
        .put(`/v1/runs/${run}`)
        .send({ trainSize: 1000, tags: { family: 'sweep' } })
        .expect(201);
      await post(run, points(600, lr));
    }
    // Its own group by field; the family tag is overridden, so no siblings there.
    await request(gw.app)
      .put('/v1/runs/loner')
      .send({ trainSize: 1000, tags: { family: 'sweep' }, calibrationGroup: 'elsewhere' })
      .expect(201);
    await post('loner', withoutEvaluations(points(600, 0.06)));
    const alone = await request(gw.app).get('/v1/runs/loner/estimate').expect(200);
    assert.equal(alone.body.calibration, null);
    assert.equal(alone.body.gap, null);

    await request(gw.app)
      .put('/v1/runs/sib-new')
      .send({ trainSize: 1000, tags: { family: 'sweep' } })
      .expect(201);
    await post('sib-new', withoutEvaluations(points(600, 0.06)));
    const pooled = await request(gw.app).get('/v1/runs/sib-new/estimate');
    assertMatchesSpec(pooled, 'GET', '/v1/runs/{run}/estimate');
    assert.equal(pooled.body.calibration.source, 'siblings');
    assert.equal(pooled.body.calibration.siblingRuns, 3);
    assert.equal(pooled.body.calibration.group, 'sweep');
    const { estimate, low, high } = pooled.body.gap;
    assert.ok(low < estimate && estimate < high, JSON.stringify(pooled.body.gap));
    const scales = await gw.context.catalog.siblingScales('sweep', 'sib-new', 10);
    assert.equal(scales.length, 3, 'each calibrated sibling recorded its own scale');

    await post(
      'sib-new',
      points(600, 0.06).filter((p) => p.valLoss !== undefined),
    );
    const own = await request(gw.app).get('/v1/runs/sib-new/estimate').expect(200);
    assert.equal(own.body.calibration.source, 'own');
    const run = await request(gw.app).get('/v1/runs/loner').expect(200);
    assert.equal(run.body.calibrationGroup, 'elsewhere');
  });
});
