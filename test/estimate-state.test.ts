import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import type { MetricPage, MetricQuery } from '../src/catalog/catalog.js';
import { EstimateAccumulator, type CheckpointUpdate } from '../src/estimate/accumulator.js';
import { currentEstimate } from '../src/estimate/estimate.js';
import { estimateHistory } from '../src/estimate/history.js';
import { migrateState, STATE_MIGRATIONS, type StateMigration } from '../src/estimate/migration.js';
import { rebuildAccumulator } from '../src/estimate/rebuild.js';
import { RunEstimates, type EstimateCatalog } from '../src/estimate/run-estimates.js';
import { STATE_VERSION } from '../src/estimate/state.js';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { createApp } from '../src/http/app.js';
import type { CheckpointRecord, MetricPoint, RunRecord } from '../src/model/records.js';
import { closeContext, openContext } from '../src/server.js';
import { createTestGateway, type TestGateway } from './helpers/gateway.js';
import { assertMatchesSpec } from './helpers/openapi.js';

const N = 1000;

/**
 * Metric points of a run: lr, tr Σ and loss every step; gradNorm only in the second half (the first half
 * takes ||Δw|| from checkpoints); an evaluation point every 25 steps, logged as a second point at the step.
 */
function trainingPoints(steps: number): MetricPoint[] {
  const points: MetricPoint[] = [];
  for (let step = 1; step <= steps; step++) {
    const trainLoss = 2 / (1 + step / 100);
    const p: MetricPoint = { step, lr: 0.05, batchSize: 32, gradVariance: 20 + (step % 7), trainLoss };
    if (step > steps / 2) p.gradNorm = 1 + (step % 5) / 10;
    points.push(p);
    if (step % 25 === 0) points.push({ step, valLoss: trainLoss + 1e-3 * step, extra: { trainEvalLoss: trainLoss } });
  }
  return points;
}

/** Stable sort by step: the order the catalog lists points in. */
const byStep = (points: readonly MetricPoint[]): MetricPoint[] => [...points].sort((a, b) => a.step - b.step);

function checkpoint(run: string, step: number, updateNormPerStep: number | null, nanCount = 0): CheckpointRecord {
  return {
    run,
    step,
    uploadId: `upload-${step}`,
    sha256: '0'.repeat(64),
    bytes: 16,
    format: 'safetensors',
    status: 'kept',
    blobKey: `${run}/${step}`,
    tensors: [{ name: 'w', dtype: 'F32', shape: [4], norm: 1, mean: 0, maxAbs: 1, nanCount, infCount: 0 }],
    metadata: null,
    indicators: {
      updateNorm: updateNormPerStep,
      updateNormPerStep,
      relativeChange: null,
      distanceFromStart: 0,
      pathLength: 0,
      cosinePrev: null,
      topTensors: [],
    },
    classes: [],
    reasons: [],
    pinned: false,
    discardedAt: null,
    deleteAfter: null,
    contentAvailable: true,
    createdAt: '2026-01-01T00:00:00.000Z',
  };
}

function runRecord(id: string): RunRecord {
  const at = '2026-01-01T00:00:00.000Z';
  return {
    id,
    plannedSteps: null,
    trainSize: N,
    allowShapeChange: false,
    tags: {},
    calibrationGroup: null,
    policy: null,
    createdAt: at,
    updatedAt: at,
  };
}

/** The catalog calls RunEstimates makes, in memory; states round-trip through JSON as in the real one. */
class MemoryCatalog implements EstimateCatalog {
  readonly points = new Map<string, MetricPoint[]>();
  readonly checkpoints = new Map<string, CheckpointRecord[]>();
  readonly states = new Map<string, string>();
  calls = { listMetrics: 0, listCheckpoints: 0 };

  append(run: string, points: readonly MetricPoint[]): void {
    this.points.set(run, [...(this.points.get(run) ?? []), ...points]);
  }

  commit(record: CheckpointRecord): void {
    this.checkpoints.set(record.run, [...(this.checkpoints.get(record.run) ?? []), record]);
  }

  readonly versions = new Map<string, number>();

  async getEstimateState(run: string): Promise<{ state: unknown; version: number } | null> {
    const text = this.states.get(run);
    return text === undefined ? null : { state: JSON.parse(text), version: this.versions.get(run) ?? 0 };
  }

