import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { trainMnist, type MnistMetricPoint } from '../scripts/lib/mnist-train.js';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import { createTestGateway, type TestGateway } from './helpers/gateway.js';
import { assertMatchesSpec } from './helpers/openapi.js';

interface TrajectoryBody {
  items: {
    step: number;
    updateNorm: number | null;
    distanceFromStart: number;
    pathLength: number;
    phase: string;
    changeScore: number;
  }[];
  phases: { method: string; boundaries: { phase: string }[] };
}

/**
 * A real model trained in tfjs on MNIST, uploaded as 30 checkpoints, must show a sensible trajectory.
 * The same checkpoints uploaded in a scrambled order must end with the same indicators.
 */
describe('trajectory of a real MNIST run', () => {
  let gw: TestGateway;
  const checkpoints: { step: number; body: Buffer }[] = [];
  const points: MnistMetricPoint[] = [];

  before(async () => {
    gw = await createTestGateway();
    await trainMnist(
      {
        hidden: [32],
        schedule: 'cosine',
        baseLr: 0.1,
        batchSize: 32,
        steps: 290,
        trainSize: 1000,
        heldOutSize: 500,
        labelNoise: 0,
        seed: 3,
        checkpointEvery: 10,
        evalEvery: 0,
        gapEvery: 0,
      },
      {
        onCheckpoint: (step, tensors) => {
          checkpoints.push({ step, body: encodeSafetensors(tensors) });
        },
        onMetrics: (p) => {
          points.push(p);
        },
      },
    );
  });
  after(() => gw.close());

  const upload = (run: string, c: { step: number; body: Buffer }) =>
    request(gw.app)
      .put(`/v1/runs/${run}/checkpoints/${c.step}`)
      .set('content-type', 'application/vnd.safetensors')
      .send(c.body)
      .expect(201);

  it('shows decaying updates, ordered phases and path length ≥ distance from start', async () => {
    assert.equal(checkpoints.length, 30);
    await request(gw.app).post('/v1/runs/mnist/metrics').send({ points }).expect(200);
    for (const c of checkpoints) await upload('mnist', c);
    const res = await request(gw.app).get('/v1/runs/mnist/trajectory');
    assertMatchesSpec(res, 'GET', '/v1/runs/{run}/trajectory');
    const body = res.body as TrajectoryBody;
    assert.equal(body.items.length, 30);
    const norms = body.items.slice(1).map((i) => i.updateNorm!);
    const third = Math.floor(norms.length / 3);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(
      mean(norms.slice(-third)) < mean(norms.slice(0, third)) / 3,
      `update norms decay: ${norms.map((n) => n.toFixed(3)).join(' ')}`,
    );
    assert.deepEqual(
      body.phases.boundaries.map((b) => b.phase),
      ['early', 'mid', 'late'],
    );
    for (const item of body.items) assert.ok(item.pathLength >= item.distanceFromStart * 0.99, `step ${item.step}`);
  });

  it('gives the same indicators when checkpoints arrive out of order', async () => {
    const order = [...checkpoints].sort((a, b) => ((a.step * 7919) % 31) - ((b.step * 7919) % 31));
    for (const c of order) await upload('mnist-shuffled', c);
    const [inOrder, shuffled] = await Promise.all(
      ['mnist', 'mnist-shuffled'].map(
        async (run) => (await request(gw.app).get(`/v1/runs/${run}/checkpoints`)).body.items,
      ),
    );
    const round = (v: unknown) =>
      JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'number' ? Number(x.toPrecision(9)) : x)));
    assert.deepEqual(
      shuffled.map((c: { indicators: unknown }) => round(c.indicators)),
      inOrder.map((c: { indicators: unknown }) => round(c.indicators)),
    );
  });

  it('shows one phase segmentation on /trajectory, in retention decisions and in /estimate', async () => {
    // The run 'mnist' from the first test: 30 real checkpoints and their training losses.
    const agree = async (expectedPhases: number) => {
      const trajectory = (await request(gw.app).get('/v1/runs/mnist/trajectory').expect(200)).body as TrajectoryBody;
      const trajectoryPhase = new Map(trajectory.items.map((i) => [i.step, i.phase]));
      assert.equal(new Set(trajectoryPhase.values()).size, expectedPhases);

      const decision = (await request(gw.app).post('/v1/runs/mnist/retention/simulate').send({}).expect(200)).body as {
        checkpoints: { step: number; phase: string }[];
      };
      assert.deepEqual(new Map(decision.checkpoints.map((c) => [c.step, c.phase])), trajectoryPhase);

      const records = (await request(gw.app).get('/v1/runs/mnist/checkpoints').expect(200)).body.items as {
        step: number;
        reasons: string[];
        status: string;
      }[];
      for (const record of records) {
        for (const reason of record.reasons) {
          const cited = /represents the (\S+) phase/.exec(reason)?.[1];
          if (cited) assert.equal(cited, trajectoryPhase.get(record.step), `reason of step ${record.step}: ${reason}`);
        }
      }

      const estimate = (await request(gw.app).get('/v1/runs/mnist/estimate').expect(200)).body as {
        phases: Record<string, { fromStep: number; toStep: number }>;
      };
      assert.deepEqual(Object.keys(estimate.phases).sort(), [...new Set(trajectoryPhase.values())].sort());
      for (const [step, phase] of trajectoryPhase) {
        const span = estimate.phases[phase];
        assert.ok(
          span.fromStep < step && step <= span.toStep,
          `step ${step} (${phase}) in the estimate's ${phase} span`,
        );
      }
    };
    await agree(3);
    // A policy that splits the run differently changes all three views together.
    await request(gw.app)
      .put('/v1/runs/mnist/policy')
      .send({ policy: { phase: { count: 4, by: 'dynamics' } } })
      .expect(200);
    await agree(4);
  });
});