  async estimateStateVersion(run: string): Promise<number | null> {
    return this.states.has(run) ? (this.versions.get(run) ?? 0) : null;
  }

  async putEstimateState(run: string, state: unknown): Promise<number> {
    this.states.set(run, JSON.stringify(state));
    const version = (this.versions.get(run) ?? 0) + 1;
    this.versions.set(run, version);
    return version;
  }

  readonly scales = new Map<string, { group: string; scale: number }>();

  async putCalibrationScale(run: string, entry: { group: string; scale: number }): Promise<void> {
    this.scales.set(run, entry);
  }

  async siblingScales(group: string, except: string): Promise<number[]> {
    return [...this.scales].filter(([run, e]) => run !== except && e.group === group).map(([, e]) => e.scale);
  }

  async getCheckpoint(run: string, step: number): Promise<CheckpointRecord | null> {
    return this.checkpoints.get(run)?.find((c) => c.step === step) ?? null;
  }

  async listCheckpoints(run: string): Promise<CheckpointRecord[]> {
    this.calls.listCheckpoints++;
    return [...(this.checkpoints.get(run) ?? [])].sort((a, b) => a.step - b.step);
  }

  /** The cursor's `seq` is the point's index in step order. */
  async listMetrics(run: string, query: MetricQuery): Promise<MetricPage> {
    this.calls.listMetrics++;
    const from = query.after === undefined ? 0 : query.after.seq + 1;
    const items = byStep(this.points.get(run) ?? [])
      .map((p, seq) => ({ p, seq }))
      .slice(from)
      .filter(({ p }) => p.step >= (query.fromStep ?? 0) && p.step <= (query.toStep ?? Number.POSITIVE_INFINITY))
      .slice(0, query.limit);
    const last = items[items.length - 1];
    const next = items.length === query.limit && last ? { step: last.p.step, seq: last.seq } : null;
    return { items: items.map(({ p }) => p), next };
  }
}

/** Checkpoints every 100 steps from 0, one with NaN weights, as the catalog lists them. */
function checkpointsOf(id: string, steps: number): CheckpointRecord[] {
  const list: CheckpointRecord[] = [];
  for (let step = 0; step <= steps; step += 100)
    list.push(checkpoint(id, step, step === 0 ? null : 0.02 / (1 + step / 200), step === 200 ? 3 : 0));
  return list;
}

function updatesOf(records: readonly CheckpointRecord[]): CheckpointUpdate[] {
  return records.map((c) => ({
    step: c.step,
    updateNormPerStep: c.indicators?.updateNormPerStep ?? null,
    nonFiniteCount: c.tensors.reduce((n, t) => n + t.nanCount + t.infCount, 0),
  }));
}

/** A clean run fed the same data in step order: checkpoints first, then the points. */
function reference(records: readonly CheckpointRecord[], points: readonly MetricPoint[]): EstimateAccumulator {
  return EstimateAccumulator.create().addCheckpoints(updatesOf(records)).add(byStep(points));
}

describe('estimate state: version and migration', () => {
  const state = EstimateAccumulator.create().add(trainingPoints(400)).toJSON();

  it('takes a current state as stored', () => {
    assert.equal(state.version, STATE_VERSION);
    assert.deepEqual(migrateState(JSON.parse(JSON.stringify(state))), state);
    assert.deepEqual(STATE_MIGRATIONS, []);
  });

  it('applies a registered migration to an older version', () => {
    // A hand-written version 1 that kept the running sums under another name.
    const { totals, ...rest } = state;
    const v1 = { ...rest, version: STATE_VERSION - 1, sums: totals };
    const renameSums: StateMigration = {
      from: STATE_VERSION - 1,
      migrate: ({ sums, ...others }) => ({ ...others, totals: sums }),
    };
    assert.deepEqual(migrateState(v1, [renameSums]), state);
    const restored = EstimateAccumulator.restore(v1, [renameSums]);
    assert.ok(restored);
    assert.deepEqual(restored.toJSON(), state);
    assert.equal(migrateState(v1), null, 'no migration path from version 1 (rebuilt from the catalog instead)');
    assert.equal(
      migrateState(v1, [{ from: STATE_VERSION - 1, migrate: () => ({ ...v1 }) }]),
      null,
      'a migration whose result the schema rejects',
    );
    assert.equal(
      migrateState(v1, [
        {
          from: STATE_VERSION - 1,
          migrate: () => {
            throw new Error('cannot');
          },
        },
      ]),
      null,
      'a migration that throws',
    );
  });

  it('refuses newer, unversioned and corrupt states', () => {
    assert.equal(migrateState({ ...state, version: STATE_VERSION + 1 }), null);
    assert.equal(migrateState({ ...state, version: undefined }), null);
    assert.equal(migrateState({ ...state, version: 0.5 }), null);
    assert.equal(migrateState({ ...state, carry: 'corrupt' }), null);
    assert.equal(migrateState({ ...state, totals: { ...state.totals, bSum: Number.POSITIVE_INFINITY } }), null);
    assert.equal(migrateState('not a state'), null);
    assert.equal(migrateState([state]), null);
    assert.equal(EstimateAccumulator.restore({ version: 2 }), null);
  });
});

describe('estimate state: rebuilt from the catalog', () => {
  const points = trainingPoints(600);
  const records = checkpointsOf('r', 600);
  const expected = reference(records, points);

  it('replays checkpoints and every metric point in step order, in pages that never split a step', async () => {
    const catalog = new MemoryCatalog();
    // A step with more points than a page, arriving across the run.
    const crowded: MetricPoint[] = Array.from({ length: 20 }, (_, i) => ({ step: 300, trainLoss: 1 + i / 100 }));
    catalog.append('r', [...points.slice(0, 400), ...crowded.slice(0, 10), ...points.slice(400), ...crowded.slice(10)]);
    for (const record of records) catalog.commit(record);
    const all = [...points.slice(0, 400), ...crowded.slice(0, 10), ...points.slice(400), ...crowded.slice(10)];
    const clean = reference(records, all).toJSON();
    for (const pageSize of [7, 10, 64, 10_000])
      assert.deepEqual((await rebuildAccumulator(catalog, 'r', pageSize)).toJSON(), clean, `page size ${pageSize}`);
  });

  it('rebuilds an unusable stored state on read, stores it, and answers as a clean run', async () => {
    for (const garbage of [{ version: 1, carry: 'corrupt' }, { version: STATE_VERSION + 1 }, 'not json state']) {
      const catalog = new MemoryCatalog();
      catalog.append('r', points);
      for (const record of records) catalog.commit(record);
      await catalog.putEstimateState('r', garbage);
      const estimates = new RunEstimates(catalog);
      const phases = [
        { name: 'early', fromStep: 0, toStep: 300 },
        { name: 'late', fromStep: 300, toStep: 600 },
      ];
      const got = await estimates.current(runRecord('r'), { phases });
      assert.deepEqual(got, currentEstimate(expected, { trainSize: N, phases }));
      assert.deepEqual(await estimates.history(runRecord('r')), estimateHistory(expected, { trainSize: N }));
      assert.deepEqual((await catalog.getEstimateState('r'))?.state, expected.toJSON(), 'the fresh state is stored');
    }
  });

  it('concurrent calls share one rebuild', async () => {
    const catalog = new MemoryCatalog();
    catalog.append('r', points);
    for (const record of records) catalog.commit(record);
    await catalog.putEstimateState('r', { version: 1 });
    const estimates = new RunEstimates(catalog);
    const [a, b] = await Promise.all([
      estimates.current(runRecord('r'), { phases: [] }),
      estimates.current(runRecord('r'), { phases: [], calibrateUntilStep: 300 }),
      estimates.history(runRecord('r')),
    ]);
    assert.equal(catalog.calls.listCheckpoints, 1);
    assert.deepEqual(a, currentEstimate(expected, { trainSize: N }));
    assert.deepEqual(b, currentEstimate(expected, { trainSize: N, calibrateUntilStep: 300 }));
  });

  it('a write that finds an unusable state folds its input once', async () => {
    const catalog = new MemoryCatalog();
    const estimates = new RunEstimates(catalog);
    for (const record of records.slice(0, 3)) {
      catalog.commit(record);
      await estimates.addCheckpoint('r', record.step);
    }
    const fresh = new RunEstimates(catalog);
    // Corrupt before a metric batch (stored first, as the coordinator does), then before a checkpoint.
    await catalog.putEstimateState('r', { version: 1, points: 'corrupt' });
    catalog.append('r', points.slice(0, 300));
    await fresh.addMetrics('r', points.slice(0, 300));
    const afterCheckpoint = new RunEstimates(catalog);
    await catalog.putEstimateState('r', { garbage: true });
    for (const record of records.slice(3)) {
      catalog.commit(record);
      await afterCheckpoint.addCheckpoint('r', record.step);
    }
    catalog.append('r', points.slice(300));
    await afterCheckpoint.addMetrics('r', points.slice(300));
    assert.deepEqual((await catalog.getEstimateState('r'))?.state, expected.toJSON());
  });
});

/** A plausible SGD run's metric points: decaying loss, gradient spread, evaluation points every 50 steps. */
function sgdPoints(steps: number, lr: number): MetricPoint[] {
  return Array.from({ length: steps }, (_, i) => {
    const step = i + 1;
    const gradNorm = 2 / Math.sqrt(step);
    const trainLoss = 2 / (1 + step / 100);
    const p: MetricPoint = { step, trainLoss, lr, batchSize: 32, gradNorm, gradVariance: 50 / Math.sqrt(step) };
    if (step % 50 === 0) {
      p.valLoss = trainLoss * (1 + step / 2000);
      p.extra = { trainEvalLoss: trainLoss };
    }
    return p;
  });
}

describe('estimate state over REST', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await createTestGateway();
  });
  after(() => gw.close());

  async function post(run: string, points: readonly MetricPoint[]): Promise<void> {
    for (let i = 0; i < points.length; i += 97)
      await request(gw.app)
        .post(`/v1/runs/${run}/metrics`)
        .send({ points: points.slice(i, i + 97) })
        .expect(200);
  }

  it('answers from a state rebuilt from the catalog when the stored one is corrupt', async () => {
    const points = sgdPoints(600, 0.05);
    for (const run of ['clean', 'corrupt'])
      await request(gw.app).put(`/v1/runs/${run}`).send({ trainSize: N }).expect(201);
    await post('clean', points);
    // The second half first: the first half then arrives after its steps were folded, and is dropped live.
    await post('corrupt', [...points.slice(300), ...points.slice(0, 300)]);
    const live = await request(gw.app).get('/v1/runs/corrupt/estimate').expect(200);
    assert.ok(live.body.counts.latePoints > 0);

    await gw.context.catalog.putEstimateState('corrupt', { version: 1, totals: 'garbage', snapshots: [{}] });
    // A second gateway on the same data directory: nothing cached, so its first read finds the corrupt state.
    const env = { TRAJGATE_DATA_DIR: gw.dataDir, TRAJGATE_LOG_LEVEL: 'silent', PORT: '0', HOST: '127.0.0.1' };
    const second = await openContext(loadConfig(env), pino({ level: 'silent' }));
    after(() => closeContext(second));
    const restarted = createApp(second);
    const res = await request(restarted).get('/v1/runs/corrupt/estimate').expect(200);
    assertMatchesSpec(res, 'GET', '/v1/runs/{run}/estimate');
    const clean = await request(gw.app).get('/v1/runs/clean/estimate').expect(200);
    assert.deepEqual(res.body, clean.body);
    assert.equal(res.body.counts.latePoints, 0, 'replayed in step order');
    const history = await request(restarted).get('/v1/runs/corrupt/estimate/history').expect(200);
    assert.deepEqual(history.body, (await request(gw.app).get('/v1/runs/clean/estimate/history').expect(200)).body);
    assert.deepEqual(
      (await gw.context.catalog.getEstimateState('corrupt'))?.state,
      (await gw.context.catalog.getEstimateState('clean'))?.state,
      'the rebuilt state is stored',
    );
  });

  it('keeps accepting metrics when the stored state is from a newer version', async () => {
    const points = sgdPoints(600, 0.05);
    await request(gw.app).put('/v1/runs/newer').send({ trainSize: N }).expect(201);
    await gw.context.catalog.putEstimateState('newer', { version: STATE_VERSION + 1 });
    await post('newer', points);
    const res = await request(gw.app).get('/v1/runs/newer/estimate').expect(200);
    const clean = await request(gw.app).get('/v1/runs/clean/estimate').expect(200);
    assert.deepEqual(res.body, clean.body);
    await request(gw.app).get('/v1/runs/missing/estimate').expect(404);
    await request(gw.app).get('/v1/runs/missing/estimate/history').expect(404);
  });
});
